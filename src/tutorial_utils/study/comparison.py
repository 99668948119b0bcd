"""The fair comparison's tables and figures, read from the results store (chapters 06 and 08).

``study_runs`` returns the stored runs of a study and says where they came from (and which runs the store
still lacks); the tables give every method's test metric over seeds (macro-F1; for the multi-label study
micro-F1), the tests against the embedding head (over seeds and test items, and seed by seed), the
validation curves and calibration. ``study_tables`` has the other studies' tables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import methods
from ..evaluation import run_checks, stats
from ..setup.config import PROFILES, Profile, TrainSettings
from ..storage import store
from ..storage.records import RunRecord
from . import experiment, sizing, studies
from .specs import lookup

__all__ = ["results_profile", "study_runs", "multi_label", "headline", "metric_for", "seed_table", "scores_and_training",
           "ending_count", "paired_table", "verdicts", "grid_edges", "verdict_lines", "signed", "chapter_budget", "against_fair",
           "curves"]

_REFERENCE = methods.EMBEDDING_HEAD
_REFERENCES = (methods.EMBEDDING_HEAD, methods.MULTILABEL_HEAD)  # the row every other is tested against


def results_profile(profile: Profile) -> Profile:
    """The profile whose stored runs chapter 08 shows: this one, unless it needs a GPU, its store is empty and
    making the store takes hours (the gpu and paper profiles on a fresh clone): then the committed cpu runs.

    When ``COURSE_RESULTS`` points at a folder without cpu runs either (a Google Drive folder made for the gpu
    runs), the committed ones are read from the checkout's ``results/``: ``COURSE_RESULTS`` is set to it, and
    said, rather than starting the cpu reproduction (hours) in the chapter.
    """
    if not profile.needs_gpu or store.run_folders(profile.name):
        return profile
    hours = sum(sizing.seconds(w, profile) for w in sizing.reproduction_work(profile)) / 3600
    print(f"results/{profile.name}/ holds no runs, and making them takes about {hours:.0f} hours on a T4 by the "
          "estimate in book/costs.md: more than one session of a chapter. This chapter shows the cpu profile's runs, "
          "which the repository keeps (SmolLM2-135M and MiniLM on IPC titles). To make this profile's own: python -m "
          f"tutorial_utils reproduce --profile {profile.name} (it resumes where it stopped, and {store.RESULTS_ENV} can "
          "point it at a Google Drive folder, where its runs outlive the runtime).")
    if not store.run_folders("cpu") and store.run_folders("cpu", base=store.COMMITTED):
        print(f"{store.RESULTS_ENV} points at {store.root()}, which holds no cpu runs either: this session now reads "
              f"the store in {store.COMMITTED} ({store.RESULTS_ENV} set to it).")
        os.environ[store.RESULTS_ENV] = str(store.COMMITTED)
    return PROFILES["cpu"]


def study_runs(profile: Profile, study: str = studies.COMPARISON, verbose: bool = True,
               compute: bool = False, only: Sequence[str] | None = None) -> dict[str, list[RunRecord]]:
    """The study's runs by method, as the results store holds them (their provenance summarised); the runs the
    plan still needs are listed with the command that makes them. Reading never trains: only ``compute=True``
    computes the missing runs here, as ``reproduce`` would (and with ``COURSE_RECOMPUTE=1`` every run again).

    ``study``: one of ``studies.STUDIES`` (the comparison comes with its data-efficiency study, which
    chapter 08 shows beside it). ``only``: the methods a chapter shows, in this study only (the others are
    neither loaded nor computed).
    """
    for name in only or ():
        methods.get(name)  # an unknown name fails here, listing the registry
    recompute = store.recompute_requested()
    wanted = {study, studies.EFFICIENCY} if study == studies.COMPARISON and not only else {study}
    specs = [s for s in experiment.plan(profile, studies=wanted)
             if s.study in wanted and (not only or s.method in only)]
    missing = [s for s in specs if lookup(profile, s) is None]
    selected = f" --only {' '.join(only)}" if only else ""
    if (missing or recompute) and compute:
        if verbose:
            print(f"{'recomputing' if recompute else 'computing'} {len(missing) if not recompute else 'all'} runs "
                  f"that the results store lacks (python -m tutorial_utils reproduce --profile {profile.name}{selected} "
                  "does the same)")
        experiment.reproduce(profile, only=list(only) if only else None, recompute=recompute,
                             progress=print if verbose else (lambda _: None), studies=wanted)
    elif missing and verbose:
        by_study: dict[str, set[str]] = {}
        for s in missing:
            by_study.setdefault(s.study, set()).add(s.method)
        said = "; ".join(f"{name}: {', '.join(sorted(names))}" for name, names in by_study.items())
        planned = f"{len(specs)} runs planned so far for these methods" if only else \
            f"{max(len(specs), experiment.expected_runs(profile, wanted))} runs the plan needs so far"
        print(f"the results store holds {len(specs) - len(missing)} of the {planned}; missing now ({said}), and the "
              f"seeds and sizes their grids decide. The tables below leave them out. Make them with: "
              f"python -m tutorial_utils reproduce --profile {profile.name}{selected}")
    found = {m: runs for m, runs in experiment.records_of(profile, study).items() if not only or m in only}
    if verbose:
        print(_provenance_line(profile, [r for runs in found.values() for r in runs]))
    return found


def _provenance_line(profile: Profile, found: list[RunRecord]) -> str:
    """Where a set of stored runs came from: how many, when, on what, how long, and how to recompute them."""
    if not found:
        return "no stored runs"
    p = [r.provenance for r in found]
    days = sorted({x["finished_at"][:10] for x in p})
    machines = sorted({x["machine"] for x in p})
    commits = sorted({str(x["git_commit"])[:10] for x in p})
    hours = sum(x["wall_seconds"] for x in p) / 3600
    return (f"{len(found)} runs from the results store (results/{profile.name}/), made {' to '.join([days[0], days[-1]][:len(days)])} "
            f"on {'; '.join(machines)}, {hours:.1f} h of compute in all, code at commit {', '.join(commits)}.\n"
            f"To recompute them: python -m tutorial_utils reproduce --profile {profile.name} --recompute")


def multi_label(record: RunRecord) -> bool:
    """True for a multi-label run (its labels are a 0/1 matrix)."""
    return np.ndim(record.y_true) == 2


def headline(record: RunRecord) -> tuple[str, str]:
    """The study's test metric, as (record key, the name tables show): macro-F1, or micro-F1 for multi-label."""
    return ("micro_f1", "micro-F1") if multi_label(record) else ("macro_f1", "macro-F1")


def metric_for(record: RunRecord):
    """The study's test metric as a bootstrap-ready callable: macro-F1 over the dataset's classes, or micro-F1."""
    return stats.micro_f1 if multi_label(record) else stats.macro_f1_over(len(record.label_names))


def _reference_of(found: dict[str, list[RunRecord]]) -> str:
    """The embedding head of a study (single- or multi-label): the row the paired tests compare with."""
    return next((name for name in _REFERENCES if name in found), _REFERENCE)


def seed_table(found: dict[str, list[RunRecord]]) -> pd.DataFrame:
    """One row per method: training examples, parameters, chosen value, epochs, the test metric over seeds.

    The metric is macro-F1 (accuracy beside it), or for a multi-label study micro-F1 (macro-F1 beside it).

    "plateau reached" counts the runs whose validation stopped improving for the protocol's patience;
    "still improving" those whose best evaluation was their last (a lower bound: the protocol trains them
    again with a longer cap, and the table shows each seed's try best on validation); "degenerate" those that predict
    (nearly) one thing for every text or score within the margin of a constant guess (``run_checks``).
    """
    rows = []
    for name, runs in found.items():
        entry = methods.get(name)
        (key, shown), second = headline(runs[0]), ("macro_f1", "macro-F1") if multi_label(runs[0]) else ("accuracy", "accuracy")
        f1 = np.array([r.test_metrics[key] for r in runs])
        value = _tuned_value(runs[0])
        rows.append({"method": entry.title, "family": entry.family,
                     "train examples": runs[0].train_examples if entry.learns else 0,
                     "trainable params": runs[0].trainable_params,
                     "tuned": f"{_SHORT.get(entry.tuned, entry.tuned)} {value:.3g}" if entry.tuned else "-",
                     "best epoch (mean)": round(float(np.mean([r.best_epoch for r in runs])), 2) if runs[0].best_epoch
                     else "-",  # a method without epochs: a dash, not "nan"
                     "plateau reached": _plateau_count(runs),
                     "still improving": ending_count(runs, run_checks.IMPROVING),
                     "degenerate": _degenerate_count(runs),
                     "seeds": len(runs), f"{shown} mean": f1.mean(), f"{shown} sd": f1.std(ddof=1) if len(f1) > 1 else 0.0,
                     f"{shown} min": f1.min(), f"{shown} max": f1.max(),
                     f"{second[1]} mean": np.mean([r.test_metrics[second[0]] for r in runs])})
    return pd.DataFrame(rows).set_index("method")


_SHORT = {"learning_rate": "lr"}  # a setting's name as a narrow table column shows it
_PROSE = {"learning_rate": "learning rate"}  # ... and as a sentence says it


def _tuned_value(run: RunRecord) -> float | None:
    """The value a run's grid chose on validation: its learning rate, or TF-IDF's and the probe's C."""
    return run.settings.get("learning_rate", run.settings.get("C"))


def scores_and_training(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``seed_table`` as two tables that fit a page: the test scores over the seeds, and how each method was trained
    and stopped (chapter 08 shows them one above the other; the family column, a grouping the method's name
    already says, is left out so that the second table fits the page)."""
    scores = ["seeds", *[c for c in table.columns if c.endswith((" mean", " sd", " min", " max"))]]
    return table[scores], table.drop(columns=[*scores, "family"])


def _plateau_count(runs: list[RunRecord]) -> str:
    """How many of a method's runs reached a validation plateau (``run_checks.convergence``): "2/3", or "-"."""
    return ending_count(runs, run_checks.PLATEAU)


def ending_count(runs: list[RunRecord], ending: str) -> str:
    """How many of a method's runs ended this way (``run_checks.convergence``): "1/3", or "-" without curves."""
    ends = [run_checks.convergence(r) for r in runs]
    return "-" if any(e is None for e in ends) else f"{ends.count(ending)}/{len(ends)}"


def _degenerate_count(runs: list[RunRecord], margin: float = 0.02) -> str:
    """How many of a method's runs are degenerate (``run_checks.degenerate``): "0/3"."""
    return f"{sum(run_checks.degenerate(r, margin) is not None for r in runs)}/{len(runs)}"


def paired_table(found: dict[str, list[RunRecord]], reference: str | None = None, n_resamples: int = 1000) -> pd.DataFrame:
    """Each method against the reference (default: the study's embedding head), seed by seed: the difference in
    the study's metric (macro-F1, or micro-F1 multi-label), its paired 95% bootstrap interval and p.

    A method that a seed does not change (one run) is paired with every seed of the reference. The
    verdicts use the paired bootstrap of that metric (the one the table reports), Holm-adjusted over the
    rows of one seed (the comparisons that seed's table makes); McNemar's test (on which examples each
    gets right, i.e. accuracy; multi-label: every label of the example right) is shown beside it, as
    chapter 06 teaches.
    """
    reference = reference or _reference_of(found)
    ref = {r.seed: r for r in found[reference]}
    rows = []
    for name, runs in found.items():
        if name == reference:
            continue
        own = {r.seed: r for r in runs}
        for seed, base in ref.items():
            run = own.get(seed, runs[0] if len(runs) == 1 else None)
            if run is None:
                continue
            if not np.array_equal(run.y_true, base.y_true):
                raise ValueError(f"{name} and {reference} were scored on different test examples; compare on one split.")
            boot = stats.paired_bootstrap(run.y_true, run.y_pred, base.y_pred, metric_for(base), n_resamples, seed=seed)
            rows.append({"method": methods.get(name).title, "seed": seed, "difference (method - head)": boot.difference,
                         "CI low": boot.ci_low, "CI high": boot.ci_high, "bootstrap p": boot.p_value_two_sided,
                         f"McNemar p ({'exact match' if multi_label(base) else 'accuracy'})":
                             stats.mcnemar_test(run.y_true, run.y_pred, base.y_pred).pvalue})
    table = pd.DataFrame(rows)
    if len(table):
        table["Holm p (per seed)"] = table.groupby("seed")["bootstrap p"].transform(
            lambda p: stats.holm_bonferroni(p.to_numpy()))
    return table


def verdicts(paired: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per method: in how many seeds the head is significantly better, worse, or not told apart (Holm-adjusted)."""
    rows = []
    for method, group in paired.groupby("method", sort=False):
        significant = group["Holm p (per seed)"] < alpha
        diff = group["difference (method - head)"]
        rows.append({"method": method, "seeds": len(group), "mean difference": diff.mean(),
                     "method better": int((significant & (diff > 0)).sum()),
                     "head better": int((significant & (diff < 0)).sum()), "not told apart": int((~significant).sum())})
    return pd.DataFrame(rows).set_index("method")


def _verdict_sentence(table: pd.Series, method: str, metric: str = "macro-F1") -> str:
    """A sentence for one method's row of ``verdicts``: generated from the numbers, never typed by hand.

    ``metric``: the name of the metric the difference is in (micro-F1 for the multi-label study).
    """
    n, better, worse = int(table["seeds"]), int(table["method better"]), int(table["head better"])
    diff = table["mean difference"]
    every = {1: "in the one seed stored", 2: "in both seeds"}.get(n, f"in all {n} seeds")
    if worse == n:
        verdict = f"the embedding head beats {method} {every}"
    elif better == n:
        verdict = f"{method} beats the embedding head {every}"
    elif better == 0 and worse == 0:
        verdict = f"the test cannot tell {method} from the embedding head {every}"
    else:
        verdict = (f"the verdict on {method} depends on the seed (head better in {worse}, {method} better in "
                   f"{better}, not told apart in {n - better - worse} of {n})")
    return f"{verdict}; mean {metric} difference {diff:+.3f} ({method} minus head)."


def grid_edges(profile: Profile, found: dict[str, list[RunRecord]]) -> list[str]:
    """The methods whose chosen value is an end of the values tried, as sentences: the protocol grows a grid past
    an end that wins outright (``Protocol.grid_extensions`` times at most), so an end is left only at that
    limit, or where it ties with its neighbour."""
    out, plans = [], {}
    for name, runs in found.items():
        entry, study = methods.get(name), runs[0].extra.get("study", studies.COMPARISON)
        if entry.tuned is None:
            continue
        if study not in plans:  # one plan per study, not one per method
            plans[study] = experiment.plan(profile, studies=(study,))
        tried = sorted(s.value for s in plans[study] if s.study == study and s.method == name and s.role == "grid")
        if len(tried) < 2:
            continue
        grown = len(tried) - len(profile.protocol.grid)
        value = _tuned_value(runs[0])
        for end, word, other in ((tried[-1], "largest", "larger"), (tried[0], "smallest", "smaller")):
            if np.isclose(value, end):
                why = (f"the grid grown {grown} step(s) past its ends, the protocol's limit"
                       if grown >= profile.protocol.grid_extensions else
                       "it ties with its neighbour, so the grid was not grown")
                out.append(f"{entry.title}: the chosen {entry.tuned} {value:.3g} is the {word} value tried ({why}), "
                           f"so a {other} one might do better")
    return out


def verdict_lines(found: dict[str, list[RunRecord]], n_resamples: int = 1000, margin: float = 0.02) -> list[str]:
    """One generated sentence per method against the embedding head: the seed-mean difference with its
    two-level bootstrap interval (seeds and test items resampled, ``stats.seed_bootstrap``), the seed
    pairings whose sign agrees, and what the interval says at the equivalence ``margin``. A degenerate
    run, or one still improving at its cap, is named and enters no verdict."""
    reference = _reference_of(found)
    base = found[reference]
    shown = headline(base[0])[1]
    lines = []
    for name, runs in found.items():
        if name == reference:
            continue
        title = methods.get(name).title
        left_out = run_checks.exclusions(base, margin) + run_checks.exclusions(runs, margin, name == methods.ZERO_SHOT)
        if not np.array_equal(runs[0].y_true, base[0].y_true):
            raise ValueError(f"{name} and {reference} were scored on different test examples; compare on one split.")
        # drawn head first, as the claims ledger draws it, so both print the same interval for one comparison
        test = stats.seed_bootstrap(base[0].y_true, [r.y_pred for r in base], [r.y_pred for r in runs],
                                    metric_for(base[0]), n_resamples).reversed()
        said = _seed_verdict(title, test, margin, shown)
        lines.append(f"{title}: no verdict, since {'; '.join(left_out)} (the numbers: {said})" if left_out else said)
    return lines


def _seed_verdict(method: str, test: stats.SeedBootstrap, margin: float, metric: str = "macro-F1") -> str:
    """A sentence for one method against the head from the two-level bootstrap: generated, never typed by hand."""
    (lo, hi), (lo90, hi90) = test.ci95, test.ci90
    if lo > 0:
        said = f"{method} beats the embedding head"
    elif hi < 0:
        said = f"the embedding head beats {method}"
    elif -margin < lo90 and hi90 < margin:
        said = f"{method} and the embedding head are equivalent within {margin:g}"
    else:
        said = (f"the test cannot tell {method} from the embedding head (it would detect a difference of about "
                f"{test.detectable:.3f})")
    return (f"{said}: seed-mean {metric} difference {signed(test.difference)} ({method} minus head), 95% interval "
            f"[{signed(lo)}, {signed(hi)}] over seeds and test items; {test.agreeing} of {test.pairings} seed pairings "
            "have that sign.")


def signed(x: float) -> str:
    """A difference to three decimals with its sign, without "-0.000" for a tiny negative."""
    return f"{0.0 if abs(x) < 5e-4 else x:+.3f}"


def chapter_budget(examples: int, settings: TrainSettings, noun: str = "examples") -> str:
    """How a chapter trained its short run, for ``against_fair`` (chapters 02, 04, 05): for example
    "2,000 examples, 1 epoch, learning rate 0.001"."""
    epochs = f"{settings.epochs:g} epoch{'' if settings.epochs == 1 else 's'}"
    return f"{examples:,} {noun}, {epochs}, learning rate {settings.learning_rate:g}"


def against_fair(method: str, chapter_f1: float, budget: str, found: dict[str, list[RunRecord]]) -> str:
    """A chapter's short run of ``method`` next to the same method under the fair protocol, as a sentence.

    ``budget`` says how the chapter trained it (``chapter_budget``).
    """
    entry = methods.get(method)
    shown = "micro-F1" if entry.task == methods.MULTI_LABEL else "macro-F1"
    mine = f"This chapter's {entry.title} ({budget}) reached test {shown} {chapter_f1:.3f}"
    if not found.get(method):
        return f"{mine}; the results store holds no fair-comparison run of it yet (python -m tutorial_utils reproduce)."
    row = seed_table({method: found[method]}).iloc[0]
    ends = (f"a validation plateau in {row['plateau reached']} runs" if row["plateau reached"] != "-" else
            "convergence")
    improving = (f", still improving at the cap in {row['still improving']}"
                 if row["still improving"] not in {"-"} and not row["still improving"].startswith("0/") else "")
    tuned = f"{_PROSE.get(entry.tuned, entry.tuned)} {_tuned_value(found[method][0]):.3g}" if entry.tuned else "-"
    trained = (f"{row['train examples']:,} examples, {tuned} chosen on validation, trained until validation "
               f"stopped improving or the epoch cap ({ends}{improving}; best epoch {row['best epoch (mean)']:.1f} on "
               "average)" if entry.learns and row["best epoch (mean)"] != "-" else
               f"{row['train examples']:,} examples, {tuned} chosen on validation" if entry.learns
               else "no training")
    spread = f" (sd {row[f'{shown} sd']:.3f})" if row["seeds"] > 1 else ""
    return (f"{mine}. Under the fair protocol ({trained}) it reaches {row[f'{shown} mean']:.3f}, the mean over "
            f"{row['seeds']} seed{'s' if row['seeds'] > 1 else ''}{spread}.")


def curves(found: dict[str, list[RunRecord]], seed: int | None = None) -> pd.DataFrame:
    """The validation curves of the trained methods (one seed, default the first): method, epoch, and the
    validation metric (a column named for it: "validation macro-F1", or "validation micro-F1" multi-label).
    Methods read out of one training (instruction tuning, scored and generated) share one curve, drawn once."""
    shown: dict[tuple, list[str]] = {}  # a curve -> the titles of the methods whose run it is
    for name, runs in found.items():
        for r in runs:
            if r.validation_curve and (seed is None and r is runs[0] or r.seed == seed):
                curve = (headline(r)[1], r.best_epoch, *((p["epoch"], p["value"]) for p in r.validation_curve))
                shown.setdefault(curve, []).append(methods.get(name).title)
    rows = []
    for (metric, best, *points), titles in shown.items():
        stem = os.path.commonprefix(titles)
        title = (titles[0] if len(titles) == 1 else
                 f"{stem}{' / '.join(t[len(stem):] for t in titles)} (one training)")
        rows += [{"method": title, "epoch": epoch, f"validation {metric}": value, "best": epoch == best}
                 for epoch, value in points]
    return pd.DataFrame(rows)
