"""Multi-label data offline: Debian package descriptions tagged with what the software is used for.

Reads the snapshot ``data/debian_tags.jsonl.gz`` that ``data/make_debian_tags.py`` made from Debian 12's
package lists (card: ``data/README.md``): 21 labels from the ``use::`` and ``works-with::`` debtags,
about 1.5 labels per document. Splits are grouped so near-copies from one project stay together.
Taught in chapter 00 (setup); used in chapter 05 (multi-label).
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache

from datasets import DatasetDict

from .common import DataError, grouped_split, multi_label_dict, repo_data_dir

__all__ = ["SNAPSHOT", "load_debian_tags"]

SNAPSHOT = "debian_tags.jsonl.gz"


@lru_cache(maxsize=1)
def _debian_examples() -> tuple[dict[str, list], tuple[str, ...]]:
    """All snapshot documents as columns (text, labels as ids, group, split) and the sorted label names."""
    path = repo_data_dir() / SNAPSHOT
    if not path.exists():
        raise DataError(f"The snapshot {SNAPSHOT} is missing from data/. Fix: restore it from the repository "
                        "(git checkout data/) or remake it with `python data/make_debian_tags.py` on Debian 12.")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle]
    names = tuple(sorted({label for d in docs for label in d["labels"]}))
    index = {name: i for i, name in enumerate(names)}
    rows = {"text": [d["text"] for d in docs],
            "labels": [[index[label] for label in d["labels"]] for d in docs],
            "group": [d["group"] for d in docs]}
    rows["split"] = grouped_split(rows["group"])
    return rows, names


def load_debian_tags(sizes: dict[str, int | None] | None = None, seed: int = 42) -> DatasetDict:
    """The Debian multi-label task as a DatasetDict with a ``labels`` list column, sampled to ``sizes``."""
    rows, names = _debian_examples()
    return multi_label_dict(rows, names, sizes or {}, seed)
