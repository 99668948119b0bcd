"""How each registered method is run and scored under the comparison protocol (chapter 08).

Every runner takes the profile, the comparison's data (train already cut to the comparison's size),
the seed and the value of the setting the protocol tunes (learning rate or C), and returns an
*outcome*: test labels, predictions and probabilities, validation probabilities, the validation curve,
trainable parameters and timings. The gradient-trained methods train by their own ``run`` to a validation
plateau (``embedding_head.run``, ``encoder.run``, ``instruct_train.run``); ``records.make_record`` turns an
outcome into a run record. ``settings`` says what defines each run: it goes into the run's key.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from datasets import DatasetDict

from .. import methods
from ..data import label_names
from ..evaluation.metrics import macro_f1, softmax
from ..modeling.models import load_causal_lm
from ..setup.config import Profile, TrainSettings
from ..setup.timing import timed
from .distillation import run as run_student
from .distillation import teacher_probabilities, with_teacher
from .embedding_head import run as run_embedding_head
from .encoder import run as run_encoder
from .instruct import make_verbalizer
from .instruct_train import generated_result, scored_result, subject_of
from .instruct_train import run as run_instruction
from .probe import cached_features, fit_probe, probe_parameters
from .prompting import prompt_scores
from .tfidf import DEFAULT_C, class_probs, fit as fit_pipeline

__all__ = ["default_value", "protocol_profile", "settings", "fit_tfidf", "tfidf", "fit_probes", "probe_extra",
           "probe", "zero_shot", "train_classifier", "embedding_head", "encoder", "student", "instruction",
           "fit_instruction"]

PROBE_C = 1.0  # the probe's default C, which the grid multiplies (chapter 03b); TF-IDF's is tfidf.DEFAULT_C


def default_value(profile: Profile, method: str) -> float | None:
    """The method's default learning rate (or C): the centre of the protocol's grid."""
    entry = methods.get(method)
    if entry.tuned is None:
        return None
    method = entry.adapts or method  # a multi-label method starts from its single-label counterpart's default
    return {methods.TFIDF: DEFAULT_C, methods.FROZEN_PROBE: PROBE_C, methods.EMBEDDING_HEAD: profile.train.learning_rate,
            methods.ENCODER: profile.encoder_train.learning_rate, methods.STUDENT: profile.encoder_train.learning_rate,
            methods.INSTRUCTION_SCORED: profile.instruct_train.learning_rate,
            methods.INSTRUCTION_GENERATED: profile.instruct_train.learning_rate}[method]


def protocol_profile(profile: Profile) -> Profile:
    """The profile as the protocol trains it: every gradient-trained method at the protocol's batch size."""
    b = profile.protocol.batch_size
    if b is None:
        return profile
    return dataclasses.replace(profile, **{name: dataclasses.replace(getattr(profile, name), batch_size=b)
                                           for name in ("train", "encoder_train", "instruct_train")})


def _train_settings(s: TrainSettings) -> dict:
    return {k: v for k, v in dataclasses.asdict(s).items() if k not in {"epochs", "learning_rate"}}


def settings(profile: Profile, method: str, value: float | None, teacher: dict | None = None) -> dict:
    """Everything that defines one run of ``method`` (the data and the seed aside): the key's settings part
    (a distilled student's: with ``teacher``, its teacher's settings)."""
    if method == methods.STUDENT:
        if teacher is None:
            raise ValueError("A distilled student's settings include its teacher's. Fix: pass the teacher's settings "
                             "(teacher=settings(profile, EMBEDDING_HEAD, its learning rate)).")
        p = profile.protocol
        return {**settings(profile, methods.ENCODER, value), "teacher": teacher,
                "transfer": "the training texts, labelled, with the teacher's probabilities",
                "temperature": p.distill_temperature, "alpha": p.distill_alpha}
    adapts = methods.get(method).adapts
    if adapts:  # a multi-label method: its single-label counterpart's settings, judged by micro-F1
        out = settings(profile, adapts, value)
        out.update(task=methods.MULTI_LABEL, decision="the generated list, in the label list's order" if "predict" in out
                   else "one threshold for every label, tuned on validation for micro-F1")
        if method == methods.MULTILABEL_ENCODER:  # heads.tag_encoder: without it the encoder collapsed to the priors
            out.update(pooling="mean", output_bias="log-odds of each tag's training frequency")
        if "plateau" in out:
            out["plateau"] = {**out["plateau"], "validation_metric": "micro_f1"}
        return out
    profile = protocol_profile(profile)
    p = profile.protocol
    plateau = {"max_epochs": p.max_epochs, "evals_per_epoch": p.evals_per_epoch, "patience": p.patience,
               "min_steps": p.min_steps, "validation_metric": "macro_f1"}
    llm = {"model": profile.causal_lm, "load_in_4bit": profile.load_in_4bit}
    if method == methods.TFIDF:
        return {"features": "tfidf words 1-2 grams, sublinear tf, min_df 1", "C": value, "max_iter": 2000}
    if method == methods.FROZEN_PROBE:
        return {**llm, "max_length": profile.train.max_length, "layers": ["last", "middle"],
                "poolings": ["last", "mean"], "head": "standardised features + logistic regression", "C": value}
    if method == methods.ZERO_SHOT:
        return {**llm, "verbalizer": "names", "max_text_tokens": profile.train.max_length}
    if method == methods.EMBEDDING_HEAD:
        # an ablation's pooling or head start enters the key only when it is not the default (stored keys stay)
        ablated = {k: v for k, v, default in (("pooling", profile.head_pooling, "last"),
                                              ("head_init", profile.head_init, "random")) if v != default}
        return {**llm, "lora": dataclasses.asdict(profile.lora), "train": _train_settings(profile.train),
                "learning_rate": value, "plateau": plateau, **ablated}
    if method == methods.ENCODER:
        return {"model": profile.encoder, "train": _train_settings(profile.encoder_train), "learning_rate": value,
                "plateau": plateau}
    if method in {methods.INSTRUCTION_SCORED, methods.INSTRUCTION_GENERATED}:
        return {**llm, "lora": dataclasses.asdict(profile.lora), "train": _train_settings(profile.instruct_train),
                "max_text_tokens": profile.train.max_length, "verbalizer": profile.verbalizer, "learning_rate": value,
                "plateau": plateau, "predict": "score" if method == methods.INSTRUCTION_SCORED else "generate"}
    raise methods.UnknownMethod(f"The protocol has no runner for {method!r}; it runs: "
                                f"{', '.join(methods.names(runnable=True))}.")


# ---- scikit-learn methods ---------------------------------------------------------------------------

def fit_tfidf(data: DatasetDict, seed: int, value: float, class_weight: str | None = None) -> tuple[object, dict]:
    """TF-IDF + logistic regression at C = ``value`` (``class_weight="balanced"``: scikit-learn's, chapter 09),
    trained on ``data``'s train split: (pipeline, outcome)."""
    pipeline, seconds = fit_pipeline(data, seed, C=value, class_weight=class_weight)
    n = len(label_names(data))
    val, test = (class_probs(pipeline, list(data[split]["text"]), n) for split in ("validation", "test"))
    return pipeline, {"y_true": data["test"]["label"], "y_pred": test.argmax(1), "probs": test, "val_probs": val,
                      "validation_metric": macro_f1(data["validation"]["label"], val.argmax(1), n),
                      "trainable_params": probe_parameters(pipeline), "train_seconds": seconds}


def tfidf(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """TF-IDF + logistic regression at regularisation C = ``value``."""
    return fit_tfidf(data, seed, value)[1]


def fit_probes(profile: Profile, data: DatasetDict, fit, score) -> tuple:
    """A frozen-LLM probe per layer and pooling, ``fit(X, y_train)``, the best on validation by ``score(head, X)``:
    (features by split, best (layer, pooling), validation scores, fit seconds, the best head)."""
    feats = {s: cached_features(profile, f"{profile.single_label_data}-{s}", list(data[s]["text"]),
                                profile.train.max_length, verbose=False) for s in ("train", "validation", "test")}
    heads, seconds = timed(lambda: {key: fit(X) for key, X in feats["train"].items()})
    scores = {key: score(head, feats["validation"][key]) for key, head in heads.items()}
    best = max(scores, key=scores.get)
    return feats, best, scores, seconds, heads[best]


def probe_extra(best: tuple, scores: dict) -> dict:
    """What a probe's record keeps beyond the scores: the layer and pooling chosen, and every pair's validation."""
    return {"layer": best[0], "pooling": best[1], "validation_by_layer_pooling": {"/".join(k): v for k, v in scores.items()}}


def probe(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """The frozen-LLM probe at C = ``value``: layer and pooling chosen on validation (features cached)."""
    n = len(label_names(data))
    y = {s: np.asarray(data[s]["label"]) for s in ("train", "validation", "test")}
    feats, best, scores, seconds, head = fit_probes(
        profile, data, lambda X: fit_probe(X, y["train"], C=value, seed=seed),
        lambda head, X: macro_f1(y["validation"], head.predict(X), n))
    val, test = (head.predict_proba(feats[s][best]) for s in ("validation", "test"))
    return {"y_true": y["test"], "y_pred": test.argmax(1), "probs": test, "val_probs": val,
            "validation_metric": scores[best], "trainable_params": probe_parameters(head),
            "train_seconds": seconds, "extra": probe_extra(best, scores)}


def zero_shot(profile: Profile, data: DatasetDict, seed: int, value: None) -> dict:
    """Zero-shot label scoring with the frozen instruct model (nothing trains)."""
    model, tokenizer = load_causal_lm(profile, padding_side="right")
    verbalizer, subject = make_verbalizer(label_names(data), "names"), subject_of(profile.single_label_data)
    n = len(verbalizer.words)
    val, _ = prompt_scores(model, tokenizer, list(data["validation"]["text"]), verbalizer, [], subject)
    test, seconds = prompt_scores(model, tokenizer, list(data["test"]["text"]), verbalizer, [], subject)
    return {"y_true": data["test"]["label"], "y_pred": test.argmax(1), "probs": softmax(test),
            "val_probs": softmax(val), "validation_metric": macro_f1(data["validation"]["label"], val.argmax(1), n),
            "trainable_params": 0, "train_seconds": 0.0,
            "extra": {"test_texts_per_second": len(test) / seconds}}


# ---- gradient-trained methods -------------------------------------------------------------------------

def train_classifier(profile: Profile, data: DatasetDict, seed: int, value: float, encoder: bool,
                     class_weight: str | None = None, chunk: bool = False) -> tuple:
    """The LoRA head (4-bit base) or the encoder trained to a validation plateau (``embedding_head.run``,
    ``encoder.run``): (model, tokenizer, outcome)."""
    fitted = (run_encoder if encoder else run_embedding_head)(profile, data, seed, value, class_weight=class_weight,
                                                              chunk=chunk)
    return fitted.model, fitted.tokenizer, {**fitted.report, "y_true": data["test"]["label"],
                                            "y_pred": fitted.logits.argmax(1), "probs": softmax(fitted.logits)}


def embedding_head(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """The LoRA embedding head (4-bit base), trained to a validation plateau at learning rate ``value``."""
    return train_classifier(profile, data, seed, value, encoder=False)[2]


def encoder(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict:
    """The encoder, fully fine-tuned to a validation plateau at learning rate ``value``."""
    return train_classifier(profile, data, seed, value, encoder=True)[2]


def student(profile: Profile, data: DatasetDict, seed: int, value: float, teacher_lr: float,
            teacher_profile: Profile | None = None) -> dict:
    """The distilled student at learning rate ``value`` (``distillation.run`` to a validation plateau), taught on
    the training texts by the head trained again at ``teacher_lr`` on the same seed (``teacher_profile``: the
    profile it trains under, e.g. with the longer epoch cap of the head run the comparison kept; default
    ``profile``); the teacher's test predictions, validation curve and speed are kept beside the student's
    (``extra["teacher"]``)."""
    teacher = run_embedding_head(teacher_profile or profile, data, seed, teacher_lr)
    probs = teacher_probabilities(teacher.model, teacher.tokenizer, list(data["train"]["text"]), profile.train)
    y_true, taught = np.asarray(data["test"]["label"]), teacher.logits.argmax(1)
    kept = {"y_pred": taught.tolist(), "test_macro_f1": macro_f1(y_true, taught, len(label_names(data))),
            **{k: teacher.report[k] for k in ("validation_metric", "validation_curve", "train_seconds",
                                              "trainable_params")},
            "test_texts_per_second": teacher.report["extra"]["test_texts_per_second"]}
    del teacher  # the student trains without the 4-bit teacher in memory
    p = profile.protocol
    transfer = with_teacher(DatasetDict(train=data["train"]), probs)
    fitted = run_student(profile, data, transfer, seed, value, temperature=p.distill_temperature,
                         alpha=p.distill_alpha)
    fitted.report["extra"]["teacher"] = kept
    return {**fitted.report, "y_true": y_true, "y_pred": fitted.logits.argmax(1), "probs": softmax(fitted.logits)}


def instruction(profile: Profile, data: DatasetDict, seed: int, value: float) -> dict[str, dict]:
    """Instruction tuning to a validation plateau (scored labels on validation); test scored and generated.

    Returns two outcomes from one training: ``instruction-scored`` and ``instruction-generated``.
    """
    return fit_instruction(profile, data, seed, value)[1]


def fit_instruction(profile: Profile, data: DatasetDict, seed: int, value: float, subject: str | None = None) -> tuple:
    """``instruction``'s training (``instruct_train.run`` to a plateau), with the tuned model kept:
    (``instruct_train.InstructionModel``, outcomes by method). ``subject``: what the prompt calls a text (default:
    the profile's dataset's word for it)."""
    tuned = run_instruction(profile, data, seed, value, max_text_tokens=profile.train.max_length, subject=subject)
    fitted, outcomes = tuned.report, {}
    for name, predict in ((methods.INSTRUCTION_SCORED, scored_result), (methods.INSTRUCTION_GENERATED, generated_result)):
        result = predict(tuned, profile, data)
        extra = {**fitted["extra"], **{k: v for k, v in result.extra.items() if k in
                                        {"test_texts_per_second", "answers", "unparsable"}}}
        outcomes[name] = {**fitted, "extra": extra, "y_true": result.y_true, "y_pred": result.y_pred,
                          "probs": result.probs, "trainable_params": tuned.model.get_nb_trainable_parameters()[0]}
    return tuned, outcomes
