"""What to watch once a classifier serves: its confidence, and the share of each label it predicts.

Taught in chapter 09. A served model sees no labels, so what it can be checked on is what it outputs:
a confidence floor set on validation flags texts unlike those it learned from, and the predicted
label shares of a batch, against the training shares, show the label distribution drifting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["confidence_floor", "flagged_share", "label_shift"]


def confidence_floor(validation_probs: np.ndarray, quantile: float = 0.05) -> float:
    """The confidence below which a fraction ``quantile`` of the validation texts fall: the alarm line."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie between 0 and 1, got {quantile}. Fix: e.g. 0.05 for the lowest 5%.")
    return float(np.quantile(np.asarray(validation_probs).max(1), quantile))


def flagged_share(probs: np.ndarray, floor: float) -> float:
    """The share of a batch whose top probability lies below ``floor`` (texts to send to a person)."""
    top = np.asarray(probs).max(1)
    return float(np.mean(top < floor)) if len(top) else 0.0


def label_shift(train_labels: Sequence[int], predicted: Sequence[int], names: Sequence[str]) -> tuple[pd.DataFrame, float, float]:
    """Training label shares against a batch's predicted shares: (table, total variation distance, chi-square p).

    The distance is half the sum of the absolute share differences (0: the same mix, 1: no label in
    common); the p-value tests whether the batch could be drawn with the training shares.
    """
    from scipy.stats import chisquare  # lazy: scipy.stats costs ~0.5 s; the other functions need only numpy and pandas

    n = len(names)
    train = np.bincount(np.asarray(train_labels), minlength=n) / max(len(train_labels), 1)
    counts = np.bincount(np.asarray(predicted), minlength=n)
    batch = counts / max(counts.sum(), 1)
    table = pd.DataFrame({"training share": train, "predicted share": batch}, index=list(names))
    expected = np.clip(train, 1e-9, None)  # a label training never saw: a tiny expected count, not a division by 0
    p = float(chisquare(counts, expected / expected.sum() * counts.sum()).pvalue) if counts.sum() else float("nan")
    return table, float(0.5 * np.abs(train - batch).sum()), p
