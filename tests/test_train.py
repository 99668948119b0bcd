"""Training on the tiny profile: the Trainer wrapper learns, results are packaged, the encoder baseline runs."""

import dataclasses

import numpy as np
import pytest

from tutorial_utils import models, recipes, train
from tutorial_utils.config import get_profile
from tutorial_utils.data import label_names, load_single_label


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
    assert result.extra["trainable_params"] == models.count_parameters(model).trainable
    assert 0.0 <= result.metrics["macro_f1"] <= 1.0


def test_encoder_and_tfidf_runs_produce_comparable_results(setup):
    profile, data = setup
    encoder = recipes.encoder_run(profile, data)
    floor = recipes.tfidf_run(profile, data)
    assert encoder.extra["trainable_params"] > 100_000  # full fine-tuning trains the whole (tiny) encoder
    assert floor.extra["trainable_params"] == 8 * (floor.extra["trainable_params"] // 8)
    assert floor.metrics["accuracy"] > 0.3, "TF-IDF on real IPC titles is far above chance even on 192 examples"
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
