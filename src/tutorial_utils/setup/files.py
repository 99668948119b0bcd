"""Writing results so that nothing is lost or mixed: synced writes, whole folders swapped in at once,
checksums, and a lock per result (the run cache of chapter 02 and the results store of chapter 08).

A result is written into ``<folder>.partial`` and renamed into place only when complete, so a writer
killed midway leaves nothing that looks finished; its record lists the SHA-256 of every file beside it,
so a reader can tell a complete result from a damaged one; and a lock keeps two processes from
computing the same result at once (the second waits, then finds the first one's result).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["jsonable", "sha256", "write_synced", "checksums", "damaged", "staging", "swap_in", "locked"]

PARTIAL, OLD = ".partial", ".old"  # suffixes of a folder being written and of the one it replaces
_HELD: set[str] = set()  # the lock files this process holds


def jsonable(value: object, strict: bool = False) -> object:
    """``json.dumps``'s fallback: numpy scalars and arrays as numbers and lists, paths as text; anything else
    as its ``str``, or with ``strict`` (the results store's records) an error."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path) or not strict:
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def sha256(blob: bytes) -> str:
    """The SHA-256 of some bytes, as hex."""
    return hashlib.sha256(blob).hexdigest()


def write_synced(path: Path, blob: bytes) -> None:
    """Write bytes and flush them to disk before returning."""
    with open(path, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())


def checksums(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (paths relative to it, '/'-separated), but ``skip``."""
    return {p.relative_to(folder).as_posix(): sha256(p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def damaged(folder: Path, expected: dict[str, str]) -> list[str]:
    """The files of ``expected`` that are missing under ``folder`` or do not match their checksum."""
    out = []
    for name, digest in expected.items():
        try:
            if sha256((folder / name).read_bytes()) != digest:
                out.append(name)
        except (FileNotFoundError, IsADirectoryError):
            out.append(name)
    return out


def staging(where: Path) -> Path:
    """An empty ``<where>.partial`` folder to write a result into before ``swap_in``."""
    partial = where.with_name(where.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def swap_in(partial: Path, where: Path) -> Path:
    """Rename a completely written ``partial`` folder to ``where``, replacing what was there."""
    if where.exists():
        old = where.with_name(where.name + OLD)
        shutil.rmtree(old, ignore_errors=True)
        where.rename(old)
        partial.rename(where)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(where)
    return where


@contextlib.contextmanager
def locked(path: Path, waiting: str | None = None, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file); if another process holds it, say ``waiting`` and wait,
    or with ``busy``, raise ``BlockingIOError(busy)`` at once (a second writer into one run folder is refused).

    Re-entrant within a process: a computation that asks again for a result it is computing (one
    training that makes two runs) does not wait for itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        yield
        return
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy:
                raise BlockingIOError(busy) from None
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:  # a file system without locks (some network drives): go on, unlocked
            print(f"cannot lock {path} ({error.strerror}); two processes could compute the same result",
                  file=sys.stderr, flush=True)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)
