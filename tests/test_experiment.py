"""The experiment layer: registry, run keys, the results store under faults, the protocol, and the committed store."""

import dataclasses
import importlib
import json
import types

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from tutorial_utils.setup.config import Protocol, get_profile
from tutorial_utils.storage import records, store
from tutorial_utils import methods
from tutorial_utils.methods import plateau, runners
from tutorial_utils.study import experiment, specs, store_audit, studies, study_tables


@pytest.fixture()
def results(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    return tmp_path


def toy_data(texts=None, labels=None):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    texts = texts or ["alpha one", "beta two", "alpha three", "beta four"]
    labels = labels or [0, 1, 0, 1]
    split = Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return DatasetDict(train=split, validation=split, test=split)


def toy_record(data=None, **outcome):
    data = data or toy_data()
    base = {"y_true": [0, 1, 0, 1], "y_pred": [0, 1, 1, 1], "probs": np.full((4, 2), 0.5), "trainable_params": 7,
            "validation_curve": [{"step": 1, "epoch": 0.5, "value": 0.4}, {"step": 2, "epoch": 1.0, "value": 0.6}]}
    settings = {"learning_rate": 1e-3}
    return records.make_record(methods.EMBEDDING_HEAD, "toy", 1, settings, data, base | outcome, 1.0, "test",
                               compute_dtype="float32")


# ---- the registry ------------------------------------------------------------------------------------

PACKAGE_NAMES = {"methods.recipes": ["EMBEDDING_HEAD", "ENCODER", "TFIDF"],
                 "methods.probe": ["FROZEN_PROBE", "MULTILABEL_PROBE"], "methods.prompting": ["ZERO_SHOT"],
                 "methods.instruct_train": ["INSTRUCTION_SCORED", "INSTRUCTION_GENERATED"],
                 "methods.multilabel_runs": ["MULTILABEL_HEAD", "MULTILABEL_INSTRUCTION"],
                 "production.distill": ["STUDENT"]}


def test_every_method_name_the_package_uses_is_registered():
    for module, constants in PACKAGE_NAMES.items():
        loaded = importlib.import_module(f"tutorial_utils.{module}")
        for constant in constants:
            assert getattr(loaded, constant) in methods.METHODS, (module, constant)


def test_every_study_method_is_registered_and_runnable():
    for study in studies.STUDIES:
        assert {experiment.produced_by(m) for m in studies.study_methods(study)} <= set(methods.names(runnable=True))


def test_every_runnable_method_has_a_runner_and_settings():
    profile = get_profile("tiny")
    for name in methods.names(runnable=True):
        assert callable(experiment.runner(name))
        teacher = runners.settings(profile, methods.EMBEDDING_HEAD, runners.default_value(
            profile, methods.EMBEDDING_HEAD)) if name == methods.STUDENT else None
        assert runners.settings(profile, name, runners.default_value(profile, name), teacher)
    assert set(experiment.RUNNERS) == set(methods.names(runnable=True))  # the registry and the runners agree
    for name in studies.COMPARED + studies.EFFICIENCY_METHODS:
        assert methods.get(name).protocol or methods.get(name).trained_with


def test_unknown_method_lists_the_registry():
    with pytest.raises(methods.UnknownMethod, match="embedding-head") as error:
        methods.get("embeding-head")
    assert "tfidf-logreg" in str(error.value)
    with pytest.raises(methods.UnknownMethod, match="no runner"):
        experiment._run_method(get_profile("tiny"), "few-shot-scored", toy_data(), 1, None)


# ---- keys --------------------------------------------------------------------------------------------

def key(profile, method=methods.EMBEDDING_HEAD, data=None, seed=1, value=1e-3):
    described = records.data_description(data or toy_data(), "toy")
    return records.run_key(method, runners.settings(profile, method, value), described, seed)


def test_key_changes_with_the_data_the_settings_and_the_seed():
    profile = get_profile("tiny")
    reference = key(profile)
    assert key(profile, data=toy_data(texts=["alpha one", "beta two", "alpha three", "beta five"])) != reference
    assert key(profile, data=toy_data(labels=[0, 1, 1, 1])) != reference
    assert key(profile, value=3e-3) != reference
    assert key(profile, seed=2) != reference
    assert key(dataclasses.replace(profile, lora=dataclasses.replace(profile.lora, r=16))) != reference
    assert key(profile, method=methods.ENCODER) != key(profile)


def test_key_ignores_other_methods_settings_and_unrelated_profile_fields():
    profile = get_profile("tiny")
    reference = key(profile)
    other = dataclasses.replace(profile, encoder_train=dataclasses.replace(profile.encoder_train, learning_rate=0.5),
                                distill_extra_texts=999, seed=7, ablation_train_size=3)
    assert key(other) == reference
    assert key(profile) == reference  # and it is stable


# ---- the store under faults --------------------------------------------------------------------------

def test_store_round_trip(results):
    record = toy_record()
    where = store.folder("tiny", "toy", record.method, "t", record.key)
    store.write(record, where)
    back = store.find("tiny", "toy", record.method, "t", record.key)
    assert back is not None and back.test_metrics == record.test_metrics
    assert np.array_equal(back.y_pred, record.y_pred) and back.best_epoch == 1.0 and back.validation_metric == 0.6
    assert back.provenance["command"] == "test" and back.provenance["machine"]


def test_a_record_names_the_commit_its_code_was_loaded_from(monkeypatch):
    """A long reproduce outlives the checkout it started from: a commit made meanwhile is not credited with the run."""
    monkeypatch.setattr(records, "git_commit", lambda: ("a later commit", True))
    assert toy_record().provenance["git_commit"] != "a later commit"
    assert (toy_record().provenance["git_commit"], toy_record().provenance["uncommitted_changes"]) == records._LOADED_FROM


def test_truncated_arrays_or_broken_json_are_recomputed_not_loaded(results, capsys):
    record = toy_record()
    where = store.write(record, store.folder("tiny", "toy", record.method, "t", record.key))
    blob = (where / store.ARRAYS).read_bytes()
    (where / store.ARRAYS).write_bytes(blob[: len(blob) // 2])  # a write killed midway
    assert store.find("tiny", "toy", record.method, "t", record.key) is None
    assert "checksum" in capsys.readouterr().out
    store.write(record, where)
    (where / store.RECORD).write_text((where / store.RECORD).read_text()[:40])
    assert store.find("tiny", "toy", record.method, "t", record.key) is None
    assert "not valid JSON" in capsys.readouterr().out
    problems = [p for _, p in store.stored("tiny") if isinstance(p, store.StoreError)]
    assert len(problems) == 1


def test_a_partial_folder_is_never_read_and_a_rewrite_replaces(results):
    record = toy_record()
    where = store.folder("tiny", "toy", record.method, "t", record.key)
    partial = where.with_name(where.name + ".partial")
    partial.mkdir(parents=True)
    (partial / store.RECORD).write_text("{}")
    assert store.find("tiny", "toy", record.method, "t", record.key) is None and store.stored("tiny") == []
    store.write(record, where)
    store.write(dataclasses.replace(record, extra={"rewritten": True}), where)
    assert store.find("tiny", "toy", record.method, "t", record.key).extra == {"rewritten": True}
    assert not partial.exists()


def test_a_record_under_another_key_is_not_used(results, capsys):
    record = toy_record()
    where = store.write(record, store.folder("tiny", "toy", record.method, "t", "0" * 16))
    assert where.exists() and store.find("tiny", "toy", record.method, "t", "0" * 16) is None
    assert "other data or settings" in capsys.readouterr().out


def test_make_record_rejects_predictions_of_the_wrong_length():
    with pytest.raises(ValueError, match="predict every test text"):
        toy_record(y_pred=[0, 1])


# ---- the protocol ------------------------------------------------------------------------------------

def test_nested_order_keeps_class_shares_in_every_prefix():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    order = studies.nested_order(labels, seed=3)
    assert sorted(order) == list(range(1000))
    for n in (10, 100, 500):
        counts = np.bincount(labels[order[:n]], minlength=3)
        assert np.all(np.abs(counts - np.array([0.6, 0.3, 0.1]) * n) <= 1), (n, counts)


def test_schedule_gives_small_sets_more_epochs_but_no_more_evaluations():
    protocol = Protocol(max_epochs=6, evals_per_epoch=2, min_steps=100)
    full = plateau.schedule(1000, 16, protocol)
    assert full == {"steps_per_epoch": 63, "max_epochs": 6, "eval_every": 32}
    small = plateau.schedule(100, 16, protocol)
    assert small["max_epochs"] == 15 and small["steps_per_epoch"] * small["max_epochs"] / small["eval_every"] <= 12
    # under DDP each of 2 processes takes 8 a step: the same 16 a step, so the same schedule
    assert plateau.schedule(1000, 8, protocol, processes=2) == full


def test_schedule_counts_the_processes_of_a_process_group_only(monkeypatch):
    import torch

    protocol = Protocol(max_epochs=6, evals_per_epoch=2, min_steps=100)
    monkeypatch.setenv("WORLD_SIZE", "2")  # a cluster's variable without a process group: one process trains
    assert plateau.schedule(1000, 16, protocol) == plateau.schedule(1000, 16, protocol, processes=1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    assert plateau.schedule(1000, 8, protocol) == plateau.schedule(1000, 16, protocol, processes=1)


class FakeModel:
    def __init__(self):
        import torch

        self.weight = torch.nn.Parameter(torch.zeros(1))

    def named_parameters(self):
        return [("weight", self.weight)]

    def train(self):
        return self


def test_plateau_stops_after_patience_and_restores_the_best_weights():
    from transformers import TrainerControl, TrainerState

    model, values = FakeModel(), iter([0.2, 0.5, 0.4, 0.3, 0.45])
    callback = plateau.PlateauCallback(lambda m: (next(values), np.array([m.weight.item()])), every=1, patience=3,
                                       steps_per_epoch=2)
    state, control = TrainerState(max_steps=100), TrainerControl()
    for step in range(1, 6):
        state.global_step = step
        model.weight.data.fill_(step)
        callback.on_step_end(None, state, control, model=model)
        if control.should_training_stop:
            break
    assert step == 5 and callback.best == 0.5 and [p["epoch"] for p in callback.curve] == [0.5, 1.0, 1.5, 2.0, 2.5]
    callback.restore(model)
    assert model.weight.item() == 2.0 and callback.best_probs.tolist() == [2.0]


def test_tfidf_counts_a_class_missing_from_training_in_its_own_column():
    data = toy_data()
    three = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b", "c"])})
    data = DatasetDict({s: Dataset.from_dict(data[s].to_dict(), features=three) for s in data})
    out = runners.tfidf(get_profile("tiny"), data, seed=1, value=10.0)
    assert out["probs"].shape == (4, 3) and np.all(out["probs"][:, 2] == 0)
    assert set(out["y_pred"]) <= {0, 1}


# ---- reproduce, and the committed store --------------------------------------------------------------

def test_a_run_is_estimated_from_the_stored_runs_of_its_variant(results):
    """A larger LoRA budget trains slower: its runs are estimated from its own stored runs where there are some."""
    for variant, wall, seed in (("", 100.0, 1), ("r16-all", 400.0, 2)):
        record = toy_record()
        record.seed, record.key, record.provenance["wall_seconds"] = seed, f"{seed:016d}", wall
        record.extra["variant"] = variant
        store.write(record, store.folder("tiny", "toy", record.method, f"seed{seed}", record.key))
    spec = types.SimpleNamespace(method=methods.EMBEDDING_HEAD, dataset="toy", train_size=4, extension=0)
    per_run = {v: store_audit.estimated_seconds(get_profile("tiny"), [types.SimpleNamespace(**vars(spec), variant=v)])
               for v in ("", "r16-all", "r64-all")}
    assert per_run[""] == pytest.approx(100.0 / 4 * 100) and per_run["r16-all"] == pytest.approx(400.0 / 4 * 100)
    assert per_run["r64-all"] == pytest.approx(250.0 / 4 * 100)  # none stored: the method's median over all its runs


def test_reproduce_stops_between_runs_when_told(results):
    """A time window ends before a run, not in one (the CLI's --hours): the next call goes on from there."""
    profile, asked, said = get_profile("tiny"), [], []

    def stop_before(spec):
        asked.append(spec)
        return "the window is spent" if len(asked) > 1 else None

    made = experiment.reproduce(profile, only=[methods.TFIDF], progress=said.append, stop_before=stop_before)
    assert len(made) == 1 and said[-1] == "the window is spent"
    rest = experiment.reproduce(profile, only=[methods.TFIDF], progress=lambda _: None)
    assert made[0].key not in {r.key for r in rest} and rest


def test_reproduce_runs_once_and_resumes(results):
    profile = get_profile("tiny")
    first_two = experiment.reproduce(profile, only=[methods.TFIDF], progress=lambda _: None, max_runs=2)
    assert len(first_two) == 2
    made = first_two + experiment.reproduce(profile, only=[methods.TFIDF], progress=lambda _: None)
    assert {r.method for r in made} == {methods.TFIDF}
    # its grid on the comparison and on the news check (each as the search grew it), and the data-efficiency sizes
    planned = [s for s in experiment.plan(profile) if s.method == methods.TFIDF]
    grids = [s for s in planned if s.role == "grid"]
    assert len(grids) >= 2 * len(profile.protocol.grid) and len(planned) == len(grids) + len(profile.protocol.efficiency_sizes)
    assert sorted(r.key for r in made) == sorted(s.key for s in planned)
    assert experiment.reproduce(profile, only=["tfidf-*"], progress=lambda _: None) == []
    first = made[0]
    moved = store.folder("tiny", first.dataset, first.method, f"n{first.train_examples}-C{first.settings['C']:.3g}-seed1",
                         first.key)
    assert moved.exists()
    moved.rename(moved.with_name(moved.name[:-16] + "0" * 16))  # as if made with other data: never used, named
    said = []
    remade = experiment.reproduce(profile, only=[methods.TFIDF], progress=said.append)
    assert [r.key for r in remade] == [first.key] and any("other data or settings" in line for line in said)
    assert store_audit.prune(profile) == [str(moved.with_name(moved.name[:-16] + "0" * 16))]
    assert store_audit.audit(profile) == []
    chosen = experiment.records_of(profile)[methods.TFIDF]
    assert len(chosen) == 1 and chosen[0].settings["C"] in {s.value for s in grids}


@pytest.mark.parametrize("name", ["tiny", "cpu"])
def test_committed_results_match_the_current_code_and_data(name, monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile(name)
    assert store.stored(name), f"results/{name} holds no results"
    assert store_audit.audit(profile) == []
    assert store.size_bytes() < 25e6


def rerun_stored(monkeypatch, name, method, runner):
    """Re-run the stored first-seed run of a method at its chosen value; (new outcome, stored record)."""
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile(name)
    planned = [s for s in experiment.plan(profile) if s.method == method and s.study == studies.COMPARISON]
    value = experiment.chosen(profile, [s for s in planned if s.role == "grid"])
    s = next(s for s in planned if s.value == value and s.seed == profile.protocol.seeds[0])
    data = studies.comparison_data(profile)[s.train_size]
    record = specs.lookup(profile, s)
    # in the dtype the stored run computed in: records made before it was kept computed in bf16 on every CPU
    monkeypatch.setenv("COURSE_COMPUTE_DTYPE", record.provenance.get("compute_dtype") or "bfloat16")
    return runner(profile, data, s.seed, s.value), record


def test_tfidf_rerun_reproduces_its_stored_cpu_result(monkeypatch):
    out, record = rerun_stored(monkeypatch, "cpu", methods.TFIDF, runners.tfidf)
    assert np.array_equal(out["y_pred"], record.y_pred)
    assert np.allclose(out["probs"], record.probs, atol=1e-5)


@pytest.mark.slow
def test_a_tiny_embedding_head_rerun_reproduces_its_stored_result(monkeypatch):
    out, record = rerun_stored(monkeypatch, "tiny", methods.EMBEDDING_HEAD, runners.embedding_head)
    # bitwise on the CPU that stored it; another CPU (its vector width) sums in another order, and a near-tie on
    # one of the 64 validation texts may flip (seen: one evaluation of four moved by 0.0009 of macro-F1)
    assert [p["value"] for p in out["validation_curve"]] == pytest.approx(
        [p["value"] for p in record.validation_curve], abs=0.01)
    assert np.mean(out["y_pred"] == record.y_pred) >= 0.98
    assert np.allclose(out["probs"], record.probs, atol=2e-3)


def test_record_json_is_plain_json():
    text = json.dumps(toy_record().meta())
    assert "NaN" not in text and json.loads(text)["method"] == methods.EMBEDDING_HEAD


# ---- the tables built from the store ---------------------------------------------------------------------

def test_macro_f1_over_counts_unparsable_as_wrong_without_a_class_of_its_own():
    from sklearn.metrics import f1_score

    from tutorial_utils.evaluation import stats

    y, p = np.array([0, 1, 2, 2, 1, 0]), np.array([0, -1, 2, 1, 1, -1])
    expected = f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)
    assert stats.macro_f1_over(3)(y, p) == pytest.approx(expected)
    with pytest.raises(ValueError, match="one prediction per label"):
        stats.macro_f1_over(3)(y, p[:3])


def test_tables_from_the_tiny_store(monkeypatch):
    from tutorial_utils.study import comparison

    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    monkeypatch.delenv("COURSE_RECOMPUTE", raising=False)
    profile = get_profile("tiny")
    found = comparison.study_runs(profile, verbose=False)
    assert set(found) == set(studies.COMPARED)
    table = comparison.seed_table(found)
    head = table.loc[methods.get(methods.EMBEDDING_HEAD).title]
    assert head["seeds"] == len(profile.protocol.seeds) and table.loc["zero-shot prompt (scored)", "seeds"] == 1
    assert (table.loc[table["train examples"] > 0, "train examples"] == profile.protocol.train_examples).all()
    scores, training = comparison.scores_and_training(table)  # chapter 08 shows the table as these two
    assert list(scores.columns) == ["seeds", "macro-F1 mean", "macro-F1 sd", "macro-F1 min", "macro-F1 max",
                                    "accuracy mean"]
    assert sorted([*scores.columns, *training.columns, "family"]) == sorted(table.columns) and "tuned" in training.columns
    paired = comparison.paired_table(found, n_resamples=200)
    # a deterministic method (one run) is paired with every seed of the head
    assert (paired.groupby("method").size() == len(profile.protocol.seeds)).all()
    f1 = {r.seed: r.test_metrics["macro_f1"] for r in found[methods.EMBEDDING_HEAD]}
    tfidf = found[methods.TFIDF][0].test_metrics["macro_f1"]
    rows = paired[paired["method"] == "TF-IDF + logistic regression"].set_index("seed")
    assert rows["difference (method - head)"].to_dict() == pytest.approx({s: tfidf - v for s, v in f1.items()})
    verdicts = comparison.verdicts(paired)
    assert (verdicts[["method better", "head better", "not told apart"]].sum(axis=1) == verdicts["seeds"]).all()
    sentence = comparison._verdict_sentence(verdicts.iloc[0], verdicts.index[0])
    assert verdicts.index[0] in sentence and f"{verdicts.iloc[0]['mean difference']:+.3f}" in sentence
    efficiency = study_tables.efficiency_table(profile, found, n_resamples=200)
    assert set(efficiency["train examples"]) == {*profile.protocol.efficiency_sizes, profile.protocol.train_examples}
    assert (efficiency["CI low"] <= efficiency["macro-F1"]).all() and (efficiency["macro-F1"] <= efficiency["CI high"]).all()
    curves = comparison.curves(found)  # scored and generated are read out of one training: one line
    assert "instruction tuning, scored / generated (one training)" in set(curves["method"])
    assert not {"instruction tuning, scored", "instruction tuning, generated"} & set(curves["method"])
    unrelated = {methods.EMBEDDING_HEAD: found[methods.INSTRUCTION_SCORED],  # titles with no common start
                 methods.INSTRUCTION_GENERATED: found[methods.INSTRUCTION_GENERATED]}
    assert set(comparison.curves(unrelated)["method"]) == {"LoRA embedding head / instruction tuning, generated (one training)"}
    y_val = studies.comparison_data(profile)[profile.protocol.train_examples]["validation"]["label"]
    calibration = study_tables.calibration_table(found, y_val)
    assert "instruction tuning, generated" not in calibration.index  # another read-out's validation scores
    assert (calibration["temperature (fit on validation)"] > 0).all() and (calibration["test ECE"].between(0, 1)).all()
    assert (calibration["test NLL after"] <= calibration["test NLL"] + 0.5).all()


def test_a_chapter_collects_only_its_methods_and_compares_with_the_fair_run(monkeypatch):
    from tutorial_utils.study import comparison

    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    monkeypatch.delenv("COURSE_RECOMPUTE", raising=False)
    profile = get_profile("tiny")
    shown = [methods.TFIDF, methods.EMBEDDING_HEAD]
    found = comparison.study_runs(profile, verbose=False, compute=False, only=shown)
    assert set(found) == set(shown)
    lines = comparison.verdict_lines(found, n_resamples=200)
    assert len(lines) == 1 and "(TF-IDF + logistic regression minus head), 95% interval" in lines[0]
    assert lines[0].endswith("3 of 3 seed pairings have that sign.")
    head = found[methods.EMBEDDING_HEAD]
    mean = np.mean([r.test_metrics["macro_f1"] for r in head])
    budget = comparison.chapter_budget(96, profile.train)
    assert budget == f"96 examples, 1 epoch, learning rate {profile.train.learning_rate:g}"
    sentence = comparison.against_fair(methods.EMBEDDING_HEAD, 0.5, budget, found)
    assert "reached test macro-F1 0.500" in sentence and f"it reaches {mean:.3f}" in sentence
    assert "learning rate" in sentence and "learning_rate" not in sentence  # prose, not a Python name
    assert f"{len(head)} seeds" in sentence
    assert "holds no fair-comparison run" in comparison.against_fair(methods.ENCODER, 0.5, "x", found)
    from tutorial_utils.evaluation import plots  # a profile with nothing stored draws a note, not an error

    assert not plots.plot_validation_curves(comparison.curves({})).axison


def test_the_news_check_runs_the_protocol_on_its_own_data_and_grid(monkeypatch):
    from tutorial_utils.data import load_news
    from tutorial_utils.study import comparison

    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    monkeypatch.delenv("COURSE_RECOMPUTE", raising=False)
    profile = get_profile("tiny")
    view = studies.study_profile(profile, studies.NEWS)
    assert view.single_label_data == profile.news_data and studies.study_profile(profile, studies.COMPARISON) is profile
    planned = experiment.plan(profile)
    news = [s for s in planned if s.study == studies.NEWS]
    assert {s.method for s in news} == set(studies.NEWS_METHODS) and {s.dataset for s in news} == {profile.news_data}
    assert not {s.key for s in news} & {s.key for s in planned if s.study != studies.NEWS}
    data = studies.news_data(profile)
    assert len(data["train"]) == min(profile.protocol.train_examples, len(load_news(profile)["train"]))
    found = comparison.study_runs(profile, studies.NEWS, verbose=False, compute=False)
    assert set(found) == set(studies.NEWS_METHODS)
    table = comparison.seed_table(found)
    assert (table["train examples"] == len(data["train"])).all()
    assert table.loc[methods.get(methods.EMBEDDING_HEAD).title, "seeds"] == len(profile.protocol.seeds)
    # the value is chosen on the news validation split, whatever the comparison chose
    grid = [s for s in news if s.method == methods.EMBEDDING_HEAD and s.role == "grid"]
    best = max(grid, key=lambda s: (specs.lookup(profile, s).validation_metric, -grid.index(s)))
    assert {r.settings["learning_rate"] for r in found[methods.EMBEDDING_HEAD]} == {best.value}
    assert len(comparison.verdict_lines(found, n_resamples=100)) == len(studies.NEWS_METHODS) - 1


def fake_store(monkeypatch, metric, stored=lambda value: True):
    """``lookup`` answering from a function: a run of value v is stored when ``stored(v)``, and
    its validation metric is ``metric(v)``."""
    from types import SimpleNamespace

    def lookup(profile, s, verbose=False):
        if s.value is None or not stored(s.value):
            return None
        return SimpleNamespace(validation_metric=metric(s.value), key=s.key, validation_curve=[],  # no curve: converged
                               extra={})

    monkeypatch.setattr(experiment, "lookup", lookup)
    monkeypatch.setattr(specs, "lookup", lookup)  # a stored run's longer tries (``specs.extensions``) ask it too


def tfidf_grid(profile):
    """The comparison's TF-IDF grid as the protocol searches it now."""
    data = studies.comparison_data(profile)[max(studies.comparison_data(profile))]
    return experiment.searched_grid(profile, studies.COMPARISON, methods.TFIDF, data,
                                    records.data_description(data, profile.single_label_data))


def test_the_grid_grows_past_an_end_that_wins_outright_up_to_the_protocols_limit(monkeypatch):
    profile = get_profile("tiny")
    base = experiment.grid_values(profile, methods.TFIDF)
    assert profile.protocol.grid_extensions == 2
    fake_store(monkeypatch, metric=lambda v: v)  # the larger the better: grows twice over the top, then stops
    assert [s.value for s in tfidf_grid(profile)] == experiment.grid_values(profile, methods.TFIDF, above=2)
    assert experiment.grid_values(profile, methods.TFIDF, above=2)[-1] == pytest.approx(base[-1] * 9, rel=1e-2)
    fake_store(monkeypatch, metric=lambda v: -v)  # the smaller the better: grows under the bottom
    assert [s.value for s in tfidf_grid(profile)] == experiment.grid_values(profile, methods.TFIDF, below=2)
    fake_store(monkeypatch, metric=lambda v: -abs(v - base[1]))  # an interior best: the grid stays
    assert [s.value for s in tfidf_grid(profile)] == base
    fake_store(monkeypatch, metric=lambda v: 1.0)  # all tied: the smallest is chosen, nothing to grow towards
    assert [s.value for s in tfidf_grid(profile)] == base


def test_a_grid_waiting_for_its_extension_plans_no_seeds_and_keeps_its_stored_runs(monkeypatch):
    from tutorial_utils.study import comparison

    profile = get_profile("tiny")
    base = experiment.grid_values(profile, methods.EMBEDDING_HEAD)
    fake_store(monkeypatch, metric=lambda v: v, stored=lambda v: v <= base[-1])  # the extension is not run yet
    planned = [s for s in experiment.plan(profile) if s.method == methods.EMBEDDING_HEAD and s.study == studies.COMPARISON]
    assert [s.value for s in planned] == experiment.grid_values(profile, methods.EMBEDDING_HEAD, above=1)
    assert all(s.role == "grid" for s in planned)  # seeds wait for the choice
    waiting = store_audit.waiting(profile)  # the seeds and data-efficiency runs at every value tried may yet be used
    data = studies.comparison_data(profile, profile.protocol.efficiency_sizes)
    for n, seed in [(max(data), profile.protocol.seeds[-1]), (min(data), profile.protocol.seeds[0])]:
        run = specs.spec(profile, studies.EFFICIENCY if n != max(data) else studies.COMPARISON,
                              methods.EMBEDDING_HEAD, data[n], seed, base[-1], "seed", records.data_description(
                                  data[n], profile.single_label_data))
        assert run.key in waiting
    fake_store(monkeypatch, metric=lambda v: -abs(v - base[-1]))  # the extension ran and lost: the old end is chosen
    planned = [s for s in experiment.plan(profile) if s.method == methods.EMBEDDING_HEAD and s.study == studies.COMPARISON]
    assert {s.value for s in planned if s.role == "seed"} == {base[-1]}
    record = dataclasses.replace(toy_record(), settings={"learning_rate": base[-1]})
    assert comparison.grid_edges(profile, {methods.EMBEDDING_HEAD: [record]}) == []  # not an end of the values tried


def test_stored_students_stay_until_the_plan_names_every_seeds_student(monkeypatch, tmp_path):
    profile = get_profile("tiny")  # a student's key holds its teacher's lr and cap: unknown while the head's runs are open
    student = tmp_path / "tiny" / "ipc-sections" / methods.STUDENT / "n800-lr0.0003-seed2-0123456789abcdef"
    other = tmp_path / "tiny" / "ipc-sections" / methods.ENCODER / "n800-lr0.0003-seed2-fedcba9876543210"
    monkeypatch.setattr(store, "run_folders", lambda name, base=None: [student, other])
    planned = [types.SimpleNamespace(role="seed", method=methods.STUDENT, seed=seed) for seed in profile.protocol.seeds]
    assert store_audit.waiting(profile, specs=planned[:-1]) == {"0123456789abcdef"}  # the last seed's is not known yet
    assert store_audit.waiting(profile, specs=planned) == set()  # every seed's student is planned: the others are stale


def test_grid_edges_name_a_choice_at_the_end_of_the_values_tried(monkeypatch):
    from tutorial_utils.study import comparison

    profile = get_profile("tiny")

    def at(value):
        return {methods.TFIDF: [dataclasses.replace(toy_record(), settings={"C": value})]}

    fake_store(monkeypatch, metric=lambda v: v)
    top = experiment.grid_values(profile, methods.TFIDF, above=2)[-1]
    assert "largest value tried (the grid grown 2 step(s)" in comparison.grid_edges(profile, at(top))[0]
    fake_store(monkeypatch, metric=lambda v: 1.0)
    smallest = experiment.grid_values(profile, methods.TFIDF)[0]
    assert "smallest value tried (it ties with its neighbour" in comparison.grid_edges(profile, at(smallest))[0]
    assert comparison.grid_edges(profile, at(experiment.grid_values(profile, methods.TFIDF)[1])) == []
    with pytest.raises(methods.UnknownMethod, match="The registry holds"):
        comparison.study_runs(profile, verbose=False, compute=False, only=["embeding-head"])


def test_crossings_find_where_the_order_flips():
    import pandas as pd

    from tutorial_utils.study import comparison

    table = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "train examples": [10, 100, 1000] * 2,
                          "macro-F1": [0.2, 0.5, 0.9, 0.4, 0.6, 0.7], "seeds": [3] * 6, "still improving": ["0/3"] * 6})
    assert study_tables._crossings(table, "a", "b") == [(100, 1000)]
    assert study_tables._crossings(table, "b", "a") == [(100, 1000)]
    assert study_tables.crossing_sentence(table, "a", "b") == "a and b cross between 100 and 1,000 examples"
    assert study_tables.crossing_sentence(table[table["train examples"] < 1000], "a", "b").endswith("b stays ahead")
    assert "fewer than two" in study_tables.crossing_sentence(table[table["train examples"] == 10], "a", "b")
    # a crossing read off one seed still rising at its cap says so; a weak point the sentence does not read does not
    weak = table.assign(seeds=[1, 1, 3, 3, 3, 3], **{"still improving": ["1/1", "1/1", "0/3"] + ["0/3"] * 3})
    assert study_tables.crossing_sentence(weak, "a", "b") == (
        "a and b cross between 100 and 1,000 examples (read with care: a has fewer seeds at 100 examples; a was still "
        "improving at its cap at 100 examples, its score there a lower bound)")


def test_audit_flags_a_stale_record_and_prune_removes_it(results):
    profile = get_profile("tiny")
    record = toy_record()
    where = store.write(record, store.folder("tiny", "ipc-sections", record.method, "n4-seed1", record.key))
    broken = store.folder("tiny", "ipc-sections", methods.TFIDF, "n4-seed1", "f" * 16)
    store.write(dataclasses.replace(toy_record(), method=methods.TFIDF), broken)
    (broken / store.ARRAYS).write_bytes(b"truncated")
    problems = store_audit.audit(profile)
    assert len(problems) == 2 and any("stale" in p and "--only embedding-head" in p for p in problems)
    assert any("unreadable" in p for p in problems)
    assert sorted(store_audit.prune(profile)) == sorted([str(where), str(broken)])
    assert store_audit.audit(profile) == [] and not where.exists()


def test_reproduce_command_lists_the_plan_and_rejects_unknown_methods(results, capsys):
    from tutorial_utils.tools import cli

    assert cli.main(["reproduce", "--profile", "tiny", "--list"]) == 0
    out = capsys.readouterr().out
    assert "missing  comparison: embedding-head" in out and "runs in the whole plan" in out
    with pytest.raises(SystemExit, match="registry holds"):
        cli.main(["reproduce", "--profile", "tiny", "--only", "no-such-method"])


def test_the_multi_label_study_runs_the_protocol_on_its_task_judged_by_micro_f1(monkeypatch):
    from tutorial_utils.data import multi_hot
    from tutorial_utils.evaluation.thresholds import apply_thresholds
    from tutorial_utils.study import comparison

    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    monkeypatch.delenv("COURSE_RECOMPUTE", raising=False)
    profile = get_profile("tiny")
    view = studies.study_profile(profile, studies.MULTILABEL)
    assert view.single_label_data == profile.multi_label_data and view.train == profile.multilabel_train
    assert view.encoder_train.max_length == profile.multilabel_train.max_length  # every method sees as much text
    planned = experiment.plan(profile)
    multi = [s for s in planned if s.study == studies.MULTILABEL]
    assert {s.method for s in multi} == set(studies.MULTILABEL_METHODS)
    assert not {s.key for s in multi} & {s.key for s in planned if s.study != studies.MULTILABEL}
    assert all(s.settings["task"] == methods.MULTI_LABEL for s in multi)
    data = studies.multilabel_data(profile)
    found = comparison.study_runs(profile, studies.MULTILABEL, verbose=False, compute=False)
    assert set(found) == set(studies.MULTILABEL_METHODS)
    table = comparison.seed_table(found)
    assert {"micro-F1 mean", "macro-F1 mean"} <= set(table.columns) and "accuracy mean" not in table.columns
    assert (table["train examples"] == len(data["train"])).all()
    Y_val = multi_hot(data["validation"]).astype(int)
    for name, runs in found.items():
        for r in runs:
            assert r.y_true.shape == (len(data["test"]), len(r.label_names)) and r.test_metrics["micro_f1"] >= 0
            if name != methods.MULTILABEL_INSTRUCTION:  # one threshold, chosen on validation, decides on test
                t = r.extra["threshold"]
                assert np.array_equal(r.y_pred, apply_thresholds(r.probs, t))
                assert r.validation_metric == pytest.approx(
                    float(comparison.stats.micro_f1(Y_val, apply_thresholds(r.val_probs, t))), abs=1e-6)
    paired = comparison.paired_table(found, n_resamples=100)
    assert methods.get(methods.MULTILABEL_HEAD).title not in set(paired["method"]) and "McNemar p (exact match)" in paired
    lines = comparison.verdict_lines(found, n_resamples=100)
    assert len(lines) == len(studies.MULTILABEL_METHODS) - 1 and all("micro-F1 difference" in x for x in lines)
    assert "validation micro-F1" in comparison.curves(found).columns


def test_a_multi_label_tfidf_rerun_reproduces_its_stored_tiny_result(monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile("tiny")
    s = next(s for s in experiment.plan(profile, studies=(studies.MULTILABEL,)) if s.method == methods.MULTILABEL_TFIDF)
    out = experiment._run_method(profile, s.method, studies.multilabel_data(profile), s.seed, s.value)[s.method]
    record = specs.lookup(profile, s)
    assert np.array_equal(out["y_pred"], record.y_pred) and np.allclose(out["probs"], record.probs, atol=1e-5)


def test_the_frequency_floor_guesses_the_tags_a_text_never_needs_reading_for():
    from datasets import ClassLabel, Sequence

    from tutorial_utils.methods.multilabel_protocol import frequency_floor

    features = Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=["common", "rare"]))})
    split = Dataset.from_dict({"text": ["a", "b", "c", "d"], "labels": [[0], [0], [0, 1], [0]]}, features=features)
    # "common" is on every text: guessing it everywhere (and "rare" nowhere) is right 4 times of 5 true tags
    assert frequency_floor(DatasetDict(train=split, validation=split, test=split)) == pytest.approx(2 * 4 / (4 + 5))


def test_the_distillation_study_plans_a_student_per_seed_taught_by_the_chosen_head(monkeypatch):
    """The student takes the encoder's chosen value and is taught by the head run the comparison kept on its seed
    (the chosen value, the epoch cap of the try best on validation); the teacher's settings are in its key."""
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile("tiny")
    planned = [s for s in experiment.plan(profile, studies=(studies.DISTILLATION,)) if s.study == studies.DISTILLATION]
    grid = {m: [s for s in experiment.plan(profile) if s.study == studies.COMPARISON and s.method == m
                and s.role == "grid"] for m in (methods.EMBEDDING_HEAD, methods.ENCODER)}
    assert [s.seed for s in planned if not s.extension] == list(profile.protocol.seeds)
    assert {s.teacher for s in planned} == {experiment.chosen(profile, grid[methods.EMBEDDING_HEAD])}
    assert {s.value for s in planned} == {experiment.chosen(profile, grid[methods.ENCODER])}
    kept = {r.seed: r.extra.get("extension", 0) for r in experiment.records_of(profile)[methods.EMBEDDING_HEAD]}
    assert {s.seed: s.teacher_extension for s in planned} == kept
    first = planned[0]
    assert first.settings["teacher"] == runners.settings(specs.longer_cap(profile, first.teacher_extension),
                                                         methods.EMBEDDING_HEAD, first.teacher)
    data = studies.study_data(profile, studies.DISTILLATION)
    for change in ({"teacher": first.teacher * 3}, {"teacher_extension": first.teacher_extension + 1}):
        other = specs.spec(profile, studies.DISTILLATION, methods.STUDENT, data, first.seed, first.value, first.role,
                           **{"teacher": first.teacher, "teacher_extension": first.teacher_extension, **change})
        assert other.key != first.key and other.tag == first.tag
    with pytest.raises(ValueError, match="teacher"):
        runners.settings(profile, methods.STUDENT, first.value)
    assert experiment.expected_runs(profile, {studies.DISTILLATION}) == len(profile.protocol.seeds)


def test_a_student_with_none_stored_is_estimated_as_its_teacher_and_its_encoder(results):
    for method, wall, seed in ((methods.EMBEDDING_HEAD, 100.0, 1), (methods.ENCODER, 20.0, 2)):
        record = toy_record()
        record.method, record.seed, record.key, record.provenance["wall_seconds"] = method, seed, f"{seed:016d}", wall
        store.write(record, store.folder("tiny", "toy", method, f"seed{seed}", record.key))
    spec = types.SimpleNamespace(method=methods.STUDENT, dataset="toy", train_size=4, extension=0, variant="")
    assert store_audit.estimated_seconds(get_profile("tiny"), [spec]) == pytest.approx(120.0 / 4 * 100)
