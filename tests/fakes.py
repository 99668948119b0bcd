"""Stand-ins the test files share: a run result with no training behind it."""

import numpy as np

from tutorial_utils.setup.config import Profile, get_profile
from tutorial_utils.storage import runs


def fake_result(profile: Profile | None = None, method: str = "m", n: int = 4) -> runs.RunResult:
    """A two-class run of ``n`` examples, every prediction wrong, on the profile (tiny by default)."""
    profile = profile or get_profile("tiny")
    y = np.arange(n) % 2
    return runs.RunResult(method=method, profile=profile.name, seed=profile.seed, label_names=["a", "b"],
                          y_true=y, y_pred=1 - y, probs=np.full((n, 2), 0.5), metrics={"accuracy": 0.0},
                          extra={"trainable_params": 10})
