"""Checks of what users pass in: texts, labels, label names, arrays of predictions, numbers in range.

One home for input validation: the package's entry points (training, prediction, prompting, metrics,
statistics, thresholds, the run cache and the CLI) call these, so that bad input gets one clear error
that names the problem and the fix, never a crash deep in torch or a silently wrong number.
Used from chapter 02 on; ``tests/test_faults.py`` tries each case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DataError", "NotFinite", "DataWarning", "PROB_ATOL", "check_texts", "check_label_names",
           "check_label_id", "check_same_length", "check_same_shape", "check_label_matrices", "check_finite",
           "check_probs", "check_unit_interval", "check_fits_model", "check_safetensors"]


class DataError(ValueError):
    """Input data that the course cannot use as it is (empty text, unknown label, missing file)."""


class NotFinite(ValueError):
    """Scores or a loss that hold NaN or infinity: the numbers overflowed or training diverged (``check_finite``)."""


class DataWarning(UserWarning):
    """Input data that the course can use but that may mislead (leakage, rare classes, truncated texts): always
    shown, whatever ``session.quiet`` silences (chapter 09)."""


PROB_ATOL = 1e-2  # how far a row of probabilities may sum from 1: float16/bfloat16 softmax outputs round


def check_texts(texts: Iterable[object], what: str = "texts") -> list[str]:
    """The texts as a list of strings, or a ValueError naming the first ones that are missing, empty or not text.

    An empty text has no token to classify (in 4-bit on CPU it crashed the process), and ``None``
    would otherwise reach a prompt as the word "None".
    """
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of texts, got one string. Fix: wrap it in a list: [text].")
    items = list(texts)
    bad = [(i, t) for i, t in enumerate(items) if not isinstance(t, str) or not t.strip()]
    if bad:
        shown = ", ".join(f"#{i}: {t!r}" for i, t in bad[:5])
        raise DataError(f"Text {bad[0][0]} is empty or not a string: {len(bad)} of {len(items)} {what} are ({shown}"
                         f"{', ...' if len(bad) > 5 else ''}). Fix: drop or fill them before predicting, e.g. "
                         "df = df[df['text'].fillna('').str.strip() != ''].")
    return items


def check_label_names(names: Sequence[object], minimum: int = 2) -> list[str]:
    """At least ``minimum`` (two for single-label) distinct, non-empty label names, or a ValueError naming the problem."""
    names = list(names)
    if len(names) < minimum:
        raise DataError(f"A classifier needs at least two labels, got {names!r}: with one label every prediction is "
                         "right and training learns nothing (loss 0, accuracy 1.0). Fix: add the other classes, or "
                         "frame the task as this label vs the rest.")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise DataError(f"Label names must be non-empty strings, got {names!r}. Fix: name every class.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"Label names repeat: {repeated}. A repeated name maps to only one class id. Fix: give "
                         "every class its own name (merge the classes first if they are the same).")
    return names


def check_label_id(label: object, n_classes: int) -> int:
    """One class id as an int in 0..n_classes-1 (not a bool, not negative), or a ValueError."""
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"A class id must be an integer, got {label!r} ({type(label).__name__}). Fix: encode label "
                         "names as ids with tutorial_utils.data.encode_labels (True/False are not class ids).")
    if not 0 <= int(label) < n_classes:
        raise ValueError(f"Class id {label} is outside 0..{n_classes - 1}. Fix: use the ids of the label list "
                         "(a negative id would silently count from the end).")
    return int(label)


def check_same_length(y_true, y_pred, names: tuple[str, str] = ("y_true", "y_pred")) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as arrays, raising a ValueError if either is empty or their lengths differ."""
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{names[0]} and {names[1]} must be arrays with one entry per example, got a scalar. "
                         "Fix: pass a list or array, e.g. np.asarray(predictions).")
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"{names[0]} and {names[1]} must not be empty (got {len(a)} and {len(b)} examples). "
                         "Fix: check that the split you evaluate on has examples.")
    if len(a) != len(b):
        raise ValueError(f"{names[0]} has {len(a)} examples but {names[1]} has {len(b)}. Fix: predict on exactly "
                         "the examples you score, in the same order.")
    if _is_text(a) != _is_text(b):
        text, number = (names[0], names[1]) if _is_text(a) else (names[1], names[0])
        raise ValueError(f"{text} holds label names (text) but {number} class ids (numbers): no text equals a number, "
                         "so every example would count as wrong. Fix: encode both the same way, e.g. names to ids with "
                         "data.encode_labels, or ids to names with [names[i] for i in ids].")
    return a, b


def _is_text(values: np.ndarray) -> bool:
    """Whether an array holds text labels (a str array, or objects that are strings)."""
    return values.dtype.kind in "US" or (values.dtype.kind == "O" and any(isinstance(v, str) for v in values.flat))


def check_same_shape(y_true, y_pred, names: tuple[str, str] = ("y_true", "y_pred")) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of one shape (class ids, or 0/1 label matrices), or a ValueError (no broadcasting)."""
    a, b = check_same_length(y_true, y_pred, names)
    if a.shape != b.shape or a.ndim > 2:
        raise ValueError(f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}. Fix: one prediction "
                         "per label, of the same kind (class ids, or 0/1 label matrices of the same columns).")
    if a.ndim == 2:
        for name, Y in zip(names, (a, b)):
            if not np.isin(Y, (0, 1)).all():
                raise ValueError(f"{name} is a matrix but not a 0/1 label matrix. Fix: threshold probabilities "
                                 "first (thresholds.apply_thresholds), or pass class ids as a 1-D array.")
    return a, b


def check_label_matrices(Y_true, Y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Two 0/1 matrices of the same shape (examples x labels), or a ValueError saying what is wrong."""
    Y_true, Y_pred = check_same_length(Y_true, Y_pred, ("Y_true", "Y_pred"))
    if Y_true.ndim != 2 or Y_true.shape != Y_pred.shape:
        raise ValueError(f"Multi-label inputs must be 0/1 matrices of the same shape (examples, labels); got "
                         f"{Y_true.shape} and {Y_pred.shape}. Fix: multi-hot encode the label lists, e.g. with "
                         "tutorial_utils.data.multi_hot, and threshold probabilities with thresholds.apply_thresholds.")
    for name, Y in (("Y_true", Y_true), ("Y_pred", Y_pred)):
        if not np.isin(Y, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0 and 1. Fix: threshold probabilities first "
                             "(thresholds.apply_thresholds) or cast booleans with .astype(int).")
    return Y_true.astype(int), Y_pred.astype(int)


def check_finite(values, what: str = "logits") -> np.ndarray:
    """A float array with no NaN or infinity, or ``NotFinite`` (NaN scores would become arbitrary predictions)."""
    x = np.asarray(values, dtype=float)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(x), -1).any(axis=1)) if x.ndim else np.array([0])
        raise NotFinite(f"{what} hold NaN or infinite values ({rows.size} rows, first #{rows[0]}): the model's "
                         "numbers overflowed or training diverged. Fix: train in fp32 or bf16 instead of fp16, lower "
                         "the learning rate, and check that the first steps' loss is finite.")
    return x


def check_probs(probs, y_true=None) -> tuple[np.ndarray, np.ndarray | None]:
    """A probability matrix (rows >= 0 summing to 1) and integer labels in range, or a clear ValueError."""
    P = np.asarray(probs, dtype=float)
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] < 2:
        raise ValueError(f"Expected a probability matrix of shape (n_examples, n_classes) with at least one example "
                         f"and two classes, got shape {P.shape}. Fix: for a binary model with one probability p, "
                         "pass np.column_stack([1 - p, p]).")
    if not np.isfinite(P).all() or (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0, atol=PROB_ATOL):
        raise ValueError(f"The probabilities are not a probability matrix: every row must be finite, non-negative "
                         f"and sum to 1 (row sums here range from {P.sum(axis=1).min():.3g} to "
                         f"{P.sum(axis=1).max():.3g}, smallest entry {P.min():.3g}). Fix: if you passed logits, "
                         "convert them first with metrics.softmax(logits).")
    if y_true is None:
        return P, None
    y = np.asarray(y_true)
    if y.ndim != 1 or len(y) != len(P):
        raise ValueError(f"y_true must be one class id per row of probs: got shape {y.shape} for {len(P)} rows. "
                         "Fix: pass the integer labels of the same examples, in the same order.")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= P.shape[1]:
        raise ValueError(f"y_true must hold integer class ids in 0..{P.shape[1] - 1}. Fix: encode label names as "
                         "ids (tutorial_utils.data.encode_labels) in the order of the model's output columns.")
    return P, y


def check_unit_interval(values, what: str = "threshold") -> np.ndarray:
    """Numbers in [0, 1] (thresholds, probabilities), or a ValueError naming the bad value."""
    x = np.asarray(values, dtype=float)
    if not np.isfinite(x).all() or (x < 0).any() or (x > 1).any():
        raise ValueError(f"Every {what} must be a number in [0, 1], got {values!r}. Fix: e.g. 0.5, or tune it on "
                         "validation with thresholds.tune_global_threshold.")
    return x


def check_fits_model(lengths: Sequence[int], limit: int | None, what: str = "prompt") -> None:
    """Raise a ValueError when a tokenized input is longer than the model's context (it would be scored silently wrong)."""
    if limit is None or not len(lengths):
        return
    longest = int(max(lengths))
    if longest > limit:
        over = sum(n > limit for n in lengths)
        raise ValueError(f"{over} {what}(s) are longer than the model's context: the longest has {longest} tokens, "
                         f"the model reads at most {limit}. Fix: cut the texts with max_text_tokens=... (or use fewer "
                         "few-shot examples).")


def check_safetensors(folder, weights: str) -> None:
    """Raise a ValueError unless ``folder`` holds its weights as safetensors (a pickled .bin can run code when loaded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of saved weights. Fix: pass the folder that "
                                "save_pretrained wrote (or train the run first).")
    if not list(folder.glob(f"{weights}*.safetensors")):
        found = sorted(p.name for p in folder.iterdir())
        raise ValueError(f"{folder} has no {weights}*.safetensors (it holds {found}). The course loads weights only as "
                         "safetensors: a pickled .bin file can run code when it is loaded. Fix: re-save the model "
                         "with save_pretrained(folder) (safetensors is the default), or convert the .bin you trust.")
