"""Sphinx extension for the package reference page: "chapter 04" in a docstring becomes a link to chapter 04."""

from __future__ import annotations

import re
from pathlib import Path

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
MENTION = re.compile(r"\b(chapters?) ((?:\d\d[a-z]?)(?:(?:, | and |-)\d\d[a-z]?)*)\b")
NUMBER = re.compile(r"\d\d[a-z]?")


def chapter_docs() -> dict[str, str]:
    """Chapter number ("03b") -> the document name Sphinx knows it by ("chapters/03b_without_finetuning")."""
    return {p.stem.split("_")[0]: f"chapters/{p.stem}" for p in CHAPTERS.glob("[0-9][0-9]*_*.ipynb")}


def link_chapters(text: str, docs: dict[str, str]) -> str:
    """Every chapter number named in ``text`` as a :doc: link (numbers with no chapter stay plain text)."""
    def one(number: re.Match) -> str:
        n = number.group(0)
        return f":doc:`{n} </{docs[n]}>`" if n in docs else n

    return MENTION.sub(lambda m: f"{m.group(1)} {NUMBER.sub(one, m.group(2))}", text)


def setup(app):
    docs = chapter_docs()

    def process(app, what, name, obj, options, lines):
        lines[:] = [link_chapters(line, docs) for line in lines]

    app.connect("autodoc-process-docstring", process)
    return {"parallel_read_safe": True}
