"""A verbalizer: the words the model answers with for each label, and the separators of a multi-label answer.

The type that ``instruct`` builds (``instruct.make_verbalizer``) and ``answers`` reads back; taught in chapter 04
(single-label) and chapter 05 (multi-label). ``instruct`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..setup.checks import check_label_id

__all__ = ["NONE_ANSWER", "separator", "Verbalizer"]

_SEPARATOR = ", "  # between labels of a multi-label answer (unless a label's text holds a comma: separator())
_SEPARATORS = (", ", "; ", " | ", " / ")  # candidates, in order of preference
NONE_ANSWER = "none"  # the answer for a text with no label


def separator(texts, preferred: str = _SEPARATOR) -> str:
    """``preferred``, or the first of _SEPARATORS that no label text contains (chapters 04, 05).

    The hub's patent sections read "Chemistry; Metallurgy": joined with "; ", a model would read two labels.
    """
    for candidate in (preferred, *_SEPARATORS):
        if not any(candidate.strip() in t for t in texts):
            return candidate
    raise ValueError(f"Every separator of {_SEPARATORS} occurs in some label text ({list(texts)!r}), so a list of "
                     "labels would be ambiguous. Fix: pass words= to make_verbalizer without those characters.")


@dataclass(frozen=True)
class Verbalizer:
    """The words the model answers with for each label (in class order), and how the prompt lists them (chapter 04)."""

    kind: str
    names: tuple[str, ...]
    words: tuple[str, ...]

    def options(self) -> str:
        """The label list for the instruction, on one line: "word; word" or "word = full name; ...".

        The separator is one that no label's text contains (``separator``).
        """
        sep = separator((*self.words, *self.names), preferred="; ")
        if self.kind == "names":
            return sep.join(self.words)
        return sep.join(f"{w} = {n}" for w, n in zip(self.words, self.names))

    @property
    def answer_separator(self) -> str:
        """What separates the labels of a multi-label answer: ", " unless a label's text contains a comma."""
        return separator((*self.words, *self.names))

    def answer(self, label_ids) -> str:
        """The response for one label id, or for a list of ids (multi-label: fixed class order, answer_separator)."""
        if isinstance(label_ids, (int, np.integer)):  # bool is an int: check_label_id refuses it
            return self.words[check_label_id(label_ids, len(self.words))]
        ids = sorted({check_label_id(i, len(self.words)) for i in label_ids})
        return self.answer_separator.join(self.words[i] for i in ids) if ids else NONE_ANSWER
