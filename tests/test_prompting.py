"""Zero-/few-shot prompts: example choice, chat layout, the context check, scoring shapes."""

import numpy as np
import pytest

from tutorial_utils.setup.config import get_profile
from tutorial_utils.modeling import models
from tutorial_utils.data import SECTION_NAMES, load_single_label
from tutorial_utils.methods import prompting
from tutorial_utils.methods.instruct import make_verbalizer


@pytest.fixture(scope="module")
def setup():
    profile = get_profile("tiny")
    model, tokenizer = models.load_causal_lm(profile, padding_side="right")
    return profile, model, tokenizer, load_single_label(profile)


def test_examples_are_seeded_and_cover_different_labels(setup):
    _, _, _, data = setup
    first = prompting.pick_examples(data["train"], 4, seed=3)
    assert first == prompting.pick_examples(data["train"], 4, seed=3)
    assert len({label for _, label in first}) == 4
    assert prompting.pick_examples(data["train"], 0, seed=3) == []


def test_few_shot_prompt_holds_the_examples_as_turns(setup):
    _, _, tokenizer, data = setup
    verbalizer = make_verbalizer(SECTION_NAMES, "names")
    examples = prompting.pick_examples(data["train"], 2, seed=0)
    prompt = prompting.few_shot_prompt(tokenizer, "Hand tools: with teeth", verbalizer, examples, "patent title")
    assert prompt.count("<|im_start|>assistant") == 3  # two worked answers + the open one
    for text, label in examples:
        assert text in prompt and verbalizer.answer(label) in prompt
    assert prompt.rstrip().endswith("assistant")


def test_too_long_prompts_reduce_k_or_fail_clearly(setup, capsys):
    _, _, tokenizer, data = setup
    verbalizer = make_verbalizer(SECTION_NAMES, "letters")
    examples = prompting.pick_examples(data["train"], 4, seed=0)
    texts = ["Hand tools: with teeth"]
    zero = len(tokenizer(prompting.few_shot_prompt(tokenizer, texts[0], verbalizer, []))["input_ids"])
    kept = prompting.fit_examples(tokenizer, texts, verbalizer, examples, limit=zero + 20)
    assert kept == []
    assert "k reduced from 4 to 0" in capsys.readouterr().out
    with pytest.raises(prompting.PromptTooLong, match=r"With k=4 examples the longest prompt is \d+ tokens"):
        prompting.fit_examples(tokenizer, texts, verbalizer, examples, limit=zero + 20, strict=True)
    with pytest.raises(prompting.PromptTooLong, match="k=0"):
        prompting.fit_examples(tokenizer, texts, verbalizer, [], limit=5)


def test_prompt_scores_have_one_column_per_label(setup):
    _, model, tokenizer, data = setup
    verbalizer = make_verbalizer(SECTION_NAMES, "codes")
    texts = list(data["test"]["text"][:5])
    scores, seconds = prompting.prompt_scores(model, tokenizer, texts, verbalizer,
                                              prompting.pick_examples(data["train"], 1, seed=0))
    assert scores.shape == (5, 8) and np.isfinite(scores).all() and (scores < 0).all() and seconds > 0
