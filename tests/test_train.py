"""Training on the tiny profile: the Trainer wrapper learns, results are packaged, the encoder baseline runs."""

import dataclasses

import numpy as np
import pytest
import torch

from tutorial_utils.setup.config import get_profile
from tutorial_utils.modeling import models
from tutorial_utils.data import label_names, load_single_label
from tutorial_utils.methods import classifier, encoder, recipes, runners, train


@pytest.fixture(scope="module")
def setup():
    profile = get_profile("tiny")
    profile = dataclasses.replace(profile, train=dataclasses.replace(profile.train, epochs=3))
    data = load_single_label(profile)
    return profile, data


def test_embedding_head_training_lowers_the_loss(setup):
    profile, data = setup
    model, tokenizer = models.load_sequence_classifier(profile, label_names(data))
    model = models.add_lora(model, profile.lora)
    trainer = train.make_trainer(model, tokenizer, data, profile)
    trainer.train()
    curve = train.learning_curve(trainer.state.log_history)
    losses = curve["loss"].dropna().to_numpy()
    assert len(losses) >= 3
    assert losses[-3:].mean() < losses[:3].mean(), f"training loss did not fall: {losses}"
    assert curve["eval_loss"].notna().sum() == 3, "one validation pass per epoch"
    result = recipes.classifier_result("embedding-head", profile, data, model, tokenizer)
    assert result.probs.shape == (len(data["test"]), 8)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-5)
    assert result.trainable_params == models.count_parameters(model).trainable
    assert 0.0 <= result.test_metrics["macro_f1"] <= 1.0


def test_encoder_and_tfidf_runs_produce_comparable_results(setup):
    profile, data = setup
    encoder = recipes.encoder_run(profile, data)
    floor = recipes.tfidf_run(profile, data)
    assert encoder.trainable_params > 100_000  # full fine-tuning trains the whole (tiny) encoder
    assert floor.trainable_params == 8 * (floor.trainable_params // 8)
    assert floor.test_metrics["accuracy"] > 0.3, "TF-IDF on real IPC titles is far above chance even on 192 examples"
    table = recipes.comparison_table([floor, encoder])
    assert list(table.index) == [recipes.TFIDF, recipes.ENCODER]


def test_predict_logits_keeps_order_and_handles_a_partial_batch(setup):
    profile, data = setup
    model, tokenizer = models.load_sequence_classifier(profile, label_names(data))
    texts = list(data["test"]["text"][:5])
    batched = train.predict_logits(model, tokenizer, texts, batch_size=2)
    one_by_one = np.concatenate([train.predict_logits(model, tokenizer, [t], batch_size=1) for t in texts])
    assert batched.shape == (5, 8)
    np.testing.assert_allclose(batched, one_by_one, atol=0.1)  # bf16 with different padding
    by_length = train.predict_logits(model, tokenizer, texts, batch_size=2, by_length=True)  # chapter 05's order
    np.testing.assert_allclose(by_length, one_by_one, atol=0.1)  # back in the texts' order


def test_long_texts_are_read_as_overlapping_windows_whose_logits_are_averaged(setup):
    from tutorial_utils.methods.train import CHUNK_OVERLAP, _mean_by_text, windows

    tokenizer = models.load_tokenizer(setup[0].causal_lm)
    texts = ["short", " ".join(f"word{i}" for i in range(60))]
    encoded, owner = windows(tokenizer, texts, 16, chunk=True)
    assert owner[0] == 0 and (owner[1:] == 1).all() and len(owner) > 3 and max(map(len, encoded["input_ids"])) <= 16
    first, second = encoded["input_ids"][1], encoded["input_ids"][2]
    assert len(set(first) & set(second)) >= int(16 * CHUNK_OVERLAP) - 2  # the next window repeats the last tokens
    assert windows(tokenizer, texts, 16)[1].tolist() == [0, 1]  # truncate: one row a text
    logits = np.arange(len(owner) * 2, dtype=np.float32).reshape(-1, 2)
    assert np.allclose(_mean_by_text(logits, owner, 2), [logits[0], logits[1:].mean(0)])
    model = models.load_sequence_classifier(setup[0], label_names(setup[1]))[0]
    read = train.predict_logits(model, tokenizer, texts, max_length=16, chunk=True, autocast=False)
    with torch.no_grad():  # each window alone, unpadded
        by_window = np.stack([model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
                              for ids in encoded["input_ids"]])
    assert read.shape == (2, 8) and np.allclose(read[1], by_window[1:].mean(0), atol=1e-3)


def test_the_weighted_loss_is_scikit_learns_sum_over_the_accumulated_batch_and_empty_input_predicts_nothing(setup):
    from types import SimpleNamespace

    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 2])
    weights = train.balanced_weights(labels.tolist(), 3)
    each = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = (torch.tensor(weights)[labels] * each).sum() / 12  # two batches of 6 accumulated
    loss = train._weighted_cross_entropy(weights)(SimpleNamespace(logits=logits), labels, num_items_in_batch=12)
    assert torch.isclose(loss, expected)
    unweighted = train._weighted_cross_entropy([1.0, 1.0, 1.0])(SimpleNamespace(logits=logits), labels)
    assert torch.isclose(unweighted, each.mean())
    model, tokenizer = models.load_sequence_classifier(setup[0], label_names(setup[1]))
    assert train.predict_logits(model, tokenizer, []).shape == (0, 8)


def test_balanced_class_weights_are_scikit_learns_and_an_absent_class_is_refused():
    from sklearn.utils.class_weight import compute_class_weight

    from tutorial_utils.setup.checks import DataError
    from tutorial_utils.methods.train import balanced_weights

    labels = [0] * 8 + [1] * 2 + [2] * 2
    assert np.allclose(balanced_weights(labels, 3), compute_class_weight("balanced", classes=np.arange(3), y=labels))
    with pytest.raises(DataError, match="Class 3 has no training example"):
        balanced_weights(labels, 4)


def test_the_chapter_s_run_and_the_protocol_s_run_are_one_function(setup, monkeypatch):
    """Chapter 03's encoder run (the profile's epochs) and the protocol's (to a plateau) both train through
    ``encoder.run`` -> ``classifier.fit``; only ``until`` differs, and each reports what its schedule measures."""
    profile, data = setup
    seen = []
    original = classifier.fit

    def spy(*args, **kwargs):
        fitted = original(*args, **kwargs)
        seen.append((kwargs["until"], fitted))
        return fitted

    monkeypatch.setattr(encoder, "fit", spy)
    chapter = recipes.encoder_run(profile, data)
    outcome = runners.encoder(runners.protocol_profile(profile), data, seed=1, value=3e-4)
    assert [until for until, _ in seen] == ["epochs", "plateau"]
    (_, by_epochs), (_, to_plateau) = seen
    assert "learning_curve" in by_epochs.report and "validation_curve" in to_plateau.report
    np.testing.assert_array_equal(chapter.y_pred, by_epochs.logits.argmax(1))
    np.testing.assert_array_equal(outcome["y_pred"], to_plateau.logits.argmax(1))


@pytest.mark.parametrize("until, options, message", [("forever", {}, "until='forever'"),
                                                     ("epochs", {"class_weight": "balanced"}, "until='plateau'"),
                                                     ("plateau", {"run_name": "mine"}, "until='epochs'")])
def test_a_run_refuses_an_unknown_schedule_or_a_protocol_option_without_the_protocol(until, options, message):
    with pytest.raises(ValueError, match=message):
        classifier.fit(None, None, None, get_profile("tiny"), get_profile("tiny").train, 1, 1e-3, until=until, **options)
