"""A run a chapter trains in its own cells and files under a recipe's run key is the run that recipe computes: a
later chapter (or a reader who skips the first) that finds the run cache empty gets the same numbers."""

import json

import nbclient
import nbformat
import numpy as np
import pytest

from tutorial_utils.methods import recipes
from tutorial_utils.setup.config import ROOT, get_profile
from tutorial_utils.storage import runs

# (chapter, the variable its cells save, the method, the recipe that computes the same run)
TRAINED_IN_CELLS = [
    ("02_embedding_head.ipynb", "result", recipes.EMBEDDING_HEAD, lambda profile: recipes.embedding_head_run(profile)[0]),
    ("03_baselines.ipynb", "encoder_result", recipes.ENCODER, recipes.encoder_run),
]


def cells_until_saved(path, variable: str) -> nbformat.NotebookNode:
    """The chapter's cells up to the one that saves its run (``runs.save(<variable>, ...)``)."""
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and f"runs.save({variable}," in cell.source:
            notebook.cells = notebook.cells[:index + 1]
            return notebook
    raise AssertionError(f"{path.name} has no cell that calls runs.save({variable}, ...)")


@pytest.mark.parametrize("chapter, variable, method, recipe", TRAINED_IN_CELLS, ids=[c[0] for c in TRAINED_IN_CELLS])
def test_a_run_trained_in_a_chapters_cells_is_the_recipes_run(chapter, variable, method, recipe, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_PROFILE", "tiny")
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "notebook"))
    path = ROOT / "chapters" / chapter
    nbclient.NotebookClient(cells_until_saved(path, variable), timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    profile = get_profile("tiny")
    in_cells = runs.load(profile, method)
    assert in_cells is not None, f"{chapter} saved no {method} run under its key"

    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "recipe"))
    by_recipe = recipe(profile)
    assert by_recipe.key == in_cells.key
    np.testing.assert_array_equal(by_recipe.y_pred, in_cells.y_pred)
    np.testing.assert_allclose(by_recipe.probs, in_cells.probs, atol=1e-5,
                               err_msg=f"{chapter}'s cells and the recipe compute different {method} runs under one key "
                                       f"({json.dumps(in_cells.test_metrics)} vs {json.dumps(by_recipe.test_metrics)})")
