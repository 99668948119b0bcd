"""The gpu profile rehearsed on CPU: hub-shaped stand-ins in a Hugging Face cache, the course's loaders unchanged."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tutorial_utils.tools import hub_standins

# Runs in a fresh process: huggingface_hub and datasets read HF_HOME when they are first imported.
REHEARSAL = textwrap.dedent("""
    import json
    import numpy as np
    from tutorial_utils.setup import assets, session
    from tutorial_utils.modeling import models
    from tutorial_utils import data
    from tutorial_utils.methods import instruct, instruct_train, recipes
    from tutorial_utils.methods.verbalizer import separator
    from tutorial_utils.tools.hub_standins import AG_NEWS_TOPICS, PATENT_SECTIONS

    profile = session.start(show=False)  # COURSE_PROFILE=gpu, allowed on a CPU
    patents = data.load_single_label(profile)
    news = data.load_news(profile)
    tokenizer = models.load_tokenizer(profile.causal_lm, padding_side="left")
    verbalizer = instruct.make_verbalizer(PATENT_SECTIONS)
    prompt = instruct.build_prompt(tokenizer, patents["test"]["text"][0], verbalizer)
    # the chapters' recipes, as a Colab student runs them on the gpu profile
    head, _ = recipes.embedding_head_run(profile, patents)
    encoder = recipes.encoder_run(profile, patents)
    tuned = instruct_train.tune(profile, patents)
    scored = instruct_train.scored_result(tuned, profile, patents)
    generated = instruct_train.generated_result(tuned, profile, patents)
    model, _ = models.load_causal_lm(profile)
    prompts = [instruct.build_prompt(tokenizer, t, verbalizer) for t in patents["test"]["text"][:4]]
    budget = instruct.answer_budget(tokenizer, verbalizer)
    first, _ = instruct.generate(model, tokenizer, prompts, max_new_tokens=budget)
    second, _ = instruct.generate(model, tokenizer, prompts, max_new_tokens=budget)
    print("REPORT " + json.dumps({
        "profile": profile.name, "causal_lm": profile.causal_lm,
        "model_path": assets.model_path(profile.causal_lm),
        "patent_names": patents["train"].features["label"].names,
        "patent_splits": {k: len(v) for k, v in patents.items()},
        "first_train_labels": patents["train"]["label"][:20],
        "news_names": news["train"].features["label"].names, "news_splits": {k: len(v) for k, v in news.items()},
        "separator": separator(PATENT_SECTIONS, preferred="; "), "options": verbalizer.options(),
        "prompt": prompt, "bos": tokenizer.bos_token,
        "pad": tokenizer.pad_token, "eos": tokenizer.eos_token,
        "longest_label_tokens": max(instruct.token_counts(tokenizer, verbalizer)), "budget": budget,
        "generation_repeats": first == second,
        "metrics": {r.method: r.test_metrics for r in (head, encoder, scored, generated)},
        "n_test": {r.method: len(r.y_pred) for r in (head, encoder, scored, generated)},
        "probs_finite": all(bool(np.isfinite(r.probs).all()) for r in (head, encoder, scored)),
        "trainable": {r.method: r.trainable_params for r in (head, encoder)},
    }))
""")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> dict:
    """Lay out the stand-ins once and run the gpu profile's recipes on them in a fresh process."""
    root = tmp_path_factory.mktemp("standins")
    written = hub_standins.lay_out(root / "hf", per_class=12)
    env = {**os.environ, **hub_standins.environment(root / "hf"), "COURSE_CACHE": str(root / "cache"),
           "COURSE_HIDE_PROGRESS": "1"}
    done = subprocess.run([sys.executable, "-c", REHEARSAL], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    return {"written": written, **json.loads(line.removeprefix("REPORT "))}


def test_every_hub_artefact_of_the_gpu_and_paper_profiles_has_a_stand_in(rehearsal):
    from tutorial_utils.setup.config import GPU, PAPER

    for profile in (GPU, PAPER):
        assert {profile.causal_lm, profile.encoder} <= set(rehearsal["written"]["models"])
        assert {profile.single_label_data, profile.news_data} <= set(rehearsal["written"]["datasets"])


def test_the_gpu_profile_loads_the_hub_datasets_with_their_own_schemas(rehearsal):
    assert rehearsal["profile"] == "gpu" and rehearsal["model_path"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert rehearsal["patent_names"] == list(hub_standins.PATENT_SECTIONS)
    assert rehearsal["patent_splits"] == {"train": 9 * 12, "validation": 9 * 3, "test": 9 * 3}
    # the stand-in's rows are sorted by label: the loader's random order mixes them
    assert len(set(rehearsal["first_train_labels"])) >= 4
    # AG News has no validation split: one is carved from train (10%, stratified)
    assert rehearsal["news_names"] == list(hub_standins.AG_NEWS_TOPICS)
    assert rehearsal["news_splits"]["validation"] > 0 and rehearsal["news_splits"]["test"] == 4 * 3
    assert sum(rehearsal["news_splits"][s] for s in ("train", "validation")) == 4 * 12


def test_the_prompt_lists_qwen_labels_that_hold_semicolons_without_ambiguity(rehearsal):
    assert rehearsal["separator"] not in "".join(hub_standins.PATENT_SECTIONS)
    assert rehearsal["options"].split(rehearsal["separator"]) == list(hub_standins.PATENT_SECTIONS)
    assert rehearsal["prompt"].count("Chemistry; Metallurgy") == 1
    # Qwen's chat template: the instruction is the system turn (in place of "You are Qwen, ..."), no BOS token
    assert rehearsal["prompt"].startswith("<|im_start|>system\nClassify") and "You are Qwen" not in rehearsal["prompt"]
    assert rehearsal["prompt"].endswith("<|im_start|>assistant\n")
    assert rehearsal["bos"] is None and rehearsal["pad"] == "<|endoftext|>" and rehearsal["eos"] == "<|im_end|>"


def test_generation_ignores_the_models_sampling_settings_and_fits_the_longest_label(rehearsal):
    # the stand-in's generation_config asks for sampling (temperature 0.7) and a repetition penalty
    assert rehearsal["generation_repeats"]
    assert rehearsal["budget"] > rehearsal["longest_label_tokens"]


def test_every_recipe_of_the_gpu_profile_trains_and_predicts_on_cpu(rehearsal):
    assert set(rehearsal["metrics"]) == {"embedding-head", "encoder-finetune", "instruction-scored",
                                         "instruction-generated"}
    assert all(n == 9 * 3 for n in rehearsal["n_test"].values())
    assert rehearsal["probs_finite"]
    for metrics in rehearsal["metrics"].values():
        assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    assert 0 < rehearsal["trainable"]["embedding-head"] < rehearsal["trainable"]["encoder-finetune"]
