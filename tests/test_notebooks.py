"""The chapters as files: Colab badge and install cell from one template, a title, pins that agree."""

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from tutorial_utils.setup.colab import INSTALL_TAG, NO_DEPS_PINS, _badge_markdown, install_cell_source
from tutorial_utils.setup.config import ROOT

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_opens_with_title_badge_and_install_cell(path):
    first, second = cells(path)[:2]
    text = "".join(first["source"])
    assert re.match(r"# \S", text), "the first cell must start with an H1 title"
    assert _badge_markdown(f"chapters/{path.name}") in text
    assert "".join(second["source"]) == install_cell_source()
    assert INSTALL_TAG in second["metadata"].get("tags", []), "fold it: python -m tutorial_utils.setup.colab"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_starts_a_session_and_hard_codes_no_model(path):
    source = "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code")
    assert "session.start(" in source
    assert not re.search(r"from_pretrained\(\s*[\"']", source), "a model path is hard-coded"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_chapter_ran_top_to_bottom_in_one_kernel(path):
    """`make book` renders the committed outputs as they are, so every code cell must have run, in order."""
    counts = [c.get("execution_count") for c in cells(path) if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: code cells not executed in order from a fresh kernel (execution counts {counts}). Fix: "
        "execute the chapter top to bottom on the cpu profile (COURSE_PROFILE=cpu) and commit its outputs.")


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*-?\s*([A-Za-z0-9_.-]+)==([^\s#]+)", text, re.M))


def test_environment_yml_mirrors_requirements():
    req = pins((ROOT / "requirements.txt").read_text())
    env = pins((ROOT / "environment.yml").read_text())
    assert req and env
    for name, version in req.items():
        assert env.get(name) == version, f"{name}: requirements.txt {version}, environment.yml {env.get(name)}"


def test_no_deps_pins_agree_with_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    for pin in NO_DEPS_PINS:
        assert pin in makefile


def test_constraints_agree_with_requirements():
    req = pins((ROOT / "requirements.txt").read_text())
    locked = pins((ROOT / "constraints.txt").read_text())
    for name, version in req.items():
        assert locked.get(name, version) == version, name


def test_the_repository_address_has_one_home():
    """The badges and the install cell take the address from _config.yml; no notebook spells another one."""
    from tutorial_utils.setup.colab import repository

    url, _ = repository()
    github = url.removeprefix("https://github.com/")
    for path in CHAPTERS:
        opening = "".join("".join(cell["source"]) for cell in cells(path)[:2])
        addresses = set(re.findall(r"github(?:\.com)?/([\w.-]+/[\w-]+)", opening))
        assert addresses == {github}, f"{path.name}'s badge or install cell names {addresses - {github}}"


def test_the_install_cell_asks_for_a_restart_only_when_a_loaded_package_changed(monkeypatch, capsys):
    import sys
    import types

    from tutorial_utils.setup import colab

    installed = importlib.metadata.version("pyarrow")
    monkeypatch.setitem(sys.modules, "pyarrow", types.SimpleNamespace(__version__=installed))
    colab.check_restart()
    assert "no restart needed" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "pyarrow", types.SimpleNamespace(__version__="18.1.0"))
    with pytest.raises(RuntimeError, match=f"pyarrow 18.1.0 is loaded, {installed} is installed.*Restart session"):
        colab.check_restart()


def test_drive_cache_points_the_course_cache_into_drive(monkeypatch, tmp_path):
    import os
    import sys
    import types

    from tutorial_utils.setup import assets, colab

    mounted = []
    drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(drive=drive))
    for name in ("COURSE_CACHE", "HF_HOME"):  # use_drive_cache sets them: the teardown must restore them (or their absence)
        monkeypatch.setenv(name, "recorded")
        monkeypatch.delenv(name)
    root = colab.use_drive_cache(str(tmp_path / "drive-cache"))
    assert mounted == ["/content/drive"] and assets.cache_dir() == root
    assert os.environ["HF_HOME"] == str(root / "huggingface")
