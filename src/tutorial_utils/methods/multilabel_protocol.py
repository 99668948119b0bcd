"""How the multi-label methods train and predict under the comparison protocol (chapter 08).

The multi-label counterparts of ``runners``: TF-IDF and the frozen probe with one logistic regression
per label, the encoder and the LoRA embedding head with one sigmoid per label (BCE), and instruction
tuning that answers with the list of labels. All are judged the same way: the validation metric is
micro-F1, a method with probabilities gets the one threshold that maximises it on validation (chapter
05's "tuned global" rule), and its test predictions use that threshold. Generated lists need no
threshold. Each runner returns an outcome like ``runners``' (``records.make_record`` stores it).
"""

from __future__ import annotations

import numpy as np
from datasets import DatasetDict

from ..data import label_names, multi_hot
from ..evaluation.metrics import sigmoid
from ..evaluation.stats import micro_f1
from ..evaluation.thresholds import apply_thresholds, tune_global_threshold
from ..setup.config import Profile
from . import tfidf
from .embedding_head import run as run_embedding_head
from .encoder import run as run_encoder
from .instruct_train import run as run_instruction
from .multilabel_runs import instruction_result
from .probe import fit_multilabel_probe, probe_parameters
from .runners import fit_probes, probe_extra
from .train import predict_logits

__all__ = ["thresholded", "frequency_floor", "multilabel_tfidf", "multilabel_probe", "multilabel_head",
           "multilabel_encoder", "multilabel_instruction"]


def _label_matrix(data: DatasetDict, split: str) -> np.ndarray:
    """A split's labels as a 0/1 matrix (examples x labels)."""
    return multi_hot(data[split]).astype(int)


def _tuned_micro_f1(probs: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises micro-F1 on these labels, and the micro-F1 it reaches."""
    t = tune_global_threshold(probs, Y, metric="micro_f1")
    return micro_f1(Y, apply_thresholds(probs, t)), t


def thresholded(data: DatasetDict, val_probs: np.ndarray, test_probs: np.ndarray, **fields) -> dict:
    """An outcome from validation and test probabilities: the threshold tuned on validation applied to test."""
    value, t = _tuned_micro_f1(val_probs, _label_matrix(data, "validation"))
    extra = {**fields.pop("extra", {}), "threshold": t}
    return {"y_true": _label_matrix(data, "test"), "y_pred": apply_thresholds(test_probs, t), "probs": test_probs,
            "val_probs": val_probs, "validation_metric": value, **fields, "extra": extra}


def frequency_floor(data: DatasetDict) -> float:
    """Test micro-F1 of guessing from the tags' training frequencies alone (no text read), thresholded like
    every method: the level a model reaches when it has learned nothing from the texts."""
    prior = _label_matrix(data, "train").mean(axis=0)
    rows = {split: np.tile(prior, (len(data[split]), 1)) for split in ("validation", "test")}
    _, t = _tuned_micro_f1(rows["validation"], _label_matrix(data, "validation"))
    return micro_f1(_label_matrix(data, "test"), apply_thresholds(rows["test"], t))


def multilabel_tfidf(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """TF-IDF + one logistic regression per label at C = ``value``."""
    pipeline, seconds = tfidf.fit(data, seed, C=value, multi_label=True)
    val, test = (tfidf.class_probs(pipeline, list(data[s]["text"]), len(label_names(data))) for s in ("validation", "test"))
    return thresholded(data, val, test, trainable_params=probe_parameters(pipeline), train_seconds=seconds)


def multilabel_probe(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """The frozen-LLM probe, one logistic regression per label at C = ``value``; layer and pooling chosen on validation."""
    Y_train, Y_val = _label_matrix(data, "train"), _label_matrix(data, "validation")
    feats, best, scores, seconds, head = fit_probes(
        profile, data, lambda X: fit_multilabel_probe(X, Y_train, C=value, seed=seed),
        lambda head, X: _tuned_micro_f1(head.predict_proba(X), Y_val)[0])
    val, test = (head.predict_proba(feats[s][best]) for s in ("validation", "test"))
    return thresholded(data, val, test, trainable_params=probe_parameters(head), train_seconds=seconds,
                       extra=probe_extra(best, scores))


def _sigmoid_scorer(data: DatasetDict):
    """The protocol's evaluation of a multi-label classifier, given its tokenizer and settings: micro-F1 at the
    best threshold, and the probabilities."""
    texts, Y = list(data["validation"]["text"]), _label_matrix(data, "validation")

    def scorer(tokenizer, settings):
        def evaluate(model) -> tuple[float, np.ndarray]:
            probs = sigmoid(predict_logits(model, tokenizer, texts, settings.eval_batch_size, settings.max_length))
            return _tuned_micro_f1(probs, Y)[0], probs

        return evaluate

    return scorer


def _train_sigmoid_classifier(profile: Profile, data: DatasetDict, seed: int, value: float, encoder: bool) -> dict:
    """The LoRA head (4-bit base) or the encoder with one sigmoid per label, trained to a validation plateau."""
    fitted = (run_encoder if encoder else run_embedding_head)(profile, data, seed, value, multi_label=True,
                                                              scorer=_sigmoid_scorer(data))
    report = dict(fitted.report)
    return thresholded(data, report.pop("val_probs"), sigmoid(fitted.logits), **report)


def multilabel_head(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """The LoRA embedding head with one sigmoid per label (BCE), trained to a plateau at learning rate ``value``."""
    return _train_sigmoid_classifier(profile, data, seed, value, encoder=False)


def multilabel_encoder(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """The encoder, fully fine-tuned with one sigmoid per label, to a plateau at learning rate ``value``."""
    return _train_sigmoid_classifier(profile, data, seed, value, encoder=True)


def multilabel_instruction(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """Instruction tuning on "label, label" answers to a validation plateau (micro-F1 of the generated lists)."""
    tuned = run_instruction(profile, data, seed, value, multi_label=True, max_text_tokens=profile.train.max_length)
    result = instruction_result(tuned, profile, data)
    fitted = {k: v for k, v in tuned.report.items() if k != "extra"}
    extra = {**tuned.report["extra"], "parsing": result.extra["parsing"], "answers": result.extra["answers"],
             "test_texts_per_second": result.extra["test_texts_per_second"]}
    return {**fitted, "extra": extra, "y_true": result.y_true, "y_pred": result.y_pred, "probs": result.probs,
            "trainable_params": tuned.model.get_nb_trainable_parameters()[0]}
