"""The tables of the studies beside the comparison: data efficiency, the budget axis, the ablations and
calibration, read from the results store (chapter 08; ``comparison`` has the comparison's own tables).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import methods
from ..evaluation import run_checks, stats
from ..evaluation.metrics import expected_calibration_error, fit_temperature, negative_log_likelihood, softmax
from ..setup import budgets
from ..setup.config import Profile
from ..storage.records import RunRecord
from . import comparison, experiment, studies

__all__ = ["efficiency_table", "budget_axis_table", "crossing_sentence", "ablation_table", "calibration_table",
           "multilabel_calibration_table", "calibration_sentence"]


def efficiency_table(profile: Profile, fair: dict[str, list[RunRecord]], n_resamples: int = 1000) -> pd.DataFrame:
    """Macro-F1 against the number of training examples, per method: the mean over the seeds stored at each size,
    with a 95% two-level bootstrap interval (seeds and test items resampled) and the seeds' range. ``fair``: the
    comparison's runs (``comparison.study_runs``), its largest size."""
    smaller = experiment.records_of(profile, studies.EFFICIENCY)
    rows = []
    for name in studies.EFFICIENCY_METHODS:
        by_size: dict[int, list[RunRecord]] = {}
        for r in smaller.get(name, []) + fair.get(name, []):
            by_size.setdefault(r.train_examples, []).append(r)
        for n, runs in by_size.items():
            test = stats.seed_bootstrap(runs[0].y_true, [r.y_pred for r in runs], [], comparison.metric_for(runs[0]),
                                        n_resamples, reference=0.0)
            scores = [r.test_metrics["macro_f1"] for r in runs]
            rows.append({"method": methods.get(name).title, "train examples": n, "seeds": len(runs),
                         "macro-F1": test.difference, "CI low": test.ci95[0], "CI high": test.ci95[1],
                         "seed min": min(scores), "seed max": max(scores),
                         "still improving": comparison.ending_count(runs, run_checks.IMPROVING),
                         "trainable params": runs[0].trainable_params})
    return pd.DataFrame(rows).sort_values(["method", "train examples"]).reset_index(drop=True)


def budget_axis_table(profile: Profile) -> pd.DataFrame:
    """The budget axis: each LLM method's test metric (seed mean, range) at each LoRA budget, on the single- and
    multi-label tasks, with its trainable parameters and their share of the model (chapter 08's figure)."""
    arch = budgets.ARCH_OF.get(profile.causal_lm)
    total = budgets.base_parameters(budgets.KNOWN_ARCHS[arch], budgets.TIED_EMBEDDINGS[arch]) if arch else None
    rows = []
    for task, base, study, names in (
            ("patents (single-label)", studies.COMPARISON, studies.BUDGET, studies.BUDGET_METHODS),
            ("software tags (multi-label)", studies.MULTILABEL, studies.MULTILABEL_BUDGET,
             studies.MULTILABEL_BUDGET_METHODS)):
        for lora, where, variant in ((profile.lora, base, ""), *((b, study, studies.lora_tag(b))
                                                                 for b in profile.protocol.budgets)):
            found = experiment.records_of(profile, where, variant)
            for name in names:
                runs = found.get(name, [])
                if not runs:
                    continue
                key, shown = comparison.headline(runs[0])
                scores = [r.test_metrics[key] for r in runs]
                rows.append({"task": task, "method": methods.get(name).title, "LoRA": studies.lora_tag(lora),
                             "trainable params": runs[0].trainable_params,
                             "share of the model": runs[0].trainable_params / total if total else np.nan,
                             "seeds": len(runs), "metric": shown, "mean": float(np.mean(scores)), "min": min(scores),
                             "max": max(scores), "still improving": comparison.ending_count(runs, run_checks.IMPROVING)})
    return pd.DataFrame(rows)


def _crossings(table: pd.DataFrame, a: str, b: str) -> list[tuple[int, int]]:
    """Adjacent training-set sizes between which method ``a``'s line crosses ``b``'s (their macro-F1 order flips)."""
    wide = table.pivot(index="train examples", columns="method", values="macro-F1")[[a, b]].dropna()
    sign = np.sign(wide[a] - wide[b]).to_numpy()
    sizes = list(wide.index)
    return [(sizes[i], sizes[i + 1]) for i in range(len(sign) - 1) if sign[i] * sign[i + 1] < 0]


def crossing_sentence(table: pd.DataFrame, a: str, b: str) -> str:
    """Where the data-efficiency lines of ``a`` and ``b`` cross, as a sentence (or why it cannot be said yet)."""
    wide = table.pivot(index="train examples", columns="method", values="macro-F1")
    shared = wide[[a, b]].dropna() if {a, b} <= set(wide.columns) else wide.iloc[0:0]
    if len(shared) < 2:
        return f"{a} and {b}: fewer than two training-set sizes are stored for both, so no crossing can be read yet"
    where = _crossings(table, a, b)
    if not where:
        ahead = a if (shared[a] - shared[b]).mean() > 0 else b
        return (f"{a} and {b} do not cross between {shared.index.min():,} and {shared.index.max():,} examples: "
                f"{ahead} stays ahead{_weak_points(table, (a, b), set(shared.index))}")
    return (f"{a} and {b} cross " + ", ".join(f"between {x:,} and {y:,} examples" for x, y in where)
            + _weak_points(table, (a, b), {n for pair in where for n in pair}))


def _weak_points(table: pd.DataFrame, names: tuple[str, str], sizes: set[int]) -> str:
    """What a crossing sentence rests on that is weaker than the rest: a size with fewer seeds than the method has
    elsewhere, or runs still improving at their cap (a lower bound), among the sizes the sentence reads."""
    notes = []
    for name in names:
        own = table[table["method"] == name]
        read = own[own["train examples"].isin(sizes)]
        few = read[read["seeds"] < own["seeds"].max()]["train examples"]
        rising = read[read["still improving"].map(lambda x: x != "-" and not x.startswith("0/"))]["train examples"]
        if len(few):
            notes.append(f"{name} has fewer seeds at {_listed(few)} examples")
        if len(rising):
            notes.append(f"{name} was still improving at its cap at {_listed(rising)} examples, its score there a lower bound")
    return f" (read with care: {'; '.join(notes)})" if notes else ""


def _listed(sizes: pd.Series) -> str:
    """Training-set sizes as words: "100", "100 and 300", "100, 300 and 800"."""
    words = [f"{n:,}" for n in sorted(sizes)]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def ablation_table(profile: Profile) -> pd.DataFrame:
    """The ablations under the protocol (pooling, verbalizer, head init): each setting's test macro-F1 (seed mean
    and range) beside the default setting's runs (the comparison's, or the data-efficiency study's at a smaller
    size); a setting not yet stored is left out."""
    sizes = sorted(studies.comparison_data(profile, profile.protocol.efficiency_sizes))
    smaller = experiment.records_of(profile, studies.EFFICIENCY)
    rows = []
    for study, (field, tried) in studies.ABLATIONS.items():
        base = experiment.records_of(profile, studies.BASE_STUDY[study])
        for n in sizes if study in studies.SMALL_SETS_TOO else sizes[-1:]:
            for name in studies.study_methods(study):
                if methods.get(name).trained_with:  # shares another method's training: its row is that method's
                    continue
                default = base.get(name, []) if n == sizes[-1] else [r for r in smaller.get(name, [])
                                                                      if r.train_examples == n]
                for setting, runs in ((getattr(profile, field), default),
                                      *((v, experiment.records_of(profile, study, v, train_size=n).get(name, []))
                                        for v in tried)):
                    if not runs:
                        continue
                    scores = [r.test_metrics["macro_f1"] for r in runs]
                    rows.append({"ablation": study, "method": methods.get(name).title, "train examples": n,
                                 "setting": setting, "seeds": len(runs), "macro-F1 mean": float(np.mean(scores)),
                                 "min": min(scores), "max": max(scores),
                                 "still improving": comparison.ending_count(runs, run_checks.IMPROVING)})
    return pd.DataFrame(rows)


def calibration_table(found: dict[str, list[RunRecord]], y_validation) -> pd.DataFrame:
    """How well each method's probabilities are calibrated on test, before and after a temperature fitted on
    validation (means over seeds): expected calibration error, negative log-likelihood, the temperature.

    ``y_validation``: the study's validation labels (every run of a study shares its validation split).
    """
    y_val, rows = np.asarray(y_validation), []
    for name, runs in found.items():
        if methods.get(name).trained_with:  # its validation probabilities are another read-out's (scored labels)
            continue
        cells = []
        for r in runs:
            if r.val_probs is None:
                continue
            t = fit_temperature(np.log(np.clip(r.val_probs, 1e-12, None)), y_val)
            scaled = softmax(np.log(np.clip(r.probs, 1e-12, None)), temperature=t)
            cells.append((expected_calibration_error(r.probs, r.y_true), negative_log_likelihood(r.probs, r.y_true),
                          t, expected_calibration_error(scaled, r.y_true), negative_log_likelihood(scaled, r.y_true)))
        if cells:
            mean, ece = np.mean(cells, axis=0), [c[0] for c in cells]
            rows.append({"method": methods.get(name).title, "seeds": len(cells), "test ECE": mean[0],
                         "test ECE min": min(ece), "test ECE max": max(ece),
                         "test NLL": mean[1], "temperature (fit on validation)": mean[2],
                         "test ECE after": mean[3], "test NLL after": mean[4]})
    return pd.DataFrame(rows).set_index("method")


def multilabel_calibration_table(found: dict[str, list[RunRecord]]) -> pd.DataFrame:
    """Calibration of the multi-label methods with probabilities: each (text, tag) decision's probability against
    its 0/1 truth (ECE over every decision), as the seed mean and range. Instruction tuning's generated lists
    are 0/1 answers, not probabilities, and are left out."""
    rows = []
    for name, runs in found.items():
        flat = [(r.probs.reshape(-1), np.asarray(r.y_true).reshape(-1).astype(int)) for r in runs
                if np.ndim(r.probs) == 2 and not np.isin(r.probs, (0.0, 1.0)).all()]
        if not flat:
            continue
        ece = [expected_calibration_error(np.stack([1 - p, p], axis=1), y) for p, y in flat]
        rows.append({"method": methods.get(name).title, "seeds": len(ece), "decision ECE": float(np.mean(ece)),
                     "min": min(ece), "max": max(ece)})
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def calibration_sentence(table: pd.DataFrame) -> str:
    """Which method is best calibrated as trained, said only when its worst seed beats every other method's best
    seed (ECE); otherwise which methods' seed ranges overlap."""
    order = table.sort_values("test ECE")
    best, rest = order.index[0], order.iloc[1:]
    if len(rest) and order.loc[best, "test ECE max"] < rest["test ECE min"].min():
        return (f"best calibrated as trained, in every seed: {best} (ECE {order.loc[best, 'test ECE']:.3f}, seeds "
                f"{order.loc[best, 'test ECE min']:.3f}-{order.loc[best, 'test ECE max']:.3f})")
    overlap = [m for m in rest.index if rest.loc[m, "test ECE min"] <= order.loc[best, "test ECE max"]]
    return (f"no method is best calibrated in every seed: the lowest mean ECE, {best}'s "
            f"{order.loc[best, 'test ECE']:.3f} (seeds {order.loc[best, 'test ECE min']:.3f}-"
            f"{order.loc[best, 'test ECE max']:.3f}), overlaps the seed range of {', '.join(overlap)}")
