"""McNemar against statsmodels, the paired bootstrap against scipy, Holm against statsmodels, fast metrics."""

import dataclasses
import time

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import accuracy_score, f1_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from tutorial_utils.evaluation.stats import (EXACT_BELOW, accuracy, bootstrap_ci, holm_bonferroni, macro_f1, mcnemar_table,
                                  mcnemar_test, micro_f1, paired_bootstrap)

CI_TOLERANCE = 0.005  # |our interval end - scipy's| for an accuracy difference, 5000 resamples of 600 examples


def paired_systems(n: int, seed: int, acc_a: float = 0.75, acc_b: float = 0.7, k: int = 5):
    """Gold labels and two systems' predictions whose errors are correlated (as two fine-tuned models' are)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    difficulty = rng.random(n)  # shared: an example hard for A tends to be hard for B
    wrong_a, wrong_b = (y + rng.integers(1, k, n)) % k, (y + rng.integers(1, k, n)) % k
    pred_a = np.where(difficulty < acc_a + 0.1 * (rng.random(n) - 0.5), y, wrong_a)
    pred_b = np.where(difficulty < acc_b + 0.1 * (rng.random(n) - 0.5), y, wrong_b)
    return y, pred_a, pred_b


def statsmodels_pvalue(y, a, b, exact: bool) -> float:
    """statsmodels' McNemar p-value on our table (exact binomial, or chi-square with continuity correction)."""
    return float(mcnemar(mcnemar_table(y, a, b), exact=exact, correction=True).pvalue)


def test_mcnemar_table_by_hand():
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    a = np.array([0, 1, 2, 1, 1, 0, 0])  # right, right, right, wrong, right, wrong, right
    b = np.array([0, 0, 2, 1, 2, 2, 1])  # right, wrong, right, wrong, wrong, right, wrong
    table = mcnemar_table(y, a, b)
    np.testing.assert_array_equal(table, [[2, 3], [1, 1]])
    assert table.sum() == len(y)
    result = mcnemar_test(y, a, b)
    assert (result.b, result.c, result.method) == (3, 1, "exact binomial")


def test_mcnemar_exact_by_hand():
    y = np.zeros(20, dtype=int)
    a = np.r_[np.zeros(10), np.ones(2), np.zeros(8)].astype(int)  # b = 10 (A right, B wrong), c = 2
    b = np.r_[np.ones(10), np.zeros(2), np.zeros(8)].astype(int)
    result = mcnemar_test(y, a, b)
    assert (result.b, result.c, result.statistic) == (10, 2, 2.0)
    assert result.pvalue == pytest.approx(2 * (1 + 12 + 66) / 2**12)


@pytest.mark.parametrize("n, seed", [(30, 0), (80, 1), (200, 2), (600, 3), (600, 4), (2000, 5)])
def test_mcnemar_agrees_with_statsmodels(n, seed):
    y, a, b = paired_systems(n, seed)
    for exact in (True, False):
        ours = mcnemar_test(y, a, b, exact=exact)
        if ours.b == ours.c and not exact:
            assert ours.pvalue == 1.0  # documented: no continuity correction when b == c
            continue
        assert ours.pvalue == pytest.approx(statsmodels_pvalue(y, a, b, exact), rel=1e-9, abs=1e-12)
        expected_statistic = mcnemar(mcnemar_table(y, a, b), exact=exact, correction=True).statistic
        assert ours.statistic == pytest.approx(expected_statistic, rel=1e-9)
    automatic = mcnemar_test(y, a, b)
    assert automatic.method == ("exact binomial" if automatic.b + automatic.c < EXACT_BELOW
                                else "chi-square with continuity correction")


def test_mcnemar_when_all_agree():
    y, a, _ = paired_systems(100, seed=6)
    for exact in (True, False):
        result = mcnemar_test(y, a, a.copy(), exact=exact)
        assert (result.b, result.c, result.pvalue, result.statistic) == (0, 0, 1.0, 0.0)
    assert statsmodels_pvalue(y, a, a, exact=True) == 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        assert statsmodels_pvalue(y, a, a, exact=False) == 0.0  # statsmodels: (0 - 1)^2 / 0 = inf, p = 0; we say 1


def test_mcnemar_when_all_disagree():
    y = np.zeros(40, dtype=int)
    a, b = np.zeros(40, dtype=int), np.ones(40, dtype=int)  # A always right, B always wrong
    for exact in (True, False):
        result = mcnemar_test(y, a, b, exact=exact)
        assert (result.b, result.c) == (40, 0)
        assert result.pvalue == pytest.approx(statsmodels_pvalue(y, a, b, exact), rel=1e-9)
        assert result.pvalue < 1e-8
    half = np.r_[np.zeros(20), np.ones(20)].astype(int)  # every example discordant, b = c = 20
    assert mcnemar_test(y, half, 1 - half, exact=True).pvalue == statsmodels_pvalue(y, half, 1 - half, True) == 1.0
    assert mcnemar_test(y, half, 1 - half, exact=False).pvalue == 1.0
    assert statsmodels_pvalue(y, half, 1 - half, exact=False) < 1.0  # statsmodels corrects even at b == c


@pytest.mark.parametrize("a, b", [([0], [1]), ([1], [0]), ([0], [0]), ([1], [1])])
def test_mcnemar_on_a_single_example(a, b):
    y = np.array([0])
    for exact in (True, False):
        result = mcnemar_test(y, np.array(a), np.array(b), exact=exact)
        assert result.pvalue == 1.0
        if result.b + result.c:
            assert result.pvalue == pytest.approx(statsmodels_pvalue(y, np.array(a), np.array(b), exact))


def test_mcnemar_exact_switch_at_25_discordant():
    y = np.zeros(60, dtype=int)
    for discordant, method in ((24, "exact binomial"), (25, "chi-square with continuity correction")):
        a = np.zeros(60, dtype=int)
        b = np.r_[np.ones(discordant), np.zeros(60 - discordant)].astype(int)
        assert mcnemar_test(y, a, b).method == method


def test_mcnemar_on_label_matrices_counts_whole_rows():
    Y = np.array([[1, 0], [0, 1], [1, 1]])
    A = np.array([[1, 0], [0, 1], [1, 0]])  # right, right, wrong
    B = np.array([[1, 1], [0, 1], [1, 1]])  # wrong, right, right
    np.testing.assert_array_equal(mcnemar_table(Y, A, B), [[1, 1], [1, 0]])


def test_results_are_frozen():
    y, a, b = paired_systems(50, seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mcnemar_test(y, a, b).pvalue = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        paired_bootstrap(y, a, b, accuracy, n_resamples=10).difference = 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_paired_bootstrap_agrees_with_scipy(seed):
    y, a, b = paired_systems(600, seed=seed)
    ours = paired_bootstrap(y, a, b, accuracy, n_resamples=5000, seed=seed)

    def difference(y, a, b, axis=-1):
        """Accuracy of A minus accuracy of B, along the resampled axis (scipy's vectorised form)."""
        return (a == y).mean(axis=axis) - (b == y).mean(axis=axis)

    ref = bootstrap((y, a, b), difference, paired=True, vectorized=True, n_resamples=5000,
                    method="percentile", confidence_level=0.95, random_state=seed + 100).confidence_interval
    assert ours.ci_low == pytest.approx(ref.low, abs=CI_TOLERANCE)
    assert ours.ci_high == pytest.approx(ref.high, abs=CI_TOLERANCE)
    assert ours.difference == pytest.approx(accuracy_score(y, a) - accuracy_score(y, b), abs=1e-12)
    assert ours.ci_low <= ours.difference <= ours.ci_high
    assert ours.distribution.shape == (5000,)
    assert ours.distribution.mean() == pytest.approx(ours.difference, abs=0.003)


def test_paired_bootstrap_macro_f1_agrees_with_scipy():
    y, a, b = paired_systems(400, seed=2)
    ours = paired_bootstrap(y, a, b, macro_f1, n_resamples=3000, seed=2)
    ref = bootstrap((y, a, b), lambda y, a, b: macro_f1(y, a) - macro_f1(y, b), paired=True, vectorized=False,
                    n_resamples=3000, method="percentile", random_state=3).confidence_interval
    assert ours.ci_low == pytest.approx(ref.low, abs=0.01) and ours.ci_high == pytest.approx(ref.high, abs=0.01)
    assert ours.ci_low <= ours.difference <= ours.ci_high
    assert ours.distribution.mean() == pytest.approx(ours.difference, abs=0.005)


def test_paired_bootstrap_resamples_rows_of_label_matrices():
    rng = np.random.default_rng(3)
    Y = (rng.random((300, 5)) < 0.3).astype(int)
    A = np.where(rng.random(Y.shape) < 0.85, Y, 1 - Y)
    B = np.where(rng.random(Y.shape) < 0.80, Y, 1 - Y)
    ours = paired_bootstrap(Y, A, B, micro_f1, n_resamples=3000, seed=1)
    rows = np.arange(len(Y))
    ref = bootstrap((rows,), lambda i: micro_f1(Y[i], A[i]) - micro_f1(Y[i], B[i]), vectorized=False,
                    n_resamples=3000, method="percentile", random_state=2).confidence_interval
    assert ours.ci_low == pytest.approx(ref.low, abs=0.01) and ours.ci_high == pytest.approx(ref.high, abs=0.01)
    assert ours.difference == pytest.approx(f1_score(Y, A, average="micro") - f1_score(Y, B, average="micro"))
    assert ours.ci_low <= ours.difference <= ours.ci_high and ours.ci_low > 0


def test_pairing_makes_nearly_identical_systems_tight():
    y, a, _ = paired_systems(600, seed=4)
    b = a.copy()
    b[:3] = (a[:3] + 1) % 5  # B differs from A on three examples only
    result = paired_bootstrap(y, a, b, accuracy, seed=0)
    assert result.ci_high - result.ci_low < 0.03  # unpaired intervals would be about +-0.05 wide


def test_p_value_definition():
    y, a, _ = paired_systems(300, seed=5)
    same = paired_bootstrap(y, a, a.copy(), accuracy, n_resamples=500)
    assert (same.difference, same.ci_low, same.ci_high, same.p_value_two_sided) == (0.0, 0.0, 0.0, 1.0)
    clear = paired_bootstrap(y, y.copy(), a, accuracy, n_resamples=500)
    assert clear.p_value_two_sided == pytest.approx(2 / 501) and clear.ci_low > 0  # the smallest p of 500 resamples
    reverse = paired_bootstrap(y, a, y.copy(), accuracy, n_resamples=500)
    assert reverse.p_value_two_sided == pytest.approx(2 / 501) and reverse.ci_high < 0
    for seed in range(8):
        y, a, b = paired_systems(300, seed=seed, acc_a=0.72, acc_b=0.7)
        r = paired_bootstrap(y, a, b, accuracy, n_resamples=1000, seed=seed)
        opposite = np.sum(np.sign(r.distribution) != np.sign(r.difference))
        assert r.p_value_two_sided == pytest.approx(min(1.0, 2 * (opposite + 1) / 1001))
        assert (r.p_value_two_sided < 0.05) == (not r.ci_low <= 0 <= r.ci_high)


def test_bootstrap_is_seeded():
    y, a, b = paired_systems(200, seed=6)
    first = paired_bootstrap(y, a, b, accuracy, n_resamples=300, seed=11)
    np.testing.assert_array_equal(first.distribution, paired_bootstrap(y, a, b, accuracy, 300, seed=11).distribution)
    assert not np.array_equal(first.distribution, paired_bootstrap(y, a, b, accuracy, 300, seed=12).distribution)


def test_macro_f1_bootstrap_of_600_examples_is_fast():
    y, a, b = paired_systems(600, seed=7, k=10)
    start = time.perf_counter()
    paired_bootstrap(y, a, b, macro_f1, n_resamples=2000)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_ci_agrees_with_scipy(seed):
    y, a, _ = paired_systems(600, seed=seed)
    point, low, high = bootstrap_ci(y, a, accuracy, n_resamples=5000, seed=seed)
    ref = bootstrap((y, a), lambda y, a, axis=-1: (y == a).mean(axis=axis), paired=True, vectorized=True,
                    n_resamples=5000, method="percentile", random_state=seed + 50).confidence_interval
    assert point == pytest.approx(accuracy_score(y, a))
    assert low == pytest.approx(ref.low, abs=CI_TOLERANCE) and high == pytest.approx(ref.high, abs=CI_TOLERANCE)
    assert low < point < high
    narrow = bootstrap_ci(y, a, accuracy, n_resamples=5000, confidence=0.5, seed=seed)
    assert low < narrow[1] < narrow[2] < high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 7, 200))  # 7 never in y
    y[y == 3] = 2  # 3 never in y; may be predicted
    assert accuracy(y, pred) == pytest.approx(accuracy_score(y, pred))
    assert macro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert micro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="micro"), abs=1e-12)
    Y = (rng.random((150, 5)) < 0.3).astype(int)
    Y[:, 4] = 0
    P = np.where(rng.random(Y.shape) < 0.8, Y, 1 - Y)
    P[:, 4] = 0  # a label nobody has and nobody predicts: F1 0, as sklearn's zero_division=0 says
    assert accuracy(Y, P) == pytest.approx(accuracy_score(Y, P))
    assert macro_f1(Y, P) == pytest.approx(f1_score(Y, P, average="macro", zero_division=0), abs=1e-12)
    assert micro_f1(Y, P) == pytest.approx(f1_score(Y, P, average="micro", zero_division=0), abs=1e-12)
    assert micro_f1(np.zeros((3, 2)), np.zeros((3, 2))) == 0.0


def test_holm_by_hand_and_against_statsmodels():
    np.testing.assert_allclose(holm_bonferroni([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm_bonferroni([0.5]), [0.5])
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = np.r_[rng.random(6) ** 3, 0.02, 0.02]  # small ones and a tie
        np.testing.assert_allclose(holm_bonferroni(p), multipletests(p, method="holm")[1], rtol=1e-12)
    np.testing.assert_array_equal(holm_bonferroni([0.9, 0.8]), [1.0, 1.0])  # capped at 1


@pytest.mark.parametrize("call, match", [
    (lambda: mcnemar_test([0, 1], [0, 1, 1], [0, 1]), "y_true has 2 examples but pred_a has 3"),
    (lambda: mcnemar_test([0, 1], [0, 1], [0]), "y_true has 2 examples but pred_b has 1"),
    (lambda: mcnemar_test([], [], []), "must not be empty"),
    (lambda: mcnemar_table([[0, 1]], [[0, 1]], [0]), "y_true has shape .1, 2. but pred_b has shape .1,."),
    (lambda: paired_bootstrap([0, 1], [0, 1], [1, 1], accuracy, n_resamples=0), "n_resamples must be at least 1"),
    (lambda: paired_bootstrap([0, 1], [0, 1], [1, 1], accuracy, confidence=95), "strictly between 0 and 1"),
    (lambda: bootstrap_ci([0, 1], [0], accuracy), "y_true has 2 examples but pred has 1"),
    (lambda: bootstrap_ci([[0, 1]], [0], accuracy), "one prediction per label, of the same kind"),
    (lambda: holm_bonferroni([]), "non-empty"),
    (lambda: holm_bonferroni([0.1, 1.2]), "in \\[0, 1\\]"),
])
def test_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
