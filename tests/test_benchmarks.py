"""The cost benchmarks: their arithmetic, one end-to-end run on the tiny profile, and the committed results.

The end-to-end run is the README's command on the tiny profile (seconds); its numbers mean nothing,
but every section, table and figure must come out, and the counts must agree with chapter 01's formulas.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tutorial_utils.setup.config import ROOT, get_profile
from tutorial_utils.modeling import models, quantization
from tutorial_utils.data import label_names, load_single_label
from tutorial_utils.methods import instruct
from tutorial_utils.tools import bench, bench_report

RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "book" / "costs.md"


def test_rows_are_filled_to_the_length_with_real_tokens():
    rows = bench._fill([[1, 2], [3, 4, 5, 6, 7], [8]], 4)
    # short sequences are preceded by earlier ones (cyclically); every row is cut on the left to the length
    assert rows == [[7, 8, 1, 2], [4, 5, 6, 7], [5, 6, 7, 8]]


def test_instruction_batch_puts_the_loss_on_the_answer_only():
    profile = get_profile("tiny")
    data = load_single_label(profile)
    names = label_names(data)
    model, tokenizer = models.load_causal_lm(profile)
    texts, labels = list(data["train"]["text"]), list(data["train"]["label"])
    batch = bench.step_batch(profile, tokenizer, texts, labels, names, "instruction tuning")
    assert batch["input_ids"].shape == batch["labels"].shape == (16, profile.train.max_length)
    answer = instruct.answer_ids(tokenizer, names[labels[0]])
    target = batch["labels"][0]
    assert target[-len(answer):].tolist() == answer and (target[:-len(answer)] == -100).all()
    assert batch["input_ids"][0, -len(answer):].tolist() == answer
    heads = bench.step_batch(profile, tokenizer, texts, labels, names, "embedding head")
    assert heads["labels"].tolist() == labels[:16]
    loss = bench._loss(models.add_lora(model, profile.lora, task_type="CAUSAL_LM"), batch, answer_logits_only=True)
    assert torch.isfinite(loss)


def test_memory_limits_follow_the_bits():
    rows = [{"precision": "bf16", "weights (MiB)": 100.0, "parameters": 1000, "quantised parameters": 0,
             "formula bits per quantised weight": None},
            {"precision": "nf4-dq", "weights (MiB)": 60.0, "parameters": 1000, "quantised parameters": 500,
             "formula bits per quantised weight": quantization.bits_per_parameter(64, True)}]
    bf16, nf4 = bench.memory_ratios(rows)
    assert bf16["ratio to bf16"] == bf16["limit: whole model"] == 1.0
    assert nf4["limit: quantised layers (nominal bits / 16)"] == 0.25
    assert nf4["limit: quantised layers with scales"] == pytest.approx((4 + 8 / 64 + 32 / (64 * 256)) / 16)
    assert nf4["limit: whole model"] == pytest.approx(0.5 * nf4["limit: quantised layers with scales"] + 0.5)
    assert nf4["ratio to bf16"] == 0.6


def test_storage_counts_packed_weights_and_their_scales():
    profile = get_profile("tiny")
    row = bench.memory_one(profile, "nf4-dq")
    assert row["formula bits per quantised weight"] == pytest.approx(quantization.bits_per_parameter(64, True))
    assert row["bits per quantised weight"] >= row["formula bits per quantised weight"]  # + small lookup tables
    model = models.load_causal_lm(profile)[0]
    assert row["parameters"] == models.count_parameters(model).total


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``bench all``, ``bench course`` (chapter 00 only) and ``bench defaults`` on the tiny profile, into a
    temporary folder."""
    root = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, COURSE_PROFILE="tiny", COURSE_HIDE_PROGRESS="1", OMP_NUM_THREADS="1")
    common = ["--profile", "tiny", "--results", str(root / "results"), "--images", str(root / "images")]
    for args in (["all", "--steps", "1", "--single", "2", "--batched", "8"], ["course", "--chapters", "00", "--no-tests"],
                 ["defaults"]):
        done = subprocess.run([sys.executable, "-m", "tutorial_utils", "bench", *args, *common], env=env,
                              capture_output=True, text=True, timeout=900, cwd=root)
        assert done.returncode == 0, done.stderr[-4000:]
    return root, json.loads((root / "results" / "tiny-cpu.json").read_text())


def test_every_section_is_written_with_its_machine(tiny_run):
    root, results = tiny_run
    assert list(results["sections"]) == ["memory", "params", "train", "infer", "course", "defaults"]
    for section in results["sections"].values():
        assert section["machine"]["cpu"] and section["machine"]["torch threads"] >= 1 and section["rows"]
        assert len(section["machine"]["load average before (1, 5, 15 min)"]) == 3
        assert 0 <= section["machine"]["other programs' share of the CPU"] <= 1.05
    text = (root / "results" / "tiny-cpu.md").read_text()
    for name in results["sections"]:
        assert f"<!-- {name} -->" in text and f"<!-- /{name} -->" in text
        assert (root / "images" / f"costs-tiny-cpu-{name}.png").stat().st_size > 1000


def test_parameter_counts_match_the_formulas(tiny_run):
    rows = tiny_run[1]["sections"]["params"]["rows"]
    assert {r["LoRA budget"] for r in rows[:-1]} == set(bench._lora_budgets(get_profile("tiny")))
    for row in rows[:-1]:
        assert row["trainable"] == row["formula"], row
    head, instruction = rows[0], rows[1]
    assert head["trainable"] - instruction["trainable"] == 64 * 8  # the head: hidden size x 8 sections
    assert rows[-1]["method"] == "encoder, full fine-tuning" and rows[-1]["trainable %"] == 100


def test_memory_ratios_sit_on_their_limits(tiny_run):
    rows = {r["precision"]: r for r in tiny_run[1]["sections"]["memory"]["rows"]}
    assert list(rows) == list(models.PRECISIONS)
    assert rows["fp32"]["ratio to bf16"] == pytest.approx(2.0, rel=1e-3)
    for name in ("int8", "nf4", "nf4-dq"):  # measured storage is the formula plus a few lookup tables
        assert rows[name]["ratio to bf16"] == pytest.approx(rows[name]["limit: whole model"], abs=0.01)
    # (double quantisation's own tables outweigh its savings on the tiny model's 64-wide layers, not on SmolLM2's)
    assert max(rows[n]["weights (MiB)"] for n in ("int8", "nf4", "nf4-dq")) < rows["bf16"]["weights (MiB)"]


def test_training_and_inference_rows(tiny_run):
    sections = tiny_run[1]["sections"]
    train = sections["train"]["rows"]
    assert len(train) == len(bench.TRAIN_CONFIGS) and len({r["batch x length"] for r in train}) == 1
    for row in train:
        assert row["step (s)"] > 0 and row["tokens/s"] == pytest.approx(16 * 48 * row["examples/s"] / 16)
        share = row["dequantisation share of step"]
        assert (share is None) == (row["weights"] != "4-bit NF4") and (share is None or 0 < share < 1)
    infer = sections["infer"]["rows"]
    # 9 predictors: the head as trained, plain and exported; instruction tuning scored and generated, as
    # trained and plain; the encoder in fp32 and (on a CPU) int8 dynamic
    assert len(infer) == 2 * 9 and {r["batch"] for r in infer} == {1, 32}
    assert any("exported 16-bit" in r["method"] for r in infer) and any("int8 dynamic" in r["method"] for r in infer)
    assert all(r["texts/s"] > 0 and r["latency per call (ms)"] > 0 for r in infer)
    course = sections["course"]["rows"]
    assert [r["what"] for r in course] == ["chapter 00_setup"] and course[0]["seconds"] > 0
    # a partial run keeps the other rows, so each row says when and on which processor it was measured
    assert course[0]["measured"] == f"{sections['course']['measured at']}, {sections['course']['machine']['cpu']}"


def committed() -> list[Path]:
    return sorted(RESULTS.glob("*.json")) if RESULTS.exists() else []


def test_the_defaults_and_the_plain_script_run_side_by_side_on_the_same_split(tiny_run):
    _, results = tiny_run
    cli, same_length, plain = results["sections"]["defaults"]["rows"]
    assert plain["time / plain script"] == 1 and plain["macro-F1 - plain script"] == 0
    assert cli["time / plain script"] == pytest.approx(cli["seconds"] / plain["seconds"])
    assert cli["text length"] % 16 == 0 and plain["text length"] == 128 and 0 <= cli["macro-F1"] <= 1
    assert same_length["text length"] == 128 and same_length["run"].endswith("(the plain script's length)")


def test_where_the_cap_for_your_data_differs_a_row_trains_at_the_comparisons_cap():
    """The defaults train up to ``Protocol.your_data_max_epochs``; where the comparison's cap is longer, a row
    shows what it buys and costs, on the same split (on tiny the two caps are equal: one made to differ here)."""
    import dataclasses

    from tutorial_utils.tools.bench_defaults import defaults_rows

    tiny = get_profile("tiny")
    profile = dataclasses.replace(tiny, protocol=dataclasses.replace(tiny.protocol, your_data_max_epochs=1))
    rows, settings = defaults_rows(profile)
    runs = [row["run"] for row in rows]
    assert runs[0].endswith("(defaults)") and runs[-1] == "plain transformers + peft script"
    longer = rows[runs.index(f"... --max-epochs {tiny.protocol.max_epochs} (the comparison's cap)")]
    assert " of 1," in rows[0]["epochs"]
    assert f" of {tiny.protocol.max_epochs}" in longer["epochs"] and longer["text length"] == rows[0]["text length"]
    assert "(1 epochs;" in settings["the CLI's runs only"]


def test_the_unseen_corpus_has_balanced_eras_of_long_paragraphs_and_is_seeded():
    from tutorial_utils.tools.bench_defaults import ERAS, MIN_WORDS, SIZES, sotu_eras

    table = sotu_eras()
    assert table.groupby("split").size().to_dict() == SIZES
    assert (table.groupby(["split", "label"]).size() == [SIZES[s] // len(ERAS) for s, _ in
                                                       table.groupby(["split", "label"]).size().index]).all()
    assert (table["text"].str.split().str.len() >= MIN_WORDS).all() and not table["text"].duplicated().any()
    assert table.equals(sotu_eras())  # seeded


@pytest.mark.parametrize("path", committed(), ids=lambda p: p.name)
def test_committed_markdown_and_figures_match_the_json(path, tmp_path):
    results = json.loads(path.read_text())
    copy = tmp_path / path.name
    bench_report.write_markdown(results, copy)
    assert copy.with_suffix(".md").read_text() == path.with_suffix(".md").read_text(), \
        f"regenerate: python -m tutorial_utils bench report --profile {results['profile']}"
    for name in results["sections"]:
        assert (ROOT / "book" / "images" / f"costs-{path.stem}-{name}.png").exists()


def test_the_page_shows_committed_results_only():
    text = PAGE.read_text()
    for include in re.findall(r"```\{include\} (\S+)\n:start-after: <!-- (\w+) -->", text):
        path, section = (PAGE.parent / include[0]).resolve(), include[1]
        assert path.exists(), f"the page includes {include[0]}, which is not committed"
        assert section in json.loads(path.with_suffix(".json").read_text())["sections"]
    for image in re.findall(r"```\{figure\} (\S+)", text):
        assert (PAGE.parent / image).exists(), image
