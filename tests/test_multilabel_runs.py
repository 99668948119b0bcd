"""Chapter 05 on the tiny profile: parsing generated label lists, threshold rules on edge cases, the two runs."""

import numpy as np
import pandas as pd
import pytest

from tutorial_utils.setup.config import get_profile
from tutorial_utils.data import label_names, load_multi_label, multi_hot
from tutorial_utils.evaluation import thresholds
from tutorial_utils.methods import instruct, multilabel_runs
from tutorial_utils.methods.multilabel_runs import HeadScores

NAMES = ["audio", "editing", "text", "viewing"]


@pytest.fixture(scope="module")
def profile():
    return get_profile("tiny")


@pytest.fixture(scope="module")
def data(profile):
    return load_multi_label(profile)


def test_parse_many_counts_every_kind_of_failure():
    v = instruct.make_verbalizer(NAMES)
    outputs = ["text, editing", "", "text, text", "video, audio", "none", "Audio; Viewing.", "\n"]
    Y, report = multilabel_runs.parse_many(outputs, v)
    assert Y.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1],
                          [0, 0, 0, 0]]
    assert report == {"answers": 7, "failed": 3, "with an unknown label": 1, "with a repeated label": 1, "empty": 2,
                      "no label at all": 3, "failed rate": 3 / 7}


def test_parse_many_of_nothing():
    Y, report = multilabel_runs.parse_many([], instruct.make_verbalizer(NAMES))
    assert Y.shape == (0, 4) and report["failed rate"] == 0


def synthetic_scores(seed: int = 0, n_val: int = 40, n_test: int = 60) -> tuple[HeadScores, np.ndarray, np.ndarray]:
    """Probabilities that carry some signal, with label 3 absent from validation and label 2 never predicted."""
    rng = np.random.default_rng(seed)
    Y_val = (rng.random((n_val, 4)) < [0.5, 0.3, 0.2, 0.0]).astype(int)
    Y_test = (rng.random((n_test, 4)) < [0.5, 0.3, 0.2, 0.1]).astype(int)

    def probs(Y):
        P = np.clip(0.35 * Y + rng.random(Y.shape) * 0.6, 0, 1)
        P[:, 2] *= 0.3  # an "all-negative" label: its probabilities never reach 0.5
        return P

    return HeadScores(probs(Y_val), probs(Y_test), {"train_examples": 0, "trainable_params": 0}), Y_val, Y_test


def test_threshold_rules_handle_an_absent_label_and_an_all_negative_label():
    scores, Y_val, _ = synthetic_scores()
    rules = multilabel_runs._threshold_rules(scores.validation, Y_val)
    assert rules["global 0.5"] == 0.5 and 0 < rules["tuned global"] < 1
    per_label = rules["tuned per label"]
    assert per_label[3] == 0.5, "a label with no validation positive keeps the fallback"
    assert per_label[2] < 0.5, "a label whose probabilities stay low gets a low threshold"
    assert (thresholds.apply_thresholds(scores.validation, 0.5)[:, 2] == 0).all()


def test_threshold_comparison_table(data):
    rng = np.random.default_rng(1)
    Y_val, Y_test = multi_hot(data["validation"]), multi_hot(data["test"])
    scores = HeadScores(np.clip(0.4 * Y_val + 0.6 * rng.random(Y_val.shape), 0, 1),
                        np.clip(0.4 * Y_test + 0.6 * rng.random(Y_test.shape), 0, 1), {})
    table = multilabel_runs.threshold_comparison(scores, data)
    assert list(table.index.get_level_values("rule")) == ["global 0.5", "tuned global", "tuned per label"]
    assert table.columns.get_level_values(0).unique().tolist() == ["validation", "test"]
    val = table["validation"]
    assert val["macro_f1"].iloc[2] >= val["macro_f1"].iloc[0] - 1e-12  # per label is tuned on validation


def test_all_negative_predictions_score_zero_without_error(profile, data):
    Y_test = multi_hot(data["test"])
    report = {"train_seconds": 0.0, "train_examples": 0, "trainable_params": 0}
    zeros = HeadScores(np.zeros_like(multi_hot(data["validation"])), np.zeros_like(Y_test), report)
    result = multilabel_runs.head_result(zeros, profile, data, rule="global 0.5")
    assert result.y_pred.sum() == 0 and result.test_metrics == {"micro_f1": 0.0, "macro_f1": 0.0, "samples_f1": 0.0}


def test_label_table_and_training_subset(profile, data):
    table = multilabel_runs.label_table(data)
    assert list(table.columns) == ["train", "validation", "test"] and len(table) == len(label_names(data))
    assert table["train"].is_monotonic_decreasing
    subset = multilabel_runs.train_subset(profile, data)
    assert len(subset["train"]) == profile.multilabel_train_size and len(subset["test"]) == len(data["test"])
    assert len(multilabel_runs.train_subset(profile, data, n=10_000)["train"]) == len(data["train"])


@pytest.fixture(scope="module")
def runs_on_tiny(profile, data):
    scores = multilabel_runs.train_head(profile, data)
    tuned = multilabel_runs.tune_multilabel(profile, data)
    return scores, tuned, multilabel_runs.instruction_result(tuned, profile, data)


def test_head_probabilities_and_result(runs_on_tiny, profile, data):
    scores, _, _ = runs_on_tiny
    n_labels = len(label_names(data))
    assert scores.validation.shape == (len(data["validation"]), n_labels)
    assert scores.test.shape == (len(data["test"]), n_labels)
    assert ((scores.test >= 0) & (scores.test <= 1)).all()
    result = multilabel_runs.head_result(scores, profile, data)
    assert result.y_pred.shape == result.y_true.shape and len(result.extra["thresholds"]) == n_labels
    assert result.train_examples == profile.multilabel_train_size


def test_instruction_run_survives_garbage_answers(runs_on_tiny, data):
    _, tuned, result = runs_on_tiny
    parsing = result.extra["parsing"]
    assert parsing["answers"] == len(data["test"]) and 0 <= parsing["failed"] <= parsing["answers"]
    assert result.y_pred.shape == result.y_true.shape and set(np.unique(result.y_pred)) <= {0, 1}
    assert multilabel_runs.max_answer_tokens(tuned, data) >= 3
    table = multilabel_runs.comparison([result])
    assert isinstance(table, pd.DataFrame) and table.loc["multilabel-instruction", "unparsable answers"] == \
        parsing["failed"]


def test_multi_label_prompts_ask_for_an_ordered_list(runs_on_tiny, data):
    _, tuned, _ = runs_on_tiny
    prompt = tuned.prompts([data["train"]["text"][0]])[0]
    assert "in this order, separated by ','" in prompt
    assert tuned.verbalizer.answer([3, 1]) == f"{tuned.verbalizer.words[1]}, {tuned.verbalizer.words[3]}"
