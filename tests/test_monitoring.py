"""Monitoring a served classifier: the confidence floor, the flagged share and the label shift."""

import numpy as np
import pytest

from tutorial_utils.evaluation import monitoring


def test_the_floor_flags_its_quantile_of_validation_and_more_of_an_unsure_batch():
    rng = np.random.default_rng(0)
    sure = rng.dirichlet([8, 1, 1], size=2000)
    floor = monitoring.confidence_floor(sure, quantile=0.05)
    assert monitoring.flagged_share(sure, floor) == pytest.approx(0.05, abs=0.002)
    unsure = rng.dirichlet([1, 1, 1], size=500)
    assert monitoring.flagged_share(unsure, floor) > 0.3  # about 47% of these near-uniform rows
    assert monitoring.flagged_share(np.zeros((0, 3)), floor) == 0.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        monitoring.confidence_floor(sure, quantile=5)


def test_label_shift_is_zero_for_the_same_mix_and_one_for_disjoint_labels():
    names = ["a", "b", "c"]
    train = [0, 0, 1, 2] * 50
    table, distance, p = monitoring.label_shift(train, [0, 0, 1, 2] * 10, names)
    assert distance == pytest.approx(0.0) and p == pytest.approx(1.0)
    assert list(table.index) == names and table["training share"].sum() == pytest.approx(1.0)
    _, distance, p = monitoring.label_shift([0] * 100, [2] * 40, names)
    assert distance == pytest.approx(1.0) and p < 1e-6
    _, moved, p = monitoring.label_shift(train, [1] * 40, names)
    assert moved == pytest.approx(0.75) and p < 1e-6
