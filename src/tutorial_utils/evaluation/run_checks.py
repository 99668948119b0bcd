"""Can a stored run enter a verdict? Did it converge, and did it learn anything from the texts (chapter 08)?

Two checks on a run record, from its own validation curve and test predictions (no data needed):

* **convergence**: ``"plateau"`` when validation stopped improving for the protocol's ``patience``
  evaluations (training stopped there, or the cap came at that very evaluation), ``"cap"`` when the run
  reached the cap with its best evaluation earlier but fewer evaluations after it (or its best evaluation
  was its last, but a try with a longer cap did no better on validation: ``experiment.best_try``),
  ``"improving"`` when its best evaluation is its last and no longer try has been stored yet: still
  improving at the cap, so its score is a lower bound, and the protocol trains it again with a longer
  cap (``specs.extensions``);
* **degenerate**: predictions (nearly) the same for every test text, or a score within the margin of
  the best *constant* prediction (one class for every text; multi-label: the same tag set for every
  text, the most frequent tags on test). Such a run learned nothing a verdict could rest on.
"""

from __future__ import annotations

import numpy as np

from .stats import macro_f1_over, micro_f1

__all__ = ["convergence", "degenerate", "exclusions"]

PLATEAU, CAP, IMPROVING = "plateau", "cap", "improving"
_CONSTANT_SHARE = 0.95  # a run that gives this share of the test texts one and the same prediction is constant


def convergence(record) -> str | None:
    """How a gradient-trained run ended: "plateau", "cap" or "improving" (see the module); None without a curve."""
    curve = [p["value"] for p in record.validation_curve or []]
    if not curve:
        return None
    best = int(np.argmax(curve))  # the first best: a later tie is no improvement
    if best == len(curve) - 1:
        tried = record.extra.get("longer try validation")
        return CAP if tried is not None and tried <= curve[best] else IMPROVING
    patience = (record.settings.get("plateau") or {}).get("patience")
    stopped = record.extra.get("stopped_early") or (patience is not None and len(curve) - 1 - best >= patience)
    return PLATEAU if stopped else CAP


def _constant_share(y_pred: np.ndarray) -> float:
    """The share of test texts that get the most common prediction (a class id, or a whole 0/1 tag row)."""
    y_pred = np.asarray(y_pred)
    rows = y_pred.reshape(len(y_pred), -1)
    _, counts = np.unique(rows, axis=0, return_counts=True)
    return float(counts.max() / len(rows)) if len(rows) else 1.0


def _constant_floor(y_true: np.ndarray, n_classes: int | None = None) -> float:
    """The best test score of a constant prediction: macro-F1 of one class for every text (single-label), or
    micro-F1 of the k most frequent test tags for every text, at the best k (multi-label): a floor that
    reads no text (chosen on test, so a little above what such a guess could really reach)."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        order = np.argsort(-y_true.mean(axis=0), kind="stable")
        best = 0.0
        for k in range(1, y_true.shape[1] + 1):
            row = np.zeros(y_true.shape[1], dtype=y_true.dtype)
            row[order[:k]] = 1
            best = max(best, micro_f1(y_true, np.tile(row, (len(y_true), 1))))
        return best
    n = int(n_classes or y_true.max() + 1)
    metric = macro_f1_over(n)
    return max(metric(y_true, np.full_like(y_true, c)) for c in range(n))


def degenerate(record, margin: float) -> str | None:
    """Why a run cannot enter a verdict (its predictions are constant, or its score is within ``margin`` of the
    constant floor), or None when it learned something."""
    share = _constant_share(record.y_pred)
    if share >= _CONSTANT_SHARE:
        return f"the same prediction for {share:.0%} of the test texts"
    multi = np.ndim(record.y_true) == 2
    score = record.test_metrics["micro_f1" if multi else "macro_f1"]
    floor = _constant_floor(record.y_true, None if multi else len(record.label_names))
    if score < floor + margin:
        return f"test {'micro' if multi else 'macro'}-F1 {score:.3f}, within {margin:g} of a constant guess's {floor:.3f}"
    return None


def exclusions(runs: list, margin: float, degenerate_allowed: bool = False) -> list[str]:
    """Why any of these runs cannot enter a verdict, one reason a line (none: they can): a degenerate run (unless
    ``degenerate_allowed``, e.g. where the claim is that a method is poor), or one still improving at its cap."""
    out = []
    for r in runs:
        why = None if degenerate_allowed else degenerate(r, margin)
        if why:
            out.append(f"{r.method} seed {r.seed} is degenerate ({why})")
        if convergence(r) == IMPROVING:
            out.append(f"{r.method} seed {r.seed} was still improving at its cap of {r.epochs_run:g} epochs "
                       "(a longer run is planned)")
    return out
