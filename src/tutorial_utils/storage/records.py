"""The run record: one typed result per trained (or prompted) method, its key and its provenance.

A run is keyed by what defines it and nothing else: the method, the method's own settings, a
fingerprint of the exact train / validation / test texts and labels, the seed and the record format.
Editing one method's settings never invalidates another method's results, and two datasets can never
share a key. ``make_record`` is the one function that builds a record. Taught in chapter 08.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data import label_names
from ..evaluation.metrics import classification_metrics, multilabel_metrics
from ..setup.config import ROOT
from ..setup.session import versions

__all__ = ["RunRecord", "fingerprint", "data_description", "run_key", "git_commit", "machine", "provenance",
           "make_record"]

_RECORD_VERSION = 1  # bump when the meaning of a stored record changes: every stored key changes with it


@dataclass
class RunRecord:
    """One run of one method on one dataset and seed: settings, curve, test predictions and provenance."""

    method: str
    dataset: str
    seed: int
    key: str
    settings: dict  # the method's own settings, the tuned value (learning rate or C) included
    data: dict  # dataset name, split sizes and fingerprint
    label_names: list[str]
    train_examples: int
    trainable_params: int
    epochs_run: float | None  # None for methods that do not train in epochs
    best_epoch: float | None
    learning_rate: float | None
    validation_curve: list[dict]  # points {"step", "epoch", "value"}: the validation metric during training
    validation_metric: float | None  # the best validation value (what the grid selects on)
    train_seconds: float
    test_metrics: dict[str, float]
    provenance: dict
    y_true: np.ndarray = field(repr=False)
    y_pred: np.ndarray = field(repr=False)
    probs: np.ndarray = field(repr=False)
    val_probs: np.ndarray | None = field(default=None, repr=False)  # validation probabilities (calibration)
    extra: dict = field(default_factory=dict)

    ARRAYS = ("y_true", "y_pred", "probs", "val_probs")

    def meta(self) -> dict:
        """Everything but the arrays, as JSON-ready values."""
        return {k: v for k, v in asdict(self).items() if k not in self.ARRAYS}

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that are stored beside the record (those that are set)."""
        return {k: getattr(self, k) for k in self.ARRAYS if getattr(self, k) is not None}

    def summary(self) -> str:
        """One line: method, seed, training examples, learning rate, epochs and the test macro-F1 (multi-label: micro-F1)."""
        metric = "micro_f1" if "micro_f1" in self.test_metrics else "macro_f1"  # multi-label: micro-F1
        rate = f", lr {self.learning_rate:.2g}" if self.learning_rate else ""
        epochs = f", best epoch {self.best_epoch:.1f} of {self.epochs_run:.1f}" if self.epochs_run else ""
        return (f"{self.method} [seed {self.seed}, {self.train_examples:,} examples{rate}{epochs}]: "
                f"{metric} {self.test_metrics[metric]:.3f}")


def fingerprint(data) -> str:
    """A short hash of the exact texts and labels of every split of a DatasetDict (order included)."""
    digest = hashlib.sha256()
    for split in sorted(data):
        column = "label" if "label" in data[split].column_names else "labels"
        digest.update(json.dumps([split, list(data[split]["text"]), list(data[split][column])]).encode())
    return digest.hexdigest()[:16]


def data_description(data, dataset: str) -> dict:
    """The dataset's name, its split sizes and its fingerprint: the data part of a run's key."""
    return {"dataset": dataset, "sizes": {split: len(data[split]) for split in sorted(data)},
            "fingerprint": fingerprint(data)}


def run_key(method: str, settings: dict, data: dict, seed: int) -> str:
    """The key of a run: a hash of the record format, the method, its settings, the data fingerprint and the seed."""
    payload = json.dumps({"v": _RECORD_VERSION, "method": method, "settings": settings,
                          "data": data["fingerprint"], "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def git_commit() -> tuple[str, bool | None]:
    """The checkout's commit and whether its package code had uncommitted changes (("unknown", None) outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
        return head, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


# the code this process runs: the checkout as it was when this module was first imported (a command or a notebook
# imports it before it trains). A run finishes hours later, and a checkout that moved on meanwhile (a commit, an
# edit) must not be credited with it.
_LOADED_FROM = git_commit()


def machine() -> str:
    """The processor or GPU a run used, in a few words."""
    import torch  # lazy: torch costs ~2 s, and only a finished run asks which machine it ran on

    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, {torch.get_num_threads()} torch threads"


def provenance(wall_seconds: float, command: str | None = None, compute_dtype: str | None = None) -> dict:
    """Where a run came from: commit, command, wall time, machine, compute dtype, library versions and when it
    finished. The commit is the one the package was imported from (``_LOADED_FROM``). Records made before the dtype
    was kept (2026-12-07) computed in bfloat16 on every CPU."""
    commit, dirty = _LOADED_FROM
    return {"git_commit": commit, "uncommitted_changes": dirty,
            "command": command or "python -m tutorial_utils " + " ".join(sys.argv[1:]),
            "wall_seconds": round(float(wall_seconds), 1), "machine": machine(), "cpu_count": os.cpu_count(),
            "compute_dtype": compute_dtype,
            "versions": versions(), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            # 1, 5 and 15-minute load averages at the end: well above the core count, the CPU was shared
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def make_record(method: str, dataset: str, seed: int, settings: dict, data, outcome: dict,
                wall_seconds: float, command: str | None, *, compute_dtype: str | None) -> RunRecord:
    """The one builder of a run record, from a runner's outcome (predictions, curve, counts, timings) and the
    dtype its models computed in (``models.compute_dtype_name()``; required, so that no caller forgets it)."""
    described = data_description(data, dataset)
    y_true, y_pred = np.asarray(outcome["y_true"]), np.asarray(outcome["y_pred"])
    if y_true.shape[0] != len(data["test"]) or y_pred.shape != y_true.shape:
        raise ValueError(f"{method}: {y_pred.shape} predictions for {y_true.shape} test labels of "
                         f"{len(data['test'])} test texts. Fix: predict every test text once, in order.")
    names = label_names(data)
    metrics = (multilabel_metrics(y_true, y_pred) if y_true.ndim == 2
               else classification_metrics(y_true, y_pred, n_classes=len(names)))
    curve = outcome.get("validation_curve", [])
    best = max(curve, key=lambda p: p["value"]) if curve else None
    return RunRecord(
        method=method, dataset=dataset, seed=seed, key=run_key(method, settings, described, seed),
        settings=settings, data=described, label_names=names,
        train_examples=int(outcome.get("train_examples", len(data["train"]))),  # a run on part of the split says so
        trainable_params=int(outcome["trainable_params"]), epochs_run=outcome.get("epochs_run"),
        best_epoch=best["epoch"] if best else None, learning_rate=settings.get("learning_rate"),
        validation_curve=curve, validation_metric=outcome.get("validation_metric", best["value"] if best else None),
        train_seconds=float(outcome.get("train_seconds", 0.0)), test_metrics=metrics,
        provenance=provenance(wall_seconds, command, compute_dtype), y_true=y_true, y_pred=y_pred,
        probs=np.asarray(outcome["probs"], dtype=np.float32),
        val_probs=None if outcome.get("val_probs") is None else np.asarray(outcome["val_probs"], dtype=np.float32),
        extra=outcome.get("extra", {}))
