"""Stand-ins the test files share: a chapter's run with no training behind it."""

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from tutorial_utils.setup.config import Profile, get_profile
from tutorial_utils.storage import runs
from tutorial_utils.storage.records import RunRecord


def fake_data(n: int = 4) -> DatasetDict:
    """Two classes, ``n`` texts in every split."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    split = Dataset.from_dict({"text": [f"text {i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
                              features=features)
    return DatasetDict(train=split, validation=split, test=split)


def fake_result(profile: Profile | None = None, method: str = "m", n: int = 4, right: bool = False) -> RunRecord:
    """A two-class run of ``n`` test texts, every prediction wrong (``right``: every one right), on the profile
    (tiny by default)."""
    profile = profile or get_profile("tiny")
    y = np.arange(n) % 2
    outcome = {"y_true": y, "y_pred": y if right else 1 - y, "probs": np.full((n, 2), 0.5), "trainable_params": 10}
    return runs.record(method, profile, fake_data(n), outcome)
