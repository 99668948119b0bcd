"""Is system A really better than system B? McNemar's test, paired bootstrap intervals, Holm's correction.

Two systems scored on the same test examples are paired: each example is hard or easy for both. The
tests here use that pairing, which makes them far more sensitive than comparing two independent
intervals. Taught in chapter 06 (statistical testing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import binom, chi2

from ..setup.checks import check_same_shape

__all__ = ["Metric", "EXACT_BELOW", "McNemarResult", "BootstrapResult", "accuracy", "macro_f1", "macro_f1_over",
           "present_classes", "micro_f1", "mcnemar_table", "mcnemar_test", "paired_bootstrap", "bootstrap_ci",
           "holm_bonferroni", "compare_pairs", "SeedBootstrap", "seed_bootstrap"]

Metric = Callable[[np.ndarray, np.ndarray], float]
EXACT_BELOW = 25  # mcnemar_test uses the exact binomial test when fewer than this many examples are discordant


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test: the statistic, its p-value, the discordant counts b and c, and the method used."""

    statistic: float
    pvalue: float
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    method: str

    def __str__(self) -> str:
        return (f"McNemar ({self.method}): b = {self.b}, c = {self.c}, statistic {self.statistic:.2f}, "
                f"p = {self.pvalue:.2g}")


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """A paired bootstrap of metric(A) - metric(B): the observed difference, its interval, a p-value, the resamples."""

    difference: float
    ci_low: float
    ci_high: float
    p_value_two_sided: float
    distribution: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        return (f"difference {self.difference:+.3f}, interval [{self.ci_low:+.3f}, {self.ci_high:+.3f}], "
                f"p = {self.p_value_two_sided:.2g}")


def accuracy(y_true, y_pred) -> float:
    """The share of examples predicted exactly right; for label matrices, rows with every label right."""
    return float(_row_correct(*check_same_shape(y_true, y_pred)).mean())


def macro_f1(y_true, y_pred) -> float:
    """The unweighted mean of per-label F1, as sklearn's f1_score(average="macro", zero_division=0), but fast.

    For class ids, the labels are those present in y_true or y_pred; for 0/1 label matrices, every column.
    """
    y_true, y_pred = check_same_shape(y_true, y_pred)
    if y_true.ndim == 2:
        tp = ((y_true == 1) & (y_pred == 1)).sum(axis=0)
        denominator = (y_true == 1).sum(axis=0) + (y_pred == 1).sum(axis=0)  # 2 tp + fp + fn
    else:
        classes, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
        t, p = codes[:len(y_true)], codes[len(y_true):]
        tp = np.bincount(t[t == p], minlength=len(classes))
        denominator = np.bincount(t, minlength=len(classes)) + np.bincount(p, minlength=len(classes))
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
    return float(f1.mean())


def macro_f1_over(n_classes: int) -> Metric:
    """Macro-F1 over the classes 0..n-1 that occur in the labels or the predictions, as a metric callable; a
    prediction of -1 (unparsable) is wrong. A class that occurs in neither has no F1 and is left out of the mean,
    as scikit-learn leaves it out (scoring it 0 would mark perfect predictions down); ``present_classes`` names them.

    Unlike ``macro_f1`` an unparsable answer never becomes a class of its own (chapter 08's tables).
    """
    def metric(y_true, y_pred) -> float:
        y, p = np.asarray(y_true), np.asarray(y_pred)
        if y.shape != p.shape:
            raise ValueError(f"y_true has shape {y.shape} but y_pred has shape {p.shape}. Fix: one prediction per label.")
        tp = np.bincount(y[y == p], minlength=n_classes)[:n_classes]
        denominator = (np.bincount(y, minlength=n_classes)[:n_classes]
                       + np.bincount(p[p >= 0], minlength=n_classes)[:n_classes])
        scored = denominator > 0
        return float((2.0 * tp[scored] / denominator[scored]).mean()) if scored.any() else 0.0

    return metric


def present_classes(y_true, y_pred, n_classes: int) -> list[int]:
    """The class ids 0..n-1 a single-label macro-F1 averages over: those in the labels or the predictions."""
    seen = set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist())
    return [c for c in range(n_classes) if c in seen]


def micro_f1(Y_true, Y_pred) -> float:
    """F1 over all (example, label) decisions of 0/1 label matrices; for class ids it equals accuracy."""
    Y_true, Y_pred = check_same_shape(Y_true, Y_pred, ("Y_true", "Y_pred"))
    if Y_true.ndim == 1:
        return accuracy(Y_true, Y_pred)
    tp = ((Y_true == 1) & (Y_pred == 1)).sum()
    denominator = (Y_true == 1).sum() + (Y_pred == 1).sum()
    return float(2.0 * tp / denominator) if denominator else 0.0


def _check_paired(y_true, pred_a, pred_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gold labels and both systems' predictions as arrays of one shape, or a ValueError saying what differs."""
    y, a = check_same_shape(y_true, pred_a, ("y_true", "pred_a"))
    _, b = check_same_shape(y_true, pred_b, ("y_true", "pred_b"))
    return y, a, b


def _row_correct(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per example, whether the prediction is right (for label matrices: all labels of the row right)."""
    correct = y_true == y_pred
    return correct.all(axis=tuple(range(1, correct.ndim))) if correct.ndim > 1 else correct


def mcnemar_table(y_true, pred_a, pred_b) -> np.ndarray:
    """The 2x2 table [[both right, A right B wrong], [A wrong B right, both wrong]] of two paired systems."""
    y, a, b = _check_paired(y_true, pred_a, pred_b)
    right_a, right_b = _row_correct(y, a), _row_correct(y, b)
    return np.array([[np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
                     [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)]])


def mcnemar_test(y_true, pred_a, pred_b, exact: bool | None = None) -> McNemarResult:
    """McNemar's test of equal error rates, from the b (A right, B wrong) and c (A wrong, B right) examples.

    Under the null hypothesis each discordant example is a fair coin flip: b ~ Binomial(b + c, 1/2).
    ``exact=None`` uses that binomial test when b + c < 25, else the chi-square approximation with
    continuity correction, ``max(abs(b - c) - 1, 0)**2 / (b + c)`` with 1 degree of freedom. With b = c the
    correction is not applied (as in R's mcnemar.test), so the p-value is 1; statsmodels applies it and
    reports a slightly smaller p-value there. With no discordant example (b + c = 0) the p-value is 1
    (statsmodels' chi-square version computes 1 / 0 there and reports p = 0).
    """
    table = mcnemar_table(y_true, pred_a, pred_b)
    b, c = int(table[0, 1]), int(table[1, 0])
    exact = b + c < EXACT_BELOW if exact is None else exact
    method = "exact binomial" if exact else "chi-square with continuity correction"
    if b + c == 0:
        return McNemarResult(statistic=0.0, pvalue=1.0, b=b, c=c, method=method)
    if exact:
        statistic = float(min(b, c))
        pvalue = min(1.0, 2.0 * binom.cdf(statistic, b + c, 0.5))
    else:
        statistic = max(abs(b - c) - 1, 0) ** 2 / (b + c)
        pvalue = chi2.sf(statistic, df=1)
    return McNemarResult(statistic=float(statistic), pvalue=float(pvalue), b=b, c=c, method=method)


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    """Raise a ValueError for a number of resamples below 1 or a confidence level outside (0, 1)."""
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}. Fix: 2000 or more for 95% intervals.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}. Fix: e.g. 0.95.")


_MIN_BOOTSTRAP_EXAMPLES = 10  # fewer test examples than this: a bootstrap's interval and p-value say nothing


def _check_bootstrap_size(n: int) -> None:
    """Raise a ValueError for a bootstrap over fewer than ``_MIN_BOOTSTRAP_EXAMPLES`` examples (from 3 examples it
    would report p = 0.001: a resample of a handful of items repeats the same few draws)."""
    if n < _MIN_BOOTSTRAP_EXAMPLES:
        raise ValueError(f"A bootstrap over {n} examples cannot tell systems apart: its resamples are a few "
                         f"repeated draws, and its interval and p-value would look precise while saying nothing. "
                         f"Fix: score at least {_MIN_BOOTSTRAP_EXAMPLES} examples (a few hundred for a 95% interval "
                         "a few points wide).")


def _bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """An (n_resamples, n) matrix of example indices drawn with replacement: one bootstrap resample per row."""
    return np.random.default_rng(seed).integers(0, n, size=(int(n_resamples), n))


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central percentile interval of bootstrap values: the (1-confidence)/2 and (1+confidence)/2 quantiles."""
    low, high = np.percentile(values, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)])
    return float(low), float(high)


def paired_bootstrap(y_true, pred_a, pred_b, metric: Metric, n_resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> BootstrapResult:
    """A paired bootstrap of metric(A) - metric(B): the same resampled examples score both systems (chapter 06).

    ``metric`` is any callable (y_true, y_pred) -> float, e.g. ``accuracy`` or ``macro_f1`` of this
    module. Inputs are class ids or 0/1 label matrices; resampling draws rows (examples). The interval
    is the percentile interval of the resampled differences. The two-sided p-value is twice the share
    of resampled differences on the other side of zero from the observed one (zero counts as the other
    side), counted as (k + 1) / (n + 1) so that finitely many resamples never report p = 0 (with 2,000
    resamples the smallest p is 0.001), capped at 1: it is below 1 - confidence when the percentile
    interval excludes zero (up to how percentiles interpolate).
    An observed difference of exactly zero gets p = 1. It is a quick, approximate p-value.
    """
    y, a, b = _check_paired(y_true, pred_a, pred_b)
    _check_bootstrap_args(n_resamples, confidence)
    _check_bootstrap_size(len(y))
    observed = metric(y, a) - metric(y, b)
    differences = np.array([metric(y[i], a[i]) - metric(y[i], b[i])
                            for i in _bootstrap_indices(len(y), n_resamples, seed)])
    low, high = _percentile_interval(differences, confidence)
    if observed == 0:
        p_value = 1.0
    else:
        other_side = int(np.sum(np.sign(differences) != np.sign(observed)))
        p_value = min(1.0, 2.0 * (other_side + 1) / (len(differences) + 1))  # never 0 from finitely many resamples
    return BootstrapResult(difference=float(observed), ci_low=low, ci_high=high,
                           p_value_two_sided=p_value, distribution=differences)


def bootstrap_ci(y_true, pred, metric: Metric, n_resamples: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """One system's metric on the full data and its percentile bootstrap interval: (point, low, high)."""
    y, p = check_same_shape(y_true, pred, ("y_true", "pred"))
    _check_bootstrap_args(n_resamples, confidence)
    _check_bootstrap_size(len(y))
    values = np.array([metric(y[i], p[i]) for i in _bootstrap_indices(len(y), n_resamples, seed)])
    return (float(metric(y, p)), *_percentile_interval(values, confidence))


def holm_bonferroni(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: reject where adjusted < alpha (chapter 06).

    Sorted ascending, the i-th smallest p-value (i from 0) is multiplied by (m - i), made non-decreasing
    and capped at 1. It controls the chance of any false rejection among m comparisons, like Bonferroni,
    but rejects at least as often.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or p.size == 0 or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"pvalues must be a non-empty list of numbers in [0, 1], got {pvalues!r}.")
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def compare_pairs(y_true, predictions: dict[str, np.ndarray], metric: Metric, n_resamples: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Every pair of systems: metric difference with its paired-bootstrap interval, McNemar p, Holm-adjusted p.

    Rows are ordered as the pairs of ``predictions`` (A before B); Holm's adjustment runs over the
    McNemar p-values of all pairs in the table (chapter 06).
    """
    names = list(predictions)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            boot = paired_bootstrap(y_true, predictions[a], predictions[b], metric, n_resamples, confidence, seed)
            test = mcnemar_test(y_true, predictions[a], predictions[b])
            rows.append({"A": a, "B": b, "difference (A - B)": boot.difference, "CI low": boot.ci_low,
                         "CI high": boot.ci_high, "McNemar p": test.pvalue, "A right, B wrong": test.b,
                         "A wrong, B right": test.c})
    table = pd.DataFrame(rows)
    if len(table):
        table["Holm-adjusted p"] = holm_bonferroni(table["McNemar p"].to_numpy())
    return table


# ---- over seeds and test items: the claims ledger's test (chapter 08) -------------------------------------

@dataclass(frozen=True, eq=False)
class SeedBootstrap:
    """A two-level bootstrap of a seed-mean difference: mean over A's runs minus mean over B's runs of a metric,
    resampling both the seeds (each method's runs) and the test items (shared, so paired)."""

    difference: float  # the observed seed-mean difference, A - B
    ci95: tuple[float, float]
    ci90: tuple[float, float]  # the interval of the equivalence test (TOST at 5%)
    se: float  # the bootstrap standard error of the difference
    agreeing: int  # seed pairings (A's run s, B's run t) whose difference has the sign of ``difference``
    pairings: int
    distribution: np.ndarray = field(repr=False)

    @property
    def detectable(self) -> float:
        """The smallest difference this test would find with 80% power at 5% (two-sided): 2.8 standard errors."""
        return 2.8 * self.se

    def reversed(self) -> SeedBootstrap:
        """The same resamples read as B - A: one test, whichever method a table puts first."""
        return SeedBootstrap(difference=-self.difference, ci95=(-self.ci95[1], -self.ci95[0]),
                             ci90=(-self.ci90[1], -self.ci90[0]), se=self.se, agreeing=self.agreeing,
                             pairings=self.pairings, distribution=-self.distribution)

    def __str__(self) -> str:
        return (f"{self.difference:+.3f} [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]; "
                f"{self.agreeing}/{self.pairings} seed pairings agree")


def seed_bootstrap(y_true, runs_a: list, runs_b: list, metric: Metric, n_resamples: int = 2000,
                   seed: int = 0, reference: float | None = None, paired: bool = False) -> SeedBootstrap:
    """The two-level bootstrap of metric(A) - metric(B) averaged over each method's runs (chapter 08).

    ``runs_a`` and ``runs_b``: each run's predictions (or probabilities: whatever ``metric(y, x)`` takes) on
    the same test items. Every resample draws the test items with replacement (the same draw for both
    methods: they are paired by item) and, separately for each method, its runs with replacement, so the
    interval holds training noise (seeds) as well as test-set noise. A method with one run (deterministic)
    contributes item noise only. Seeds are not paired across methods: run s of A and run s of B are two
    independent trainings, so every pairing (s, t) is counted in ``agreeing``. With no runs of B and a
    ``reference`` number, B is that constant (e.g. a published value): A's seed mean minus it. ``paired``: run s
    of A belongs with run s of B (a distilled student and its own teacher), so each resample draws the same
    seeds for both and ``agreeing`` counts the matched pairs only.
    """
    y = np.asarray(y_true)
    if not runs_a or not (runs_b or reference is not None):
        raise ValueError("seed_bootstrap needs at least one run of each method. Fix: pass each method's predictions "
                         "(or, to test against a fixed number, runs_b=[] and reference=that number).")
    for run in [*runs_a, *runs_b]:
        if len(run) != len(y):
            raise ValueError(f"A run has {len(run)} predictions for {len(y)} test items. Fix: score both methods on "
                             "the same test split, every item once, in order.")
    if paired and len(runs_a) != len(runs_b):
        raise ValueError(f"Paired runs come in pairs; got {len(runs_a)} runs of A and {len(runs_b)} of B. Fix: pass "
                         "run s of A with run s of B, in the same order.")
    _check_bootstrap_args(n_resamples, 0.95)
    _check_bootstrap_size(len(y))
    rng = np.random.default_rng(seed)
    items = rng.integers(0, len(y), size=(int(n_resamples), len(y)))
    rows = np.arange(int(n_resamples))[:, None]

    def resampled(runs: list, picks: np.ndarray | None = None) -> np.ndarray:
        """Each resample's seed mean: every run scored on every item resample, the runs drawn with replacement
        (``picks``: the runs each resample draws, where two methods share them)."""
        scored = np.array([[metric(y[i], np.asarray(run)[i]) for run in runs] for i in items])
        picks = rng.integers(0, len(runs), size=(int(n_resamples), len(runs))) if picks is None else picks
        return scored[rows, picks].mean(axis=1)

    constant = np.full(int(n_resamples), float(reference or 0.0))
    if paired:
        picks = rng.integers(0, len(runs_a), size=(int(n_resamples), len(runs_a)))
        differences = resampled(runs_a, picks) - resampled(runs_b, picks)
    else:
        differences = resampled(runs_a) - (resampled(runs_b) if runs_b else constant)
    full_a = np.array([metric(y, np.asarray(run)) for run in runs_a])
    full_b = np.array([metric(y, np.asarray(run)) for run in runs_b]) if runs_b else constant[:1]
    observed = float(full_a.mean() - full_b.mean())
    pairs = full_a - full_b if paired else full_a[:, None] - full_b[None, :]
    agreeing = int(np.sum(np.sign(pairs) == np.sign(observed))) if observed else 0
    return SeedBootstrap(difference=observed, ci95=_percentile_interval(differences, 0.95),
                         ci90=_percentile_interval(differences, 0.90), se=float(differences.std(ddof=1)),
                         agreeing=agreeing, pairings=pairs.size, distribution=differences)
