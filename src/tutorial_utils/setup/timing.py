"""Wall-clock timing, its one home: a call's result and the seconds it took, queued GPU work included.

Every timed number the course reports (training, prediction, benchmarks; chapters 02-09) comes from
``timed``. torch is imported only when a timer runs, so the light modules that time things stay light.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["T", "timed"]

T = TypeVar("T")


def _sync() -> None:
    """Wait for queued GPU work, so that a timer measures it (a no-op on CPU)."""
    import torch  # lazy: torch costs ~2 s; the light modules that time things (experiment, cli) stay light

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """(``fn(*args, **kwargs)``, the wall seconds it took, GPU work included)."""
    _sync()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    _sync()
    return result, time.perf_counter() - start
