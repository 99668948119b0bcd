"""Decision thresholds for multi-label classifiers: apply them, tune one global or one per label.

A multi-label model gives one sigmoid probability per label; a threshold turns them into a 0/1 label
matrix. 0.5 is a convention, not an optimum: rare labels often need a lower threshold. Tune on the
validation split and report on the test split. Taught in chapter 05 (multi-label classification).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ..setup.checks import check_unit_interval

__all__ = ["DEFAULT_GRID", "apply_thresholds", "tune_global_threshold", "tune_per_class_thresholds",
           "f1_vs_threshold"]

DEFAULT_GRID = np.round(np.linspace(0.05, 0.95, 19), 2)  # rounded, so that 0.5 is exactly in it
_AVERAGES = {"micro_f1": "micro", "macro_f1": "macro", "samples_f1": "samples"}


def _check_probs_and_labels(probs, Y=None) -> tuple[np.ndarray, np.ndarray | None]:
    """A probability matrix with values in [0, 1] (and a 0/1 label matrix of its shape), or a clear ValueError."""
    P = np.asarray(probs, dtype=float)
    if P.ndim != 2 or P.size == 0:
        raise ValueError(f"probs must be a non-empty matrix of shape (n_examples, n_labels), got shape {P.shape}. "
                         "Fix: stack one row of sigmoid probabilities per example; for one example use probs[None, :].")
    if not np.isfinite(P).all() or (P < 0).any() or (P > 1).any():
        raise ValueError("probs must hold probabilities in [0, 1]. Fix: if you passed logits, convert them first "
                         "with metrics.sigmoid(logits).")
    if Y is None:
        return P, None
    Y = np.asarray(Y)
    if Y.shape != P.shape:
        raise ValueError(f"probs has shape {P.shape} but the labels have shape {Y.shape}. Fix: pass the multi-hot "
                         "label matrix of the same examples, with the labels in the model's column order.")
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("The label matrix must contain only 0 and 1. Fix: multi-hot encode the label lists, e.g. "
                         "with tutorial_utils.data.multi_hot.")
    return P, Y.astype(int)


def _check_grid(grid) -> np.ndarray:
    """The candidate thresholds as a sorted 1-D array in [0, 1] (DEFAULT_GRID when None)."""
    g = DEFAULT_GRID if grid is None else np.unique(np.asarray(grid, dtype=float))
    if g.ndim != 1 or g.size == 0 or (g < 0).any() or (g > 1).any():
        raise ValueError(f"The threshold grid must be a non-empty list of values in [0, 1], got {grid!r}. "
                         "Fix: e.g. grid=np.linspace(0.05, 0.95, 19).")
    return g


def _closest_to_half(grid: np.ndarray, scores: np.ndarray) -> float:
    """The best-scoring threshold; among tied scores the one closest to 0.5 (the lower one if two are as close)."""
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def _averaged_f1(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The multi-label F1 called ``name`` ("micro_f1", "macro_f1" or "samples_f1") as a function of (Y_true, Y_pred)."""
    if name not in _AVERAGES:
        raise ValueError(f"Unknown metric {name!r}. Fix: use one of {list(_AVERAGES)} or pass a callable "
                         "(Y_true, Y_pred) -> float.")
    return lambda Y_true, Y_pred: float(f1_score(Y_true, Y_pred, average=_AVERAGES[name], zero_division=0))


def apply_thresholds(probs, thresholds: float | Sequence[float] | np.ndarray = 0.5,
                     at_least_one: bool = False) -> np.ndarray:
    """The 0/1 label matrix probs >= threshold; one threshold for all labels or one per label.

    With ``at_least_one=True`` a row with no label at or above its threshold gets its most probable
    label, for data where every example is known to have at least one label.
    """
    P, _ = _check_probs_and_labels(probs)
    t = check_unit_interval(thresholds, "threshold")
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != P.shape[1]):
        raise ValueError(f"Got {t.size} thresholds for {P.shape[1]} labels. Fix: pass one number, or one threshold "
                         "per label in the column order of probs.")
    Y = (P >= t).astype(int)
    if at_least_one:
        empty = Y.sum(axis=1) == 0
        Y[empty, P[empty].argmax(axis=1)] = 1
    return Y


def _f1_per_threshold(p: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The binary F1 of one label at every threshold of the grid (0 where it has no true or predicted positive)."""
    pred = p[:, None] >= grid[None, :]
    tp = (pred & (y[:, None] == 1)).sum(axis=0)
    denominator = pred.sum(axis=0) + y.sum()  # 2 tp + fp + fn
    return np.divide(2.0 * tp, denominator, out=np.zeros(len(grid)), where=denominator > 0)


def tune_global_threshold(probs, Y, grid=None,
                          metric: str | Callable[[np.ndarray, np.ndarray], float] = "micro_f1") -> float:
    """The one threshold for all labels that maximises a multi-label F1 on validation data (chapter 05).

    ``metric`` is "micro_f1", "macro_f1", "samples_f1" or a callable (Y_true, Y_pred) -> float.
    Ties go to the threshold closest to 0.5, so that a flat score curve leaves the convention alone.
    """
    P, Y = _check_probs_and_labels(probs, Y)
    g = _check_grid(grid)
    score = metric if callable(metric) else _averaged_f1(metric)
    scores = np.array([score(Y, apply_thresholds(P, t)) for t in g])
    return _closest_to_half(g, scores)


def tune_per_class_thresholds(probs, Y, grid=None, fallback: float = 0.5) -> np.ndarray:
    """One threshold per label, each maximising that label's F1 on validation data (chapter 05).

    A label with no positive example in the data gets ``fallback``: its F1 is 0 at every threshold, so
    the data cannot say where its threshold belongs, and any tuned value would be an artefact of the
    tie-breaking (or would silently switch the label off). Ties go to the threshold closest to 0.5.
    Because 0.5 is in the default grid, each label's validation F1 is at least its F1 at 0.5, so the
    macro-F1 on the validation data is at least that of a global 0.5; on test data it need not be.
    """
    P, Y = _check_probs_and_labels(probs, Y)
    g = _check_grid(grid)
    if not 0.0 <= fallback <= 1.0:
        raise ValueError(f"fallback must be a threshold in [0, 1], got {fallback}.")
    thresholds = np.full(P.shape[1], float(fallback))
    for k in np.flatnonzero(Y.sum(axis=0) > 0):
        thresholds[k] = _closest_to_half(g, _f1_per_threshold(P[:, k], Y[:, k], g))
    return thresholds


def f1_vs_threshold(probs, Y, names: Sequence[str], grid=None) -> pd.DataFrame:
    """Long table (label, threshold, f1): each label's F1 at each threshold, for plotting the curves (chapter 05)."""
    P, Y = _check_probs_and_labels(probs, Y)
    g = _check_grid(grid)
    if len(names) != P.shape[1]:
        raise ValueError(f"Got {len(names)} label names for {P.shape[1]} label columns. Fix: pass the names in the "
                         "column order of probs.")
    frames = [pd.DataFrame({"label": name, "threshold": g, "f1": _f1_per_threshold(P[:, k], Y[:, k], g)})
              for k, name in enumerate(names)]
    return pd.concat(frames, ignore_index=True)
