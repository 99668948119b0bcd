"""Metrics agree with scikit-learn; ECE, reliability tables and temperature scaling behave on synthetic data."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from tutorial_utils.evaluation.metrics import (classification_metrics, expected_calibration_error, fit_temperature,
                                    multilabel_metrics, negative_log_likelihood, per_label_f1, reliability_table,
                                    sigmoid, softmax)


def calibrated_sample(n: int, k: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model at temperature 1."""
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(n, k))
    probs = softmax(logits)
    y = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return logits, np.minimum(y, k - 1)


def naive_ece(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """ECE written as a plain loop over (lo, hi] bins, to check the vectorised one."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, n_bins + 1)[:-1], np.linspace(0, 1, n_bins + 1)[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += abs((pred[in_bin] == y[in_bin]).mean() - conf[in_bin].mean()) * in_bin.sum() / len(y)
    return total


def test_evaluation_modules_do_not_import_torch():
    code = ("import sys, tutorial_utils.evaluation.metrics, tutorial_utils.evaluation.thresholds, tutorial_utils.evaluation.stats; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 6, 300))  # class 5 only predicted
    got = classification_metrics(y, pred)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert got["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted", zero_division=0), abs=1e-12)
    assert all(isinstance(v, float) for v in got.values())


def test_macro_f1_leaves_out_a_class_absent_from_labels_and_predictions_and_says_so():
    from tutorial_utils.evaluation import stats

    with pytest.warns(UserWarning, match=r"Class ids \[2\] occur neither"):
        perfect = classification_metrics([0, 0, 1], [0, 0, 1], n_classes=3)
    assert perfect["macro_f1"] == 1.0 == stats.macro_f1_over(3)([0, 0, 1], [0, 0, 1])  # not 0.667
    wrongly_predicted = classification_metrics([0, 0, 1], [0, 2, 1], n_classes=3)  # class 2 predicted: scored 0
    assert wrongly_predicted["macro_f1"] == pytest.approx(f1_score([0, 0, 1], [0, 2, 1], average="macro"))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)  # class 4 never occurs; -1 (unparsable) is wrong, never a class
    p = np.where(rng.random(200) < 0.5, y, rng.integers(-1, 4, 200))
    expected = f1_score(y, p, labels=stats.present_classes(y, p, 5), average="macro", zero_division=0)
    with pytest.warns(UserWarning, match=r"\[4\]"):
        assert classification_metrics(y, p, n_classes=5)["macro_f1"] == pytest.approx(expected)
    assert stats.macro_f1_over(5)(y, p) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_metrics_and_per_label_f1_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    Y = (rng.random((200, 6)) < 0.25).astype(int)
    Y[:, 5] = 0  # a label nobody has
    Y[:10] = 0  # rows with no label
    P = np.where(rng.random(Y.shape) < 0.8, Y, 1 - Y)
    got = multilabel_metrics(Y, P)
    for avg in ("micro", "macro", "samples"):
        assert got[f"{avg}_f1"] == pytest.approx(f1_score(Y, P, average=avg, zero_division=0), abs=1e-12)
    table = per_label_f1(Y, P, list("abcdef"))
    assert list(table.columns) == ["label", "support", "f1"]
    assert table["support"].tolist() == Y.sum(axis=0).tolist()
    np.testing.assert_allclose(table["f1"], f1_score(Y, P, average=None, zero_division=0))
    assert table["f1"].mean() == pytest.approx(got["macro_f1"])


def test_softmax_is_stable_and_tempered():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    p = softmax(logits)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(softmax(logits[1:], temperature=2.0), softmax(logits[1:] / 2.0))
    np.testing.assert_allclose(softmax(np.zeros((1, 4)), 0.3), [[0.25] * 4])
    assert softmax(logits[1:], temperature=100.0).std() < softmax(logits[1:]).std()
    with pytest.raises(ValueError, match="temperature must be positive"):
        softmax(logits, temperature=0.0)


def test_sigmoid_is_stable():
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    s = sigmoid(x)
    np.testing.assert_allclose(s, [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0])
    np.testing.assert_allclose(s + sigmoid(-x), 1.0)


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.4, 0.6]])
    y = np.array([0, 0])  # first right at 0.9, second wrong at 0.6
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)
    assert expected_calibration_error(probs, y, n_bins=1) == pytest.approx(abs(0.5 - 0.75))


@pytest.mark.parametrize("seed, n_bins", [(0, 15), (1, 10), (2, 7)])
def test_ece_matches_a_plain_loop(seed, n_bins):
    logits, y = calibrated_sample(500, 4, seed, scale=2.0)
    probs = softmax(logits * 1.7)
    assert expected_calibration_error(probs, y, n_bins) == pytest.approx(naive_ece(probs, y, n_bins), abs=1e-12)


def test_ece_bins_are_half_open_on_the_left():
    probs = np.array([[0.7, 0.3], [0.8, 0.2]])  # 0.7 sits on an edge: bin (0.6, 0.7], not (0.7, 0.8]
    table = reliability_table(probs, np.array([0, 0]), n_bins=10)
    assert table["bin_high"].round(6).tolist() == [0.7, 0.8]


def test_ece_near_zero_when_calibrated_and_positive_when_overconfident():
    logits, y = calibrated_sample(20000, 4, seed=0, scale=2.0)
    calibrated = expected_calibration_error(softmax(logits), y)
    overconfident = expected_calibration_error(softmax(3.0 * logits), y)
    assert calibrated < 0.02
    assert overconfident > 0.1
    assert expected_calibration_error(softmax(logits / 3.0), y) > 0.05  # under-confident is miscalibrated too


def test_reliability_table_drops_empty_bins_and_adds_up():
    logits, y = calibrated_sample(1000, 3, seed=3, scale=3.0)
    probs = softmax(logits)
    table = reliability_table(probs, y, n_bins=20)
    assert list(table.columns) == ["bin_low", "bin_high", "confidence", "accuracy", "count"]
    assert (table["count"] > 0).all() and table["count"].sum() == len(y)
    assert len(table) < 20  # confidences below 1/3 cannot occur with 3 classes: those bins are dropped
    assert (table["confidence"] > table["bin_low"]).all() and (table["confidence"] <= table["bin_high"]).all()
    assert (table["bin_low"].diff().dropna() > 0).all()
    weighted = (table["confidence"] * table["count"]).sum() / len(y)
    assert weighted == pytest.approx(probs.max(axis=1).mean())
    assert isinstance(table, pd.DataFrame)


def test_negative_log_likelihood_matches_log_loss():
    logits, y = calibrated_sample(300, 5, seed=4)
    probs = softmax(logits)
    assert negative_log_likelihood(probs, y) == pytest.approx(log_loss(y, probs, labels=range(5)))
    assert np.isfinite(negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1])))


@pytest.mark.parametrize("true_t", [2.0, 0.5])
def test_fit_temperature_recovers_a_known_temperature(true_t):
    logits, y = calibrated_sample(5000, 5, seed=5, scale=2.0)
    fitted = fit_temperature(logits * true_t, y)  # a model whose logits are true_t times too large
    assert fitted == pytest.approx(true_t, rel=0.10)
    assert expected_calibration_error(softmax(logits * true_t, fitted), y) < \
        expected_calibration_error(softmax(logits * true_t), y)
    assert negative_log_likelihood(softmax(logits * true_t, fitted), y) <= \
        negative_log_likelihood(softmax(logits * true_t), y)


def test_fit_temperature_is_about_one_on_calibrated_logits():
    logits, y = calibrated_sample(5000, 3, seed=6, scale=2.0)
    assert fit_temperature(logits, y) == pytest.approx(1.0, rel=0.10)


@pytest.mark.parametrize("call, match", [
    (lambda: classification_metrics([0, 1, 1], [0, 1]), "y_true has 3 examples but y_pred has 2"),
    (lambda: classification_metrics([], []), "must not be empty"),
    (lambda: classification_metrics(1, 1), "got a scalar"),
    (lambda: multilabel_metrics([0, 1], [0, 1]), "0/1 matrices of the same shape"),
    (lambda: multilabel_metrics([[0, 2]], [[0, 1]]), "only 0 and 1"),
    (lambda: per_label_f1([[0, 1]], [[0, 1]], ["a"]), "1 label names for 2 label columns"),
    (lambda: expected_calibration_error([[2.0, -1.0]], [0]), "not a probability matrix.*softmax"),
    (lambda: expected_calibration_error([[0.5, 0.6]], [0]), "not a probability matrix"),
    (lambda: expected_calibration_error([0.5, 0.5], [0]), "shape \\(n_examples, n_classes\\)"),
    (lambda: expected_calibration_error(np.empty((0, 3)), []), "at least one example"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [0, 1]), "one class id per row"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [2]), "integer class ids in 0..1"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [0], n_bins=0), "n_bins"),
    (lambda: negative_log_likelihood([[0.5, 0.5]], [0.5]), "integer class ids"),
    (lambda: fit_temperature([1.0, 2.0], [0]), "logits of shape"),
])
def test_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_float16_probabilities_are_accepted():
    probs = softmax(np.random.default_rng(0).normal(size=(50, 7))).astype(np.float16)
    assert 0.0 <= expected_calibration_error(probs, np.zeros(50, dtype=int)) <= 1.0


def test_per_class_scores_are_sklearns_per_class_report():
    from sklearn.metrics import precision_recall_fscore_support

    from tutorial_utils.evaluation.metrics import per_class_scores

    y, p = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]
    table = per_class_scores(y, p, ["a", "b", "c"])
    expected = precision_recall_fscore_support(y, p, labels=[0, 1, 2], zero_division=0)
    for column, values in zip(("precision", "recall", "f1", "support"), expected):
        assert table[column].tolist() == pytest.approx(list(values))
    absent = per_class_scores([0, 0, 1], [0, 0, 1], ["a", "b", "c"])  # a class with no test example: support 0
    assert absent.loc[2, "support"] == 0 and absent.loc[2, "f1"] == 0.0
