"""Hub datasets for the ``gpu`` and ``paper`` profiles, returned in the same shape as the offline ones.

Needs a network connection to the Hugging Face Hub (or a filled local cache). Taught in chapter 00.
"""

from __future__ import annotations

import datasets  # called as datasets.load_dataset, so that a test can replace it
import numpy as np
from datasets import ClassLabel, DatasetDict

from ..setup.assets import hub_reachable
from .common import DataError, check_texts

__all__ = ["HUB_DATASETS", "load_hub_single_label"]

# name -> (config, text column, label column)
HUB_DATASETS = {
    "ccdv/patent-classification": ("abstract", "text", "label"),
    "fancyzhx/ag_news": (None, "text", "label"),
}


def load_hub_single_label(name: str, sizes: dict[str, int | None] | None = None, seed: int = 42) -> DatasetDict:
    """A single-label hub dataset with train/validation/test (validation carved from train if absent)."""
    if name not in HUB_DATASETS:
        raise DataError(f"No hub loader for {name!r}. Known: {', '.join(HUB_DATASETS)}.")
    config, text_col, label_col = HUB_DATASETS[name]
    try:
        raw = datasets.load_dataset(name, config)
    except Exception as err:  # the hub client raises several types for "no network"
        hint = "" if hub_reachable() else " The Hugging Face Hub is not reachable from here."
        raise DataError(f"Could not load the hub dataset {name!r}.{hint} Fix: connect to the internet, or set "
                        f"COURSE_PROFILE=cpu to use the offline data. ({type(err).__name__}: {err})") from err
    raw = raw.rename_columns({c: n for c, n in ((text_col, "text"), (label_col, "label")) if c != n})
    if "validation" not in raw:
        parts = raw["train"].train_test_split(test_size=0.1, seed=seed, stratify_by_column="label")
        raw = DatasetDict(train=parts["train"], validation=parts["test"], test=raw["test"])
    out = {}
    for split, ds in raw.items():
        if not isinstance(ds.features["label"], ClassLabel):
            raise DataError(f"{name}: the label column is not a ClassLabel.")
        n = (sizes or {}).get(split)
        # a random order, never the file's: a file sorted by label would make "the first n rows" one class
        order = np.random.default_rng(seed).permutation(len(ds))
        ds = ds.select(order[:n] if n is not None else order)
        check_texts(ds["text"])
        out[split] = ds.select_columns(["text", "label"])
    return DatasetDict(out)
