"""The claims ledger: run checks (convergence, degenerate runs), the two-level bootstrap, verdict rules,
the extension of runs still improving at their cap, hand-edited records, and one verdict recomputed by hand."""

import dataclasses
import difflib
import json
import re

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tutorial_utils.setup.config import get_profile
from tutorial_utils.evaluation import run_checks, stats
from tutorial_utils.storage import records, store
from tutorial_utils import methods
from tutorial_utils.study import comparison, experiment, ledger, specs, studies, verdicts
from tutorial_utils.study.verdicts import (AT_LEAST, BEATS, CONTRADICTED, EQUIVALENT, MATCHES, NOT_WORSE, REPRODUCED,
                                           UNDECIDED, Arm, Ledger)
from tutorial_utils.tools import cli


def curve(*values):
    return [{"step": i + 1, "epoch": (i + 1) / 2, "value": v} for i, v in enumerate(values)]


def record(y_true, y_pred, values=(0.4, 0.6, 0.5), stopped=False, patience=3, n_classes=3, method="embedding-head"):
    """A stored-like run record of class ids (or 0/1 rows), with a validation curve."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    multi = y_true.ndim == 2
    metric = stats.micro_f1(y_true, y_pred) if multi else stats.macro_f1_over(n_classes)(y_true, y_pred)
    return records.RunRecord(
        method=method, dataset="toy", seed=1, key="k", settings={"plateau": {"patience": patience}}, data={},
        label_names=[str(i) for i in range(y_true.shape[1] if multi else n_classes)], train_examples=10,
        trainable_params=1, epochs_run=len(values) / 2, best_epoch=None, learning_rate=1e-3,
        validation_curve=curve(*values), validation_metric=max(values), train_seconds=1.0,
        test_metrics={"micro_f1" if multi else "macro_f1": metric}, provenance={}, y_true=y_true, y_pred=y_pred,
        probs=np.zeros((len(y_true), 2)), extra={"stopped_early": stopped})


# ---- run checks -------------------------------------------------------------------------------------------

def test_convergence_tells_a_plateau_a_cap_and_a_run_still_improving():
    y = np.arange(30) % 3
    assert run_checks.convergence(record(y, y, (0.4, 0.6, 0.5, 0.5, 0.5), stopped=True)) == run_checks.PLATEAU
    # patience ran out exactly at the cap: a plateau too, though training did not stop early
    assert run_checks.convergence(record(y, y, (0.4, 0.6, 0.5, 0.5, 0.5), stopped=False)) == run_checks.PLATEAU
    assert run_checks.convergence(record(y, y, (0.4, 0.6, 0.5, 0.5), stopped=False)) == run_checks.CAP
    assert run_checks.convergence(record(y, y, (0.4, 0.5, 0.6))) == run_checks.IMPROVING
    assert run_checks.convergence(record(y, y, (0.6, 0.5, 0.6))) == run_checks.CAP  # a tie is no improvement
    no_curve = dataclasses.replace(record(y, y), validation_curve=[])
    assert run_checks.convergence(no_curve) is None


def test_a_constant_or_floor_level_run_is_degenerate_and_a_learning_one_is_not():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    assert "same prediction" in run_checks.degenerate(record(y, np.zeros_like(y)), 0.02)
    learned = np.where(rng.random(300) < 0.8, y, (y + 1) % 3)
    assert run_checks.degenerate(record(y, learned), 0.02) is None
    Y = (rng.random((200, 6)) < [0.6, 0.5, 0.1, 0.1, 0.05, 0.05]).astype(int)
    same_rows = np.tile([1, 1, 0, 0, 0, 0], (200, 1))
    assert "same prediction" in run_checks.degenerate(record(Y, same_rows), 0.02)
    assert run_checks._constant_floor(Y) == pytest.approx(max(
        stats.micro_f1(Y, np.tile((np.arange(6) < k).astype(int), (200, 1))) for k in range(1, 7)))
    noisy = np.where(rng.random(Y.shape) < 0.9, Y, 1 - Y)
    assert run_checks.degenerate(record(Y, noisy), 0.02) is None


# ---- the two-level bootstrap ---------------------------------------------------------------------------------

def noisy_runs(y, accuracy, n_runs, seed):
    rng = np.random.default_rng(seed)
    return [np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 4, len(y))) for _ in range(n_runs)]


def test_seed_bootstrap_finds_a_real_gap_and_not_a_null_one():
    y = np.random.default_rng(1).integers(0, 4, 800)
    metric = stats.macro_f1_over(4)
    strong, weak = noisy_runs(y, 0.8, 3, 2), noisy_runs(y, 0.5, 3, 3)
    gap = stats.seed_bootstrap(y, strong, weak, metric, 500)
    assert gap.ci95[0] > 0 and gap.agreeing == gap.pairings == 9
    assert gap.difference == pytest.approx(np.mean([metric(y, p) for p in strong]) - np.mean([metric(y, p) for p in weak]))
    same = stats.seed_bootstrap(y, strong, strong, metric, 500)
    assert same.difference == 0 and same.ci95[0] <= 0 <= same.ci95[1]
    against = stats.seed_bootstrap(y, strong, [], metric, 500, reference=0.5)
    assert against.difference == pytest.approx(np.mean([metric(y, p) for p in strong]) - 0.5)


def test_seed_noise_widens_the_interval():
    y = np.random.default_rng(4).integers(0, 4, 600)
    metric = stats.macro_f1_over(4)
    steady = [noisy_runs(y, 0.7, 1, 5)[0]] * 3
    spread = noisy_runs(y, 0.55, 1, 6) + noisy_runs(y, 0.7, 1, 7) + noisy_runs(y, 0.85, 1, 8)
    base = noisy_runs(y, 0.7, 3, 9)
    narrow = stats.seed_bootstrap(y, steady, base, metric, 500)
    wide = stats.seed_bootstrap(y, spread, base, metric, 500)
    assert wide.ci95[1] - wide.ci95[0] > narrow.ci95[1] - narrow.ci95[0]


def test_seed_bootstrap_rejects_runs_of_another_length():
    with pytest.raises(ValueError, match="same test split"):
        stats.seed_bootstrap(np.zeros(5), [np.zeros(5)], [np.zeros(4)], stats.macro_f1_over(2), 10)
    with pytest.raises(ValueError, match="at least one run"):
        stats.seed_bootstrap(np.zeros(5), [np.zeros(5)], [], stats.macro_f1_over(2), 10)


# ---- verdicts ----------------------------------------------------------------------------------------------

def interval(ci95, ci90):
    return stats.SeedBootstrap(difference=sum(ci95) / 2, ci95=ci95, ci90=ci90, se=0.01, agreeing=9, pairings=9,
                               distribution=np.zeros(1))


@pytest.mark.parametrize("kind, ci95, ci90, expected", [
    (AT_LEAST, (0.01, 0.05), (0.015, 0.045), REPRODUCED),  # A significantly better
    (AT_LEAST, (-0.015, 0.012), (-0.01, 0.01), EQUIVALENT),  # inside the margin
    (AT_LEAST, (-0.03, 0.06), (-0.015, 0.05), REPRODUCED),  # not worse than the margin (non-inferior)
    (AT_LEAST, (-0.06, 0.03), (-0.05, 0.02), UNDECIDED),
    (AT_LEAST, (-0.09, -0.01), (-0.08, -0.02), CONTRADICTED),  # B significantly better
    (BEATS, (0.01, 0.05), (0.015, 0.045), REPRODUCED),
    (BEATS, (-0.015, 0.012), (-0.01, 0.01), CONTRADICTED),  # equivalent is not "beats"
    (BEATS, (-0.03, 0.06), (-0.02, 0.05), UNDECIDED),
    (MATCHES, (-0.015, 0.012), (-0.01, 0.01), EQUIVALENT),
    (MATCHES, (0.03, 0.08), (0.035, 0.07), CONTRADICTED),  # the whole interval beyond the margin
    (MATCHES, (0.01, 0.05), (0.015, 0.045), UNDECIDED),  # a difference, but not shown to exceed the margin
    (NOT_WORSE, (-0.025, -0.005), (-0.018, -0.008), REPRODUCED),  # worse, but by less than the margin
    (NOT_WORSE, (-0.03, 0.02), (-0.025, 0.015), UNDECIDED),
    (NOT_WORSE, (-0.07, -0.03), (-0.06, -0.035), CONTRADICTED),  # worse by more than the margin
])
def test_the_verdict_follows_from_the_interval_and_the_claim(kind, ci95, ci90, expected):
    assert verdicts.verdict(interval(ci95, ci90), kind, margin=0.02) == expected


def test_an_unknown_claim_or_study_gets_an_error_that_lists_them(capsys):
    with pytest.raises(ledger.UnknownClaim, match="head-vs-instruction"):
        ledger.claim("bert-wins")
    with pytest.raises(SystemExit, match="The ledger holds"):
        cli.main(["ledger", "--profile", "tiny", "--claim", "bert-wins"])
    with pytest.raises(studies.UnknownStudy, match="budget"):
        studies.study_methods("budgets")


# ---- runs still improving at their cap -----------------------------------------------------------------------

def test_a_run_still_improving_at_its_cap_is_planned_again_at_twice_the_cap(monkeypatch):
    profile = get_profile("tiny")
    data = studies.comparison_data(profile)[profile.protocol.train_examples]
    first = specs.spec(profile, studies.COMPARISON, methods.EMBEDDING_HEAD, data, 2, 1e-3, "seed")
    y = np.arange(30) % 3
    improving, flat = record(y, y, (0.4, 0.5, 0.6)), record(y, y, (0.4, 0.6, 0.5, 0.5, 0.5), stopped=True)
    monkeypatch.setattr(specs, "lookup", lambda p, s, verbose=False: improving if s.extension == 0 else flat)
    longer = specs.extensions(profile, first, data, None)
    assert [s.extension for s in longer] == [1]
    assert longer[0].settings["plateau"]["max_epochs"] == 2 * profile.protocol.max_epochs
    assert longer[0].key != first.key and longer[0].tag.endswith("-cap-x2")
    monkeypatch.setattr(specs, "lookup", lambda p, s, verbose=False: improving)
    assert len(specs.extensions(profile, first, data, None)) == profile.protocol.cap_extensions


# ---- the store: a record edited by hand ---------------------------------------------------------------------

def test_a_record_whose_metrics_were_edited_is_not_loaded(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    y = np.arange(30) % 3
    made = dataclasses.replace(record(y, y), key="abc")
    where = store.folder("tiny", "toy", methods.EMBEDDING_HEAD, "n10-seed1", "abc")
    store.write(made, where)
    assert store.read(where).test_metrics == made.test_metrics
    meta = json.loads((where / store.RECORD).read_text())
    meta["test_metrics"]["macro_f1"] = 0.99
    (where / store.RECORD).write_text(json.dumps(meta))
    with pytest.raises(store.StoreError, match="edited after it was written"):
        store.read(where)
    assert store.find("tiny", "toy", methods.EMBEDDING_HEAD, "n10-seed1", "abc") is None
    assert "edited after it was written" in capsys.readouterr().out


# ---- the ledger on the stores ---------------------------------------------------------------------------------

def test_every_claim_gets_a_generated_verdict_on_the_tiny_store(monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    table = ledger.table(get_profile("tiny"), n_resamples=50)
    assert list(table.index) == list(ledger.NAMES)
    assert set(table["verdict"]) <= set(ledger.VERDICTS)


def test_one_verdict_recomputed_by_hand_from_the_stored_predictions(monkeypatch):
    """The news check's head against the frozen probe, from the predictions files with sklearn and a plain loop."""
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile("cpu")
    book = Ledger(profile, n_resamples=400)
    head, probe = Arm(studies.NEWS, methods.EMBEDDING_HEAD), Arm(studies.NEWS, methods.FROZEN_PROBE)
    row = verdicts.compare(book, head, probe, MATCHES)
    folders = {f.name.rsplit("-", 1)[-1]: f for f in store.run_folders("cpu")}  # by key
    arrays = {arm.method: [np.load(folders[r.key] / store.ARRAYS) for r in book.runs(arm)] for arm in (head, probe)}
    y = arrays[head.method][0]["y_true"]
    labels = list(range(int(y.max()) + 1))

    def f1(pred, rows):
        return f1_score(y[rows], pred[rows], labels=labels, average="macro", zero_division=0)

    rng = np.random.default_rng(123)
    diffs = []
    for _ in range(400):
        rows = rng.integers(0, len(y), len(y))
        a = [arrays[head.method][i]["y_pred"] for i in rng.integers(0, len(arrays[head.method]), 3)]
        b = [arrays[probe.method][i]["y_pred"] for i in rng.integers(0, len(arrays[probe.method]), 1)]
        diffs.append(np.mean([f1(p, rows) for p in a]) - np.mean([f1(p, rows) for p in b]))
    lo90, hi90 = np.percentile(diffs, [5, 95])
    lo95, hi95 = np.percentile(diffs, [2.5, 97.5])
    by_hand = interval((lo95, hi95), (lo90, hi90))
    assert row["verdict"] == verdicts.verdict(by_hand, MATCHES, profile.protocol.equivalence_margin)
    observed = np.mean([f1(r["y_pred"], slice(None)) for r in arrays[head.method]]) - np.mean(
        [f1(r["y_pred"], slice(None)) for r in arrays[probe.method]])
    assert f"difference {observed:+.3f}" in row["numbers"]


def test_a_chapters_verdict_line_and_the_ledger_print_one_interval_for_one_comparison(monkeypatch):
    """Chapter 8 shows both: the encoder against the head must not get two intervals from two draws."""
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile("cpu")
    row = verdicts.compare(Ledger(profile, n_resamples=300), Arm(studies.COMPARISON, methods.EMBEDDING_HEAD),
                           Arm(studies.COMPARISON, methods.ENCODER), MATCHES)
    lo, hi = (float(x) for x in re.search(r"95% \[([-+.0-9]+), ([-+.0-9]+)\]", row["numbers"]).groups())
    title = methods.get(methods.ENCODER).title
    line = next(x for x in comparison.verdict_lines(comparison.study_runs(profile), n_resamples=300)
                if f"({title} minus head)" in x)
    assert f"95% interval [{comparison.signed(-hi)}, {comparison.signed(-lo)}]" in line


def test_the_books_ledger_is_the_one_the_cpu_store_gives_now(monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile("cpu")
    committed = ledger._markdown_path(profile).read_text()
    now = ledger.markdown(ledger.table(profile))
    changed = "\n".join(difflib.unified_diff(committed.splitlines(), now.splitlines(), "committed", "now", lineterm=""))
    assert now in committed, (
        "book/generated/claims-cpu.md no longer matches the results store. Fix: python -m tutorial_utils ledger "
        f"--profile cpu --write\n{changed}")


def test_of_a_runs_tries_the_one_best_on_validation_is_kept_and_a_longer_worse_try_settles_it():
    y = np.arange(30) % 3
    first, longer = record(y, y, (0.4, 0.5, 0.6)), record(y, y, (0.3, 0.55, 0.5, 0.5, 0.5), stopped=True)
    kept = experiment.best_try([(1, longer), (0, first)])
    assert kept is first and kept.extra["longer try validation"] == 0.55
    assert run_checks.convergence(kept) == run_checks.CAP  # tried longer, did no better: not a lower bound
    better = record(y, y, (0.5, 0.7, 0.65, 0.65, 0.65), stopped=True)
    assert experiment.best_try([(0, record(y, y, (0.4, 0.5, 0.6))), (1, better)]) is better
    assert run_checks.convergence(record(y, y, (0.4, 0.5, 0.6))) == run_checks.IMPROVING  # no longer try yet


def test_the_distillation_row_is_recomputed_from_the_students_and_their_teachers_predictions(monkeypatch):
    """The tiny store's students against the teachers' test predictions their records keep, with sklearn."""
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    profile = get_profile("tiny")
    book = Ledger(profile, n_resamples=200)
    students = book.runs(Arm(studies.DISTILLATION, methods.STUDENT))
    assert sorted(r.seed for r in students) == list(profile.protocol.seeds)
    out = ledger.row(book, "distillation")
    y = students[0].y_true
    labels = list(range(len(students[0].label_names)))

    def f1(pred):
        return f1_score(y, pred, labels=labels, average="macro", zero_division=0)

    student = [f1(r.y_pred) for r in students]
    teacher = [f1(np.asarray(r.extra["teacher"]["y_pred"])) for r in students]
    assert f"difference {np.mean(student) - np.mean(teacher):+.3f}" in out["numbers"]
    assert f"kept per seed: {student[0] / teacher[0]:.1%}" in out["numbers"]
    assert f"{sum(np.sign(np.subtract(student, teacher)) == np.sign(np.mean(student) - np.mean(teacher)))}/3 students" \
        in out["numbers"]  # each student is paired with its own teacher
    assert f"allows {-(1 - 0.97) * np.mean(teacher):+.3f}" in out["numbers"]
    assert out["verdict"] in ledger.VERDICTS
    if any(run_checks.degenerate(r, profile.protocol.equivalence_margin) for r in students):
        assert out["verdict"] == verdicts.EXCLUDED and "degenerate" in out["numbers"]


def test_a_paired_bootstrap_draws_the_same_seeds_for_both_and_counts_matched_pairs():
    """A student and its own teacher are paired: resampling them together removes the teachers' spread."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    teachers = [np.where(rng.random(300) < q, y, (y + 1) % 3) for q in (0.6, 0.75, 0.9)]  # three teachers apart
    students = [np.where(rng.random(300) < 0.97, t, (t + 1) % 3) for t in teachers]  # each close to its own
    metric = stats.macro_f1_over(3)
    paired = stats.seed_bootstrap(y, students, teachers, metric, 300, paired=True)
    unpaired = stats.seed_bootstrap(y, students, teachers, metric, 300)
    assert paired.pairings == 3 and unpaired.pairings == 9
    assert paired.se < unpaired.se / 2
    assert paired.difference == pytest.approx(unpaired.difference)
    with pytest.raises(ValueError, match="come in pairs"):
        stats.seed_bootstrap(y, students, teachers[:2], metric, 10, paired=True)


@pytest.mark.parametrize("tests, expected", [
    ([CONTRADICTED, verdicts.NOT_RUN], CONTRADICTED),  # one finished comparison that contradicts is enough
    ([REPRODUCED, verdicts.NOT_RUN], verdicts.NOT_RUN),  # a claim that needs every comparison waits for the rest
    ([REPRODUCED, verdicts.EXCLUDED], verdicts.EXCLUDED),
    ([EQUIVALENT, EQUIVALENT], EQUIVALENT),
    ([REPRODUCED, EQUIVALENT], REPRODUCED),
    ([REPRODUCED, UNDECIDED], UNDECIDED),
])
def test_a_claim_of_several_comparisons_holds_when_all_do_and_falls_when_one_does(tests, expected):
    assert verdicts.combined(tests) == expected
