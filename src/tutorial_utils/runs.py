"""The run cache: a run's test predictions, probabilities, labels, config and metrics, kept on disk.

Later chapters (statistics, distillation, the capstone) reuse earlier runs without retraining. A run
is keyed by profile, method and seed, and stamped with a hash of the whole profile and the run's own
config: a result made under other settings is never returned, it is recomputed. Taught in chapter 02.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .assets import cache_dir
from .config import Profile

RUNS_ENV = "COURSE_RUNS"
CACHE_VERSION = 1  # bump when the meaning of a stored result changes


@dataclass
class RunResult:
    """One method's predictions on one test split, with what is needed to compare and reproduce it."""

    method: str
    profile: str
    seed: int
    label_names: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    metrics: dict[str, float]
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    key: str = ""

    def summary(self) -> str:
        """One line: method, the main metrics and trainable parameters (no timings: they vary run to run)."""
        parts = [f"{self.method} [{self.profile}, seed {self.seed}]"]
        parts += [f"{k}={v:.3f}" for k, v in self.metrics.items() if isinstance(v, float)]
        if "trainable_params" in self.extra:
            parts.append(f"trainable={self.extra['trainable_params']:,}")
        return "  ".join(parts)


def runs_dir() -> Path:
    """Root folder of the run cache (``COURSE_RUNS`` or ``<course cache>/runs``)."""
    root = Path(os.environ.get(RUNS_ENV) or cache_dir() / "runs")
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_key(profile: Profile, method: str, config: dict | None = None) -> str:
    """A short hash of everything that defines a run: cache version, profile, method and its config."""
    payload = json.dumps({"v": CACHE_VERSION, "profile": dataclasses.asdict(profile), "method": method,
                          "config": config or {}}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def run_path(profile: Profile, method: str, seed: int | None = None) -> Path:
    """The folder that holds one run: ``<runs>/<profile>/<method>-seed<seed>``."""
    return runs_dir() / profile.name / f"{method}-seed{profile.seed if seed is None else seed}"


def model_dir(profile: Profile, method: str, seed: int | None = None) -> Path:
    """Where a run keeps its trained weights (for a LoRA model: the adapter and head), if it saved them."""
    return run_path(profile, method, seed) / "model"


def save(result: RunResult, profile: Profile) -> Path:
    """Write a run's arrays (npz) and metadata (json); returns its folder."""
    folder = run_path(profile, result.method, result.seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "arrays.npz", y_true=result.y_true, y_pred=result.y_pred, probs=result.probs)
    meta = {k: v for k, v in dataclasses.asdict(result).items() if k not in {"y_true", "y_pred", "probs"}}
    meta["saved_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (folder / "run.json").write_text(json.dumps(meta, indent=1, default=jsonable))
    return folder


def jsonable(value: object) -> object:
    """json fallback for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def load(profile: Profile, method: str, config: dict | None = None, seed: int | None = None,
         needs_model: bool = False) -> RunResult | None:
    """The cached run if it exists and was made with this exact profile and config; else None.

    With ``needs_model`` a run whose trained weights were not saved counts as missing.
    """
    folder = run_path(profile, method, seed)
    if not (folder / "run.json").exists() or not (folder / "arrays.npz").exists():
        return None
    if needs_model and not (folder / "model").is_dir():
        return None
    meta = json.loads((folder / "run.json").read_text())
    wanted = run_key(dataclasses.replace(profile, seed=profile.seed if seed is None else seed), method, config)
    if meta.get("key") != wanted:
        return None
    arrays = np.load(folder / "arrays.npz")
    meta.pop("saved_at", None)
    return RunResult(**meta, y_true=arrays["y_true"], y_pred=arrays["y_pred"], probs=arrays["probs"])


def stamp(result: RunResult, profile: Profile, config: dict | None = None) -> RunResult:
    """Set a result's cache key from the profile and config it was made with."""
    result.key = run_key(dataclasses.replace(profile, seed=result.seed), result.method, config)
    result.config = config or {}
    return result


def load_or_compute(profile: Profile, method: str, compute: Callable[[], RunResult],
                    config: dict | None = None, verbose: bool = True, needs_model: bool = False) -> RunResult:
    """Return the cached run, or call ``compute()``, stamp, save and return its result."""
    cached = load(profile, method, config, needs_model=needs_model)
    if cached is not None:
        if verbose:
            print(f"{method}: loaded from the run cache ({profile.name} profile, seed {profile.seed})")
        return cached
    if verbose:
        print(f"{method}: not in the run cache for this profile and config; computing it now ...")
    shutil.rmtree(model_dir(profile, method), ignore_errors=True)  # never pair new results with old weights
    result = stamp(dataclasses.replace(compute(), method=method), profile, config)  # stored under the asked name
    save(result, profile)
    return result


def load_or_compute_together(profile: Profile, methods: tuple[str, ...],
                             compute: Callable[[], tuple[RunResult, ...]], verbose: bool = True) -> tuple[RunResult, ...]:
    """Several runs that one training produces (e.g. scored and generated): all from the cache, or all computed now."""
    found = tuple(load(profile, method) for method in methods)
    if all(run is not None for run in found):
        if verbose:
            print(f"{', '.join(methods)}: loaded from the run cache ({profile.name} profile)")
        return found
    if verbose:
        print(f"{', '.join(methods)}: not in the run cache; training and predicting now ...")
    results = tuple(stamp(result, profile) for result in compute())
    for result in results:
        save(result, profile)
    return results
