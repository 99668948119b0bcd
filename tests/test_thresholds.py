"""Multi-label thresholds: applying them, tuning them (global and per label), and the edge cases."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tutorial_utils.evaluation.thresholds import (DEFAULT_GRID, apply_thresholds, f1_vs_threshold, tune_global_threshold,
                                       tune_per_class_thresholds)


def validation_sample(n: int = 300, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid-like scores and multi-hot labels with rare labels whose scores run low (as fine-tuned models give)."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.4, 0.05, k)
    Y = (rng.random((n, k)) < rates).astype(int)
    signal = np.where(Y == 1, rng.beta(2 + 6 * rates, 3, size=(n, k)), rng.beta(1, 6, size=(n, k)))
    return np.clip(signal, 0, 1), Y


def brute_force_best(scores: list[float], grid: np.ndarray) -> float:
    """The reference tie rule: the best score; among ties the threshold closest to 0.5, then the lower one."""
    best = max(scores)
    candidates = [t for t, s in zip(grid, scores) if s >= best - 1e-12]
    return min(candidates, key=lambda t: (abs(t - 0.5), t))


def test_default_grid_holds_exactly_half():
    assert 0.5 in DEFAULT_GRID and len(DEFAULT_GRID) == 19
    assert DEFAULT_GRID[0] == 0.05 and DEFAULT_GRID[-1] == 0.95


def test_apply_thresholds_scalar_vector_and_at_least_one():
    probs = np.array([[0.5, 0.2, 0.1], [0.3, 0.6, 0.9], [0.1, 0.4, 0.2]])
    np.testing.assert_array_equal(apply_thresholds(probs, 0.5), [[1, 0, 0], [0, 1, 1], [0, 0, 0]])  # >= threshold
    np.testing.assert_array_equal(apply_thresholds(probs, [0.6, 0.3, 0.95]), [[0, 0, 0], [0, 1, 0], [0, 1, 0]])
    at_least_one = apply_thresholds(probs, 0.5, at_least_one=True)
    np.testing.assert_array_equal(at_least_one, [[1, 0, 0], [0, 1, 1], [0, 1, 0]])  # only the empty row changes
    assert apply_thresholds(probs, 0.5).dtype.kind == "i"
    np.testing.assert_array_equal(apply_thresholds(probs[:1], 0.0), [[1, 1, 1]])
    np.testing.assert_array_equal(apply_thresholds(probs[:1], 1.0, at_least_one=True), [[1, 0, 0]])


def test_all_negative_rows_stay_negative_unless_asked():
    probs = np.full((4, 3), 0.1)
    probs[3, 2] = 0.2
    assert apply_thresholds(probs, 0.5).sum() == 0
    forced = apply_thresholds(probs, 0.5, at_least_one=True)
    assert (forced.sum(axis=1) == 1).all() and forced[3, 2] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "samples_f1"])
def test_global_threshold_is_the_brute_force_best(seed, metric):
    probs, Y = validation_sample(seed=seed)
    average = metric.removesuffix("_f1")
    scores = [f1_score(Y, (probs >= t).astype(int), average=average, zero_division=0) for t in DEFAULT_GRID]
    assert tune_global_threshold(probs, Y, metric=metric) == brute_force_best(scores, DEFAULT_GRID)


def test_global_threshold_ties_go_towards_half():
    probs = np.array([[0.35, 0.1], [0.1, 0.32], [0.15, 0.12]])
    Y = np.array([[1, 0], [0, 1], [0, 0]])
    assert tune_global_threshold(probs, Y) == 0.3  # 0.2, 0.25 and 0.3 all separate perfectly
    assert tune_global_threshold(np.full((3, 2), 0.7), np.zeros((3, 2), int)) == 0.5  # flat at 0: keep 0.5
    assert tune_global_threshold(probs, Y, grid=[0.45, 0.55]) == 0.45  # equally close to 0.5: the lower


def test_global_threshold_takes_a_callable_metric():
    probs, Y = validation_sample(seed=3)
    recall = lambda yt, yp: float((yt & yp).sum() / yt.sum())  # noqa: E731
    assert tune_global_threshold(probs, Y, metric=recall) == DEFAULT_GRID[0]
    with pytest.raises(ValueError, match="Unknown metric 'f1'.*micro_f1"):
        tune_global_threshold(probs, Y, metric="f1")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_per_class_thresholds_are_the_brute_force_best_per_label(seed):
    probs, Y = validation_sample(seed=seed)
    got = tune_per_class_thresholds(probs, Y)
    for k in range(Y.shape[1]):
        scores = [f1_score(Y[:, k], (probs[:, k] >= t).astype(int), zero_division=0) for t in DEFAULT_GRID]
        assert got[k] == brute_force_best(scores, DEFAULT_GRID), k


def test_a_label_with_low_scores_gets_a_low_threshold():
    rng = np.random.default_rng(8)
    y = (rng.random(200) < 0.1).astype(int)
    scores = np.where(y == 1, rng.uniform(0.25, 0.45, 200), rng.uniform(0.0, 0.2, 200))
    probs, Y = np.column_stack([scores, 1 - scores]), np.column_stack([y, 1 - y])
    assert tune_per_class_thresholds(probs, Y)[0] == 0.25  # 0.2 and 0.25 both separate: the one nearer 0.5
    assert f1_score(y, apply_thresholds(probs, 0.5)[:, 0], zero_division=0) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_per_class_beats_or_equals_global_on_validation(seed):
    probs, Y = validation_sample(n=150, k=8, seed=seed)
    Y[:, 3] = 0  # one label absent from validation
    macro = lambda P: f1_score(Y, P, average="macro", zero_division=0)  # noqa: E731
    per_class = macro(apply_thresholds(probs, tune_per_class_thresholds(probs, Y)))
    assert per_class >= macro(apply_thresholds(probs, 0.5)) - 1e-12
    assert per_class >= macro(apply_thresholds(probs, tune_global_threshold(probs, Y, metric="macro_f1"))) - 1e-12


def test_label_absent_from_validation_gets_the_fallback():
    probs, Y = validation_sample(seed=5)
    Y[:, 2] = 0
    probs[:, 2] = 0.9  # scores that would tempt a tuner; there is no positive example to tune on
    assert tune_per_class_thresholds(probs, Y)[2] == 0.5
    assert tune_per_class_thresholds(probs, Y, fallback=0.7)[2] == 0.7
    others = np.delete(tune_per_class_thresholds(probs, Y, fallback=0.7), 2)
    np.testing.assert_array_equal(others, np.delete(tune_per_class_thresholds(probs, Y), 2))
    with pytest.raises(ValueError, match="fallback"):
        tune_per_class_thresholds(probs, Y, fallback=1.5)


def test_all_negative_labels_everywhere():
    probs = np.random.default_rng(0).random((20, 4))
    Y = np.zeros((20, 4), dtype=int)
    np.testing.assert_array_equal(tune_per_class_thresholds(probs, Y), [0.5] * 4)
    assert tune_global_threshold(probs, Y) == 0.5
    assert (f1_vs_threshold(probs, Y, list("abcd"))["f1"] == 0).all()


def test_a_single_example():
    probs, Y = np.array([[0.8, 0.3, 0.1]]), np.array([[1, 1, 0]])
    np.testing.assert_array_equal(tune_per_class_thresholds(probs, Y), [0.5, 0.3, 0.5])
    assert tune_global_threshold(probs, Y) == 0.3
    np.testing.assert_array_equal(apply_thresholds(probs, tune_per_class_thresholds(probs, Y)), Y)
    table = f1_vs_threshold(probs, Y, ["x", "y", "z"], grid=[0.5])
    assert table["f1"].tolist() == [1.0, 0.0, 0.0]


def test_f1_vs_threshold_long_table_matches_sklearn():
    probs, Y = validation_sample(n=120, k=3, seed=6)
    names = ["alpha", "beta", "gamma"]
    table = f1_vs_threshold(probs, Y, names)
    assert list(table.columns) == ["label", "threshold", "f1"]
    assert len(table) == 3 * len(DEFAULT_GRID) and table["label"].unique().tolist() == names
    for _, row in table.sample(12, random_state=0).iterrows():
        k = names.index(row["label"])
        expected = f1_score(Y[:, k], (probs[:, k] >= row["threshold"]).astype(int), zero_division=0)
        assert row["f1"] == pytest.approx(expected, abs=1e-12)
    best = table.loc[table.groupby("label", sort=False)["f1"].idxmax()]
    np.testing.assert_array_equal(best["f1"].to_numpy(), [table[table.label == n]["f1"].max() for n in names])


def test_custom_grid_is_sorted_and_deduplicated():
    probs, Y = validation_sample(n=60, k=2, seed=7)
    table = f1_vs_threshold(probs, Y, ["a", "b"], grid=[0.6, 0.2, 0.2, 0.4])
    assert table["threshold"].tolist() == [0.2, 0.4, 0.6] * 2


@pytest.mark.parametrize("call, match", [
    (lambda: apply_thresholds(np.empty((0, 3)), 0.5), "non-empty matrix"),
    (lambda: apply_thresholds([], 0.5), "non-empty matrix"),
    (lambda: apply_thresholds([0.2, 0.7], 0.5), "for one example use probs\\[None, :\\]"),
    (lambda: apply_thresholds([[0.2, 0.7]], [0.5, 0.5, 0.5]), "3 thresholds for 2 labels"),
    (lambda: apply_thresholds([[-2.0, 3.0]], 0.5), "probabilities in \\[0, 1\\].*sigmoid"),
    (lambda: tune_global_threshold(np.empty((0, 2)), np.empty((0, 2))), "non-empty matrix"),
    (lambda: tune_global_threshold([[0.2, 0.7]], [[1, 0, 0]]), "shape \\(1, 2\\) but the labels have shape \\(1, 3\\)"),
    (lambda: tune_per_class_thresholds([[0.2, 0.7]], [[1, 2]]), "only 0 and 1"),
    (lambda: tune_per_class_thresholds([[0.2, 0.7]], [[1, 0]], grid=[]), "grid must be a non-empty"),
    (lambda: tune_per_class_thresholds([[0.2, 0.7]], [[1, 0]], grid=[0.5, 1.2]), "values in \\[0, 1\\]"),
    (lambda: f1_vs_threshold([[0.2, 0.7]], [[1, 0]], ["a"]), "1 label names for 2 label columns"),
])
def test_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
