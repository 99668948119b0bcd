"""Shared data plumbing: input checks, leakage-free grouped splits, stratified samples, DatasetDicts.

Every loader in this package returns a ``datasets.DatasetDict`` with ``train``, ``validation`` and
``test`` splits, a ``text`` column and a ``label`` (ClassLabel) or ``labels`` (list of ClassLabel ids)
column. Taught in chapter 00 (setup).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as HFSequence, Value

from ..setup.checks import DataError, check_label_names, check_texts  # noqa: F401 (DataError, check_texts: data's API)

__all__ = ["SPLITS", "repo_data_dir", "encode_labels", "stable_hash", "grouped_split", "sample_examples",
           "with_train_cut", "single_label_dict", "multi_label_dict", "label_names", "multi_hot", "label_counts"]

SPLITS = ("train", "validation", "test")
_DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def repo_data_dir() -> Path:
    """The repository's ``data/`` folder (the package is installed from a checkout, as the README does)."""
    env = os.environ.get("COURSE_DATA_DIR")
    folder = Path(env) if env else Path(__file__).resolve().parents[3] / "data"
    if not folder.is_dir():
        raise DataError(
            f"The course's data folder was not found at {folder}. Fix: install the package from a clone of the "
            "repository (`pip install -e .`), or set COURSE_DATA_DIR to the clone's data/ folder."
        )
    return folder


def encode_labels(labels: Iterable[str | int], names: Sequence[str]) -> list[int]:
    """Map label names (or ids) to ids, raising a DataError that lists the known labels on an unknown one."""
    names = check_label_names(names, minimum=1)  # a repeated name would map to its last position
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for i, label in enumerate(labels):
        if isinstance(label, (bool, np.bool_)):
            raise DataError(f"Example {i} has the label {label!r}: a boolean is not a class id (True would count as "
                            f"1). Fix: map it to a label name of {list(names)} or to its id.")
        if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(names):
            ids.append(int(label))
        elif label in index:
            ids.append(index[label])
        else:
            raise DataError(f"Example {i} has the unknown label {label!r}. Known labels: {list(names)}. Fix: map it "
                            "to one of them, or add it to the label list.")
    return ids


def stable_hash(key: str) -> int:
    """A hash that is the same on every machine and Python run (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big")


def grouped_split(groups: Sequence[str], strata: Sequence[str | int] | None = None,
                  fractions: tuple[float, float, float] = _DEFAULT_FRACTIONS, every_split: bool = False) -> list[str]:
    """Assign each example a split so that a group never spans two splits, stratified by ``strata``.

    Within each stratum the groups are ordered by a stable hash and filled into train, validation and
    test until each split holds its fraction of the stratum's examples: deterministic, no RNG involved.
    A group whose examples fall in several strata (one text under two labels) goes with its most common one.
    ``every_split``: a stratum with a group to spare gives each split of a positive fraction at least one
    group (the last ones of train's), so that a small class is scored too (your own data, chapter 09).
    """
    if abs(sum(fractions) - 1) > 1e-9:
        raise DataError(f"Split fractions must add up to 1, got {fractions}.")
    strata = list(strata) if strata is not None else [0] * len(groups)
    votes: dict[str, dict[object, int]] = {}
    for g, s in zip(groups, strata):
        votes.setdefault(g, {}).setdefault(s, 0)
        votes[g][s] += 1
    home = {g: max(sorted(v, key=str), key=v.get) for g, v in votes.items()}  # the most common; ties: first by name
    assignment: dict[str, str] = {}
    for stratum in sorted(set(home.values()), key=str):
        sizes = {g: sum(votes[g].values()) for g in votes if home[g] == stratum}
        total, filled = sum(sizes.values()), 0
        bounds = np.cumsum(fractions) * total
        order = sorted(sizes, key=lambda k: stable_hash(f"{stratum}|{k}"))
        for g in order:
            assignment[g] = SPLITS[int(np.searchsorted(bounds, filled, side="right"))]
            filled += sizes[g]
        if every_split:
            for split, share in zip(SPLITS[1:], fractions[1:]):
                trains = [g for g in order if assignment[g] == "train"]
                if share > 0 and split not in {assignment[g] for g in order} and len(trains) > 1:
                    assignment[trains[-1]] = split
    return [assignment[g] for g in groups]


def _stratified_sample(labels: Sequence[int], n: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded, shuffled sample of ``n`` examples that keeps each class's share (all if n is None)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if n is None or n >= len(labels):
        return rng.permutation(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.round(counts / counts.sum() * n).astype(int))
    while quota.sum() > n:  # rounding can overshoot by a few: trim the largest classes
        quota[np.argmax(quota)] -= 1
    picked = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)])
    return rng.permutation(picked)


def sample_examples(split: Dataset, n: int | None, seed: int, multi_label: bool = False) -> Dataset:
    """``n`` examples of a split (all if None or more), stratified by label if single-label (chapters 04-05)."""
    if n is None or n >= len(split):
        return split
    if multi_label:
        return split.shuffle(seed=seed).select(range(n))
    return split.select(sorted(_stratified_sample(split["label"], n, seed)))


def with_train_cut(data: DatasetDict, n: int | None, seed: int, multi_label: bool = False) -> DatasetDict:
    """The data with its train split cut to ``sample_examples(train, n, ...)``; validation and test whole."""
    return DatasetDict(train=sample_examples(data["train"], n, seed, multi_label),
                       validation=data["validation"], test=data["test"])


def single_label_dict(rows: dict[str, list], names: Sequence[str], sizes: dict[str, int | None],
                      seed: int) -> DatasetDict:
    """Build a DatasetDict from columns ``text``, ``label`` (ids) and ``split``, sampling each split."""
    check_texts(rows["text"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    out = {}
    for split in SPLITS:
        idx = [i for i, s in enumerate(rows["split"]) if s == split]
        labels = [rows["label"][i] for i in idx]
        keep = [idx[j] for j in _stratified_sample(labels, sizes.get(split), seed)]
        out[split] = Dataset.from_dict({"text": [rows["text"][i] for i in keep],
                                        "label": [rows["label"][i] for i in keep]}, features=features)
    return DatasetDict(out)


def multi_label_dict(rows: dict[str, list], names: Sequence[str], sizes: dict[str, int | None],
                     seed: int) -> DatasetDict:
    """Build a multi-label DatasetDict (``labels`` = list of ids) from columns text, labels and split."""
    check_texts(rows["text"])
    features = Features({"text": Value("string"), "labels": HFSequence(ClassLabel(names=list(names)))})
    rng = np.random.default_rng(seed)
    out = {}
    for split in SPLITS:
        idx = np.array([i for i, s in enumerate(rows["split"]) if s == split])
        n = sizes.get(split)
        if n is not None and n < len(idx):
            idx = rng.permutation(idx)[:n]
        out[split] = Dataset.from_dict({"text": [rows["text"][i] for i in idx],
                                        "labels": [rows["labels"][i] for i in idx]}, features=features)
    return DatasetDict(out)


def label_names(dataset: Dataset | DatasetDict) -> list[str]:
    """The label names of a single- or multi-label dataset built by this package."""
    ds = dataset["train"] if isinstance(dataset, DatasetDict) else dataset
    feature = ds.features["label"] if "label" in ds.features else ds.features["labels"].feature
    return list(feature.names)


def multi_hot(dataset: Dataset, num_labels: int | None = None) -> np.ndarray:
    """The ``labels`` column of a multi-label dataset as an (examples x labels) 0/1 matrix."""
    num_labels = num_labels or len(label_names(dataset))
    matrix = np.zeros((len(dataset), num_labels), dtype=np.float32)
    for row, ids in enumerate(dataset["labels"]):
        matrix[row, list(ids)] = 1.0
    return matrix


def label_counts(dataset: Dataset) -> dict[str, int]:
    """Examples per label name in one split (a multi-label example counts once per label)."""
    names = label_names(dataset)
    counts = dict.fromkeys(names, 0)
    column = dataset["label"] if "label" in dataset.features else [i for ids in dataset["labels"] for i in ids]
    for i in column:
        counts[names[i]] += 1
    return counts
