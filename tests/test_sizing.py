"""The worked T4 estimate (sizing.py, book/costs.md) and chapter 08's choice of store on a GPU profile."""

import dataclasses
import os

import pytest

from tutorial_utils.setup.config import PROFILES, ROOT, DataSizes
from tutorial_utils.study import comparison, sizing


def test_the_committed_estimate_is_what_the_code_and_the_store_give_now():
    written = sizing.REPORT.read_text()
    assert written == sizing.report(PROFILES["gpu"], sizing.T4, PROFILES["cpu"]), (
        "benchmarks/results/t4-estimate.md is stale (a profile, the estimate or the cpu store changed): "
        "run python -m tutorial_utils.study.sizing")


def test_every_chapter_of_the_gpu_profile_fits_a_free_colab_session_by_the_estimate():
    rows = sizing.table(PROFILES["gpu"])
    over = {r["chapter"]: round(r["minutes, fresh runtime"], 1) for r in rows
            if r["minutes, fresh runtime"] > sizing.CHAPTER_LIMIT_MINUTES}
    assert not over, f"chapters over {sizing.CHAPTER_LIMIT_MINUTES} min on a T4: {over}; shrink the gpu profile"
    assert sum(r["minutes, fresh runtime"] for r in rows) <= 60 * sizing.COURSE_LIMIT_HOURS


def test_the_estimate_lists_every_chapter_and_follows_the_profile():
    notebooks = {p.name.split("_")[0] for p in (ROOT / "chapters").glob("[0-9]*.ipynb")}
    assert notebooks == set(sizing.CHAPTERS)
    assert {w.chapter for w in sizing._chapter_work(PROFILES["gpu"])} <= set(sizing.CHAPTERS)
    gpu = PROFILES["gpu"]
    bigger = dataclasses.replace(gpu, single_label_sizes=dataclasses.replace(gpu.single_label_sizes,
                                                                             train=2 * gpu.single_label_sizes.train))
    tokens = lambda profile: next(w.tokens for w in sizing._chapter_work(profile)  # noqa: E731
                                  if w.chapter == "02" and w.what == "embedding head: train")
    assert tokens(bigger) == 2 * tokens(gpu)
    # the Drive cache only removes runs an earlier chapter made
    fresh, cached = sizing._chapter_minutes(gpu), sizing._chapter_minutes(gpu, drive_cache=True)
    assert cached["03"] < fresh["03"] and cached["02"] == fresh["02"]


def test_what_the_estimate_cannot_size_is_named():
    with pytest.raises(ValueError, match="ARCH_OF"):
        sizing._llm_linear("some/unknown-llm")
    with pytest.raises(ValueError, match="ENCODER_SHAPES"):
        sizing._encoder_linear("some/unknown-encoder")
    whole = dataclasses.replace(PROFILES["gpu"], single_label_data="my/own-data", single_label_sizes=DataSizes())
    with pytest.raises(ValueError, match="SPLIT_SIZES"):
        sizing._chapter_work(whole)


def test_a_gpu_profile_with_an_empty_store_shows_the_cpu_runs_and_says_how_to_make_its_own(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    assert comparison.results_profile(PROFILES["tiny"]).name == "tiny"  # a CPU profile computes what is missing
    assert comparison.results_profile(PROFILES["gpu"]).name == "cpu"
    said = capsys.readouterr().out
    assert "results/gpu/ holds no runs" in said and "reproduce --profile gpu" in said
    # the empty folder held no cpu runs either: the committed ones are read instead of computed for hours
    assert os.environ["COURSE_RESULTS"] == str(ROOT / "results") and "holds no cpu runs either" in said
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    record = tmp_path / "gpu" / "ccdv-patent-classification" / "embedding-head" / "run" / "record.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    assert comparison.results_profile(PROFILES["gpu"]).name == "gpu"  # its own runs, once there are any
