"""Instruction tuning on the tiny profile: verbalizers, prompts, the cached label scorer, generation, parsing,
the answer-only loss (against the model's own loss and TRL's masks), and the chapter 04 runs."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from tutorial_utils.setup import budgets
from tutorial_utils.setup.config import get_profile
from tutorial_utils.modeling import models
from tutorial_utils.data import label_names, load_single_label
from tutorial_utils.evaluation import metrics
from tutorial_utils.methods import instruct, instruct_train, instruct_trainer

NAMES = ["human necessities", "operations and transport", "chemistry and metallurgy", "physics", "electricity"]
SCORE_ATOL = 1e-4  # nats: cached vs one-by-one scoring in fp32 (measured differences are about 1e-5)


@pytest.fixture(scope="module")
def profile():
    return get_profile("tiny")


@pytest.fixture(scope="module")
def data(profile):
    return load_single_label(profile)


@pytest.fixture
def fp32(monkeypatch):
    """Compute in fp32 (no bf16 autocast) during one test."""
    monkeypatch.setenv("COURSE_COMPUTE_DTYPE", "float32")


@pytest.fixture(scope="module")
def fp32_model(profile):
    """The tiny random Llama in fp32 (no 4-bit): exact enough to compare two computations (use with ``fp32``)."""
    before = os.environ.get("COURSE_COMPUTE_DTYPE")
    os.environ["COURSE_COMPUTE_DTYPE"] = "float32"
    try:
        return models.load_causal_lm(profile, quantize=False)
    finally:
        if before is None:
            os.environ.pop("COURSE_COMPUTE_DTYPE")
        else:
            os.environ["COURSE_COMPUTE_DTYPE"] = before


@pytest.fixture(scope="module")
def tokenizer(profile):
    return models.load_tokenizer(profile.causal_lm)


# ---- verbalizers and prompts -----------------------------------------------------------------------------

def test_verbalizer_kinds():
    assert instruct.make_verbalizer(NAMES).words == tuple(NAMES)
    assert instruct.make_verbalizer(NAMES, "codes").words == ("human", "operations", "chemistry", "physics",
                                                              "electricity")
    assert instruct.make_verbalizer(NAMES, "letters").words == ("A", "B", "C", "D", "E")
    assert instruct._short_codes(["mechanical engineering", "mechanical design", "physics"]) == [
        "mechanical-engineering", "mechanical-design", "physics"]


def test_verbalizer_rejects_ambiguous_words():
    with pytest.raises(ValueError, match="distinct"):
        instruct.make_verbalizer(["a b", "c"], words=["Physics", "physics!"])
    with pytest.raises(ValueError, match="26"):
        instruct.make_verbalizer([f"label {i}" for i in range(27)], "letters")
    with pytest.raises(ValueError, match="Unknown verbalizer"):
        instruct.make_verbalizer(NAMES, "emoji")


def test_multi_label_answer_is_sorted_unique_and_none_when_empty():
    v = instruct.make_verbalizer(NAMES)
    assert v.answer(3) == "physics"
    assert v.answer([4, 0, 4]) == "human necessities, electricity"
    assert v.answer([]) == instruct.NONE_ANSWER


def test_prompt_uses_the_chat_template_and_lists_the_labels(tokenizer):
    v = instruct.make_verbalizer(NAMES, "letters")
    prompt = instruct.build_prompt(tokenizer, "Hand tools with teeth", v, subject="patent title")
    assert prompt.startswith("<|im_start|>system\nClassify the patent title")
    assert "C = chemistry and metallurgy" in prompt and "You are a helpful" not in prompt
    assert prompt.endswith("<|im_start|>user\nHand tools with teeth<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_without_a_chat_template(tokenizer):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    prompt = instruct.build_prompt(bare, "Hand tools", instruct.make_verbalizer(NAMES))
    assert prompt.endswith("Text: Hand tools\nAnswer: ") and "physics" in prompt


def test_truncation_cuts_the_text_not_the_answer(tokenizer):
    v = instruct.make_verbalizer(NAMES)
    long_text = "word " * 200
    prompt = instruct.build_prompt(tokenizer, long_text, v, max_text_tokens=10)
    assert prompt.count("word") == 10 and prompt.endswith("assistant\n")


def test_prefix_mismatch_finds_a_merged_boundary_token(tokenizer):
    v = instruct.make_verbalizer(NAMES)
    assert instruct.prefix_mismatch(tokenizer, instruct.build_prompt(tokenizer, "x", v), "physics") is None
    message = instruct.prefix_mismatch(tokenizer, "Title: x\nLabel: ", "physics")
    assert message and "Ġphysics" in message


# ---- scoring from the cached prompt ------------------------------------------------------------------------

def test_cached_scoring_equals_one_by_one_scoring(fp32, fp32_model, data):
    model, tokenizer = fp32_model
    v = instruct.make_verbalizer(label_names(data))
    prompts = [instruct.build_prompt(tokenizer, t, v) for t in data["test"]["text"][:5]]
    reference = instruct.score_labels_one_by_one(model, tokenizer, prompts, list(v.words))
    for batch_size, reuse in ((2, True), (5, False), (3, True)):  # partial batches, with and without the prefix
        fast = instruct.score_labels(model, tokenizer, prompts, list(v.words), batch_size=batch_size,
                                     reuse_prefix=reuse)
        np.testing.assert_allclose(fast, reference, atol=SCORE_ATOL)
    model.set_attn_implementation("eager")  # the 4-D mask must also work where attention adds it
    try:
        np.testing.assert_allclose(instruct.score_labels(model, tokenizer, prompts, list(v.words)), reference,
                                   atol=SCORE_ATOL)
    finally:
        model.set_attn_implementation("sdpa")


def test_labels_sharing_a_first_token_are_ranked_by_the_full_string(fp32, fp32_model):
    model, tokenizer = fp32_model
    answers = ["mechanical engineering", "mechanical design", "physics", "physics and chemistry"]
    ids = [instruct.answer_ids(tokenizer, a) for a in answers]
    assert ids[0][0] == ids[1][0] and ids[2][0] == ids[3][0], "the test needs labels that share a first token"
    prompts = [instruct.build_prompt(tokenizer, t, instruct.make_verbalizer(answers))
               for t in ("Gear boxes", "Lasers", "Electrolysis of water")]
    scores = instruct.score_labels(model, tokenizer, prompts, answers)
    reference = instruct.score_labels_one_by_one(model, tokenizer, prompts, answers)
    np.testing.assert_allclose(scores, reference, atol=SCORE_ATOL)
    assert (scores.argsort(1) == reference.argsort(1)).all()
    first_only = instruct.score_labels(model, tokenizer, prompts, [tokenizer.decode(i[:1]) for i in ids], eos=False)
    np.testing.assert_allclose(first_only[:, 0], first_only[:, 1], atol=1e-6)  # first-token scoring ties them
    assert np.abs(scores[:, 0] - scores[:, 1]).min() > 1e-3  # the full strings do not


def test_generation_never_crashes_and_matches_one_by_one(fp32, fp32_model, data):
    model, tokenizer = fp32_model
    v = instruct.make_verbalizer(label_names(data))
    prompts = [instruct.build_prompt(tokenizer, t, v) for t in data["test"]["text"][:4]]
    texts, logp = instruct.generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=3)
    assert len(texts) == 4 and np.isfinite(logp).all() and (logp <= 0).all()
    for prompt, text, lp in zip(prompts, texts, logp):
        alone, alone_lp = instruct.generate(model, tokenizer, [prompt], max_new_tokens=5, reuse_prefix=False)
        assert alone == [text] and abs(alone_lp[0] - lp) < SCORE_ATOL
    assert all(instruct.parse_label(t, v) in range(-1, len(v.words)) for t in texts)


def test_contextual_calibration_removes_a_constant_bias():
    scores = np.log(np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]]))
    calibrated = instruct.contextual_calibration(scores, np.log([1 / 3, 1 / 3, 1 / 3]))
    assert (calibrated.argmax(1) == scores.argmax(1)).all()
    shifted = instruct.contextual_calibration(scores, np.log([0.8, 0.1, 0.1]))
    assert shifted[0].argmax() == 1


# ---- parsing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected", [
    ("physics", 3), ("  Physics.  ", 3), ("PHYSICS!", 3), ("Label: physics", 3), ("physics\nbecause lasers", 3),
    ("physics because it is about lasers", 3), ("Operations-and-transport", 1), ("", -1), ("   \n ", -1),
    ("biology", -1), ("\n\n\n", -1), ("the answer is: electricity", 4)])
def test_parse_label(answer, expected):
    assert instruct.parse_label(answer, instruct.make_verbalizer(NAMES)) == expected


def test_parse_label_prefers_the_longest_label_it_starts_with():
    v = instruct.make_verbalizer(["physics", "physics and chemistry", "electricity"])
    assert instruct.parse_label("Physics and chemistry.", v) == 1
    assert instruct.parse_label("physics, chemistry", v) == 0
    assert instruct.parse_label("electricity\nphysics", v) == 2  # only the first line counts


def test_parse_label_with_letters_and_codes():
    letters = instruct.make_verbalizer(NAMES, "letters")
    assert instruct.parse_label("C", letters) == 2
    assert instruct.parse_label("c.", letters) == 2
    assert instruct.parse_label("C: chemistry and metallurgy", letters) == 2
    assert instruct.parse_label("chemistry and metallurgy", letters) == 2  # the full name is accepted too
    assert instruct.parse_label("Z", letters) == -1
    assert instruct.parse_label("chemistry", instruct.make_verbalizer(NAMES, "codes")) == 2


@pytest.mark.parametrize("answer, ids, unknown, duplicates, failed", [
    ("physics, electricity", (3, 4), (), 0, False),
    ("Electricity; PHYSICS.", (3, 4), (), 0, False),
    ("physics, physics, electricity", (3, 4), (), 1, False),
    ("physics, biology", (3,), ("biology",), 0, True),
    ("", (), (), 0, True),
    ("none", (), (), 0, False),
    ("Labels: physics | electricity", (3, 4), (), 0, False),
    ("physics electricity", (3, 4), (), 0, False),
    ("\n\n", (), (), 0, True),
])
def test_parse_labels_edge_cases(answer, ids, unknown, duplicates, failed):
    parsed = instruct.parse_labels(answer, instruct.make_verbalizer(NAMES))
    assert (parsed.ids, parsed.unknown, parsed.duplicates, parsed.failed) == (ids, unknown, duplicates, failed)


def test_generation_probs_keep_the_prediction_on_top():
    probs = instruct_train.generation_probs(np.array([0, 2, -1]), np.array([0.9, 0.05, 0.6]), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert probs.argmax(1).tolist() == [0, 2, 3]  # -1 (unparsable) goes to the extra column


def test_classification_metrics_count_unparsable_as_wrong():
    m = metrics.classification_metrics([0, 1, 2, 2], [0, -1, 2, 1], 3)
    assert m["accuracy"] == 0.5 and 0 < m["macro_f1"] < 1


# ---- the loss on the answer only ---------------------------------------------------------------------------

def test_answer_only_loss_and_gradients_match_the_model_s_own_loss(fp32, profile, data):
    model, tokenizer = models.load_causal_lm(profile, quantize=False)
    peft_model = models.add_lora(model, profile.lora, task_type="CAUSAL_LM")
    v = instruct.make_verbalizer(label_names(data))
    pairs = instruct.prompt_completion(data["train"].select(range(5)), tokenizer, v)
    encoded = instruct_trainer.tokenize_completions(pairs, tokenizer)
    features = [encoded[i] for i in range(5)]
    prompts = [f["input_ids"][:f["prompt_length"]] for f in features]
    prefix = prompts[0][:instruct.shared_prefix(prompts)]
    assert len(prefix) > 10, "the instruction is shared by every prompt"
    reference = 0.0
    on = peft_model.device
    for f in features:  # the model's own loss, one example at a time, prompt labels set to -100
        ids = torch.tensor([f["input_ids"]], device=on)
        labels = ids.clone()
        labels[0, :f["prompt_length"]] = -100
        n_answer = len(f["input_ids"]) - f["prompt_length"]
        reference += peft_model(input_ids=ids, labels=labels).loss.item() * n_answer
    reference /= sum(len(f["input_ids"]) - f["prompt_length"] for f in features)
    grads = []
    for shared in (prefix, []):
        collated = instruct_trainer.CompletionCollator(tokenizer.pad_token_id, shared)(features)
        batch = {k: v.to(on) for k, v in collated.items()}
        assert (batch["labels"] != -100).sum() == sum(len(f["input_ids"]) - f["prompt_length"] for f in features)
        peft_model.zero_grad()
        loss = instruct_trainer.completion_loss(peft_model, batch)
        loss.backward()
        assert abs(loss.item() - reference) < 1e-4
        grads.append(torch.cat([p.grad.flatten() for p in peft_model.parameters() if p.requires_grad]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_trl_masks_the_same_tokens(profile, data, tokenizer):
    model = models.add_lora(models.load_causal_lm(profile)[0], profile.lora, task_type="CAUSAL_LM")
    v = instruct.make_verbalizer(label_names(data))
    pairs = instruct.prompt_completion(data["train"].select(range(6)), tokenizer, v)
    trainer = instruct_trainer.make_sft_trainer(model, tokenizer, pairs, profile)
    ours = instruct_trainer.tokenize_completions(pairs, tokenizer)
    for trl_labels, ids, n in zip(trainer.train_dataset["labels"], ours["input_ids"], ours["prompt_length"]):
        assert trl_labels == [-100] * n + ids[n:]


def test_trl_keeps_the_adapters_in_float32_unless_the_course_computes_in_bf16(profile, data, tokenizer, monkeypatch):
    v = instruct.make_verbalizer(label_names(data))
    pairs = instruct.prompt_completion(data["train"].select(range(4)), tokenizer, v)
    for dtype, expected in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        monkeypatch.setenv("COURSE_COMPUTE_DTYPE", dtype)
        model = models.add_lora(models.load_causal_lm(profile)[0], profile.lora, task_type="CAUSAL_LM")
        trainer = instruct_trainer.make_sft_trainer(model, tokenizer, pairs, profile)
        assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {expected}, dtype


# ---- chapter 04's runs on the tiny profile ------------------------------------------------------------------

def test_tuning_lowers_the_loss_and_the_runs_never_crash(profile, data):
    longer = dataclasses.replace(profile, instruct_train=dataclasses.replace(profile.instruct_train, epochs=4))
    tuned = instruct_train.tune(longer, data, n_train=32)
    losses = [x for x in tuned.report["learning_curve"]["loss"] if x == x]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    assert tuned.report["trainable_params"] == models.count_parameters(tuned.model).trainable
    scored = instruct_train.scored_result(tuned, profile, data)
    generated = instruct_train.generated_result(tuned, profile, data)
    n = len(data["test"])
    assert scored.probs.shape == (n, 8) and np.allclose(scored.probs.sum(1), 1, atol=1e-5)
    assert generated.probs.shape == (n, 8) and np.allclose(generated.probs.sum(1), 1, atol=1e-5)
    assert generated.extra["unparsable"] == int((generated.y_pred < 0).sum())
    assert set(np.unique(generated.y_pred)) <= set(range(-1, 8))


def test_budget_table_ratios(profile):
    dims = budgets.KNOWN_ARCHS["SmolLM2-135M"]
    head = budgets.lora_parameters(dims, 8) + budgets.head_parameters(dims, 8)
    table = budgets.budget_table(dims, head, ranks=(8, 16))
    row = table[(table["r"] == 8) & (table["targets"] == "q,v")].iloc[0]
    assert row["LoRA parameters"] == 460_800 and row["x embedding head"] == pytest.approx(460_800 / 465_408)
    assert instruct_train._lora_label(profile.instruct_budgets[0]).endswith("all linear")
