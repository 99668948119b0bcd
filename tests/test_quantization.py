"""Chapter 01: the hand-written NF4 quantiser against bitsandbytes, storage arithmetic, LoRA budgets by
formula against peft, the paper's budgets, and the CPU pitfall the chapter teaches.
(tests/test_recipe_cells.py runs the chapter's Recipe block as a script.)"""

import pytest
import torch

from tutorial_utils.setup import budgets
from tutorial_utils.setup.config import LoraSettings, get_profile
from tutorial_utils.modeling import activations, models, quantization


@pytest.fixture(scope="module")
def tiny():
    return get_profile("tiny")


def test_hand_written_levels_equal_bitsandbytes_nf4_table():
    import bitsandbytes.functional as F

    table = F.get_4bit_type("nf4", device="cpu").float()
    levels = quantization._nf4_levels()
    assert levels.shape == (16,) and (levels == 0).sum() == 1
    assert torch.allclose(levels, table, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed, shape, dist", [
    (0, (256, 512), "normal"), (1, (64, 64), "normal"), (2, (576, 576), "student-t"), (3, (128, 1536), "uniform"),
])
def test_hand_written_quantiser_matches_bitsandbytes(seed, shape, dist):
    """Tolerance: exact on all but at most 0.01% of the weights (a weight that sits on the midpoint of two
    levels may round either way in float arithmetic), and such a weight moves by at most one level step,
    i.e. by at most the largest gap between adjacent levels (1 - 0.723) times its block's absmax."""
    gen = torch.Generator().manual_seed(seed)
    weight = {"normal": lambda: torch.randn(shape, generator=gen),
              "student-t": lambda: torch.randn(shape, generator=gen) / torch.rand(shape, generator=gen).sqrt(),
              "uniform": lambda: torch.rand(shape, generator=gen) * 2 - 1}[dist]()
    codes, absmax = quantization.quantize_nf4(weight)
    mine = quantization.dequantize_nf4(codes, absmax, weight.shape)
    theirs = quantization.bnb_roundtrip(weight, "nf4")
    differs = (mine - theirs).abs()
    assert (differs > 0).float().mean() <= 1e-4
    largest_gap = quantization._nf4_levels().diff().max()
    bound = largest_gap * absmax.repeat_interleave(64).reshape(shape) + 1e-6
    assert (differs <= bound).all()
    assert quantization.relative_error(weight, mine) == pytest.approx(quantization.relative_error(weight, theirs),
                                                                      rel=1e-3)


def test_bits_per_parameter_arithmetic_and_what_bitsandbytes_stores():
    assert quantization.bits_per_parameter() == 4.5
    assert quantization.bits_per_parameter(double_quant=True) == 4 + 8 / 64 + 32 / (64 * 256) == 4.126953125
    assert quantization.bits_per_parameter(blocksize=128) == 4.25
    weight = torch.randn(256, 1024)  # 4096 blocks of 64: 16 groups of 256 scales, so no rounding up
    assert quantization.stored_bits_per_parameter(weight, double_quant=False) == 4.5
    assert quantization.stored_bits_per_parameter(weight, double_quant=True) == 4.126953125


def test_formats_rank_as_the_chapter_says():
    weight = torch.randn(256, 512, generator=torch.Generator().manual_seed(0))
    error = {m: quantization.relative_error(weight, quantization.roundtrip(weight, m)) for m in quantization.ROUNDTRIPS}
    assert error["8-bit blockwise"] < error["NF4"] < error["FP4"]
    assert error["NF4"] == pytest.approx(0.092, abs=0.005)
    assert error["NF4 + double quant"] == pytest.approx(error["NF4"], rel=0.02)


def test_code_usage_covers_every_weight():
    weight = torch.randn(64, 128)
    codes, table = quantization.bnb_codes(weight, "nf4")
    assert codes.numel() == weight.numel() and int(codes.max()) <= 15 and table.shape == (16,)


@pytest.mark.parametrize("label", list(budgets.TARGET_SETS))
def test_lora_formula_equals_peft_count_on_the_tiny_model(tiny, label):
    model, _ = models.load_causal_lm(tiny)
    dims = budgets.dims_from_config(model.config)
    settings = LoraSettings(r=tiny.lora.r, alpha=tiny.lora.alpha, target_modules=budgets.TARGET_SETS[label])
    peft_model = models.add_lora(model, settings, task_type="CAUSAL_LM", prepare_kbit=False)
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == budgets.lora_parameters(dims, settings.r, settings.target_modules)


def test_paper_budgets_by_formula():
    llama, mistral = budgets.KNOWN_ARCHS["Llama-3.2-3B"], budgets.KNOWN_ARCHS["Mistral-7B"]
    assert budgets.lora_parameters(llama, 8, budgets.ALL_LINEAR) == 12_156_928
    assert budgets.lora_parameters(mistral, 64, budgets.ALL_LINEAR) == 167_772_160
    assert round(budgets.lora_parameters(llama, 8, budgets.ALL_LINEAR) / 1e5) == round(
        budgets.REPORTED_BUDGETS["Llama-3.2-3B"] / 1e5)
    assert round(budgets.lora_parameters(mistral, 64, budgets.ALL_LINEAR) / 1e5) == round(
        budgets.REPORTED_BUDGETS["Mistral-7B"] / 1e5)
    rows = budgets.lora_budget_rows({"Llama-3.2-3B": llama}, [1, 8])
    assert len(rows) == 2 * len(budgets.TARGET_SETS)


def test_footprint_formula_matches_measurement(tiny):
    for precision in ("bf16", "nf4-dq"):
        model, _ = models.load_causal_lm(tiny, precision=precision)
        bits = models.NOMINAL_BITS[precision]
        dims = budgets.dims_from_config(model.config)
        expected = budgets.weight_bytes(dims, bits, 16, model.config.tie_word_embeddings)
        assert model.get_memory_footprint() == pytest.approx(expected, abs=1024), precision  # + rotary buffers
    assert quantization.quant_state_bytes(model) > 0
    assert "4-bit (packed in uint8)" in quantization.params_by_dtype(model)


def test_output_drift_of_a_model_against_itself_is_zero():
    logits = torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    drift = quantization.output_drift(logits, logits.clone(), mask)
    assert drift["top-1 agreement"] == 1.0 and drift["max |logit diff|"] == 0.0
    assert drift["KL(ref || model)"] == pytest.approx(0.0, abs=1e-6)


def test_adapters_get_gradients_after_an_evaluation_pass(tiny):
    """bitsandbytes on AVX512-BF16 CPUs repacks 4-bit weights for inference; keep_trainable_on_cpu undoes it."""
    model, tokenizer = models.load_causal_lm(tiny)
    batch = tokenizer(["a first text", "and a second, longer one"], padding=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        before = model(**batch).logits
    models.keep_trainable_on_cpu(model)
    assert models.cpu_packed_layers(model) == 0
    with torch.no_grad():
        again = model(**batch).logits
    assert models.cpu_packed_layers(model) == 0
    assert torch.allclose(before.float(), again.float(), atol=0.05)
    peft_model = models.add_lora(model, tiny.lora, task_type="CAUSAL_LM", prepare_kbit=False)
    peft_model.train()
    peft_model(**batch, labels=batch["input_ids"]).loss.backward()
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert all(float(g.abs().sum()) > 0 for n, g in grads.items() if "lora_B" in n)


def test_lora_starts_as_a_no_op_on_the_4bit_model(tiny):
    model, tokenizer = models.load_causal_lm(tiny)
    models.keep_trainable_on_cpu(model)
    batch = tokenizer(["one text"], return_tensors="pt").to(model.device)
    with torch.no_grad():
        before = model(**batch).logits
        after = models.add_lora(model, tiny.lora, task_type="CAUSAL_LM", prepare_kbit=False).eval()(**batch).logits
    assert torch.equal(before, after)


def test_checkpointing_recomputes_each_block_and_saves_less(tiny):
    model, tokenizer = models.load_causal_lm(tiny)
    models.keep_trainable_on_cpu(model)
    model = models.add_lora(model, tiny.lora, task_type="CAUSAL_LM", gradient_checkpointing=True)
    assert activations.checkpointing_enabled(model)
    batch = dict(tokenizer(["a text to train on, of some length"] * 4, return_tensors="pt").to(model.device))
    with_ckpt = activations.measure_activations(model, batch)
    model.base_model.model.gradient_checkpointing_disable()
    without = activations.measure_activations(model, batch)
    assert with_ckpt["forward passes per block"] == 2.0 and without["forward passes per block"] == 1.0
    assert with_ckpt["activations saved for backward (MiB)"] < without["activations saved for backward (MiB)"]
    assert with_ckpt["loss"] == pytest.approx(without["loss"], abs=1e-5)


def test_an_unknown_precision_names_the_ones_there_are():
    with pytest.raises(models.ModelError, match="nf4-dq"):
        models._precision_kwargs("4bit")
    assert models._precision_kwargs("nf4")["quantization_config"].bnb_4bit_use_double_quant is False
    assert models._precision_kwargs("nf4-dq")["quantization_config"].bnb_4bit_use_double_quant is True


def test_the_training_memory_formula_is_near_what_a_step_saves(tiny):
    """budgets.ACTIVATION_BYTES was measured on the cpu profile; on the tiny model it must stay within 2x."""
    model, tokenizer = models.load_sequence_classifier(tiny, ["a", "b", "c"])
    model = models.add_lora(model, tiny.lora)
    batch = dict(tokenizer(["word " * 200] * 4, truncation=True, max_length=32, padding="max_length",
                           return_tensors="pt"))
    batch["labels"] = torch.tensor([0, 1, 2, 0])
    measured = activations.measure_activations(model, batch)["activations saved for backward (MiB)"] * 2**20
    estimate = budgets.training_memory(budgets.dims_from_config(model.config), True, 4, 32, 0)["activations"]
    assert 0.5 < estimate / measured < 2, (estimate, measured)


def test_a_profile_too_large_for_the_gpu_stops_with_the_profile_that_fits():
    from tutorial_utils.setup import session
    from tutorial_utils.setup.config import PROFILES

    t4 = 15 * 2**30
    assert session._gpu_memory_problem(PROFILES["gpu"], t4, "Tesla T4") is None
    message = session._gpu_memory_problem(PROFILES["paper"], t4, "Tesla T4")
    assert "'paper'" in message and "Tesla T4 has 15.0 GiB" in message and "COURSE_PROFILE=gpu" in message
    assert "COURSE_PROFILE=cpu" in session._gpu_memory_problem(PROFILES["gpu"], 4 * 2**30)
    assert session._gpu_memory_problem(PROFILES["tiny"], 1) is None  # a model it cannot size is not refused
