"""Training to a validation plateau: evaluate a few times an epoch, keep the best weights, stop when the
validation metric has not improved for ``patience`` evaluations (the comparison protocol, chapter 08).

The best weights are kept in memory (only the trainable ones: LoRA and the head, or a small encoder),
so no checkpoint is written to disk; at the end the model holds the best evaluation's weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from transformers import TrainerCallback

from .config import Protocol

Evaluate = Callable[[object], tuple[float, np.ndarray]]  # model -> (validation metric, validation probabilities)


def schedule(n_train: int, batch_size: int, protocol: Protocol, grad_accum: int = 1) -> dict[str, int]:
    """Optimiser steps per epoch, the epochs to allow and the steps between evaluations, for one run.

    A small training set gets more epochs (at least ``min_steps`` steps in all); its evaluations are then
    spaced so that a run never evaluates more often than a full-size one does.
    """
    per_epoch = max(1, math.ceil(n_train / (batch_size * grad_accum)))
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
        start = time.perf_counter()
        value, probs = self.evaluate(model)
        model.train()
        self.eval_seconds += time.perf_counter() - start
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
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    callback.restore(trainer.model)
    last = callback.curve[-1]["step"] if callback.curve else trainer.state.global_step
    return {"validation_curve": callback.curve, "validation_metric": callback.best, "val_probs": callback.best_probs,
            "epochs_run": round(last / steps["steps_per_epoch"], 3), "train_seconds": seconds,
            "extra": {"evaluation_seconds": round(callback.eval_seconds, 1), "optimizer_steps": int(last),
                      "max_epochs": steps["max_epochs"], "steps_per_epoch": steps["steps_per_epoch"],
                      "stopped_early": last < trainer.state.max_steps}}
