"""Your data end to end: `train METHOD --data my.csv` and `predict` on a small CSV (tiny profile)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tutorial_utils.setup.checks import DataError, NotFinite
from tutorial_utils.setup.config import get_profile
from tutorial_utils import data, methods
from tutorial_utils.modeling import models
from tutorial_utils.storage import store
from tutorial_utils.methods import tfidf
from tutorial_utils.production import serving, workflow
from tutorial_utils.tools import cli
from tutorial_utils.production import run_folder


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """The tiny patents written out as a practitioner's CSV, with their own column names."""
    patents = data.load_single_label(get_profile("tiny"))
    names = data.label_names(patents)
    rows = [(t, names[y]) for split in ("train", "validation", "test") for t, y in
            zip(patents[split]["text"], patents[split]["label"])]
    path = tmp_path_factory.mktemp("csv") / "mine.csv"
    pd.DataFrame(rows, columns=["abstract", "section"]).to_csv(path, index=False)
    return path


def train_argv(table, method, out, *extra):
    return ["train", method, "--profile", "tiny", "--data", str(table), "--text-column", "abstract",
            "--label-column", "section", "--out", str(out), *extra]


def train(table, method, out, *extra):
    return cli.main(train_argv(table, method, out, *extra))


OPTIONS = {"encoder": ["--long-texts", "chunk", "--max-length", "16", "--class-weight", "balanced"],
           "embedding-head": ["--class-weight", "balanced"]}


@pytest.mark.parametrize("method", ["tfidf", "embedding-head", "instruction", "encoder"])
def test_train_saves_a_run_that_predict_serves_with_the_trained_predictions(table, tmp_path, method, monkeypatch):
    out = tmp_path / "run"
    assert train(table, method, out, *OPTIONS.get(method, [])) == 0
    info = json.loads((out / "metrics.json").read_text())
    record = store.read(out / run_folder.RECORD)
    assert info["method"] == record.method == cli.ALIASES[method] and info["label_names"] == record.label_names
    assert info["macro_f1_over"] == record.label_names  # the classes its macro-F1 averages: here all of them
    assert record.validation_curve or method == "tfidf"  # trained to a plateau: evaluated along the way
    if method != "tfidf":  # the text length was chosen from the data, said, and kept
        assert record.extra["text length"].startswith("text length: ")
        read = record.settings["max_text_tokens"] if method == "instruction" else record.settings["train"]["max_length"]
        assert record.extra["text length"].startswith(f"text length: {read} tokens")
    mine = data.from_csv(table, text_column="abstract", label_column="section", verbose=False)
    test = pd.DataFrame({"abstract": mine["test"]["text"],
                         "section": [record.label_names[y] for y in mine["test"]["label"]]})
    test.to_csv(tmp_path / "new.csv", index=False)
    assert cli.main(["predict", "--model", str(out), "--data", str(tmp_path / "new.csv"), "--text-column", "abstract",
                     "--label-column", "section", "--out", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    agree = np.mean(predicted["predicted"].to_numpy() == np.array(record.label_names)[record.y_pred])
    assert agree >= (0.95 if method == "embedding-head" else 1.0)  # a 16-bit export may flip a near-tie, no more
    if method == "encoder":  # predict reads long texts as training did: windows, their logits averaged
        assert info["long_texts"] == record.settings["long_texts"] == "chunk" and record.extra["long texts"] == "chunk"
        assert record.settings["class_weight"] == info["class_weight"] == "balanced"
        assert set(record.extra["class_weights"]) == set(record.label_names)
        batch = record.settings["train"]["batch_size"]  # an epoch is every window once, not every text
        assert record.extra["steps_per_epoch"] > -(-record.train_examples // batch)
        said = json.loads((out / run_folder.MODEL / "config.json").read_text())["long_texts"]  # for plain transformers
        assert "windows" in said["read_as"] and "mean" in said["combine"]
    elif method != "tfidf" and (out / run_folder.MODEL / "config.json").exists():
        assert "long_texts" not in json.loads((out / run_folder.MODEL / "config.json").read_text())
    if method == "embedding-head":  # the weighted loss through peft's model and the Trainer
        assert record.settings["class_weight"] == "balanced" and len(record.extra["class_weights"]) == 8
    assert np.allclose(predicted[[f"p({n})" for n in record.label_names]].sum(1), 1, atol=1e-3)
    if method == "embedding-head":  # served on the CPU in the dtype the course computes in there: fp32 without bf16
        loaded, real = [], AutoModelForSequenceClassification.from_pretrained
        monkeypatch.delenv("COURSE_COMPUTE_DTYPE", raising=False)
        monkeypatch.setattr(models, "cpu_has_bf16", lambda: False)
        monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained",
                            lambda *args, **kwargs: loaded.append(real(*args, **kwargs)) or loaded[-1])
        serving.predict(out, test.head(2), text_column="abstract")
        assert [m.dtype for m in loaded] == [torch.float32]


def test_a_run_folder_that_holds_files_is_refused_and_overwrite_keeps_the_users_files(table, tmp_path, monkeypatch,
                                                                                     refused):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "--overwrite" in refused(train_argv(table, "tfidf", out))
    assert train(table, "tfidf", out, "--overwrite") == 0 and train(table, "tfidf", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / run_folder.MODEL / tfidf.ARRAYS_FILE).is_file()
    before = (out / run_folder.METRICS).read_text()
    def fails(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(workflow.runners, "fit_tfidf", fails)
    with pytest.raises(MemoryError):  # a training that fails keeps the previous run
        train(table, "tfidf", out, "--overwrite")
    assert (out / run_folder.METRICS).read_text() == before and (out / run_folder.MODEL / tfidf.ARRAYS_FILE).is_file()


def test_predict_names_labels_the_model_does_not_know_and_a_folder_that_is_no_run(table, tmp_path, refused):
    out = tmp_path / "run"
    train(table, "tfidf", out)
    frame = pd.DataFrame({"text": ["a hair dryer"], "label": ["no such section"]})
    with pytest.raises(DataError, match="does not know: no such section. The model's labels: "):
        serving.predict(out, frame, label_column="label")
    with pytest.raises(DataError, match="No column 'abstract'"):
        serving.predict(out, frame, text_column="abstract")
    with pytest.raises(DataError, match="is not a run folder"):
        serving.predict(tmp_path, frame)
    (tmp_path / "exists.csv").write_text("x")
    frame.to_csv(tmp_path / "new.csv", index=False)
    assert "exists" in refused(["predict", "--model", str(out), "--data", str(tmp_path / "new.csv"), "--out",
                                str(tmp_path / "exists.csv")])
    frame.to_csv(tmp_path / "semicolons.csv", index=False, sep=";")  # predict reads new texts as train reads data
    assert "';'-separated" in refused(["predict", "--model", str(out), "--data", str(tmp_path / "semicolons.csv"),
                                       "--out", str(tmp_path / "p.csv")])


def test_a_method_that_cannot_leave_the_course_is_named_with_the_ones_that_can(tmp_path):
    with pytest.raises(methods.UnknownMethod, match="tfidf-logreg"):
        workflow.train(get_profile("tiny"), methods.INSTRUCTION_GENERATED, None, tmp_path / "run")


def test_compare_on_your_data_tables_every_method_against_the_head(table, tmp_path, capsys):
    assert cli.main(["compare", "--profile", "tiny", "--data", str(table), "--text-column", "abstract",
                     "--label-column", "section", "--out", str(tmp_path / "out"), "--resamples", "50",
                     "--class-weight", "balanced", "--long-texts", "chunk", "--max-length", "16"]) == 0
    compared = pd.read_csv(tmp_path / "out" / "comparison.csv", index_col="method")
    assert len(compared) == len(workflow.COMPARED_ON_YOURS) and (compared["seeds"] == 1).all()
    paired = pd.read_csv(tmp_path / "out" / "paired.csv")
    assert set(paired["method"]) == set(compared.index) - {methods.get(methods.EMBEDDING_HEAD).title}
    said = capsys.readouterr().out
    assert "minus head), 95% interval" in said
    # the options reach the methods that honour them, and a line names each one that does not
    assert f"{methods.TFIDF}: --long-texts chunk not applied (TF-IDF reads every word" in said
    assert f"{methods.FROZEN_PROBE}: --class-weight and --long-texts chunk not applied" in said
    assert f"{methods.EMBEDDING_HEAD}: text length: 16 tokens (as asked)" in said and "read as overlapping windows" in said


def test_compare_on_your_data_records_the_options_each_method_trained_with(table):
    mine = data.from_csv(table, text_column="abstract", label_column="section", verbose=False)
    found = workflow.compare(get_profile("tiny"), mine, compared=(methods.TFIDF, methods.ENCODER),
                             class_weight="balanced", long_texts="chunk", max_length=16)
    tfidf, encoder = found[methods.TFIDF][0], found[methods.ENCODER][0]
    assert tfidf.settings["class_weight"] == "balanced" and "long_texts" not in tfidf.settings
    assert encoder.settings["long_texts"] == "chunk" and encoder.settings["class_weight"] == "balanced"
    assert encoder.settings["train"]["max_length"] == 16
    tuned = workflow.compare(get_profile("tiny"), mine, compared=(methods.TFIDF,), tune=True)[methods.TFIDF][0]
    assert tuned.settings["C"] == tuned.extra["tuning"]["chosen"] and len(tuned.extra["tuning"]["tuned on validation"]) >= 3
    with pytest.raises(DataError, match="long_texts='windows'"):
        workflow.compare(get_profile("tiny"), mine, long_texts="windows")


@pytest.mark.parametrize("flag", [["--tune"], ["--class-weight", "balanced"], ["--max-length", "32"],
                                  ["--max-epochs", "2"]])
def test_compare_refuses_your_data_options_without_your_data(tmp_path, refused, flag):
    assert flag[0] in refused(["compare", "--profile", "tiny", "--out", str(tmp_path / "out"), *flag])


def test_tune_chooses_on_validation_grows_past_a_winning_end_and_keeps_every_score(table, tmp_path, monkeypatch):
    profile = get_profile("tiny")
    assert train(table, "tfidf", tmp_path / "run", "--tune") == 0
    record, info = store.read(tmp_path / "run" / run_folder.RECORD), json.loads((tmp_path / "run" / "metrics.json").read_text())
    scores = {float(v): m for v, m in record.extra["tuning"]["tuned on validation"].items()}
    assert len(scores) >= len(profile.protocol.grid) and info["tuning"] == record.extra["tuning"]
    assert record.settings["C"] == info["tuned"]["C"] == record.extra["tuning"]["chosen"] == max(scores, key=scores.get)
    assert record.validation_metric == pytest.approx(scores[record.settings["C"]], abs=1e-4)

    def fit(rising):  # a fake training whose validation score follows the learning rate
        return lambda value: ("model", {"validation_metric": rising(value)})

    grid = workflow.experiment.grid_values(profile, methods.EMBEDDING_HEAD)
    value, _, tried = workflow.tune(profile, methods.EMBEDDING_HEAD, fit(lambda v: v))
    assert len(tried) == len(grid) + profile.protocol.grid_extensions and value == max(tried) > max(grid)
    value, _, tried = workflow.tune(profile, methods.EMBEDDING_HEAD, fit(lambda v: -abs(v - grid[1])))
    assert sorted(tried) == grid and value == grid[1]
    value, _, tried = workflow.tune(profile, methods.EMBEDDING_HEAD, fit(lambda v: 0.5))
    assert sorted(tried) == grid and value == grid[0]  # a tie goes to the smaller value

    def diverges_above(limit):
        def run(value):
            if value > limit:
                raise FloatingPointError("The training loss is nan at step 3")
            return "model", {"validation_metric": value}
        return run

    value, _, tried = workflow.tune(profile, methods.EMBEDDING_HEAD, diverges_above(grid[1]))
    assert value == grid[1] and tried[grid[2]] is None and sorted(tried) == grid  # diverged: ranked last, not grown
    with pytest.raises(NotFinite, match="Every learning rate tried diverged"):
        workflow.tune(profile, methods.EMBEDDING_HEAD, diverges_above(0))


def test_options_that_a_method_cannot_honour_are_refused(table, tmp_path, refused):
    assert "TF-IDF reads every word" in refused(train_argv(table, "tfidf", tmp_path / "a", "--long-texts", "chunk"))
    assert "instruction tuning's loss" in refused(train_argv(table, "instruction", tmp_path / "b", "--class-weight",
                                                             "balanced"))
    assert "pass one of them" in refused(train_argv(table, "tfidf", tmp_path / "c", "--tune", "--learning-rate", "3"))
    # without --data the profile's task trains, with the same options and the same refusals
    assert "TF-IDF reads every word" in refused(
        ["train", "tfidf", "--profile", "tiny", "--out", str(tmp_path / "d"), "--tune", "--long-texts", "chunk"])
    assert "--text-column describe a CSV" in refused(
        ["train", "tfidf", "--profile", "tiny", "--out", str(tmp_path / "e"), "--text-column", "abstract"])


def test_max_epochs_sets_the_cap_and_a_run_still_improving_at_it_says_so_with_the_fix(table, tmp_path, capsys):
    import dataclasses

    from tutorial_utils.evaluation import run_checks

    out = tmp_path / "run"
    assert train(table, "embedding-head", out, "--max-epochs", "1") == 0
    record = store.read(out / run_folder.RECORD)
    info = json.loads((out / "metrics.json").read_text())
    assert record.settings["plateau"]["max_epochs"] == 1 and record.epochs_run <= 1
    assert info["ended"] == run_checks.convergence(record) is not None
    assert ("still rising" in capsys.readouterr().out) == (info["ended"] == run_checks.IMPROVING)
    profile = get_profile("tiny")  # its protocol's cap: 2 epochs
    rising = dataclasses.replace(record, epochs_run=2.0, best_epoch=2.0, validation_curve=[
        {"step": s, "epoch": s / 2, "value": v} for s, v in ((1, 0.2), (2, 0.3), (3, 0.4), (4, 0.5))])
    line = workflow.ended(rising, profile)
    assert "still rising at the last evaluation (epoch 2 of 2)" in line and "--max-epochs 4" in line
    peaked = dataclasses.replace(rising, validation_curve=[dict(p, value=v) for p, v in
                                                           zip(rising.validation_curve, (0.2, 0.6, 0.5, 0.4))])
    assert workflow.ended(peaked, profile) == ""
    with pytest.raises(DataError, match="--max-epochs"):
        workflow._with_max_epochs(profile, 0)


def test_your_data_trains_up_to_its_own_cap_and_the_profiles_task_up_to_the_comparisons(table, tmp_path, refused,
                                                                                        monkeypatch):
    """On your data the cap is ``Protocol.your_data_max_epochs`` (3 epochs on cpu, as transformers trains by
    default), so that a first model costs what a plain script costs (``bench defaults``); the profile's own task
    trains up to the comparison's cap, so that its score can be set beside chapter 8's; --max-epochs sets either."""
    cpu = get_profile("cpu")
    assert cpu.protocol.your_data_max_epochs == 3 < cpu.protocol.max_epochs
    assert workflow._with_max_epochs(cpu, None).protocol.max_epochs == 3
    assert workflow._with_max_epochs(cpu, 6).protocol.max_epochs == 6
    asked = []

    def stop(*args, max_epochs=None, **kwargs):
        asked.append(max_epochs)
        raise DataError("stopped before training. Fix: none, a test.")

    monkeypatch.setattr(workflow, "train", stop)  # the CLI imports workflow per command
    tiny = get_profile("tiny")
    refused(train_argv(table, "tfidf", tmp_path / "a"))
    refused(train_argv(table, "tfidf", tmp_path / "b", "--max-epochs", "5"))
    refused(["train", "tfidf", "--profile", "tiny", "--out", str(tmp_path / "c")])
    refused(["train", "tfidf", "--profile", "tiny", "--out", str(tmp_path / "d"), "--max-epochs", "5"])
    assert asked == [None, 5, tiny.protocol.max_epochs, 5]


def test_train_without_data_reads_the_profiles_task_at_the_fair_comparisons_length():
    """Instruction tuning reads the text inside its prompt at the head's length (runners.fit_instruction), not at
    its own training settings' length."""
    profile = get_profile("tiny")
    assert workflow.profile_length(profile, methods.INSTRUCTION_SCORED) == profile.train.max_length
    assert workflow.profile_length(profile, methods.ENCODER) == profile.encoder_train.max_length
    assert profile.instruct_train.max_length != profile.train.max_length  # the two differ, so the choice matters
