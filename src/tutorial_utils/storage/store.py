"""The results store in the repository: ``results/<profile>/<dataset>/<method>/<tag>-<key>/``.

Each run the book shows is kept as ``record.json`` (settings, curve, metrics, provenance, and the
SHA-256 of its arrays) beside ``predictions.npz`` (test labels, predictions and probabilities,
validation probabilities). A write goes to a ``.partial`` folder first and is renamed into place, so a
run killed midway leaves nothing that looks complete; a record whose arrays do not match its checksum,
whose JSON does not parse, or whose test metric does not match its own predictions (a record edited by
hand) is reported and recomputed, never loaded. A lock per run keeps two
processes from computing the same run. Taught in chapter 08; ``python -m tutorial_utils reproduce`` fills it.
"""

from __future__ import annotations

import functools
import io
import json
import os
from pathlib import Path

import numpy as np

from ..evaluation import stats
from ..setup import files
from ..setup.config import ROOT
from .records import RunRecord

__all__ = ["RESULTS_ENV", "COMMITTED", "StoreError", "root", "folder", "write", "read", "find", "others", "locked",
           "recompute_requested", "run_folders", "stored", "size_bytes"]

RESULTS_ENV = "COURSE_RESULTS"
_RECOMPUTE_ENV = "COURSE_RECOMPUTE"
RECORD, ARRAYS = "record.json", "predictions.npz"
COMMITTED = ROOT / "results"  # the store the repository keeps (the cpu profile's runs)


class StoreError(RuntimeError):
    """A stored record that cannot be used (corrupt, partly written, or from other data or settings)."""


def root() -> Path:
    """The store's root: ``COURSE_RESULTS``, else ``results/`` in the checkout."""
    return Path(os.environ.get(RESULTS_ENV) or COMMITTED)


def folder(profile: str, dataset: str, method: str, tag: str, key: str, base: Path | None = None) -> Path:
    """The folder of one run: readable up to the tag (size, learning rate, seed), exact by the key."""
    return (base or root()) / profile / dataset.replace("/", "--") / method / f"{tag}-{key}"


def write(record: RunRecord, where: Path) -> Path:
    """Write a record and its arrays atomically into ``where`` (an existing run there is replaced)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **record.arrays())
    blob = buffer.getvalue()
    meta = record.meta() | {"arrays_sha256": files.sha256(blob)}
    text = json.dumps(meta, indent=1, default=functools.partial(files.jsonable, strict=True), allow_nan=True)
    partial = files.staging(where)
    for name, payload in ((ARRAYS, blob), (RECORD, text.encode())):
        files.write_synced(partial / name, payload)
    return files.swap_in(partial, where)


def read(where: Path) -> RunRecord:
    """The record in ``where``; a StoreError that says what is wrong when it is missing, corrupt or partial."""
    if not (where / RECORD).exists() or not (where / ARRAYS).exists():
        raise StoreError(f"{where} has no complete record ({RECORD} and {ARRAYS}).")
    try:
        meta = json.loads((where / RECORD).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{where / RECORD} is not valid JSON ({error}): a partly written or edited record.") from error
    blob = (where / ARRAYS).read_bytes()
    if files.sha256(blob) != meta.pop("arrays_sha256", None):
        raise StoreError(f"{where / ARRAYS} does not match the checksum in its record: partly written or changed.")
    with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
        loaded = {name: arrays[name] for name in arrays.files}
    try:
        record = RunRecord(**meta, **loaded)
    except TypeError as error:
        raise StoreError(f"{where / RECORD} does not have the fields of a run record ({error}).") from error
    _check_metrics(record, where)
    return record


def _check_metrics(record: RunRecord, where: Path) -> None:
    """Raise a StoreError when the record's headline test metric is not what its own predictions give."""
    multi = np.ndim(record.y_true) == 2
    name = "micro_f1" if multi else "macro_f1"
    try:
        metric = stats.micro_f1 if multi else stats.macro_f1_over(len(record.label_names))
        recomputed = metric(record.y_true, record.y_pred)
    except ValueError as error:
        raise StoreError(f"{where}: its predictions do not fit its labels ({error}).") from error
    if abs(recomputed - record.test_metrics.get(name, np.nan)) > 1e-6 or not np.isfinite(recomputed):
        raise StoreError(f"{where / RECORD} says test {name} {record.test_metrics.get(name)}, but its predictions "
                         f"give {recomputed:.6f}: the record was edited after it was written. It is not shown; "
                         "reproduce recomputes it.")


def find(profile: str, dataset: str, method: str, tag: str, key: str, verbose: bool = True) -> RunRecord | None:
    """The stored record of this run if it is there, complete and of this key; None (saying why) otherwise."""
    where = folder(profile, dataset, method, tag, key)
    if not where.exists():
        return None
    try:
        record = read(where)
    except StoreError as error:
        if verbose:
            print(f"{method}: the stored result cannot be used, recomputing it: {error}")
        return None
    if record.key != key:
        if verbose:
            print(f"{method}: the stored result in {where} was made with other data or settings; recomputing it.")
        return None
    return record


def others(profile: str, dataset: str, method: str, tag: str, key: str) -> list[Path]:
    """Stored runs of the same method, dataset and tag under other keys (older data or settings)."""
    parent = folder(profile, dataset, method, tag, key).parent
    if not parent.exists():
        return []
    return [p for p in parent.glob(f"{tag}-*") if p.is_dir() and not p.name.endswith((files.PARTIAL, files.OLD))
            and p.name != f"{tag}-{key}"]


def locked(profile: str, key: str):
    """An exclusive lock for one run, so that a second process waits instead of computing it too."""
    return files.locked(root() / ".locks" / profile / f"{key}.lock",
                        waiting=f"another process is computing run {key}; waiting for it to finish ...")


def recompute_requested() -> bool:
    """True when ``COURSE_RECOMPUTE=1``: stored results are ignored and every run is computed again."""
    return os.environ.get(_RECOMPUTE_ENV, "") not in {"", "0"}


def run_folders(profile: str, base: Path | None = None) -> list[Path]:
    """The run folders under a profile's store that hold a record (staged and replaced folders left out)."""
    top = (base or root()) / profile
    return [path.parent for path in sorted(top.glob(f"*/*/*/{RECORD}"))
            if not path.parent.name.endswith((files.PARTIAL, files.OLD))]


def stored(profile: str, base: Path | None = None) -> list[tuple[Path, RunRecord | StoreError]]:
    """Every run folder under a profile's store, with its record (or the error reading it)."""
    out: list[tuple[Path, RunRecord | StoreError]] = []
    for where in run_folders(profile, base):
        try:
            out.append((where, read(where)))
        except StoreError as error:
            out.append((where, error))
    return out


def size_bytes(profile: str | None = None) -> int:
    """Bytes the store (or one profile's part of it) takes on disk."""
    top = root() / profile if profile else root()
    return sum(p.stat().st_size for p in top.rglob("*") if p.is_file() and ".locks" not in p.parts)
