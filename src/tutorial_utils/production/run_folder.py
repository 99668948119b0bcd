"""A run folder: its layout, and how a training gets one safely (chapter 09).

``train`` writes ``model/``, ``record/`` and ``metrics.json`` into a folder that ``prepare_out`` checked: a new run
is staged beside the old one and swapped in by renames (``install``), under the folder's lock, so a failed or
killed training loses nothing and a second training into the same folder is refused; ``recover`` mends a swap
that a kill left halfway. ``serving`` reads these folders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..setup import files
from ..setup.checks import DataError

__all__ = ["MODEL", "RECORD", "METRICS", "WRITES", "LOCK", "STAGED", "REPLACED", "LABELS_FILE", "busy",
           "prepare_out", "recover", "install"]

MODEL, RECORD, METRICS = "model", "record", "metrics.json"
# what a run folder holds, all that --overwrite replaces (predictions.csv: what an older train wrote)
WRITES = (MODEL, RECORD, METRICS, "predictions.csv")
LOCK, STAGED, REPLACED = ".lock", ".partial", ".old"  # a run folder's own bookkeeping (not the user's files)
LABELS_FILE = "labels.json"  # a TF-IDF model's label names (a transformers folder keeps them in its config)


def _user_files(out: Path) -> list[str]:
    """The names in a run folder other than its bookkeeping (the lock, a staged or a replaced run)."""
    return sorted(p.name for p in out.iterdir() if p.name not in (LOCK, STAGED, REPLACED))


def prepare_out(out: str | Path, overwrite: bool = False) -> Path:
    """A writable folder that may take a new run: refused if it holds files, unless ``overwrite`` (``train`` then
    replaces only a run's own files, once the new run is trained and saved: a failed training loses nothing)."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file. Fix: pass a folder, e.g. runs/my-run.")
    if out.is_dir() and os.access(out, os.W_OK):  # mend a killed swap, never one that another training is making
        try:
            with files.locked(out / LOCK, busy=busy(out)):
                recover(out)
        except BlockingIOError as error:
            raise DataError(str(error)) from None
    if out.is_dir() and _user_files(out) and not overwrite:
        raise FileExistsError(f"{out} already holds files ({', '.join(_user_files(out)[:4])}). Fix: pass a new "
                              "folder, or --overwrite (overwrite=True in Python) to replace the run in it.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as error:
        raise DataError(f"{out} is not writable ({error.strerror}). Fix: pass a folder you can write to.") from None
    return out


def busy(out: Path) -> str:
    """What a second training into ``out`` is told while the first holds its lock."""
    return f"Another training is writing into {out}. Fix: wait for it to finish, or pass another folder."


def recover(out: Path) -> None:
    """Finish or undo a swap that a killed ``train`` left halfway (``install``): with the new run's ``metrics.json``
    in place (it moves in last) the new run is whole and the old one goes; without it the old run comes back."""
    old = out / REPLACED
    if old.is_dir():
        if not (out / METRICS).is_file():
            for entry in old.iterdir():
                target = out / entry.name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
                entry.rename(target)
        shutil.rmtree(old)
    shutil.rmtree(out / STAGED, ignore_errors=True)  # an unfinished new run: never shown as finished


def install(staged: Path, out: Path) -> None:
    """Swap a completely written run into ``out``: the old run's files move aside, the new ones move in by rename
    (``metrics.json`` last: it marks a whole run), then the old ones go; ``recover`` mends a swap killed midway."""
    old = out / REPLACED
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for name in WRITES:
        if (out / name).exists():
            (out / name).rename(old / name)
    for entry in sorted(staged.iterdir(), key=lambda p: p.name == METRICS):
        entry.rename(out / entry.name)
    staged.rmdir()
    shutil.rmtree(old)
