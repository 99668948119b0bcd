"""The first cell of every chapter: pick the profile, seed everything, quiet the noise, show the setup.

Taught in chapter 00 (setup).
"""

from __future__ import annotations

import logging
import os
import platform
import random
import warnings
from importlib import metadata

import numpy as np

from .budgets import profile_training_memory
from .checks import DataWarning
from .config import PROFILES, Profile, ProfileError, get_profile

__all__ = ["quiet", "seed_everything", "versions", "frame_html", "start"]

_HIDE_PROGRESS_ENV = "COURSE_HIDE_PROGRESS"
# the libraries whose warnings and logs quiet() silences: their noise, never the course's own DataWarning
_NOISY = ("transformers", "peft", "bitsandbytes", "torch", "accelerate", "datasets", "trl", "huggingface_hub",
         "tokenizers", "httpx")
_REPORTED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "trl", "datasets", "scikit-learn")


_FORMAT = warnings.formatwarning  # Python's own, for every warning but the course's


def _formatwarning(message, category, filename, lineno, line=None) -> str:
    """A ``DataWarning`` as one line, ``DataWarning: ...`` (no file and line of the package); others as Python has them."""
    if issubclass(category, DataWarning):
        return f"{category.__name__}: {message}\n"
    return _FORMAT(message, category, filename, lineno, line)


def quiet(hide_progress: bool | None = None) -> None:
    """Silence the libraries' warnings and load reports (``_NOISY``; the course's ``DataWarning`` stays on, and other
    packages' warnings too); hide progress bars when COURSE_HIDE_PROGRESS=1 (book, tests)."""
    if hide_progress is None:
        hide_progress = os.environ.get(_HIDE_PROGRESS_ENV) == "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if hide_progress:
        os.environ["TQDM_DISABLE"] = "1"
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=rf"({'|'.join(_NOISY)})(\.|$)")
    warnings.filterwarnings("ignore", message="IProgress not found")
    warnings.filterwarnings("always", category=DataWarning)  # first in the list: never silenced
    warnings.formatwarning = _formatwarning
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging  # lazy: transformers costs ~1 s; session is light

    hf_logging.set_verbosity_error()
    if hide_progress:
        hf_logging.disable_progress_bar()
        import datasets  # lazy: datasets costs ~1 s; session is light

        datasets.disable_progress_bars()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a chapter's numbers repeat."""
    import torch  # lazy: torch costs ~2 s; session is light (the chapters' first cell, the cli and records load it)

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Installed versions of the libraries the course depends on."""
    out = {"python": platform.python_version()}
    for package in _REPORTED_PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _check_gpu_memory(profile: Profile) -> None:
    """Stop at a chapter's first cell, not at an out-of-memory error mid-training, when the GPU is too small."""
    import torch  # lazy: torch costs ~2 s; session is light (the chapters' first cell, the cli and records load it)

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        problem = _gpu_memory_problem(profile, props.total_memory, props.name)
        if problem:
            raise ProfileError(problem)


def _device_line() -> str:
    """One line naming the compute device and its memory."""
    import torch  # lazy: torch costs ~2 s; session is light (the chapters' first cell, the cli and records load it)

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"device       : CUDA {props.name}, {props.total_memory / 2**30:.0f} GiB"
    threads = torch.get_num_threads()
    return f"device       : CPU ({os.cpu_count()} logical cores, {threads} torch thread{'s' * (threads != 1)})"


def _gpu_memory_problem(profile: Profile, total_bytes: int, device: str = "this GPU") -> str | None:
    """Why the profile's largest training run will not fit a GPU of ``total_bytes`` (by ``budgets``' estimate),
    naming the largest smaller profile that fits; None when it fits or the model is not one it can size."""
    need = profile_training_memory(profile)
    if need is None or need["total"] <= total_bytes:
        return None
    names = list(PROFILES)  # smallest first
    fits = [n for n in names[:names.index(profile.name)]
            if (profile_training_memory(PROFILES[n]) or {"total": 0})["total"] <= total_bytes]
    parts = "; ".join(f"{k} {v / 2**30:.1f}" for k, v in need.items() if k != "total")
    return (f"Profile {profile.name!r} needs about {need['total'] / 2**30:.1f} GiB of GPU memory for its largest training "
            f"run ({parts} GiB; budgets.profile_training_memory), and {device} has {total_bytes / 2**30:.1f} GiB. "
            f"Fix: set {'COURSE_PROFILE=' + fits[-1] if fits else 'a smaller profile'} before starting "
            "(a smaller model and shorter texts), or use a GPU with more memory.")


def frame_html(frame) -> str:
    """A DataFrame as a notebook shows it, with whole-number columns grouped in thousands (465,408 trainable
    parameters, not 465408): how the chapters' tables print counts (``start`` makes it the notebook's display)."""
    import pandas as pd  # lazy: pandas costs ~0.5 s; session is light

    counts = {c: "{:,}".format for c in frame.columns if pd.api.types.is_integer_dtype(frame[c].dtype)}
    return frame.to_html(formatters=counts, notebook=True, max_rows=pd.get_option("display.max_rows"),
                         max_cols=pd.get_option("display.max_columns"), float_format=pd.get_option("display.float_format"))


def _group_thousands_in_notebooks() -> None:
    """In a notebook (IPython), show every DataFrame with ``frame_html``; elsewhere nothing changes."""
    try:
        from IPython import get_ipython  # lazy: only a notebook has a display to set
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and "text/html" in shell.display_formatter.formatters:
        import pandas as pd  # lazy: as in frame_html

        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)


def start(profile: str | None = None, show: bool = True) -> Profile:
    """Start a chapter: quiet logs, resolve the profile, seed, group counts in tables by thousands, and print what
    runs where. Returns the profile."""
    quiet()
    _group_thousands_in_notebooks()
    chosen = get_profile(profile)
    _check_gpu_memory(chosen)
    seed_everything(chosen.seed)
    if show:
        print(chosen.summary())
        print(_device_line())
        print("versions     : " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    return chosen
