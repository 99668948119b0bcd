"""One run of a sequence classifier, the LoRA embedding head (chapter 02) or the encoder (chapter 03): trained
for the profile's epochs (a chapter's demonstration) or to a validation plateau (the protocol, chapter 08),
then run on the test split. ``embedding_head.run`` and ``encoder.run`` load their model and call ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from datasets import DatasetDict

from ..modeling import models
from ..setup.config import Profile, TrainSettings
from ..setup.timing import timed
from .plateau import Evaluate, check_until, fit_classifier
from .train import make_trainer, predict_logits, train_and_report

__all__ = ["Scorer", "Fitted", "fit", "predicted"]

Scorer = Callable[[object, TrainSettings], Evaluate]  # (tokenizer, settings) -> what validation measures, and how


@dataclass
class Fitted:
    """A trained classifier, its logits on the test split (in its order) and what its training reported
    (chapters 02, 03, 08): ``report`` holds the timings, the curve, the trainable parameters and ``extra``."""

    model: object
    tokenizer: object
    logits: np.ndarray
    report: dict


def fit(model, tokenizer, data: DatasetDict, profile: Profile, settings: TrainSettings, seed: int, lr: float,
        until: str = "plateau", multi_label: bool = False, scorer: Scorer | None = None,
        class_weight: str | None = None, chunk: bool = False, by_length: bool = False,
        **trainer_options: object) -> Fitted:
    """Train ``model`` on ``data``'s train split at learning rate ``lr`` (not ``settings.learning_rate``) from
    ``seed``, then predict its test split (chapters 02, 03, 05, 08, 09).

    ``until="plateau"``: the protocol's schedule (``profile.protocol``: evaluations an epoch, patience, the epoch cap;
    ``settings.epochs`` is not used), the best validation weights kept (``plateau.fit_classifier``); ``scorer`` says
    what validation measures (default macro-F1 of the argmax). ``until="epochs"``: ``settings.epochs`` epochs with
    the Trainer's own evaluation each epoch (its learning curve in the report); ``trainer_options`` go to
    ``TrainingArguments``. ``class_weight="balanced"`` and ``chunk``: your data's options (chapter 09);
    ``by_length``: the test split predicted in batches of similar length (``train.predict_logits``).
    """
    if check_until(until) == "plateau":
        if trainer_options:
            raise ValueError(f"The protocol's runs set their own Trainer options; got {sorted(trainer_options)}. "
                             "Fix: leave them out, or pass until='epochs'.")
        report = fit_classifier(model, tokenizer, data, profile, learning_rate=lr, seed=seed, settings=settings,
                                multi_label=multi_label, evaluate=scorer(tokenizer, settings) if scorer else None,
                                class_weight=class_weight, chunk=chunk)
    else:
        if class_weight is not None or scorer is not None:
            raise ValueError("class_weight and scorer belong to the protocol's runs. Fix: pass until='plateau'.")
        trainer = make_trainer(model, tokenizer, data, profile, settings=settings, multi_label=multi_label,
                               chunk=chunk, learning_rate=lr, seed=seed, data_seed=seed, **trainer_options)
        report = {**train_and_report(trainer), "extra": {}}
    return predicted(model, tokenizer, data, settings, report, chunk=chunk, by_length=by_length)


def predicted(model, tokenizer, data: DatasetDict, settings: TrainSettings, report: dict, chunk: bool = False,
              by_length: bool = False) -> Fitted:
    """A trained classifier's run: its logits on ``data``'s test split, its speed there and its trainable parameters
    added to its training's ``report`` (``fit``, ``distillation.run``)."""
    logits, seconds = timed(predict_logits, model, tokenizer, list(data["test"]["text"]), settings.eval_batch_size,
                            settings.max_length, chunk=chunk, by_length=by_length)
    report["extra"]["test_texts_per_second"] = len(logits) / seconds
    report["trainable_params"] = models.count_parameters(model).trainable
    return Fitted(model, tokenizer, logits, report)
