"""Every chapter's Recipe block (a markdown code block, not the package's ``recipes`` module) runs on its own, as
a script, on the tiny profile."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_notebooks import CHAPTERS


def recipe_codes(path: Path) -> list[str]:
    """The first ```python block under each '## Recipe...' heading of the chapter's markdown cells."""
    blocks = []
    for cell in json.loads(path.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for section in re.split(r"^(?=## )", text, flags=re.M):
                if section.startswith("## Recipe"):
                    block = re.search(r"```python\n(.*?)```", section, re.S)
                    blocks += [block.group(1)] if block else []
    return blocks


RECIPES = [(p, i) for p in CHAPTERS for i, _ in enumerate(recipe_codes(p))]
WITH_RECIPES = sorted({p for p, _ in RECIPES})


def test_chapters_after_setup_have_a_recipe():
    missing = [p.name for p in CHAPTERS if not p.name.startswith("00_") and p not in WITH_RECIPES]
    assert not missing, f"chapters without a '## Recipe' python block: {missing}"


@pytest.mark.parametrize("path, index", RECIPES, ids=lambda x: x.name if isinstance(x, Path) else str(x))
def test_recipe_runs_as_a_script(path, index, tmp_path):
    script = tmp_path / "recipe.py"
    script.write_text(recipe_codes(path)[index])
    env = dict(os.environ, COURSE_PROFILE="tiny", COURSE_RUNS=str(tmp_path / "runs"))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
