"""The offline datasets: splits, no leakage, stratification, the card's counts, and bad input."""

import re
from pathlib import Path

import numpy as np
import pytest
from datasets import DatasetDict

from tutorial_utils.data import (DataError, encode_labels, load_bbc_news, label_counts, label_names, load_debian_tags,
                                 load_ipc_sections, load_multi_label, load_single_label, multi_hot)
from tutorial_utils.setup.config import get_profile
from tutorial_utils.data.common import check_texts, grouped_split, _stratified_sample
from tutorial_utils.data.multilabel import _debian_examples
from tutorial_utils.data.patents import SECTION_NAMES, _clean_title, _ipc_examples

CARD = Path(__file__).resolve().parents[1] / "data" / "README.md"


def card_table(title_start: str) -> dict[str, list[int]]:
    """The counts table under the card section whose heading starts with ``title_start``."""
    section = CARD.read_text().split(f"## `{title_start}`")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (?:\*\*)?([\w ]+?)(?:\*\*)? \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", section, re.M)
    return {name: [int(x) for x in counts] for name, *counts in rows}


@pytest.mark.parametrize("loader, card", [(load_ipc_sections, "ipc-sections"), (load_debian_tags, "debian-tags"),
                                          (load_bbc_news, "bbc-news")])
def test_card_counts_match_the_loader(loader, card):
    data = loader()
    table = card_table(card)
    counts = {split: label_counts(data[split]) for split in ("train", "validation", "test")}
    for name in label_names(data):
        expected = table[name]
        assert [counts[s][name] for s in ("train", "validation", "test")] == expected[:3], name
    assert table["documents"][:3] == [len(data[s]) for s in ("train", "validation", "test")]


def test_ipc_has_no_leakage_across_splits():
    rows = _ipc_examples()
    texts = rows["text"]
    assert len(texts) == len(set(texts)), "duplicate texts survived deduplication"
    split_of_group = {}
    for group, split in zip(rows["group"], rows["split"]):
        assert split_of_group.setdefault(group, split) == split, f"main group {group} spans two splits"


def test_ipc_splits_are_stratified():
    rows = _ipc_examples()
    labels, splits = np.array(rows["label"]), np.array(rows["split"])
    overall = np.bincount(labels, minlength=8) / len(labels)
    for split in ("train", "validation", "test"):
        share = np.bincount(labels[splits == split], minlength=8) / np.sum(splits == split)
        assert np.abs(share - overall).max() < 0.01, split


def test_clean_title_strips_codes_and_drops_unusable_titles():
    assert _clean_title("Hand tools (edge trimmers for lawns A01G0003060000)") == "Hand tools"
    assert _clean_title("Soil working (making furrows A01C0005000000; mowers A01D)") == "Soil working"
    assert _clean_title("Parts not provided for in groups A01B0051000000-A01B0075000000") is None
    assert _clean_title("Indexing scheme associated with group A01D0034000000") is None
    assert _clean_title("Spades; Shovels") == "Spades; Shovels"


def test_profile_samples_have_the_profile_sizes_and_all_labels():
    profile = get_profile("tiny")
    data = load_single_label(profile)
    assert isinstance(data, DatasetDict) and list(data) == ["train", "validation", "test"]
    assert [len(data[s]) for s in data] == [192, 64, 96]
    assert label_names(data) == SECTION_NAMES
    assert set(data["train"]["label"]) == set(range(8))
    again = load_single_label(profile)
    assert again["train"]["text"][:] == data["train"]["text"][:], "sampling is not seeded"


def test_multi_label_data_is_really_multi_label():
    data = load_multi_label(get_profile("tiny"))
    y = multi_hot(data["train"])
    assert y.shape == (192, 21)
    assert (y.sum(axis=1) >= 1).all()
    rows, names = _debian_examples()
    per_doc = np.array([len(ids) for ids in rows["labels"]])
    assert len(names) >= 10 and (per_doc >= 2).mean() > 0.3
    split_of_group = {}
    for group, split in zip(rows["group"], rows["split"]):
        assert split_of_group.setdefault(group, split) == split


def test_grouped_split_keeps_groups_together_and_follows_fractions():
    groups = [f"g{i // 3}" for i in range(3000)]
    strata = [i % 2 for i in range(3000)]
    splits = grouped_split(groups, strata)
    assert {g: s for g, s in zip(groups, splits)} == {g: s for g, s in zip(reversed(groups), reversed(splits))}
    shares = {s: splits.count(s) / 3000 for s in ("train", "validation", "test")}
    assert abs(shares["train"] - 0.8) < 0.01 and abs(shares["test"] - 0.1) < 0.01
    with pytest.raises(DataError, match="add up to 1"):
        grouped_split(groups, fractions=(0.5, 0.2, 0.2))


def test_stratified_sample_keeps_shares():
    labels = np.array([0] * 800 + [1] * 200)
    idx = _stratified_sample(labels, 100, seed=0)
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.sum(labels[idx] == 1) == 20


def test_unknown_label_names_the_known_labels():
    assert encode_labels(["physics", 0], SECTION_NAMES) == [6, 0]
    with pytest.raises(DataError, match=r"unknown label 'biology'.*Known labels: \['human necessities'"):
        encode_labels(["physics", "biology"], SECTION_NAMES)


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_text_is_refused_with_a_fix(bad):
    with pytest.raises(DataError, match="Text 1 is empty.*Fix"):
        check_texts(["fine", bad])


def test_missing_snapshot_says_how_to_restore_it(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    _debian_examples.cache_clear()
    try:
        with pytest.raises(DataError, match="missing from data/.*git checkout data/"):
            _debian_examples()
    finally:
        monkeypatch.delenv("COURSE_DATA_DIR")
        _debian_examples.cache_clear()


def test_a_hub_dataset_sorted_by_label_comes_back_in_a_random_order(monkeypatch):
    """The hub loader on a hub-shaped local stand-in (sorted by label, as some files are): its first rows mix classes."""
    import datasets
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from tutorial_utils.data import hub

    features = Features({"text": Value("string"), "label": ClassLabel(names=["world", "sports", "business", "sci"])})
    def split(n):
        return Dataset.from_dict({"text": [f"text {i}" for i in range(n)], "label": sorted(i % 4 for i in range(n))},
                                 features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: DatasetDict(train=split(400), test=split(80)))
    data = hub.load_hub_single_label("fancyzhx/ag_news", {"train": 100, "test": None})
    assert len(data["train"]) == 100 and len(data["test"]) == 80 and set(data) == {"train", "validation", "test"}
    assert len(set(data["train"]["label"][:20])) >= 3 and len(set(data["test"]["label"][:20])) >= 3


def test_sample_examples_is_stratified_seeded_and_keeps_small_splits_whole():
    from datasets import ClassLabel, Dataset, Features, Value

    from tutorial_utils.data.common import sample_examples, with_train_cut

    split = Dataset.from_dict({"text": [f"t{i}" for i in range(90)], "label": [0] * 60 + [1] * 30},
                              features=Features(text=Value("string"), label=ClassLabel(names=["a", "b"])))
    picked = sample_examples(split, 30, seed=1)
    assert sorted(picked["label"]).count(1) == 10  # the 2:1 ratio kept
    assert picked["text"] == sample_examples(split, 30, seed=1)["text"]
    assert sample_examples(split, None, seed=1) is split and sample_examples(split, 500, seed=1) is split
    cut = with_train_cut({"train": split, "validation": split, "test": split}, 30, seed=1)
    assert len(cut["train"]) == 30 and len(cut["validation"]) == 90
