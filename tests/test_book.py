"""The book around the chapters: the package reference page and the links between it and the chapters."""

import re
import sys
from pathlib import Path

import pytest

from tutorial_utils.setup.config import ROOT

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


def test_the_readmes_module_map_names_every_folder_and_module():
    readme = (ROOT / "README.md").read_text()
    folders = {m for m in modules() if "." not in m}
    missing = [f for f in folders if f"**`{f}/`**" not in readme]
    missing += [m for m in modules() if "." in m and m.split(".")[0] != "data" and f"`{m.split('.')[-1]}`" not in readme]
    assert not missing, f"README.md's module map does not name {missing}: add each to its folder's line"


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
    known, found = modules(), set()
    for module, names in re.findall(r"^\s*from tutorial_utils(\.[\w.]+)? import (.+)$", code, re.M):
        base = module[1:]
        for name in (n.strip().split(" as ")[0] for n in names.strip("() ").split(",")):
            child = f"{base}.{name}".strip(".")
            found.add(child if child in known else base)
    return (found & known) - {"setup.colab"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_links_the_reference_of_the_package_code_it_uses(path):
    title = "".join(cells(path)[0]["source"])
    linked = set(re.findall(r"\{py:mod\}`\w+ <tutorial_utils\.([\w.]+)>`", title))
    assert "{doc}`package reference <../book/reference>`" in title
    assert linked == imported_modules(path), (
        f"{path.name}: the title cell links {sorted(linked)}, the code imports {sorted(imported_modules(path))}. "
        "Fix: list every imported module in the title cell's 'The package behind this chapter' line.")


# What a reader of a committed output should never meet: a float printed to every digit it has, "NaN" where a
# value is absent, a bare object repr (a pandas Styler's text form, "<... object at 0x...>").
RAW_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{6,}(?!\d)")
ABSENT = re.compile(r"\bNaN\b|\bnan\b")
BARE_REPR = re.compile(r"<[\w.]+ (?:object )?at 0x[0-9a-f]+>")


def output_texts(path: Path):
    """(cell index, text) of every committed text output of a chapter: streams, plain text and HTML tables."""
    for i, cell in enumerate(cells(path)):
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            data = out.get("data", {})
            for text in (out.get("text"), data.get("text/plain"), data.get("text/html")):
                if text:
                    yield i, "".join(text)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_outputs_show_numbers_as_a_reader_should_see_them(path):
    found = [(i, kind, pattern.findall(text)[:2]) for i, text in output_texts(path)
             for kind, pattern in (("unrounded float", RAW_FLOAT), ("NaN", ABSENT), ("object repr", BARE_REPR))
             if pattern.search(text)]
    assert not found, (f"{path.name}: {found}. Fix: round in the cell (.round(3), f'{{x:.3f}}'), show an absent "
                       "value as an empty cell (.fillna('')), and show a table as a DataFrame, not a Styler.")
