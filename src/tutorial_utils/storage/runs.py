"""The run cache, the chapters' root of the store: a chapter's run kept as a ``RunRecord``, with its weights if any.

Later chapters (statistics, distillation, the capstone) reuse earlier runs without retraining. A chapter's run is
the same ``RunRecord`` the protocol's store keeps (``records.make_record`` builds both), filed under a second root,
``<runs>/<profile>/<method>-seed<seed>/``: ``record/`` (``store.write``'s ``record.json`` + ``predictions.npz``)
and, for a model a later chapter reuses, ``model/``. Its settings are the whole profile (and the run's own
config): a run made under other settings is never returned, it is computed again. A run is written as one unit:
its weights always belong to the predictions beside them (their checksums are in the record), a write killed
midway is never loaded, and two processes never compute the same run at once. Taught in chapter 02.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from ..modeling.models import compute_dtype_name
from ..setup import files
from ..setup.assets import cache_dir
from ..setup.config import Profile
from . import store
from .records import RunRecord, make_record, run_key

__all__ = ["runs_dir", "model_dir", "settings", "record", "save", "load", "load_or_compute"]

_RUNS_ENV = "COURSE_RUNS"
RECORD, MODEL = "record", "model"
_WEIGHTS = "model_sha256"  # the record's extra entry that lists the SHA-256 of every file of its weights


def runs_dir() -> Path:
    """Root folder of the run cache (``COURSE_RUNS`` or ``<course cache>/runs``)."""
    root = Path(os.environ.get(_RUNS_ENV) or cache_dir() / "runs")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run_path(profile: Profile, method: str, seed: int | None = None) -> Path:
    """The folder that holds one run: ``<runs>/<profile>/<method>-seed<seed>``."""
    return runs_dir() / profile.name / f"{method}-seed{profile.seed if seed is None else seed}"


def model_dir(profile: Profile, method: str, seed: int | None = None) -> Path:
    """Where a run keeps its trained weights (for a LoRA model: the adapter and head), if it saved them."""
    return _run_path(profile, method, seed) / MODEL


def settings(profile: Profile, config: dict | None = None) -> dict:
    """A chapter run's settings, the part of its key that is not data or seed: the whole profile and its own config."""
    return {"profile": dataclasses.asdict(profile), **(config or {})}


def record(method: str, profile: Profile, data, outcome: dict, wall_seconds: float = 0.0,
           config: dict | None = None) -> RunRecord:
    """A chapter's run as a ``RunRecord`` (``records.make_record``) from its outcome: ``y_true``, ``y_pred``,
    ``probs``, ``trainable_params`` and optionally ``train_seconds``, ``epochs_run``, ``extra``. The dataset is the
    profile's multi-label one for (n, labels) targets, else its single-label one."""
    multi = getattr(outcome["y_true"], "ndim", 1) == 2
    dataset = profile.multi_label_data if multi else profile.single_label_data
    return make_record(method, dataset, profile.seed, settings(profile, config), data, outcome, wall_seconds,
                       f"a chapter's run ({profile.name} profile)", compute_dtype=compute_dtype_name())


def _keyed(result: RunRecord, profile: Profile, method: str, config: dict | None) -> RunRecord:
    """The run filed as ``method`` with these settings (a computation may have named it otherwise)."""
    chosen = settings(profile, config)
    return dataclasses.replace(result, method=method, settings=chosen,
                               key=run_key(method, chosen, result.data, result.seed))


def save(result: RunRecord, profile: Profile, model=None, tokenizer=None) -> Path:
    """Write a run (its record and, if given, its trained weights) as one unit; returns its folder.

    Everything goes into ``<folder>.partial`` and is renamed into place when complete; the record lists the
    SHA-256 of every weight file, so the weights are always those of the predictions beside them, and a write
    killed midway is never loaded. ``model`` / ``tokenizer`` are saved with ``save_pretrained`` into ``model/``.
    """
    folder = _run_path(profile, result.method, result.seed)
    if int(os.environ.get("RANK", 0)) != 0:  # under DDP only the main process writes
        return folder
    partial = files.staging(folder)
    extra = {k: v for k, v in result.extra.items() if k != _WEIGHTS}
    if model is not None:
        model.save_pretrained(partial / MODEL)
        if tokenizer is not None:
            tokenizer.save_pretrained(partial / MODEL)
        extra[_WEIGHTS] = files.checksums(partial / MODEL)
    store.write(dataclasses.replace(result, extra=extra), partial / RECORD)
    return files.swap_in(partial, folder)


def load(profile: Profile, method: str, config: dict | None = None, seed: int | None = None,
         needs_model: bool = False, verbose: bool = True) -> RunRecord | None:
    """The stored run if it is complete and was made with this exact profile and config; else None.

    A damaged run (a record the store cannot read, a weight file missing or not matching its checksum) counts
    as missing, with a message naming its folder; with ``needs_model`` so does a run whose weights were not saved.
    """
    folder = _run_path(profile, method, seed)
    if not (folder / RECORD).exists():
        return None
    try:  # another process may swap a new run in meanwhile: then a file is gone or fails its checksum
        result = store.read(folder / RECORD)
    except FileNotFoundError:  # swapped out between two reads: as if not there yet
        return None
    except store.StoreError as error:
        return _unusable(verbose, method, folder, str(error))
    asked = dataclasses.replace(profile, seed=profile.seed if seed is None else seed)
    if result.key != run_key(method, settings(asked, config), result.data, asked.seed):  # the data: as recorded
        return None
    weights = result.extra.get(_WEIGHTS)
    if weights is None:
        return None if needs_model else result
    bad = files.damaged(folder / MODEL, weights)
    if bad:
        return _unusable(verbose, method, folder, f"{MODEL}/{', '.join(bad[:3])} missing or changed since it was written")
    return result


def _unusable(verbose: bool, method: str, folder: Path, why: str) -> None:
    if verbose:
        print(f"{method}: the stored run in {folder} cannot be used ({why}); it will be computed again.")
    return None


def _lock_path(profile: Profile, method: str, seed: int | None = None) -> Path:
    """The lock file that serialises computing one run across processes."""
    return runs_dir() / ".locks" / f"{_run_path(profile, method, seed).relative_to(runs_dir()).as_posix().replace('/', '--')}.lock"


def load_or_compute(profile: Profile, method: str, compute: Callable[[], RunRecord], config: dict | None = None,
                    verbose: bool = True, needs_model: bool = False) -> RunRecord:
    """Return the stored run, or call ``compute()``, file it under ``method`` with this config and save it.

    ``compute`` returns the record, or ``(record, model)`` or ``(record, model, tokenizer)`` to keep the trained
    weights with it (``needs_model`` asks for them). A lock per run makes a second process wait for the first
    one's result instead of training it too.
    """
    waiting = f"{method}: another process is computing this run; waiting for it ..."
    with files.locked(_lock_path(profile, method), waiting):
        stored = load(profile, method, config, needs_model=needs_model, verbose=verbose)
        if stored is not None:
            if verbose:
                print(f"{method}: loaded from the run cache ({profile.name} profile, seed {profile.seed})")
            return stored
        if verbose:
            print(f"{method}: not in the run cache for this profile and config; computing it now ...")
        computed = compute()
        result, *weights = computed if isinstance(computed, tuple) else (computed,)
        if needs_model and not weights:
            raise RuntimeError(f"{method}: the computation returned no trained model to keep, but the caller needs "
                               "one. Fix: return (record, model) from it.")
        result = _keyed(result, profile, method, config)
        save(result, profile, *weights)
    return load(profile, method, config, needs_model=needs_model, verbose=verbose) or result
