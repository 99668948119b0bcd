"""Training to a validation plateau: evaluate a few times an epoch, keep the best weights, stop when the
validation metric has not improved for ``patience`` evaluations (the comparison protocol, chapter 08).

The best weights are kept in memory (only the trainable ones: LoRA and the head, or a small encoder),
so no checkpoint is written to disk; at the end the model holds the best evaluation's weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from datasets import DatasetDict
from transformers import TrainerCallback

from ..data.common import label_names
from ..evaluation.metrics import macro_f1, softmax
from ..setup.config import Profile, Protocol, TrainSettings
from ..setup.timing import timed
from .train import agreed, balanced_weights, make_trainer, predict_logits, windows, world_size

__all__ = ["Evaluate", "UNTIL", "check_until", "schedule", "PlateauCallback", "train_to_plateau", "classifier_scorer",
           "fit_classifier"]

Evaluate = Callable[[object], tuple[float, np.ndarray]]  # model -> (validation metric, validation probabilities)
# how long a method's ``run`` trains: to a validation plateau (the protocol), or the profile's epochs (a demonstration)
UNTIL = ("plateau", "epochs")


def check_until(until: str) -> str:
    """``until`` if a run knows it (``UNTIL``); a clear error otherwise."""
    if until not in UNTIL:
        raise ValueError(f"until={until!r}: a run trains until one of {UNTIL}. Fix: pass one of these.")
    return until


def schedule(n_train: int, batch_size: int, protocol: Protocol, grad_accum: int = 1,
             processes: int | None = None) -> dict[str, int]:
    """Optimiser steps per epoch, the epochs to allow and the steps between evaluations, for one run.

    ``batch_size`` is each process's; a step takes ``batch_size x grad_accum x processes`` examples (``processes``:
    default ``train.world_size()``). A small training set gets more epochs (at least ``min_steps`` steps in all);
    its evaluations are then spaced so that a run never evaluates more often than a full-size one does.
    """
    processes = processes or world_size()
    per_epoch = max(1, math.ceil(n_train / (batch_size * grad_accum * processes)))
    epochs = max(protocol.max_epochs, math.ceil(protocol.min_steps / per_epoch))
    # at least evals_per_epoch evaluations an epoch, and no more in all than max_epochs x evals_per_epoch
    most = protocol.max_epochs * protocol.evals_per_epoch
    every = max(1, per_epoch // protocol.evals_per_epoch, math.ceil(per_epoch * epochs / most))
    return {"steps_per_epoch": per_epoch, "max_epochs": epochs, "eval_every": every}


class PlateauCallback(TrainerCallback):
    """Evaluates every ``every`` steps (and at the last), keeps the best trainable weights, stops on a plateau."""

    def __init__(self, evaluate: Evaluate, every: int, patience: int, steps_per_epoch: int):
        self.evaluate, self.every, self.patience, self.per_epoch = evaluate, every, patience, steps_per_epoch
        self.curve: list[dict] = []
        self.best, self.best_probs, self.best_state, self.waited = -math.inf, None, None, 0
        self.eval_seconds = 0.0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Evaluate on the schedule; remember the best; ask the Trainer to stop after ``patience`` evaluations without gain."""
        if state.global_step % self.every and state.global_step < state.max_steps:
            return control
        (value, probs), seconds = timed(self.evaluate, model)
        value = agreed(value)  # under DDP every process decides on the first one's score
        model.train()
        self.eval_seconds += seconds
        self.curve.append({"step": int(state.global_step), "epoch": round(state.global_step / self.per_epoch, 3),
                           "value": float(value)})
        if value > self.best:
            self.best, self.best_probs, self.waited = float(value), probs, 0
            self.best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.waited += 1
            if self.waited >= self.patience:
                control.should_training_stop = True
        return control

    def restore(self, model) -> None:
        """Put the best evaluation's weights back into the model."""
        if self.best_state is None:
            raise RuntimeError("No evaluation ran during training, so there are no best weights to restore. "
                               "Fix: train for at least one evaluation interval.")
        for name, param in model.named_parameters():
            if name in self.best_state:
                param.data.copy_(self.best_state[name])


def train_to_plateau(trainer, evaluate: Evaluate, protocol: Protocol, steps: dict[str, int]) -> dict:
    """Train with evaluation on the protocol's schedule, restore the best weights; the run's curve and timings."""
    callback = PlateauCallback(evaluate, steps["eval_every"], protocol.patience, steps["steps_per_epoch"])
    trainer.add_callback(callback)
    _, seconds = timed(trainer.train)
    callback.restore(trainer.model)
    last = callback.curve[-1]["step"] if callback.curve else trainer.state.global_step
    return {"validation_curve": callback.curve, "validation_metric": callback.best, "val_probs": callback.best_probs,
            "epochs_run": round(last / steps["steps_per_epoch"], 3), "train_seconds": seconds,
            "extra": {"evaluation_seconds": round(callback.eval_seconds, 1), "optimizer_steps": int(last),
                      "max_epochs": steps["max_epochs"], "steps_per_epoch": steps["steps_per_epoch"],
                      "stopped_early": last < trainer.state.max_steps}}


def classifier_scorer(tokenizer, data: DatasetDict, settings: TrainSettings, chunk: bool = False) -> Evaluate:
    """The protocol's evaluation of a sequence classifier: macro-F1 and probabilities on the validation split
    (``chunk``: a long text's logits averaged over its windows, ``train.predict_logits``)."""
    texts, y, n = list(data["validation"]["text"]), np.asarray(data["validation"]["label"]), len(label_names(data))

    def evaluate(model) -> tuple[float, np.ndarray]:
        logits = predict_logits(model, tokenizer, texts, batch_size=settings.eval_batch_size,
                                max_length=settings.max_length, chunk=chunk)
        return macro_f1(y, logits.argmax(1), n), softmax(logits)

    return evaluate


def fit_classifier(model, tokenizer, data: DatasetDict, profile: Profile, learning_rate: float | None = None,
                   seed: int | None = None, settings: TrainSettings | None = None, multi_label: bool = False,
                   evaluate: Evaluate | None = None, class_weight: str | None = None,
                   chunk: bool = False) -> dict:
    """Train a sequence classifier (LoRA head or encoder) to a validation plateau, best weights kept (chapters 02, 08).

    The profile's ``protocol`` sets the schedule (evaluations an epoch, patience, epoch cap); ``settings``
    (default ``profile.train``) the batch size and text length. ``multi_label``: train with BCE on the
    ``labels`` lists; ``evaluate`` then says what validation measures (default: macro-F1 of the argmax).
    ``class_weight="balanced"`` and ``chunk``: your data's options (chapter 09): the class weights count the rows
    the loss sees (with ``chunk``, every window) and are kept in the outcome's ``extra``.
    Returns the curve, the best validation metric, the epochs run and timings; the model ends with the
    best evaluation's weights.
    """
    s = settings or profile.train
    seed = profile.seed if seed is None else seed
    # the training rows: one a text, or with chunk one a window (each with its text's label)
    owner = windows(tokenizer, list(data["train"]["text"]), s.max_length, True)[1] if chunk else np.arange(len(data["train"]))
    steps = schedule(len(owner), s.batch_size, profile.protocol, s.grad_accum)  # an epoch: every row once
    weights = None
    if class_weight == "balanced":
        weights = balanced_weights(np.asarray(data["train"]["label"])[owner].tolist(), len(label_names(data)))
    trainer = make_trainer(model, tokenizer, data, profile, settings=s, multi_label=multi_label, run_name="protocol",
                           eval_strategy="no", learning_rate=s.learning_rate if learning_rate is None else learning_rate,
                           num_train_epochs=steps["max_epochs"], seed=seed, data_seed=seed,
                           class_weights=weights, chunk=chunk)
    fitted = train_to_plateau(trainer, evaluate or classifier_scorer(tokenizer, data, s, chunk), profile.protocol, steps)
    if weights is not None:
        fitted["extra"]["class_weights"] = dict(zip(label_names(data), [round(w, 4) for w in weights]))
    return fitted
