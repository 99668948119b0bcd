"""The profile switch: names, the environment variable, GPU checks and overrides."""

import dataclasses

import pytest

from tutorial_utils.setup import config
from tutorial_utils.setup.config import PROFILES, ProfileError, get_profile


def test_env_variable_picks_the_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    monkeypatch.setenv("COURSE_PROFILE", " Tiny ")
    assert get_profile().name == "tiny"


def test_explicit_name_beats_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert get_profile("tiny").name == "tiny"


def test_unknown_profile_names_the_choices_and_the_fix():
    with pytest.raises(ProfileError, match=r"Unknown profile 'huge'.*tiny, cpu, gpu, paper.*COURSE_PROFILE=cpu"):
        get_profile("huge")


def test_gpu_profile_without_cuda_says_what_to_do(monkeypatch):
    monkeypatch.setattr(config, "_cuda_available", lambda: False)
    monkeypatch.delenv("COURSE_ALLOW_CPU", raising=False)
    with pytest.raises(ProfileError, match="needs a CUDA GPU.*COURSE_PROFILE=cpu"):
        get_profile("gpu")


def test_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(config, "_cuda_available", lambda: False)
    assert get_profile().name == "cpu"
    monkeypatch.setattr(config, "_cuda_available", lambda: True)
    assert get_profile().name == "gpu"


def test_overrides_and_4bit_switch(monkeypatch):
    assert get_profile("cpu", seed=7).seed == 7
    monkeypatch.setenv("COURSE_LOAD_IN_4BIT", "0")
    assert get_profile("cpu").load_in_4bit is False


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_is_complete_and_consistent(name):
    profile = PROFILES[name]
    assert profile.name == name
    for f in dataclasses.fields(profile):
        assert getattr(profile, f.name) is not None, f.name
    assert profile.lora.scaling == profile.lora.alpha / profile.lora.r
    assert profile.train.max_length > 0 and profile.train.batch_size > 0
    assert profile.meaningful == (name != "tiny")
    summary = profile.summary()
    assert profile.causal_lm in summary and f"r={profile.lora.r}" in summary


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_header_shows_each_chapter_familys_own_settings(name):
    """Chapters 04-05 train with their own settings: the header every chapter prints must show them."""
    profile = PROFILES[name]
    lines = [line.split(":", 1)[-1].strip() for line in profile.summary().splitlines()]  # without "label :"
    for family, train in [("embedding head", profile.train), ("encoder", profile.encoder_train),
                          ("instruction tuning", profile.instruct_train), ("multi-label", profile.multilabel_train)]:
        line = next(text for text in lines if text.startswith(family + " "))
        assert f"lr {train.learning_rate:g}," in line and f"batch {train.batch_size}" in line, line
        assert f"{train.max_length} " in line, line
    assert f"at most {profile.instruct_train_size} examples" in profile.summary()
    assert f"seeds {', '.join(map(str, profile.protocol.seeds))}" in profile.summary()


def test_profiles_table_has_one_row_per_profile():
    rows = config.profiles_table()
    assert [r["profile"] for r in rows] == list(PROFILES)
    assert rows[0]["train / val / test"] == "192 / 64 / 96" and rows[0]["needs GPU"] == "no"
    assert rows[list(PROFILES).index("cpu")]["train / val / test"] == "2,000 / 200 / 600"


def test_tables_group_counts_by_thousands_and_leave_other_numbers_alone():
    """The chapters' tables (session.frame_html, their notebook display) print 465,408, and 0.123 stays 0.123."""
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

    from tutorial_utils.setup import session

    frame = pd.DataFrame({"trainable params": [465408, 22716296], "macro-F1": [0.12345, 0.5], "seed": [1, 2]},
                         index=pd.Index(["head", "encoder"], name="method"))
    html = session.frame_html(frame.round(3))
    assert "<td>465,408</td>" in html and "<td>22,716,296</td>" in html and "<td>0.123</td>" in html
    assert "465408" not in html and 'class="dataframe"' in html
    shell = InteractiveShell.instance()
    try:
        session._group_thousands_in_notebooks()
        assert "<td>465,408</td>" in shell.display_formatter.format(frame)[0]["text/html"]
    finally:
        InteractiveShell.clear_instance()
