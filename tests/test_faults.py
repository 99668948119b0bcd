"""Faults and bad input: nothing lost, nothing mixed, nothing silently wrong (issue: the run cache, the
CLI and the public functions under bad input). Each case ends in a clear error that names the fix, or
in correct handling."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tutorial_utils.setup import checks
from tutorial_utils.setup.config import ROOT, get_profile
from tutorial_utils.evaluation import metrics, stats, thresholds
from tutorial_utils.storage import runs
from tutorial_utils.methods import instruct, tfidf
from tutorial_utils.production import run_folder

from fakes import fake_result



def python(code: str, env: dict, timeout: int = 120) -> subprocess.Popen:
    """Start ``code`` in a fresh Python process (the package from this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# ---- the run cache -------------------------------------------------------------------------------------

WRITER = """
    import os, sys
    sys.path.insert(0, {tests!r})
    from fakes import fake_result
    from tutorial_utils.setup import files
    from tutorial_utils.setup.config import get_profile
    from tutorial_utils.storage import runs
    profile = get_profile("tiny")
    real = files.write_synced
    def dying(path, blob):  # the process is killed after the arrays, while the record is written
        if path.name == "record.json":
            path.write_bytes(blob[: len(blob) // 2])
            os._exit(9)
        real(path, blob)
    files.write_synced = dying
    runs.save(fake_result(profile, n=400), profile)
"""


def test_a_writer_killed_midway_leaves_nothing_that_loads(run_cache):
    profile = get_profile("tiny")
    runs.save(fake_result(), profile)  # an older, complete run of the same name
    writer = python(WRITER.format(tests=str(Path(__file__).parent)), {"COURSE_RUNS": str(run_cache)})
    writer.wait(60)
    assert writer.returncode == 9
    loaded = runs.load(profile, "m")
    assert loaded is not None and len(loaded.y_true) == 4  # the complete older run, never the half-written one
    calls = []
    result = runs.load_or_compute(profile, "m", lambda: calls.append(1) or fake_result(n=6), verbose=False)
    assert calls == [] and len(result.y_true) == 4


def test_a_truncated_or_corrupted_file_is_recomputed_with_a_message(run_cache, capsys):
    profile = get_profile("tiny")
    folder = runs.save(fake_result(), profile)
    blob = (folder / "record" / "predictions.npz").read_bytes()
    (folder / "record" / "predictions.npz").write_bytes(blob[: len(blob) // 2])
    result = runs.load_or_compute(profile, "m", lambda: fake_result(n=6))
    assert len(result.y_true) == 6
    assert f"the stored run in {folder} cannot be used" in capsys.readouterr().out
    (folder / "record" / "record.json").write_text("{ not json")
    assert runs.load(profile, "m") is None
    assert "not valid JSON" in capsys.readouterr().out


COMPUTER = """
    import sys, time
    sys.path.insert(0, {tests!r})
    from fakes import fake_result
    from tutorial_utils.setup.config import get_profile
    from tutorial_utils.storage import runs
    profile = get_profile("tiny")
    def compute():
        with open(sys.argv[0] if False else {log!r}, "a") as log:
            log.write("trained\\n")
        time.sleep(2)
        return fake_result(profile)
    runs.load_or_compute(profile, "m", compute, verbose=False)
    print("done")
"""


def test_two_processes_never_train_the_same_run(run_cache, tmp_path):
    log = tmp_path / "log.txt"
    workers = [python(COMPUTER.format(log=str(log), tests=str(Path(__file__).parent)), {"COURSE_RUNS": str(run_cache)}) for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert log.read_text().count("trained") == 1
    assert any("waiting" in err for _, err in outputs)


def test_a_reader_during_a_write_sees_the_old_run_or_the_new_one(run_cache):
    profile = get_profile("tiny")
    runs.save(fake_result(n=4), profile)
    writer = python(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from fakes import fake_result
        from tutorial_utils.setup.config import get_profile
        from tutorial_utils.storage import runs
        profile = get_profile("tiny")
        for n in range(6, 60):
            runs.save(fake_result(profile, n=n), profile)
    """, {"COURSE_RUNS": str(run_cache)})
    while writer.poll() is None:
        loaded = runs.load(profile, "m", verbose=False)
        if loaded is not None:
            assert len(loaded.y_true) == len(loaded.probs) == len(loaded.y_pred)  # never half of one, half of another
    assert writer.returncode == 0, writer.stderr.read()
    assert runs.load(profile, "m").y_true.shape == (59,)


# ---- the CLI: arguments checked before any model loads ---------------------------------------------------

def cli(*args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COURSE_RUNS": str(cache_dir), "COURSE_PROFILE": "tiny"}
    return subprocess.run([sys.executable, "-m", "tutorial_utils", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("epochs", ["-1", "0", "two"])
def test_cli_refuses_an_epoch_cap_that_is_not_positive(run_cache, tmp_path, epochs):
    done = cli("train", "tfidf", "--max-epochs", epochs, "--out", str(tmp_path / "run"), cache_dir=run_cache)
    assert done.returncode == 2 and "--max-epochs" in done.stderr
    assert not (tmp_path / "run").exists()


def test_cli_checks_out_before_training(run_cache, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    done = cli("train", "tfidf", "--out", str(a_file), cache_dir=run_cache)
    assert done.returncode == 2 and "is a file" in done.stderr and "Traceback" not in done.stderr
    done = cli("train", "tfidf", "--out", str(run_cache / "inside"), cache_dir=run_cache)
    assert "inside the chapters' run cache" in done.stderr
    assert "not writable" in cli("train", "tfidf", "--out", str(a_file / "run"), cache_dir=run_cache).stderr
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        assert "not writable" in cli("train", "tfidf", "--out", str(locked / "run"), cache_dir=run_cache).stderr


def test_cli_train_writes_only_out_and_refuses_to_overwrite(run_cache, tmp_path):
    out = tmp_path / "run"
    done = cli("train", "tfidf", "--out", str(out), cache_dir=run_cache)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["method"] == "tfidf-logreg"
    assert not any(run_cache.rglob("record.json"))  # the chapters' runs are untouched
    again = cli("train", "tfidf", "--out", str(out), cache_dir=run_cache)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert cli("train", "tfidf", "--out", str(out), "--overwrite", cache_dir=run_cache).returncode == 0


# ---- silently wrong numbers -----------------------------------------------------------------------------

def test_tfidf_with_a_class_missing_from_training_keeps_every_class_in_its_place():
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from tutorial_utils.methods import recipes

    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b", "c"])})
    train = Dataset.from_dict({"text": ["apple pie", "apple tart", "cherry jam", "cherry cake"],
                               "label": [0, 0, 2, 2]}, features=features)
    test = Dataset.from_dict({"text": ["cherry jam again", "apple pie again"], "label": [2, 0]}, features=features)
    with pytest.warns(UserWarning, match="occur neither in the labels nor in the predictions"):  # b: in no split
        result = recipes.tfidf_run(get_profile("tiny"), DatasetDict(train=train, validation=test, test=test))
    assert result.probs.shape == (2, 3) and (result.probs[:, 1] == 0).all()
    assert list(result.y_pred) == [2, 0]


@pytest.mark.parametrize("call, message", [
    (lambda: stats.accuracy([0, 1, 1, 0, 1, 0, 1, 1], [1]), "8 examples but y_pred has 1"),
    (lambda: stats.macro_f1([0, 1], [[0, 1], [1, 0]]), "shape"),
    (lambda: stats.micro_f1([[0, 1], [1, 1]], [[0, 2], [1, 1]]), "not a 0/1 label matrix"),
    (lambda: stats.micro_f1([[0, 1], [1, 1]], [[0, 1, 1], [1, 1, 0]]), "shape"),
])
def test_statistics_refuse_inputs_that_would_broadcast(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_bootstrap_never_reports_p_zero():
    y = np.zeros(50, dtype=int)
    result = stats.paired_bootstrap(y, y, 1 - y, stats.accuracy, n_resamples=1)
    assert result.p_value_two_sided == 1.0  # (0 + 1) / (1 + 1), doubled: one resample says nothing
    result = stats.paired_bootstrap(y, y, 1 - y, stats.accuracy, n_resamples=999)
    assert result.p_value_two_sided == pytest.approx(2 / 1000)


@pytest.mark.parametrize("bad", [1.5, float("nan"), -0.1, [0.5, 2.0]])
def test_thresholds_outside_zero_one_are_refused(bad):
    probs = np.array([[0.2, 0.7], [0.9, 0.1]])
    with pytest.raises(ValueError, match="must be a number in \\[0, 1\\]"):
        thresholds.apply_thresholds(probs, bad)


def test_nan_logits_raise_instead_of_predicting():
    with pytest.raises(ValueError, match="NaN or infinite.*fp16"):
        metrics.softmax(np.array([[0.0, np.nan], [1.0, 2.0]]))


@pytest.mark.parametrize("names, message", [
    (["only"], "at least two labels"),
    (["a", "b", "a"], "repeat: \\['a'\\]"),
    (["a", ""], "non-empty strings"),
])
def test_label_lists_that_would_map_wrongly_are_refused(names, message):
    with pytest.raises(ValueError, match=message):
        instruct.make_verbalizer(names)
    with pytest.raises(ValueError, match=message):
        checks.check_label_names(names)


@pytest.mark.parametrize("label, message", [(-1, "outside 0..2"), (3, "outside 0..2"), (True, "not class ids"),
                                            ("b", "must be an integer")])
def test_a_class_id_must_be_a_real_one(label, message):
    verbalizer = instruct.make_verbalizer(["a", "b", "c"])
    with pytest.raises(ValueError, match=message):
        verbalizer.answer(label)


def test_encoding_labels_refuses_booleans_and_repeated_names():
    from tutorial_utils.data import encode_labels

    with pytest.raises(ValueError, match="boolean is not a class id"):
        encode_labels([True, 0], ["a", "b"])
    with pytest.raises(ValueError, match="repeat"):
        encode_labels(["a"], ["a", "b", "a"])
    assert encode_labels(["b", 0], ["a", "b"]) == [1, 0]


def test_one_label_classifier_is_refused_before_loading():
    from tutorial_utils.modeling import models

    with pytest.raises(ValueError, match="at least two labels"):
        models.load_sequence_classifier(get_profile("tiny"), ["spam"])


# ---- crashes: empty texts, long prompts, empty lists, pickled weights ----------------------------------------

@pytest.fixture(scope="module")
def tiny_classifier():
    from tutorial_utils.modeling import models

    profile = get_profile("tiny")
    model, tokenizer = models.load_sequence_classifier(profile, ["a", "b"])
    return models.add_lora(model, profile.lora), tokenizer


@pytest.mark.parametrize("texts", [[""], ["fine", "   "], ["fine", None], [3]])
def test_empty_or_missing_texts_are_refused_not_crashed_on(tiny_classifier, texts):
    from tutorial_utils.methods.train import predict_logits

    model, tokenizer = tiny_classifier
    with pytest.raises(ValueError, match="empty or not a string.*Fix: drop or fill"):
        predict_logits(model, tokenizer, texts)
    assert predict_logits(model, tokenizer, ["a real text"]).shape == (1, 2)


def test_none_never_reaches_a_prompt_as_the_word_none():
    from tutorial_utils.modeling import models

    tokenizer = models.load_tokenizer(get_profile("tiny").causal_lm)
    with pytest.raises(ValueError, match="empty or not a string"):
        instruct.build_prompt(tokenizer, None, instruct.make_verbalizer(["a", "b"]))
    with pytest.raises(ValueError, match="empty or not a string"):
        instruct.build_prompt(tokenizer, "", instruct.make_verbalizer(["a", "b"]))
    # contextual calibration's content-free inputs are empty on purpose
    assert instruct.build_prompt(tokenizer, "", instruct.make_verbalizer(["a", "b"]), allow_empty=True)


@pytest.fixture(scope="module")
def tiny_lm():
    from tutorial_utils.modeling import models

    return models.load_causal_lm(get_profile("tiny"), padding_side="right")


def test_a_prompt_longer_than_the_model_is_refused(tiny_lm):
    model, tokenizer = tiny_lm
    limit = instruct._context_length(model)
    prompt = " ".join(["word"] * (limit + 50))
    with pytest.raises(ValueError, match=f"reads at most {limit}.*max_text_tokens"):
        instruct.score_labels(model, tokenizer, [prompt], ["a", "b"])


def test_scoring_needs_answers(tiny_lm):
    model, tokenizer = tiny_lm
    with pytest.raises(ValueError, match="at least one non-empty answer"):
        instruct.score_labels(model, tokenizer, ["a prompt"], [])


def test_an_empty_lora_target_list_is_refused(tiny_classifier):
    import dataclasses

    from tutorial_utils.modeling import models

    profile = get_profile("tiny")
    base, _ = models.load_sequence_classifier(profile, ["a", "b"])
    with pytest.raises(models.ModelError, match="target_modules is empty"):
        models.add_lora(base, dataclasses.replace(profile.lora, target_modules=()))


def test_pickled_weights_are_not_loaded(tmp_path):
    from tutorial_utils.modeling import models
    from tutorial_utils.production import distill

    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="safetensors"):
        models.load_trained_classifier(get_profile("tiny"), ["a", "b"], str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="safetensors"):
        distill.load_trained_student(tmp_path)


def test_a_t4_computes_in_fp16_although_torch_says_bf16_is_supported(monkeypatch):
    import torch

    from tutorial_utils.modeling import models

    monkeypatch.delenv("COURSE_COMPUTE_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 reports (emulation)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))  # a T4
    assert models.compute_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))  # an A100
    assert models.compute_dtype(torch.device("cuda")) == torch.bfloat16


def test_generation_ignores_the_models_own_decoding_file(tiny_lm):
    model, tokenizer = tiny_lm
    verbalizer = instruct.make_verbalizer(["alpha", "beta"])
    prompts = [instruct.build_prompt(tokenizer, "a text", verbalizer)]
    plain, _ = instruct.generate(model, tokenizer, prompts, max_new_tokens=4)
    model.generation_config.repetition_penalty, model.generation_config.do_sample = 5.0, True
    try:
        assert instruct.generate(model, tokenizer, prompts, max_new_tokens=4)[0] == plain
    finally:
        model.generation_config.repetition_penalty, model.generation_config.do_sample = 1.0, False


def test_label_names_with_semicolons_stay_one_label_each():
    names = ["Human Necessities", "Chemistry; Metallurgy", "Physics", "Textiles, Paper"]
    verbalizer = instruct.make_verbalizer(names)
    options = verbalizer.options()
    assert options == "Human Necessities | Chemistry; Metallurgy | Physics | Textiles, Paper"
    assert options.count(" | ") == len(names) - 1
    assert instruct.parse_label("Chemistry; Metallurgy", verbalizer) == 1
    assert instruct.parse_label("Metallurgy", verbalizer) == -1  # half a label is no label
    answer = verbalizer.answer([1, 3])
    assert answer == "Chemistry; Metallurgy | Textiles, Paper"
    assert instruct.parse_labels(answer, verbalizer).ids == (1, 3)
    assert "separated by '|'" in instruct.instruction(verbalizer, multi_label=True)


def test_plain_label_names_keep_the_usual_separators():
    verbalizer = instruct.make_verbalizer(["physics", "chemistry and metallurgy"])
    assert verbalizer.options() == "physics; chemistry and metallurgy"
    assert verbalizer.answer([0, 1]) == "physics, chemistry and metallurgy"
    assert instruct.parse_labels("physics; chemistry and metallurgy", verbalizer).ids == (0, 1)


def test_the_answer_budget_fits_the_longest_label():
    from tutorial_utils.modeling import models

    tokenizer = models.load_tokenizer(get_profile("tiny").causal_lm)
    verbalizer = instruct.make_verbalizer(["a", "a very long label name that many tokenizers split into many pieces"])
    assert instruct.answer_budget(tokenizer, verbalizer) == max(instruct.token_counts(tokenizer, verbalizer)) + 2 > 8


def test_a_loss_that_is_not_finite_stops_training_with_the_fix():
    import types

    from tutorial_utils.methods.train import FiniteLoss

    args = types.SimpleNamespace(fp16=True, bf16=False)
    state = types.SimpleNamespace(global_step=3)
    FiniteLoss().on_log(args, state, None, logs={"loss": 2.1})
    with pytest.raises(FloatingPointError, match="nan at step 3 \\(fp16 compute\\).*COURSE_COMPUTE_DTYPE=float32"):
        FiniteLoss().on_log(args, state, None, logs={"loss": float("nan")})


# ---- a run folder from `train --data`: never executed, never mislabelled, never lost -----------------------

@pytest.fixture()
def tfidf_run(tmp_path):
    """A TF-IDF run trained by the command line on a small CSV of three classes, and that CSV."""
    import pandas as pd

    from tutorial_utils.tools import cli

    rows = [{"text": f"{c} words {c} number {i}", "label": c} for c in ("red", "green", "blue") for i in range(20)]
    path = tmp_path / "mine.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert cli.main(["train", "tfidf", "--profile", "tiny", "--data", str(path), "--out", str(tmp_path / "run")]) == 0
    return tmp_path / "run", path


def predict_argv(run, data, out):
    return ["predict", "--model", str(run), "--data", str(data), "--out", str(out)]


def test_a_tfidf_run_holds_no_pickle_and_a_pickled_one_is_refused_unloaded(tfidf_run, tmp_path, refused):
    import joblib


    run, data = tfidf_run
    saved = sorted(p.name for p in (run / run_folder.MODEL).iterdir())
    assert saved == sorted([tfidf.ARRAYS_FILE, tfidf.SETTINGS_FILE, run_folder.LABELS_FILE])
    np.load(run / run_folder.MODEL / tfidf.ARRAYS_FILE, allow_pickle=False)  # plain arrays: loads without pickle
    marker = tmp_path / "ran"

    class Payload:  # what a crafted pickle does on load: call anything
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name in (tfidf.ARRAYS_FILE, tfidf.SETTINGS_FILE):
        (run / run_folder.MODEL / name).unlink()
    joblib.dump(Payload(), run / run_folder.MODEL / "tfidf.joblib")
    info = json.loads((run / run_folder.METRICS).read_text())
    info.pop("model_files")  # as an older run folder, which listed no checksums
    (run / run_folder.METRICS).write_text(json.dumps(info))
    assert "pickled model" in refused(predict_argv(run, data, tmp_path / "p.csv"))
    assert not marker.exists()


def test_predict_refuses_edited_labels_nan_weights_and_empty_texts(tfidf_run, tmp_path, refused):
    import pandas as pd

    from tutorial_utils.setup import files

    run, data = tfidf_run
    assert cli_ok(predict_argv(run, data, tmp_path / "p.csv"))
    info = json.loads((run / run_folder.METRICS).read_text())
    edited = {**info, "label_names": info["label_names"][::-1]}  # the order the predictions would be read in
    (run / run_folder.METRICS).write_text(json.dumps(edited))
    assert "one of them was edited" in refused(predict_argv(run, data, tmp_path / "p2.csv"))
    (run / run_folder.METRICS).write_text(json.dumps(info))
    pd.DataFrame({"text": ["red words", "  ", ""]}).to_csv(tmp_path / "blank.csv", index=False)
    assert "Text 1 is empty" in refused(predict_argv(run, tmp_path / "blank.csv", tmp_path / "p3.csv"))
    arrays = dict(np.load(run / run_folder.MODEL / tfidf.ARRAYS_FILE))
    np.savez(run / run_folder.MODEL / tfidf.ARRAYS_FILE, **{**arrays, "coef": np.full_like(arrays["coef"], np.nan)})
    assert "damaged: tfidf.npz" in refused(predict_argv(run, data, tmp_path / "p4.csv"))  # the checksum sees it first
    info["model_files"] = files.checksums(run / run_folder.MODEL)  # a training that diverged writes such weights
    (run / run_folder.METRICS).write_text(json.dumps(info))
    assert "NaN or infinite" in refused(predict_argv(run, data, tmp_path / "p5.csv"))
    assert not any((tmp_path / f"p{i}.csv").exists() for i in range(2, 6))


def cli_ok(argv):
    from tutorial_utils.tools import cli

    return cli.main(argv) == 0


def test_predict_checks_its_output_before_predicting_and_names_a_damaged_run(tfidf_run, tmp_path, refused):

    run, data = tfidf_run
    before = data.read_text()
    assert "replace your texts" in refused(predict_argv(run, data, data) + ["--overwrite"])
    assert data.read_text() == before
    assert "does not exist" in refused(predict_argv(run, data, tmp_path / "no" / "such" / "p.csv"))
    metrics_text = (run / run_folder.METRICS).read_text()
    (run / run_folder.METRICS).write_text(metrics_text[: len(metrics_text) // 2])  # truncated
    assert f"{run_folder.METRICS} is damaged" in refused(predict_argv(run, data, tmp_path / "p.csv"))
    (run / run_folder.METRICS).write_text(metrics_text)
    (run / run_folder.MODEL / tfidf.SETTINGS_FILE).unlink()
    assert "tfidf.json missing or changed" in refused(predict_argv(run, data, tmp_path / "p.csv"))


def test_overwrite_keeps_the_old_run_when_saving_fails_and_a_second_training_is_refused(tfidf_run, tmp_path,
                                                                                     monkeypatch, refused):
    from tutorial_utils.setup import files
    from tutorial_utils.production import workflow

    run, data = tfidf_run
    before = (run / run_folder.METRICS).read_text()

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(workflow.tfidf, "save", disk_full)
    argv = ["train", "tfidf", "--profile", "tiny", "--data", str(data), "--out", str(run), "--overwrite"]
    with pytest.raises(OSError, match="No space left"):
        cli_ok(argv)
    monkeypatch.undo()
    assert (run / run_folder.METRICS).read_text() == before and cli_ok(predict_argv(run, data, tmp_path / "p.csv"))
    held = python(f"""
        import fcntl, sys, time
        handle = open({str(run / run_folder.LOCK)!r}, "w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
    """, {})
    try:
        assert held.stdout.readline().strip() == "held"
        (run / run_folder.STAGED).mkdir()  # the holder's run, being saved: a refused second training leaves it be
        assert "Another training is writing into" in refused(argv)
        assert (run / run_folder.STAGED).is_dir()
    finally:
        held.kill()
    held.wait()
    run_folder.prepare_out(run, overwrite=True)  # no one holds the lock now: the unfinished run goes
    assert not (run / run_folder.STAGED).exists()
    # a training killed between moving the old run aside and moving the new one in: the old run comes back
    (run / run_folder.REPLACED).mkdir()
    for name in (run_folder.MODEL, run_folder.RECORD, run_folder.METRICS):
        (run / name).rename(run / run_folder.REPLACED / name)
    assert "moved aside" in refused(predict_argv(run, data, tmp_path / "p2.csv"))
    run_folder.prepare_out(run, overwrite=True)
    assert (run / run_folder.METRICS).read_text() == before and not (run / run_folder.REPLACED).exists()
    assert not files.damaged(run / run_folder.MODEL, json.loads(before)["model_files"])
    # killed after the new model/ moved in but before its metrics.json (which moves last): the old run, whole
    (run / run_folder.REPLACED).mkdir()
    for name in (run_folder.MODEL, run_folder.RECORD, run_folder.METRICS):
        (run / name).rename(run / run_folder.REPLACED / name)
    (run / run_folder.MODEL).mkdir()
    (run / run_folder.MODEL / run_folder.LABELS_FILE).write_text("[]")  # a new run's first file
    run_folder.prepare_out(run, overwrite=True)
    assert (run / run_folder.METRICS).read_text() == before
    assert not files.damaged(run / run_folder.MODEL, json.loads(before)["model_files"])
