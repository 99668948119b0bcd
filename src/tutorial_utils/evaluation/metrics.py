"""Evaluation metrics: single-label scores, multi-label scores, calibration and temperature scaling.

Taught in chapters 02 (single-label metrics), 04 (calibration: softmax, ECE, reliability diagrams,
temperature scaling) and 05 (multi-label metrics and per-label F1). NumPy, SciPy, pandas and
scikit-learn only: no torch, so that the functions take the NumPy arrays a chapter collects.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from ..setup.checks import check_finite, check_label_matrices, check_probs, check_same_length
from .stats import macro_f1_over, present_classes

__all__ = ["classification_metrics", "metrics_text", "macro_f1", "multilabel_metrics", "per_label_f1", "per_class_scores",
           "softmax", "sigmoid", "reliability_table", "expected_calibration_error", "negative_log_likelihood",
           "fit_temperature"]

_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # temperatures fit_temperature searches: 0.05 to 20


def classification_metrics(y_true, y_pred, n_classes: int | None = None) -> dict[str, float]:
    """Accuracy, macro-F1 and weighted-F1 of single-label predictions (chapter 02).

    With ``n_classes`` the F1s average over the classes 0..n-1 that occur in the labels or the predictions
    (``stats.macro_f1_over``: a prediction of -1, "unparsable", counts as wrong without becoming a class of its
    own); a class in neither is left out of the average, with a warning naming it, as scikit-learn leaves it out.
    """
    y_true, y_pred = check_same_length(y_true, y_pred)
    labels = None if n_classes is None else present_classes(y_true, y_pred, n_classes)
    if labels is not None and len(labels) < n_classes:
        absent = sorted(set(range(n_classes)) - set(labels))
        warnings.warn(f"Class ids {absent} occur neither in the labels nor in the predictions: macro-F1 averages the "
                      f"other {len(labels)} classes (scoring an absent class 0 would mark right predictions down). "
                      "Fix: test on a split that holds every class (data.from_pandas carves one), or read the "
                      "per-class table (metrics.per_class_scores).", UserWarning, stacklevel=2)
    macro = (f1_score(y_true, y_pred, average="macro", zero_division=0) if labels is None
             else macro_f1_over(n_classes)(y_true, y_pred))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(macro),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
    }


_METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1", "micro_f1": "micro-F1"}


def metrics_text(metrics: dict[str, float], digits: int = 3) -> str:
    """Metrics as one readable line, e.g. "accuracy 0.692, macro-F1 0.643, weighted-F1 0.681" (chapter 03)."""
    return ", ".join(f"{_METRIC_NAMES.get(k, k)} {v:.{digits}f}" for k, v in metrics.items())


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Macro-F1 over the classes 0..n-1 present (``stats.macro_f1_over``): the protocol's validation metric (chapter 08)."""
    return macro_f1_over(n_classes)(*check_same_length(y_true, y_pred))


def multilabel_metrics(Y_true, Y_pred) -> dict[str, float]:
    """Micro-, macro- and samples-averaged F1 of 0/1 label matrices (chapter 05)."""
    Y_true, Y_pred = check_label_matrices(Y_true, Y_pred)
    return {f"{avg}_f1": float(f1_score(Y_true, Y_pred, average=avg, zero_division=0))
            for avg in ("micro", "macro", "samples")}


def per_label_f1(Y_true, Y_pred, names: Sequence[str]) -> pd.DataFrame:
    """One row per label: its name, its number of true examples (support) and its F1 (chapter 05)."""
    Y_true, Y_pred = check_label_matrices(Y_true, Y_pred)
    if len(names) != Y_true.shape[1]:
        raise ValueError(f"Got {len(names)} label names for {Y_true.shape[1]} label columns. Fix: pass the names in "
                         "the column order of the matrices, e.g. label_names(data).")
    f1 = f1_score(Y_true, Y_pred, average=None, zero_division=0)
    return pd.DataFrame({"label": list(names), "support": Y_true.sum(axis=0).astype(int), "f1": f1.astype(float)})


def per_class_scores(y_true, y_pred, names: Sequence[str]) -> pd.DataFrame:
    """One row per class of single-label predictions: its test examples (support), precision, recall and F1; on
    skewed data the rows a macro average hides (chapter 09)."""
    y_true, y_pred = check_same_length(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(names))),
                                                                     zero_division=0)
    return pd.DataFrame({"class": list(names), "support": support.astype(int), "precision": precision.astype(float),
                         "recall": recall.astype(float), "f1": f1.astype(float)})


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, stable for large logits (the row maximum is subtracted)."""
    if temperature <= 0:
        raise ValueError(f"The temperature must be positive, got {temperature}. Fix: use T > 1 to soften and "
                         "0 < T < 1 to sharpen the probabilities.")
    z = check_finite(logits, "logits") / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x) -> np.ndarray:
    """The logistic function 1 / (1 + exp(-x)), element-wise and without overflow (multi-label outputs)."""
    return expit(np.asarray(x, dtype=float))


def _confidence_bins(probs, y_true, n_bins: int) -> pd.DataFrame:
    """Per example: top-label confidence, whether the top label is right, and its equal-width bin (lo, hi]."""
    P, y = check_probs(probs, y_true)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    confidence = P.max(axis=1)
    bin_id = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, int(n_bins) - 1)
    return pd.DataFrame({"confidence": confidence, "correct": (P.argmax(axis=1) == y).astype(float),
                         "bin": bin_id, "bin_low": edges[bin_id], "bin_high": edges[bin_id + 1]})


def reliability_table(probs, y_true, n_bins: int = 10) -> pd.DataFrame:
    """Mean confidence, accuracy and count per confidence bin, empty bins dropped (a reliability diagram's data)."""
    per_example = _confidence_bins(probs, y_true, n_bins)
    table = (per_example.groupby(["bin", "bin_low", "bin_high"], sort=True)
             .agg(confidence=("confidence", "mean"), accuracy=("correct", "mean"), count=("correct", "size"))
             .reset_index().drop(columns="bin"))
    return table.astype({"count": int})


def expected_calibration_error(probs, y_true, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width bins: the sum over bins of ``abs(accuracy - confidence)`` * n_bin / n (chapter 04)."""
    table = reliability_table(probs, y_true, n_bins)
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def negative_log_likelihood(probs, y_true) -> float:
    """The mean of -log p(true class); probabilities are clipped at 1e-12 so that a confident miss stays finite."""
    P, y = check_probs(probs, y_true)
    return float(-np.log(np.clip(P[np.arange(len(y)), y], 1e-12, None)).mean())


def fit_temperature(logits, y_true) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on held-out data (chapter 04).

    The search runs over log T (so T stays positive) with a bounded scalar minimiser, T in [0.05, 20].
    Fit it on the validation split, never on the test split you report.
    """
    z = np.asarray(logits, dtype=float)
    if z.ndim != 2 or not np.isfinite(z).all():
        raise ValueError(f"Expected finite logits of shape (n_examples, n_classes), got shape {z.shape}. "
                         "Fix: pass the raw model outputs before softmax, one row per example.")
    _, y = check_probs(softmax(z), y_true)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        """The mean NLL at temperature exp(log_t), computed with a stable log-softmax."""
        return float(-log_softmax(z / np.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))
