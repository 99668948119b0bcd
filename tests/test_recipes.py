"""Every chapter's Recipe block runs on its own, as a script, on the tiny profile."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def recipe_code(path: Path) -> str | None:
    """The ```python block of the markdown cell that has a '## Recipe' heading, if any."""
    for cell in json.loads(path.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and re.search(r"^## Recipe", text, re.M):
            block = re.search(r"```python\n(.*?)```", text.split("## Recipe", 1)[1], re.S)
            return block.group(1) if block else None
    return None


WITH_RECIPES = [p for p in CHAPTERS if recipe_code(p)]


def test_chapters_after_setup_have_a_recipe():
    missing = [p.name for p in CHAPTERS if not p.name.startswith("00_") and p not in WITH_RECIPES]
    assert not missing, f"chapters without a '## Recipe' python block: {missing}"


@pytest.mark.parametrize("path", WITH_RECIPES, ids=lambda p: p.name)
def test_recipe_runs_as_a_script(path, tmp_path):
    script = tmp_path / "recipe.py"
    script.write_text(recipe_code(path))
    env = dict(os.environ, COURSE_PROFILE="tiny", COURSE_RUNS=str(tmp_path / "runs"))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
