"""Model loading: 4-bit NF4 on CPU, pad tokens, LoRA parameter counts, clear errors; a real SmolLM2 smoke test."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tutorial_utils.setup import assets
from tutorial_utils.setup.config import ALL_LINEAR, LoraSettings, get_profile
from tutorial_utils.modeling import models
from tutorial_utils.modeling.models import ModelError
from tutorial_utils.data import SECTION_NAMES, load_single_label


@pytest.fixture(scope="module")
def tiny():
    return get_profile("tiny")


def lora_formula(model, lora: LoraSettings) -> int:
    """r * (in + out) per wrapped linear layer: the count LoRA should add."""
    total = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in lora.target_modules and hasattr(module, "in_features"):
            total += lora.r * (module.in_features + module.out_features)
    return total


def test_tiny_classifier_loads_in_4bit_with_a_distinct_pad_token(tiny):
    model, tokenizer = models.load_sequence_classifier(tiny, SECTION_NAMES)
    assert model.is_loaded_in_4bit
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["a short text", "a somewhat longer text than that"], padding=True, return_tensors="pt").to(model.device)
    assert model(**batch).logits.shape == (2, 8)


def test_lora_count_matches_the_formula_and_peft(tiny):
    model, _ = models.load_sequence_classifier(tiny, SECTION_NAMES)
    expected_lora = lora_formula(model, tiny.lora)
    head = model.score.weight.numel()
    peft_model = models.add_lora(model, tiny.lora)
    counts = models.count_parameters(peft_model)
    assert counts.trainable == expected_lora + head
    assert (counts.trainable, counts.total) == peft_model.get_nb_trainable_parameters()


def test_missing_lora_targets_are_named(tiny):
    model, _ = models.load_sequence_classifier(tiny, SECTION_NAMES)
    with pytest.raises(ModelError, match=r"no layers named \['query'\].*q_proj"):
        models.add_lora(model, LoraSettings(target_modules=("query",)))


def test_all_linear_shorthand_reaches_peft_as_its_string(tiny):
    """("all-linear",) wraps every linear layer: peft reads the string, not a layer named "all-linear"."""
    shorthand = LoraSettings(target_modules=("all-linear",))
    assert shorthand.peft_targets == "all-linear" and tiny.lora.peft_targets == list(tiny.lora.target_modules)
    model, _ = models.load_sequence_classifier(tiny, SECTION_NAMES)
    explicit = lora_formula(model, LoraSettings(target_modules=ALL_LINEAR))
    peft_model = models.add_lora(model, shorthand)
    assert models.count_parameters(peft_model).trainable == explicit + model.score.weight.numel()


def test_pad_token_equal_to_eos_is_replaced():
    tokenizer = models.load_tokenizer("tiny-random-llama")
    tokenizer.pad_token = tokenizer.eos_token
    message = models.ensure_pad_token(tokenizer)
    assert "pad token set to" in message and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_tokenizer_without_any_usable_pad_token_fails_clearly():
    tokenizer = models.load_tokenizer("tiny-random-bert")  # BERT's [PAD] exists: take it away
    tokenizer.pad_token = None
    tokenizer.unk_token = None
    tokenizer.eos_token = "[PAD]"
    with pytest.raises(ModelError, match="no pad token.*add_special_tokens"):
        models.ensure_pad_token(tokenizer)


def test_unknown_model_and_unreachable_hub_are_explained(monkeypatch):
    with pytest.raises(assets.AssetError, match="Unknown model 'gpt-17'"):
        assets.model_path("gpt-17")
    monkeypatch.setattr(assets, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(assets.AssetError, match="not reachable.*COURSE_PROFILE=cpu"):
        assets.model_path("someone/not-cached-model")


def test_missing_offline_package_names_the_install_command():
    with pytest.raises(assets.AssetError, match="not installed. Fix: pip install nothing-here"):
        assets.package_dir("no_such_course_package", "pip install nothing-here")


def test_a_cpu_computes_in_bf16_only_where_it_has_bf16_arithmetic(monkeypatch):
    monkeypatch.delenv("COURSE_COMPUTE_DTYPE", raising=False)
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: True)
    assert models.compute_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: False)  # torch would emulate bf16, several times slower
    assert models.compute_dtype(torch.device("cpu")) == torch.float32
    assert models.half_dtype(torch.device("cpu")) == torch.bfloat16, "the bf16 precision stays 16-bit in memory"
    monkeypatch.setenv("COURSE_COMPUTE_DTYPE", "bfloat16")
    assert models.compute_dtype(torch.device("cpu")) == torch.bfloat16


def test_this_cpus_bf16_check_agrees_with_its_instruction_flags():
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split() for line in info.splitlines() if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no x86 flags in /proc/cpuinfo")
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert models.cpu_has_bf16()
    if "avx512f" not in flags:  # AVX2 at most: torch has no fast bf16 kernel here and would emulate it
        assert not models.cpu_has_bf16()


def test_without_bf16_arithmetic_the_course_loads_and_trains_in_float32(monkeypatch):
    monkeypatch.delenv("COURSE_COMPUTE_DTYPE", raising=False)
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: False)
    tiny = get_profile("tiny")
    model, _ = models.load_sequence_classifier(tiny, SECTION_NAMES)
    floats = {p.dtype for p in model.parameters() if p.dtype.is_floating_point}
    assert floats == {torch.float32}, floats
    assert models.quantization_config().bnb_4bit_compute_dtype == torch.float32
    assert models.from_pretrained(AutoModelForCausalLM, tiny.causal_lm, "bf16").dtype == torch.bfloat16


@pytest.mark.slow
def test_real_smollm2_trains_two_lora_steps_in_4bit_on_cpu():
    profile = get_profile("cpu")
    data = load_single_label(get_profile("tiny"))["train"].select(range(8))
    model, tokenizer = models.load_sequence_classifier(profile, SECTION_NAMES)
    assert model.is_loaded_in_4bit and model.config.num_hidden_layers == 30
    model = models.add_lora(model, profile.lora)
    assert models.count_parameters(model).trainable == 465_408  # 30 layers x (q: 8x1152 + v: 8x768) + 576x8 head
    batch = tokenizer(list(data["text"]), padding=True, truncation=True, max_length=32, return_tensors="pt").to(model.device)
    labels = torch.tensor(data["label"][:]).to(model.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    losses = []
    for _ in range(2):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(b, p) for b, p in zip(before, trainable)), "no trainable parameter moved"


def test_lora_still_gets_gradients_after_an_eval_forward(tiny):
    """bitsandbytes' CPU repacking after a no-grad forward must not silently freeze LoRA (add_lora undoes it)."""
    model, tokenizer = models.load_sequence_classifier(tiny, SECTION_NAMES)
    batch = tokenizer(["a text", "another text here"], padding=True, return_tensors="pt").to(model.device)
    model.eval()
    with torch.no_grad():
        model(**batch)
    model = models.add_lora(model, tiny.lora)
    model.train()
    model(**batch, labels=torch.tensor([0, 1], device=model.device)).loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert any(g.abs().sum() > 0 for g in lora_grads)


def test_a_cached_smollm2_conversion_counts_only_with_smollm2s_own_special_tokens(tmp_path):
    """transformers 5.15 (Colab's) reads the GGUF file's EOS as <|im_start|>: such a conversion is made again."""
    import json

    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_text("x")
    config = {"bos_token": "<|im_start|>", "eos_token": "<|im_start|>", "pad_token": None}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert not assets._converted(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, **assets.SMOLLM2_SPECIAL_TOKENS}))
    assert assets._converted(tmp_path)
    assert not assets._converted(tmp_path / "missing")


def test_the_converted_smollm2_tokenizer_ends_answers_with_im_end():
    tokenizer = models.load_tokenizer("smollm2-135m-instruct")
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")


@pytest.mark.slow
@pytest.mark.parametrize("build", [assets._tiny_bert_dir, assets._tiny_llama_dir], ids=["tiny-bert", "smollm2-and-tiny-llama"])
def test_building_a_model_into_the_cache_leaves_the_callers_random_state_alone(monkeypatch, tmp_path, build):
    """A run that first builds a model (the tiny ones; SmolLM2's conversion from GGUF) must train exactly as a later
    run that finds it cached: the caller has already seeded its own initialisation."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))  # an empty cache: everything is built now
    torch.manual_seed(1)
    folder = build()
    after_building = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(after_building, torch.rand(3))
    assert (folder / "model.safetensors").exists()
