"""Complete runs that produce a cached ``RunResult``: what the chapters teach step by step, in one call.

Later chapters (the baselines, the frozen LLM, distillation) call these through ``runs.load_or_compute``
so they never retrain what an earlier chapter already trained on the same profile.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from datasets import DatasetDict

from ..data import label_names, load_single_label, sample_examples
from ..evaluation.metrics import classification_metrics, softmax
from ..modeling import models
from ..setup.config import Profile, TrainSettings
from ..setup.session import seed_everything
from ..setup.timing import timed
from ..storage.runs import RunResult
from . import EMBEDDING_HEAD, ENCODER, TFIDF  # noqa: F401 (the names live in the registry)
from . import tfidf
from .probe import probe_parameters
from .tfidf import pipeline as tfidf_pipeline  # noqa: F401 (re-exported: chapter 03 calls recipes.tfidf_pipeline)
from .train import make_trainer, predict_logits, train_and_report

__all__ = ["classifier_result", "train_and_report", "embedding_head_run", "pooling_ablation", "encoder_run",
           "tfidf_pipeline", "tfidf_run", "comparison_table"]



def classifier_result(method: str, profile: Profile, data: DatasetDict, model, tokenizer,
                      settings: TrainSettings | None = None, extra: dict | None = None) -> RunResult:
    """Predict the test split with a trained classifier and package labels, probabilities and metrics."""
    s = settings or profile.train
    texts = list(data["test"]["text"])
    logits, seconds = timed(predict_logits, model, tokenizer, texts, batch_size=s.eval_batch_size,
                            max_length=s.max_length)
    y_true = np.asarray(data["test"]["label"])
    y_pred = logits.argmax(axis=1)
    info = {"test_texts_per_second": len(texts) / seconds, "trainable_params": models.count_parameters(model).trainable}
    info.update(extra or {})
    return RunResult(method=method, profile=profile.name, seed=profile.seed, label_names=label_names(data),
                     y_true=y_true, y_pred=y_pred, probs=softmax(logits),
                     metrics=classification_metrics(y_true, y_pred), extra=info)


def embedding_head_run(profile: Profile, data: DatasetDict | None = None, method: str = EMBEDDING_HEAD) -> RunResult:
    """Chapter 02's recipe: 4-bit causal LM + LoRA + a head on the last token, trained and tested.

    The result carries the trained model (adapter + head): ``runs.save`` / ``load_or_compute`` keep it with
    the run, for distillation (chapter 07).
    """
    data = data or load_single_label(profile)
    seed_everything(profile.seed)  # the head's and LoRA's initialisation follow the profile's seed
    model, tokenizer = models.load_embedding_head(profile, label_names(data))
    report = train_and_report(make_trainer(model, tokenizer, data, profile, run_name=method))
    return dataclasses.replace(classifier_result(method, profile, data, model, tokenizer, extra=report), model=model)


def pooling_ablation(profile: Profile, data: DatasetDict, poolings: tuple[str, ...] = ("last", "mean")) -> pd.DataFrame:
    """Train one hand-written head per pooling on the same stratified sample of ``profile.ablation_train_size``
    training examples (chapter 02); validation metrics per pooling."""
    subset = DatasetDict(train=sample_examples(data["train"], profile.ablation_train_size, profile.seed),
                         validation=data["validation"], test=data["validation"])
    rows = []
    for pooling in poolings:
        seed_everything(profile.seed)  # every arm starts from the same initialisation
        classifier, tokenizer = models.load_embedding_head(profile, label_names(data), pooling=pooling)
        report = train_and_report(make_trainer(classifier, tokenizer, subset, profile, run_name=f"pool-{pooling}"))
        result = classifier_result(f"pool-{pooling}", profile, subset, classifier, tokenizer, extra=report)
        rows.append({"pooling": pooling, "train examples": len(subset["train"]), **result.metrics,
                     "trainable params": result.extra["trainable_params"]})
    return pd.DataFrame(rows).set_index("pooling")


def encoder_run(profile: Profile, data: DatasetDict | None = None, method: str = ENCODER) -> RunResult:
    """Chapter 03's baseline: the profile's encoder (MiniLM, BERT) fully fine-tuned with a fresh head."""
    data = data or load_single_label(profile)
    seed_everything(profile.seed)
    model, tokenizer = models.load_encoder_classifier(profile, label_names(data))
    trainer = make_trainer(model, tokenizer, data, profile, settings=profile.encoder_train, run_name=method)
    report = train_and_report(trainer)
    return classifier_result(method, profile, data, model, tokenizer, settings=profile.encoder_train, extra=report)


def tfidf_run(profile: Profile, data: DatasetDict | None = None, method: str = TFIDF) -> RunResult:
    """Fit the TF-IDF floor on train and score the test split; its 'trainable parameters' are the LR weights."""
    data = data or load_single_label(profile)
    pipeline, train_seconds = tfidf.fit(data, profile.seed)
    texts = list(data["test"]["text"])
    probs, seconds = timed(tfidf.class_probs, pipeline, texts, len(label_names(data)))
    y_true = np.asarray(data["test"]["label"])
    y_pred = probs.argmax(axis=1)
    return RunResult(method=method, profile=profile.name, seed=profile.seed, label_names=label_names(data),
                     y_true=y_true, y_pred=y_pred, probs=probs, metrics=classification_metrics(y_true, y_pred),
                     extra={"train_seconds": train_seconds, "test_texts_per_second": len(texts) / seconds,
                            "trainable_params": probe_parameters(pipeline)})


def comparison_table(results: list[RunResult]) -> pd.DataFrame:
    """Method, trainable parameters, accuracy, macro-F1, train time and inference speed, one row per run."""
    rows = [{"method": r.method, "trainable params": r.extra.get("trainable_params"),
             "accuracy": r.metrics.get("accuracy"), "macro-F1": r.metrics.get("macro_f1"),
             "train time (s)": r.extra.get("train_seconds"), "inference (texts/s)": r.extra.get("test_texts_per_second")}
            for r in results]
    return pd.DataFrame(rows).set_index("method")
