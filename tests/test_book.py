"""The book around the chapters: the package reference page and the links between it and the chapters."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from chapter_links import chapter_docs, link_chapters  # noqa: E402

from test_notebooks import CHAPTERS, cells  # noqa: E402

PACKAGE = ROOT / "src" / "tutorial_utils"


def modules() -> set[str]:
    """Every module of the package, as the reference page names them (``data.own``, ``train``)."""
    names = {p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".") for p in PACKAGE.rglob("*.py")}
    return {n.removesuffix(".__init__") for n in names} - {"__init__", "__main__"}


def test_the_reference_page_documents_every_module_once():
    documented = re.findall(r"automodule:: tutorial_utils\.([\w.]+)", (ROOT / "book" / "reference.md").read_text())
    assert sorted(documented) == sorted(modules())


def test_a_docstrings_chapter_numbers_become_links():
    docs = chapter_docs()
    assert docs["03b"] == "chapters/03b_without_finetuning"
    text = link_chapters("taught in chapters 04 and 05; chapter 03b's probe; chapter 42", docs)
    assert text == ("taught in chapters :doc:`04 </chapters/04_instruction_tuning>` and "
                    ":doc:`05 </chapters/05_multilabel>`; chapter :doc:`03b </chapters/03b_without_finetuning>`'s "
                    "probe; chapter 42")


def imported_modules(path: Path) -> set[str]:
    """The package modules a chapter's code imports (the Colab helpers of the install cell aside)."""
    code = "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code")
    found = set()
    for module, names in re.findall(r"^\s*from tutorial_utils(\.[\w.]+)? import (.+)$", code, re.M):
        found |= {module[1:].split(".")[0]} if module else {n.strip().split(" as ")[0] for n in names.strip("() ").split(",")}
    return (found & modules()) - {"colab"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_links_the_reference_of_the_package_code_it_uses(path):
    title = "".join(cells(path)[0]["source"])
    linked = set(re.findall(r"\{py:mod\}`\w+ <tutorial_utils\.([\w.]+)>`", title))
    assert "{doc}`package reference <../book/reference>`" in title
    assert linked == imported_modules(path), (
        f"{path.name}: the title cell links {sorted(linked)}, the code imports {sorted(imported_modules(path))}. "
        "Fix: list every imported module in the title cell's 'The package behind this chapter' line.")
