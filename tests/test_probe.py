"""The frozen-LLM probe: feature shapes, a cache keyed by everything the features depend on, the head's size."""

import dataclasses

import numpy as np
import pytest

from tutorial_utils.setup.config import get_profile
from tutorial_utils.methods import probe


@pytest.fixture()
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    return tmp_path


def test_features_have_one_row_per_text_for_every_layer_and_pooling(cache):
    profile = get_profile("tiny")
    texts = ["Hand tools: with teeth", "Ploughs", "Compounds of calcium: by thermal decomposition"]
    features = probe.cached_features(profile, "t", texts, 32, verbose=False)
    assert set(features) == {(l, p) for l in probe.LAYERS for p in probe.FEATURE_POOLINGS}
    assert all(m.shape == (3, 64) for m in features.values())
    assert not np.allclose(features[("last", "last")], features[("middle", "last")])
    assert not np.allclose(features[("last", "last")], features[("last", "mean")])


def test_cache_is_reused_only_for_the_same_model_texts_layer_pooling_and_profile(cache):
    tiny = get_profile("tiny")
    texts = ["one text", "another text"]
    paths = {probe._feature_path(tiny, "t", l, p, texts, 32) for l in probe.LAYERS for p in probe.FEATURE_POOLINGS}
    assert len(paths) == 4, "each layer/pooling has its own file"
    assert probe._feature_path(tiny, "t", "last", "last", texts, 32) != probe._feature_path(tiny, "t", "last", "last", texts[:1], 32)
    assert probe._feature_path(tiny, "t", "last", "last", texts, 32) != probe._feature_path(get_profile("cpu"), "t", "last", "last", texts, 32)
    other_model = dataclasses.replace(tiny, causal_lm="someone/other-model")
    assert probe._feature_path(tiny, "t", "last", "last", texts, 32) != probe._feature_path(other_model, "t", "last", "last", texts, 32)
    first = probe.cached_features(tiny, "t", texts, 32, verbose=False)
    marker = probe._feature_path(tiny, "t", "last", "mean", texts, 32)
    np.save(marker, np.full_like(first[("last", "mean")], 7.0))  # a cached file is read back as it is
    assert (probe.cached_features(tiny, "t", texts, 32, verbose=False)[("last", "mean")] == 7.0).all()


def test_probe_parameters_count_the_logistic_weights():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    assert probe.probe_parameters(probe.fit_probe(X, y)) == 5 * 3 + 3
    Y = (rng.random((60, 4)) < 0.4).astype(int)
    assert probe.probe_parameters(probe.fit_multilabel_probe(X, Y)) == 4 * (5 + 1)
    with pytest.raises(ValueError, match="Unknown layer"):
        probe._layer_index(30, "first")
