"""The chapters' runs as a ``RunRecord`` (``runs.record``): chapter 02's and 03's demonstration runs (for the
profile's epochs, by each method's one ``run``: ``embedding_head.run``, ``encoder.run``), chapter 02's pooling
ablation, and the TF-IDF floor.

Later chapters (the baselines, the frozen LLM, distillation) call these through ``runs.load_or_compute``
so they never retrain what an earlier chapter already trained on the same profile.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from datasets import DatasetDict

from ..data import label_names, load_single_label, sample_examples
from ..evaluation.metrics import softmax
from ..modeling import models
from ..setup.config import Profile, TrainSettings
from ..setup.timing import timed
from ..storage import runs
from ..storage.records import RunRecord
from . import EMBEDDING_HEAD, ENCODER, TFIDF  # noqa: F401 (the names live in the registry)
from . import embedding_head, encoder, tfidf
from .classifier import Fitted
from .probe import probe_parameters
from .tfidf import pipeline as tfidf_pipeline  # noqa: F401 (re-exported: chapter 03 calls recipes.tfidf_pipeline)
from .train import predict_logits, train_and_report

__all__ = ["classifier_result", "fitted_result", "train_and_report", "embedding_head_run", "pooling_ablation", "encoder_run",
           "tfidf_pipeline", "tfidf_run", "comparison_table"]



def classifier_result(method: str, profile: Profile, data: DatasetDict, model, tokenizer,
                      settings: TrainSettings | None = None, report: dict | None = None) -> RunRecord:
    """Predict the test split with a trained classifier: its run, with labels, probabilities and metrics (chapter 02).
    ``report``: what its training reported (``train.train_and_report``: seconds and learning curve)."""
    s = settings or profile.train
    logits, seconds = timed(predict_logits, model, tokenizer, list(data["test"]["text"]), batch_size=s.eval_batch_size,
                            max_length=s.max_length)
    report = report or {}
    extra = {"test_texts_per_second": len(logits) / seconds,
             **{k: v for k, v in report.items() if k != "train_seconds"}}
    return _result(method, profile, data, logits, models.count_parameters(model).trainable,
                   report.get("train_seconds", 0.0), extra)


def _result(method: str, profile: Profile, data: DatasetDict, logits: np.ndarray, trainable: int,
            train_seconds: float, extra: dict) -> RunRecord:
    """A chapter's run from its test logits: labels, predictions, probabilities and metrics."""
    outcome = {"y_true": np.asarray(data["test"]["label"]), "y_pred": logits.argmax(axis=1), "probs": softmax(logits),
               "trainable_params": trainable, "train_seconds": train_seconds, "extra": extra}
    return runs.record(method, profile, data, outcome, train_seconds)


def fitted_result(method: str, profile: Profile, data: DatasetDict, fitted: Fitted) -> RunRecord:
    """A chapter's run from ``embedding_head.run`` or ``encoder.run`` for the profile's epochs."""
    report = fitted.report
    extra = {"test_texts_per_second": report["extra"]["test_texts_per_second"],
             "learning_curve": report["learning_curve"]}
    return _result(method, profile, data, fitted.logits, report["trainable_params"], report["train_seconds"], extra)


def embedding_head_run(profile: Profile, data: DatasetDict | None = None,
                       method: str = EMBEDDING_HEAD) -> tuple[RunRecord, object]:
    """Chapter 02's recipe: 4-bit causal LM + LoRA + a head on the last token, trained for the profile's epochs
    and tested (``embedding_head.run``): its run and its trained model (adapter + head), which
    ``runs.load_or_compute`` keeps with the run for distillation (chapter 07).
    """
    data = data or load_single_label(profile)
    fitted = embedding_head.run(profile, data, profile.seed, profile.train.learning_rate, until="epochs",
                                run_name=method)
    return fitted_result(method, profile, data, fitted), fitted.model


def pooling_ablation(profile: Profile, data: DatasetDict, poolings: tuple[str, ...] = ("last", "mean")) -> pd.DataFrame:
    """Train one hand-written head per pooling on the same stratified sample of ``profile.ablation_train_size``
    training examples (chapter 02); validation metrics per pooling."""
    subset = DatasetDict(train=sample_examples(data["train"], profile.ablation_train_size, profile.seed),
                         validation=data["validation"], test=data["validation"])
    rows = []
    for pooling in poolings:  # every arm starts from the same initialisation (the profile's seed)
        fitted = embedding_head.run(profile, subset, profile.seed, profile.train.learning_rate, until="epochs",
                                    pooling=pooling, run_name=f"pool-{pooling}")
        result = fitted_result(f"pool-{pooling}", profile, subset, fitted)
        rows.append({"pooling": pooling, "train examples": result.train_examples, **result.test_metrics,
                     "trainable params": result.trainable_params})
    return pd.DataFrame(rows).set_index("pooling")


def encoder_run(profile: Profile, data: DatasetDict | None = None, method: str = ENCODER) -> RunRecord:
    """Chapter 03's baseline: the profile's encoder (MiniLM, BERT) fully fine-tuned with a fresh head, for the
    profile's epochs (``encoder.run``)."""
    data = data or load_single_label(profile)
    fitted = encoder.run(profile, data, profile.seed, profile.encoder_train.learning_rate, until="epochs",
                         run_name=method)
    return fitted_result(method, profile, data, fitted)


def tfidf_run(profile: Profile, data: DatasetDict | None = None, method: str = TFIDF) -> RunRecord:
    """Fit the TF-IDF floor on train and score the test split; its 'trainable parameters' are the LR weights."""
    data = data or load_single_label(profile)
    pipeline, train_seconds = tfidf.fit(data, profile.seed)
    texts = list(data["test"]["text"])
    probs, seconds = timed(tfidf.class_probs, pipeline, texts, len(label_names(data)))
    outcome = {"y_true": np.asarray(data["test"]["label"]), "y_pred": probs.argmax(axis=1), "probs": probs,
               "trainable_params": probe_parameters(pipeline), "train_seconds": train_seconds,
               "extra": {"test_texts_per_second": len(texts) / seconds}}
    return runs.record(method, profile, data, outcome, train_seconds)


def comparison_table(results: list[RunRecord]) -> pd.DataFrame:
    """Method, trainable parameters, accuracy, macro-F1, train time and inference speed, one row per run."""
    rows = [{"method": r.method, "trainable params": r.trainable_params,
             "accuracy": r.test_metrics.get("accuracy"), "macro-F1": r.test_metrics.get("macro_f1"),
             "train time (s)": r.train_seconds, "inference (texts/s)": r.extra.get("test_texts_per_second")}
            for r in results]
    return pd.DataFrame(rows).set_index("method")
