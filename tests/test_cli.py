"""The command line: argument parsing, batch splitting over processes, the report writer, a tiny train run."""

import dataclasses
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tutorial_utils.setup.config import get_profile
from tutorial_utils.setup.checks import DataError
from tutorial_utils.tools import bench_report, bench_sections, cli, cli_data


def test_parser_knows_the_methods_and_the_benchmarks():
    args = cli.parser().parse_args(["train", "embedding-head", "--profile", "tiny", "--out", "x"])
    assert (args.method, args.profile, args.out, args.func) == ("embedding-head", "tiny", "x", cli_data.cmd_train)
    args = cli.parser().parse_args(["bench", "all", "--profile", "tiny", "--no-figures"])
    assert args.step == "all" and args.no_figures and args.tests
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["train", "embedding-head"])  # --out is required
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["train", "bert", "--out", "x"])


def test_the_protocols_batch_stays_the_global_batch_over_processes():
    from tutorial_utils.methods import runners

    profile = get_profile("tiny")
    whole = runners.protocol_profile(profile)  # the batch a run on one process takes a step
    split, per_device, per_step = cli_data.with_batch(profile, "embedding-head", None, world=2)
    assert per_device == split.train.batch_size == whole.train.batch_size // 2
    assert per_step == whole.train.batch_size * whole.train.grad_accum
    assert split.encoder_train == whole.encoder_train
    assert runners.protocol_profile(split) == split  # training applies the protocol again: the split stays
    encoder, per_device, per_step = cli_data.with_batch(profile, "encoder-finetune", 4, world=2)
    assert per_device == encoder.encoder_train.batch_size == 4 and encoder.train == whole.train and per_step == 8
    instruction, _, _ = cli_data.with_batch(profile, "instruction-scored", None, world=2)
    assert instruction.instruct_train.batch_size == whole.instruct_train.batch_size // 2
    odd = dataclasses.replace(profile, protocol=dataclasses.replace(profile.protocol, batch_size=15))
    with pytest.raises(DataError, match="per-device-batch"):
        cli_data.with_batch(odd, "embedding-head", None, world=2)


@pytest.mark.parametrize("value, text", [(None, "-"), (12345, "12,345"), (0.25, "0.25"), (0.0271, "0.0271"),
                                         (1234.5, "1,234"), (3.14159, "3.14"), ("q,v r=8", "q,v r=8"),
                                         (0.0001234, "1.23e-04"), (0.0, "0")])
def test_table_cells(value, text):
    assert bench_report.fmt(value) == text


def fake_results() -> dict:
    machine = {"cpu": "Some CPU", "usable cores": 2, "torch threads": 2, "gpu": None, "versions": {"torch": "2.x"},
               "load average (1, 5, 15 min)": [0.5, 0.5, 0.5], "load average before (1, 5, 15 min)": [0.4, 0.4, 0.4]}
    rows = [{"method": "embedding head", "LoRA budget": "q,v r=8", "trainable": 465_408, "formula": 465_408,
             "trainable %": 0.5, "ratio to embedding head (first row)": 1.0, "not a column": 1}]
    return {"profile": "cpu", "device": "cpu",
            "sections": {"params": {"rows": rows, "machine": machine, "measured at": "2026-01-01 10:00", "seconds": 3.0}}}


def test_markdown_has_markers_provenance_and_the_chosen_columns(tmp_path):
    path = tmp_path / "cpu-cpu.json"
    bench_report.write_markdown(fake_results(), path)
    text = path.with_suffix(".md").read_text()
    assert "<!-- params -->" in text and "<!-- /params -->" in text
    assert "Some CPU, 2 usable cores, 2 torch threads, no GPU" in text
    assert "1-min load average 0.40 before, 0.50 after" in text
    assert "| embedding head | q,v r=8 | 465,408 | 465,408 | 0.5 | 1 |" in text
    assert "not a column" not in text


def test_report_draws_one_figure_per_section(tmp_path):
    results = fake_results()
    bench_report.write_report(results, tmp_path / "cpu-cpu.json", tmp_path / "images")
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["costs-cpu-cpu-params.png"]


def run_cli(*args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, COURSE_PROFILE="tiny", COURSE_HIDE_PROGRESS="1", OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "tutorial_utils", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_hours_stops_before_a_run_that_would_not_fit():
    class Spec:
        def describe(self):
            return "a long run"

    fits = cli._fits(1.0, lambda spec: 10 * 60)  # ten minutes of an hour
    assert fits(Spec()) is None
    reason = cli._fits(0.5, lambda spec: 3600)(Spec())  # an hour in half an hour
    assert reason.startswith("stopping before a long run") and "about 60 min" in reason and "30 min" in reason
    assert cli.parser().parse_args(["reproduce", "--hours", "1.5"]).hours == 1.5
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["reproduce", "--hours", "-1"])


def test_train_without_data_trains_the_profiles_task_into_one_run_folder(tmp_path):
    """``train tfidf`` without --data: the profile's task, to the same run folder as --data, and predict reads it."""
    done = run_cli("train", "tfidf", "--profile", "tiny", "--out", str(tmp_path / "out"), cwd=tmp_path,
                   COURSE_RUNS=str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".lock") == ["metrics.json", "model", "record"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    profile = get_profile("tiny")
    assert metrics["method"] == "tfidf-logreg" and metrics["dataset"] == profile.single_label_data
    assert metrics["test_metrics"]["accuracy"] > 0.3 and "distributed" not in metrics  # one process
    assert done.stdout.count("wrote model/, record/ and metrics.json") == 1
    from tutorial_utils.data import load_single_label

    test = load_single_label(profile)["test"]
    names = test.features["label"].names
    pd.DataFrame({"text": test["text"], "label": [names[i] for i in test["label"]]}).to_csv(tmp_path / "new.csv", index=False)
    read = run_cli("predict", "--model", str(tmp_path / "out"), "--data", str(tmp_path / "new.csv"), "--label-column",
                   "label", "--out", str(tmp_path / "predictions.csv"), cwd=tmp_path)
    assert read.returncode == 0, read.stderr[-3000:]
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert (table["true"] == table["predicted"]).mean() == pytest.approx(metrics["test_metrics"]["accuracy"])


def test_csv_options_without_data_are_refused_by_name(tmp_path):
    done = run_cli("train", "tfidf", "--profile", "tiny", "--split-column", "part", "--out", str(tmp_path / "out"),
                   cwd=tmp_path)
    assert done.returncode == 2 and "--split-column describe a CSV" in done.stderr and not (tmp_path / "out").exists()


def test_compare_writes_the_capstone_tables(tmp_path, monkeypatch):
    """`python -m tutorial_utils compare` on tiny: every table and plot lands in --out (the store's runs, read)."""
    import subprocess
    import sys

    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    done = subprocess.run([sys.executable, "-m", "tutorial_utils", "compare", "--profile", "tiny", "--out",
                           str(tmp_path / "out"), "--resamples", "50"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {p.name for p in (tmp_path / "out").iterdir()}
    tables = ("single_label", "single_label_paired", "efficiency", "news", "news_paired", "multi_label",
              "multi_label_paired")
    assert {f"{t}.{kind}" for t in tables for kind in ("csv", "md")} <= names
    assert {f"{f}.png" for f in ("validation_curves", "single_label_paired", "efficiency", "news_paired",
                                 "multi_label", "multi_label_paired")} <= names
    assert "LoRA embedding head" in (tmp_path / "out" / "single_label.md").read_text()
    assert "frozen-LLM probe" in (tmp_path / "out" / "news.md").read_text()
    assert "micro-F1 mean" in (tmp_path / "out" / "multi_label.md").read_text()  # the multi-label study's own metric


def test_a_partial_course_run_updates_only_its_own_rows():
    old = [{"what": "chapter 00_setup", "seconds": 10}, {"what": "chapter 02_embedding_head", "seconds": 200},
           {"what": "test suite (pytest, with every chapter under nbval)", "seconds": 300}]
    new = [{"what": "chapter 01_quantization_lora", "seconds": 30}, {"what": "chapter 02_embedding_head", "seconds": 190}]
    merged = bench_sections.merge_rows(old, new)
    assert [r["what"] for r in merged] == ["chapter 00_setup", "chapter 01_quantization_lora",
                                           "chapter 02_embedding_head",
                                           "test suite (pytest, with every chapter under nbval)"]
    assert merged[2]["seconds"] == 190 and merged[0]["seconds"] == 10
