"""TF-IDF + logistic regression: the floor every learned model must beat (chapter 03), one fit for every path
that trains it: chapter 03's run, the fair study (single- and multi-label, chapters 05 and 08), your own data
(chapter 09) and the CLI, and saved as plain arrays for ``predict``. Its trainable parameters are counted as a
probe's are (``probe.probe_parameters``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from ..data import multi_hot
from ..setup.timing import timed

__all__ = ["DEFAULT_C", "ARRAYS_FILE", "SETTINGS_FILE", "pipeline", "fit", "class_probs", "save", "load"]

DEFAULT_C = 10.0  # chapter 03's regularisation; the fair study tunes C on validation around it
ARRAYS_FILE, SETTINGS_FILE = "tfidf.npz", "tfidf.json"  # a saved pipeline (chapter 09): arrays and JSON, no pickle


def pipeline(seed: int = 42, C: float = DEFAULT_C, class_weight: str | None = None,
             multi_label: bool = False) -> Pipeline:
    """TF-IDF of words and word pairs + logistic regression (multinomial; one per label when ``multi_label``), at
    regularisation ``C`` (``class_weight="balanced"``: scikit-learn's, chapter 09)."""
    regression = LogisticRegression(C=C, max_iter=2000, random_state=seed, class_weight=class_weight)
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                         OneVsRestClassifier(regression) if multi_label else regression)


def fit(data: DatasetDict, seed: int = 42, C: float = DEFAULT_C, class_weight: str | None = None,
        multi_label: bool = False) -> tuple[Pipeline, float]:
    """The pipeline fitted on ``data``'s train split (its labels, or its label sets as a 0/1 matrix), and the
    seconds the fit took."""
    model = pipeline(seed, C, class_weight, multi_label)
    targets = multi_hot(data["train"]).astype(int) if multi_label else np.asarray(data["train"]["label"])
    _, seconds = timed(model.fit, list(data["train"]["text"]), targets)
    return model, seconds


def class_probs(model: Pipeline, texts: list[str], n_classes: int) -> np.ndarray:
    """A fitted pipeline's probabilities with one column per class id 0..n-1, also for a class training lacked.

    scikit-learn's columns are the classes it saw, so with one missing, argmax would shift every later class.
    A multi-label pipeline has one column per label already.
    """
    if isinstance(model[-1], OneVsRestClassifier):
        return model.predict_proba(texts)
    probs = np.zeros((len(texts), n_classes))
    probs[:, model.classes_] = model.predict_proba(texts)
    return probs


def save(fitted: Pipeline, folder: Path) -> None:
    """A fitted single-label pipeline into ``folder`` as plain arrays and JSON (no pickle: loading it runs no code)."""
    vectorizer, lr = fitted[0], fitted[-1]
    settings = {k: v for k, v in vectorizer.get_params().items() if isinstance(v, (str, int, float, bool, tuple))}
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
    (folder / SETTINGS_FILE).write_text(json.dumps({"vectorizer": settings, "vocabulary": vocabulary}))
    np.savez(folder / ARRAYS_FILE, idf=vectorizer.idf_, coef=lr.coef_, intercept=lr.intercept_, classes=lr.classes_)


def load(folder: Path) -> Pipeline:
    """The pipeline ``save`` wrote (arrays read with ``allow_pickle=False``)."""
    saved = json.loads((folder / SETTINGS_FILE).read_text())
    settings = {k: tuple(v) if k == "ngram_range" else v for k, v in saved["vectorizer"].items()}
    vectorizer = TfidfVectorizer(**settings)
    vectorizer.vocabulary_ = {word: i for i, word in enumerate(saved["vocabulary"])}
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
        vectorizer.idf_ = arrays["idf"]
        lr = LogisticRegression()
        lr.coef_, lr.intercept_, lr.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
    return make_pipeline(vectorizer, lr)
