"""Reading a generated answer back as labels: normalising, matching the verbalizer, multi-label answers.

Free generation (``instruct.generate``) returns text; these functions map it to label ids, tolerating
case, punctuation, a leading "Label:" and text after the label, and say what could not be mapped.
Taught in chapter 04 (single-label) and chapter 05 (multi-label); ``instruct`` re-exports them.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from .verbalizer import NONE_ANSWER, Verbalizer

__all__ = ["normalize", "parse_label", "ParsedLabels", "parse_labels", "parse_many"]

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def _splitter(verbalizer: Verbalizer) -> re.Pattern:
    """Splits a multi-label answer on newlines and on , ; | that occur in no label's text."""
    texts = (*verbalizer.words, *verbalizer.names)
    chars = "".join(c for c in ",;|" if not any(c in t for t in texts))
    return re.compile(f"[{re.escape(chars)}\n]+")


_PREFIX = re.compile(r"^(?:the\s+)?(?:answers?|labels?|tags?|categor(?:y|ies)|sections?)"  # "Label: x", "The answer
                     r"\s*(?:(?:is|are)\b\s*:?|[:=])\s*", re.I)                          # is x": dropped


def normalize(text: str) -> str:
    """Case-folded, punctuation replaced by spaces, whitespace collapsed: how answers are compared (chapter 04)."""
    return " ".join(_PUNCT.sub(" ", str(text).casefold()).split())


def _lookup(verbalizer: Verbalizer) -> dict[str, int]:
    """Normalized verbalizer words, and full label names, mapped to label ids."""
    table = {normalize(n): i for i, n in enumerate(verbalizer.names)}
    table.update({normalize(w): i for i, w in enumerate(verbalizer.words)})
    if verbalizer.kind != "names":  # "A: human necessities" or "A human necessities" is A
        table.update({normalize(f"{w} {n}"): i for i, (w, n) in enumerate(zip(verbalizer.words, verbalizer.names))})
    return table


def parse_label(output: str, verbalizer: Verbalizer) -> int:
    """The label a generated answer starts with (the longest match), or -1 if it starts with none (chapter 04).

    Tolerates case, punctuation, surrounding spaces, a leading "Label:" and text after the label.
    """
    table = _lookup(verbalizer)
    lines = [ln for ln in str(output).strip().splitlines() if ln.strip()]
    first = normalize(_PREFIX.sub("", lines[0].strip())) if lines else ""
    matches = [key for key in table if first == key or first.startswith(key + " ")]  # "physics because ..."
    return table[max(matches, key=len)] if matches else -1


@dataclass(frozen=True)
class ParsedLabels:
    """A parsed multi-label answer: the label ids, what could not be mapped, and whether parsing failed (chapter 05)."""

    ids: tuple[int, ...]
    unknown: tuple[str, ...] = ()
    duplicates: int = 0
    empty: bool = False

    @property
    def failed(self) -> bool:
        """True when the answer was empty or held a piece that is no label."""
        return self.empty or bool(self.unknown)


def parse_labels(output: str, verbalizer: Verbalizer) -> ParsedLabels:
    """The label ids of a multi-label answer (split on newlines and on , ; | unless a label holds them), unknown and
    repeated pieces (chapter 05)."""
    table = _lookup(verbalizer)
    text = _PREFIX.sub("", str(output).strip())
    pieces = [normalize(p) for p in _splitter(verbalizer).split(text)]
    pieces = [p for p in pieces if p]
    if not pieces:
        return ParsedLabels((), empty=True)
    ids, unknown, dup = [], [], 0
    for piece in pieces:
        words = piece.split()
        found = [piece] if piece in table else words if all(w in table for w in words) else []  # "audio video"
        if piece == NONE_ANSWER:
            continue
        if not found:
            unknown.append(piece)
        for key in found:
            dup += table[key] in ids
            ids += [] if table[key] in ids else [table[key]]
    return ParsedLabels(tuple(sorted(ids)), tuple(unknown), dup)


def parse_many(outputs: list[str], verbalizer: Verbalizer, n_labels: int | None = None) -> tuple[np.ndarray, dict]:
    """Multi-label answers as a 0/1 matrix, with counts of failures, unknowns, repeats, empties (chapter 05)."""
    parsed = [parse_labels(o, verbalizer) for o in outputs]
    Y = np.zeros((len(outputs), n_labels or len(verbalizer.words)), dtype=int)
    for row, p in enumerate(parsed):
        Y[row, list(p.ids)] = 1
    report = {"answers": len(parsed), "failed": sum(p.failed for p in parsed),
              "with an unknown label": sum(bool(p.unknown) for p in parsed),
              "with a repeated label": sum(p.duplicates > 0 for p in parsed), "empty": sum(p.empty for p in parsed),
              "no label at all": int((Y.sum(1) == 0).sum())}
    report["failed rate"] = report["failed"] / max(len(parsed), 1)
    return Y, report
