"""The chapters' runs: round trip, keyed by profile and config, never stale."""

import dataclasses

import numpy as np

from tutorial_utils.setup.config import get_profile
from tutorial_utils.storage import runs

from fakes import fake_result


def test_round_trip(run_cache):
    profile = get_profile("tiny")
    result = runs.load_or_compute(profile, "m", lambda: fake_result(profile), {"pooling": "last"}, verbose=False)
    loaded = runs.load(profile, "m", {"pooling": "last"})
    assert loaded is not None and loaded.settings == result.settings
    assert np.array_equal(loaded.y_pred, result.y_pred) and loaded.test_metrics["accuracy"] == 0.0
    assert loaded.trainable_params == 10 and loaded.settings["pooling"] == "last"
    assert loaded.settings["profile"]["name"] == "tiny" and loaded.data["dataset"] == profile.single_label_data


def test_a_run_under_another_name_is_filed_under_the_asked_one(run_cache):
    profile = get_profile("tiny")
    result = runs.load_or_compute(profile, "asked", lambda: fake_result(profile, "computed"), verbose=False)
    assert result.method == "asked" and runs.load(profile, "asked") is not None


def test_other_config_or_profile_settings_are_not_reused(run_cache):
    profile = get_profile("tiny")
    runs.load_or_compute(profile, "m", lambda: fake_result(profile), {"pooling": "last"}, verbose=False)
    assert runs.load(profile, "m", {"pooling": "mean"}) is None and runs.load(profile, "m") is None
    changed = dataclasses.replace(profile, lora=dataclasses.replace(profile.lora, r=16))
    assert runs.load(changed, "m", {"pooling": "last"}) is None
    assert runs.load(get_profile("cpu"), "m", {"pooling": "last"}) is None


def test_load_or_compute_computes_once(run_cache):
    profile = get_profile("tiny")
    calls = []

    def compute():
        calls.append(1)
        return fake_result(profile)

    first = runs.load_or_compute(profile, "m", compute, verbose=False)
    second = runs.load_or_compute(profile, "m", compute, verbose=False)
    assert len(calls) == 1 and np.array_equal(first.y_pred, second.y_pred)


class FakeModel:
    """Stands in for a trained model: save_pretrained writes a weights file."""

    def __init__(self, weights: bytes = b"weights"):
        self.weights = weights

    def save_pretrained(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_bytes(self.weights)


def test_needs_model_treats_a_run_without_weights_as_missing(run_cache):
    profile = get_profile("tiny")
    runs.save(fake_result(profile), profile)
    assert runs.load(profile, "m") is not None
    assert runs.load(profile, "m", needs_model=True) is None
    runs.model_dir(profile, "m").mkdir()  # a folder put there later is not the run's weights
    (runs.model_dir(profile, "m") / "adapter_model.safetensors").write_bytes(b"other")
    assert runs.load(profile, "m", needs_model=True) is None
    runs.save(fake_result(profile), profile, model=FakeModel())
    assert runs.load(profile, "m", needs_model=True) is not None


def test_recomputing_replaces_stale_weights(run_cache):
    profile = get_profile("tiny")
    stale = runs.model_dir(profile, "m")
    stale.mkdir(parents=True)
    (stale / "adapter.bin").write_text("old")
    runs.load_or_compute(profile, "m", lambda: fake_result(profile), verbose=False)
    assert not stale.exists()
    result = runs.load_or_compute(profile, "n", lambda: (fake_result(profile, "n"), FakeModel(b"new")), needs_model=True)
    assert set(result.extra["model_sha256"]) == {"adapter_model.safetensors"}  # the weights went to disk with the record
    assert (runs.model_dir(profile, "n") / "adapter_model.safetensors").read_bytes() == b"new"


def test_weights_changed_after_the_save_are_detected(run_cache, capsys):
    profile = get_profile("tiny")
    runs.save(fake_result(profile), profile, model=FakeModel(b"trained"))
    (runs.model_dir(profile, "m") / "adapter_model.safetensors").write_bytes(b"retrained elsewhere")
    assert runs.load(profile, "m") is None
    assert "adapter_model.safetensors missing or changed" in capsys.readouterr().out


def test_needs_model_refuses_a_computation_that_returns_none(run_cache):
    profile = get_profile("tiny")
    try:
        runs.load_or_compute(profile, "m", lambda: fake_result(profile), needs_model=True, verbose=False)
    except RuntimeError as error:
        assert "return (record, model)" in str(error)
    else:
        raise AssertionError("a run without weights was kept for a caller that needs them")
