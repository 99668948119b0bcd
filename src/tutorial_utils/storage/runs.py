"""The run cache: a run's test predictions, probabilities, labels, config and metrics, kept on disk.

Later chapters (statistics, distillation, the capstone) reuse earlier runs without retraining. A run
is filed by profile, method and seed, and keyed by a hash of the whole profile and the run's own
config: a result made under other settings is never returned, it is recomputed. A run is written as
one unit (``files``): its weights, if it keeps them, always belong to the predictions beside them, a
write killed midway is never loaded, and two processes never compute the same run at once. Taught in
chapter 02.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..setup import files
from ..setup.assets import cache_dir
from ..setup.config import Profile

__all__ = ["RunResult", "runs_dir", "model_dir", "save", "load", "with_cache_key", "load_or_compute"]

_RUNS_ENV = "COURSE_RUNS"
# bumped when the meaning of a stored result changes (2: files listed with checksums; 3: ablation samples stratified)
_CACHE_VERSION = 3
RECORD, ARRAYS, MODEL = "run.json", "arrays.npz", "model"
_NOT_IN_RECORD = {"y_true", "y_pred", "probs", "model", "tokenizer"}


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
    model: object = field(default=None, repr=False, compare=False)  # trained weights to save with it (not in run.json)
    tokenizer: object = field(default=None, repr=False, compare=False)

    def summary(self) -> str:
        """One line: method, the main metrics and trainable parameters (no timings: they vary run to run)."""
        parts = [f"{self.method} [{self.profile}, seed {self.seed}]"]
        parts += [f"{k}={v:.3f}" for k, v in self.metrics.items() if isinstance(v, float)]
        if "trainable_params" in self.extra:
            parts.append(f"trainable={self.extra['trainable_params']:,}")
        return "  ".join(parts)


def runs_dir() -> Path:
    """Root folder of the run cache (``COURSE_RUNS`` or ``<course cache>/runs``)."""
    root = Path(os.environ.get(_RUNS_ENV) or cache_dir() / "runs")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _cache_key(profile: Profile, method: str, config: dict | None = None) -> str:
    """A short hash of everything that defines a run: cache version, profile, method and its config."""
    payload = json.dumps({"v": _CACHE_VERSION, "profile": dataclasses.asdict(profile), "method": method,
                          "config": config or {}}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _run_path(profile: Profile, method: str, seed: int | None = None) -> Path:
    """The folder that holds one run: ``<runs>/<profile>/<method>-seed<seed>``."""
    return runs_dir() / profile.name / f"{method}-seed{profile.seed if seed is None else seed}"


def model_dir(profile: Profile, method: str, seed: int | None = None) -> Path:
    """Where a run keeps its trained weights (for a LoRA model: the adapter and head), if it saved them."""
    return _run_path(profile, method, seed) / "model"


def save(result: RunResult, profile: Profile, model=None, tokenizer=None) -> Path:
    """Write a run (arrays, metadata and, if given, its trained weights) as one unit; returns its folder.

    Everything goes into ``<folder>.partial`` and is renamed into place when complete; ``run.json`` lists
    the SHA-256 of every file, so weights are always those of the predictions beside them, and a write
    killed midway is never loaded. ``model`` / ``tokenizer`` default to the result's own (recipes attach
    the model they trained); they are saved with ``save_pretrained`` into ``model/``.
    """
    model = model if model is not None else result.model
    tokenizer = tokenizer if tokenizer is not None else result.tokenizer
    folder = _run_path(profile, result.method, result.seed)
    if int(os.environ.get("RANK", 0)) != 0:  # under DDP only the main process writes
        return folder
    partial = files.staging(folder)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, y_true=result.y_true, y_pred=result.y_pred, probs=result.probs)
    files.write_synced(partial / ARRAYS, buffer.getvalue())
    if model is not None:
        model.save_pretrained(partial / MODEL)
        if tokenizer is not None:
            tokenizer.save_pretrained(partial / MODEL)
    meta = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in _NOT_IN_RECORD}
    meta |= {"saved_at": time.strftime("%Y-%m-%d %H:%M:%S"), "files": files.checksums(partial)}
    files.write_synced(partial / RECORD, json.dumps(meta, indent=1, default=files.jsonable).encode())
    return files.swap_in(partial, folder)


def load(profile: Profile, method: str, config: dict | None = None, seed: int | None = None,
         needs_model: bool = False, verbose: bool = True) -> RunResult | None:
    """The cached run if it is complete and was made with this exact profile and config; else None.

    A damaged run (unreadable record, a file missing or not matching its checksum) counts as missing,
    with a message naming its folder; with ``needs_model`` so does a run whose weights were not saved.
    """
    folder = _run_path(profile, method, seed)
    try:  # another process may swap a new run in meanwhile: then a file is gone or fails its checksum
        meta = json.loads((folder / RECORD).read_text())
        wanted = _cache_key(dataclasses.replace(profile, seed=profile.seed if seed is None else seed), method, config)
        if meta.get("key") != wanted:
            return None
        listed = meta.pop("files", {})
        blob = (folder / ARRAYS).read_bytes()
        bad = [ARRAYS] if files.sha256(blob) != listed.get(ARRAYS) else []
        bad += files.damaged(folder, {k: v for k, v in listed.items() if k != ARRAYS})
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return _unusable(verbose, method, folder, f"its {RECORD} is not valid JSON ({error})")
    if bad:
        return _unusable(verbose, method, folder, f"{', '.join(bad[:3])} missing or changed since it was written")
    if needs_model and not any(name.startswith(MODEL + "/") for name in listed):
        return None
    with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
        loaded = {name: arrays[name] for name in ("y_true", "y_pred", "probs")}
    meta.pop("saved_at", None)
    return RunResult(**meta, **loaded)


def _unusable(verbose: bool, method: str, folder: Path, why: str) -> None:
    if verbose:
        print(f"{method}: the cached run in {folder} cannot be used ({why}); it will be computed again.")
    return None


def _lock_path(profile: Profile, method: str, seed: int | None = None) -> Path:
    """The lock file that serialises computing one run across processes."""
    return runs_dir() / ".locks" / f"{_run_path(profile, method, seed).relative_to(runs_dir()).as_posix().replace('/', '--')}.lock"


def with_cache_key(result: RunResult, profile: Profile, config: dict | None = None) -> RunResult:
    """Set a result's cache key from the profile and config it was made with."""
    result.key = _cache_key(dataclasses.replace(profile, seed=result.seed), result.method, config)
    result.config = config or {}
    return result


def load_or_compute(profile: Profile, method: str, compute: Callable[[], RunResult],
                    config: dict | None = None, verbose: bool = True, needs_model: bool = False) -> RunResult:
    """Return the cached run, or call ``compute()``, key, save (with its model, if it has one) and return it.

    A lock per run makes a second process wait for the first one's result instead of training it too.
    """
    waiting = f"{method}: another process is computing this run; waiting for it ..."
    with files.locked(_lock_path(profile, method), waiting):
        cached = load(profile, method, config, needs_model=needs_model, verbose=verbose)
        if cached is not None:
            if verbose:
                print(f"{method}: loaded from the run cache ({profile.name} profile, seed {profile.seed})")
            return cached
        if verbose:
            print(f"{method}: not in the run cache for this profile and config; computing it now ...")
        result = with_cache_key(dataclasses.replace(compute(), method=method), profile, config)  # stored under the asked name
        if needs_model and result.model is None:
            raise RuntimeError(f"{method}: the computation returned no trained model to keep, but the caller needs "
                               "one. Fix: attach it, e.g. RunResult(..., model=model).")
        save(result, profile)
    return dataclasses.replace(result, model=None, tokenizer=None)  # the weights are on disk: free the memory
