"""The one loader of the course's models: a causal LM in one of ``PRECISIONS`` (4-bit NF4 by default), as a
classifier or a generator, with LoRA attached; the encoder baseline; parameter counts that handle packed
4-bit weights; and the fix for bitsandbytes' CPU repacking, which would stop LoRA from learning.

Taught in chapters 00 (loading), 01 (quantization, LoRA) and 02 (the classifier head).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

from ..setup.assets import model_path
from ..setup.checks import check_label_names, check_safetensors
from ..setup.config import LoraSettings, Profile
from .heads import hand_written_head, init_from_label_tokens

__all__ = ["ModelError", "device", "cpu_has_bf16", "half_dtype", "compute_dtype", "compute_dtype_name",
           "quantization_config", "ensure_pad_token", "load_tokenizer",
           "PRECISIONS", "NOMINAL_BITS", "from_pretrained", "load_sequence_classifier", "load_causal_lm",
           "add_lora", "load_embedding_head", "ParamCount", "count_parameters", "load_encoder_classifier",
           "load_trained_classifier", "cpu_packed_layers", "keep_trainable_on_cpu"]

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

_PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>")


class ModelError(RuntimeError):
    """A model or tokenizer that cannot be used as the course needs it."""


def device() -> torch.device:
    """The device the chapters compute on: the first CUDA GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_bf16() -> bool:
    """Whether torch multiplies bf16 matrices on this CPU with oneDNN's kernels (AVX512 or AMX on x86, BF16 on Arm)
    rather than emulating bf16, which on an AVX2-only Xeon was 6x slower than float32 on a linear layer (chapter 01)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _forced_dtype() -> torch.dtype | None:
    """The dtype ``COURSE_COMPUTE_DTYPE`` names, if it is set."""
    forced = os.environ.get("COURSE_COMPUTE_DTYPE")
    if not forced:
        return None
    if forced not in {"float16", "bfloat16", "float32"}:
        raise ModelError(f"COURSE_COMPUTE_DTYPE={forced!r}: use float16, bfloat16 or float32.")
    return getattr(torch, forced)


def half_dtype(on: torch.device | None = None) -> torch.dtype:
    """The device's 16-bit type (the ``bf16`` precision): fp16 on GPUs below compute capability 8 (T4), else bf16."""
    forced = _forced_dtype()
    if forced in (torch.float16, torch.bfloat16):
        return forced
    on = on or device()
    if on.type == "cuda":  # not torch.cuda.is_bf16_supported(): it is True on a T4, which only emulates bf16 (slowly)
        return torch.bfloat16 if torch.cuda.get_device_capability(on)[0] >= 8 else torch.float16
    return torch.bfloat16


def compute_dtype(on: torch.device | None = None) -> torch.dtype:
    """The dtype the course computes in (chapter 01): the GPU's 16-bit type (bf16, or fp16 on a T4); on a CPU,
    bf16 where it has bf16 arithmetic (``cpu_has_bf16``), else float32, since emulated bf16 is several times slower.

    ``COURSE_COMPUTE_DTYPE`` (float16, bfloat16 or float32) overrides it, e.g. to rehearse a T4 run on a newer GPU.
    """
    forced = _forced_dtype()
    if forced is not None:
        return forced
    on = on or device()
    if on.type == "cuda" or cpu_has_bf16():
        return half_dtype(on)
    return torch.float32


def compute_dtype_name() -> str:
    """``compute_dtype()`` as a run record's provenance names it ("bfloat16", "float32")."""
    return str(compute_dtype()).removeprefix("torch.")


def quantization_config(double_quant: bool = True, quant_type: str = "nf4", dtype: torch.dtype | None = None):
    """A bitsandbytes 4-bit config: NF4 with double quantisation and the device's compute dtype."""
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=double_quant,
                              bnb_4bit_compute_dtype=dtype or compute_dtype())


def ensure_pad_token(tokenizer) -> str:
    """Give the tokenizer a pad token that is not its EOS token; return a sentence saying what was done.

    With pad == eos, an EOS the text itself ends with is mistaken for padding, and batches cannot be
    padded at all without a pad token. An existing unused special token is reused, so the embedding
    matrix keeps its size (important for 4-bit models).
    """
    eos = tokenizer.eos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token != eos:
        return f"pad token kept: {tokenizer.pad_token!r} (id {tokenizer.pad_token_id})"
    vocab = tokenizer.get_vocab()
    for candidate in _PAD_CANDIDATES + ((tokenizer.unk_token,) if tokenizer.unk_token else ()):
        if candidate and candidate in vocab and candidate != eos:
            before = tokenizer.pad_token
            tokenizer.pad_token = candidate
            return f"pad token set to {candidate!r} (id {tokenizer.pad_token_id}); it was {before!r}"
    raise ModelError(
        "The tokenizer has no pad token distinct from its EOS token, and no unused special token to reuse. "
        "Fix: tokenizer.add_special_tokens({'pad_token': '<pad>'}) and then model.resize_token_embeddings(len(tokenizer))."
    )


def load_tokenizer(name: str, padding_side: str = "right"):
    """The tokenizer of a profile model name, with a proper pad token and an explicit padding side."""
    tokenizer = AutoTokenizer.from_pretrained(model_path(name))
    ensure_pad_token(tokenizer)
    tokenizer.padding_side = padding_side
    return tokenizer


# ---- Precisions: one vocabulary and one loader for every model the course loads (chapter 01, benchmarks) ----

PRECISIONS = ("fp32", "bf16", "int8", "nf4", "nf4-dq")  # "bf16": the device's 16-bit dtype (fp16 on a T4)
NOMINAL_BITS = {"fp32": 32, "bf16": 16, "int8": 8, "nf4": 4, "nf4-dq": 4}  # bits of each quantised weight


def _profile_precision(profile: Profile, quantize: bool | None = None) -> str:
    """The precision the course trains in: 4-bit NF4 with double quantisation, or without bitsandbytes the
    compute dtype (16-bit, or fp32 on a CPU without bf16 arithmetic)."""
    if profile.load_in_4bit if quantize is None else quantize:
        return "nf4-dq"
    return "fp32" if compute_dtype() == torch.float32 else "bf16"


def _precision_kwargs(precision: str) -> dict:
    """``from_pretrained`` arguments for one of ``PRECISIONS``: dtype, bitsandbytes config and placement.

    The layers a precision does not quantise are kept in the device's 16-bit type, as its memory is measured
    (chapter 01); the course's own loaders keep them in the compute dtype instead (``from_pretrained(dtype=...)``).
    """
    # a quantised model is placed where it loads: this process's GPU (LOCAL_RANK under torchrun), else the CPU
    place = {"device_map": {"": int(os.environ.get("LOCAL_RANK", 0))} if device().type == "cuda" else {"": "cpu"}}
    if precision == "fp32":
        return {"dtype": torch.float32}
    if precision == "bf16":
        return {"dtype": half_dtype()}
    if precision == "int8":  # LLM.int8 computes in fp16 (on CPU a bf16 model warns at every layer)
        return {"dtype": torch.float16, **place, "quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    if precision in ("nf4", "nf4-dq"):
        return {"dtype": half_dtype(), **place,
                "quantization_config": quantization_config(double_quant=precision == "nf4-dq")}
    raise ModelError(f"Unknown precision {precision!r}. Fix: choose one of {', '.join(PRECISIONS)}.")


def from_pretrained(auto_class, name: str, precision: str, **kwargs):
    """``auto_class.from_pretrained`` of a course model in one of ``PRECISIONS``, on this device (``kwargs`` win)."""
    load = {**_precision_kwargs(precision), **kwargs}
    model = auto_class.from_pretrained(model_path(name), **load)
    if "device_map" not in load:
        model.to(device())
    return model


def load_sequence_classifier(profile: Profile, label_names: list[str], multi_label: bool = False,
                             quantize: bool | None = None):
    """The profile's causal LM with a classification head on the last non-pad token; returns (model, tokenizer)."""
    label_names = check_label_names(label_names, minimum=1 if multi_label else 2)
    tokenizer = load_tokenizer(profile.causal_lm)
    model = from_pretrained(
        AutoModelForSequenceClassification, profile.causal_lm, _profile_precision(profile, quantize),
        dtype=compute_dtype(), num_labels=len(label_names),
        id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_causal_lm(profile: Profile, quantize: bool | None = None, padding_side: str = "left",
                   precision: str | None = None):
    """The profile's causal LM for generation and label scoring, in the profile's precision or the one named;
    returns (model, tokenizer)."""
    tokenizer = load_tokenizer(profile.causal_lm, padding_side=padding_side)
    model = from_pretrained(AutoModelForCausalLM, profile.causal_lm, precision or _profile_precision(profile, quantize),
                            **({} if precision else {"dtype": compute_dtype()}))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _linear_module_names(model: nn.Module) -> set[str]:
    """The short names of the linear layers inside the transformer blocks (the layers LoRA can wrap)."""
    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}:
            short = full_name.rsplit(".", 1)[-1]
            if short not in {"score", "classifier", "lm_head"}:
                names.add(short)
    return names


def add_lora(model: nn.Module, lora: LoraSettings, task_type: str = "SEQ_CLS",
             gradient_checkpointing: bool = False, prepare_kbit: bool = True):
    """Wrap a model with LoRA adapters (and, for 4-bit models, peft's k-bit preparation); returns the PeftModel."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training  # lazy: peft costs ~3 s; only LoRA needs it

    available = _linear_module_names(model)
    targets = list(lora.target_modules)
    if not targets:
        raise ModelError("LoraSettings.target_modules is empty, so LoRA would wrap no layer and nothing but the head "
                         "would train. Fix: name some layers, e.g. ('q_proj', 'v_proj'), or ('all-linear',).")
    if targets != ["all-linear"]:
        missing = [t for t in targets if t not in available]
        if missing:
            raise ModelError(f"The model has no layers named {missing}; LoRA cannot wrap them. Its linear layers are "
                             f"{sorted(available)}. Fix: set LoraSettings(target_modules=...) to some of these.")
    if getattr(model, "is_loaded_in_4bit", False):
        # bitsandbytes 0.50 repacks 4-bit weights for a CPU inference kernel on the first no-grad forward,
        # after which no gradient reaches LoRA (chapter 01): turn that off, and undo it if it happened
        keep_trainable_on_cpu(model)
    if getattr(model, "is_loaded_in_4bit", False) and prepare_kbit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(task_type=task_type, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.peft_targets)
    return get_peft_model(model, config)


def load_embedding_head(profile: Profile, label_names: list[str], multi_label: bool = False, pooling: str | None = None,
                        label_token_init: bool = False, lora: LoraSettings | None = None):
    """Chapter 02's classifier in one call: the profile's LM (4-bit) with a head, LoRA on it (``lora``, else the
    profile's), the head started from the label tokens' rows if ``label_token_init``, and with ``pooling`` ("last"
    or "mean") the hand-written head that pools instead of transformers' own. Returns (model, tokenizer)."""
    model, tokenizer = load_sequence_classifier(profile, label_names, multi_label=multi_label)
    if label_token_init:
        init_from_label_tokens(model, tokenizer, label_names)
    model = add_lora(model, lora or profile.lora)
    return (hand_written_head(model, pooling=pooling) if pooling else model), tokenizer


@dataclass(frozen=True)
class ParamCount:
    """Trainable and total parameters of a model (4-bit packed weights counted as their real size)."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        """Trainable parameters as a percentage of all parameters."""
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} of {self.total:,} parameters ({self.percent:.3f}%)"


def count_parameters(model: nn.Module) -> ParamCount:
    """Count trainable and total parameters, unpacking bitsandbytes' two-values-per-byte 4-bit storage."""
    trainable = total = 0
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in seen:  # tied weights (embeddings shared with the LM head) count once
            continue
        seen.add(id(param))
        n = param.numel()
        if type(param).__name__ == "Params4bit":
            n *= 2 * param.element_size()
        total += n
        trainable += n if param.requires_grad else 0
    return ParamCount(trainable, total)


def load_encoder_classifier(profile: Profile, label_names: list[str], multi_label: bool = False):
    """The profile's encoder (MiniLM, BERT) with a fresh classification head; returns (model, tokenizer)."""
    label_names = check_label_names(label_names, minimum=1 if multi_label else 2)
    path = model_path(profile.encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification")
    return model.to(device()), tokenizer


def load_trained_classifier(profile: Profile, label_names: list[str], adapter_dir: str, multi_label: bool = False):
    """Reload a classifier saved with ``model.save_pretrained(adapter_dir)``: base model + LoRA + the trained head.

    peft saves the head because ``task_type="SEQ_CLS"`` lists it in ``modules_to_save``; without that the
    reloaded head would be freshly random and predict at chance (peft issues #310, #577).
    """
    from peft import PeftModel  # lazy: peft costs ~3 s; only LoRA needs it

    check_safetensors(adapter_dir, "adapter_model")
    base, tokenizer = load_sequence_classifier(profile, label_names, multi_label=multi_label)
    return PeftModel.from_pretrained(base, adapter_dir), tokenizer


# ---- Chapter 01: a CPU pitfall. On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a Linear4bit's weight
# for a faster inference kernel the first time the layer runs in eval mode on an input without grad; no gradient
# flows back through a repacked layer, so LoRA adapters in front of it silently stop learning.

def cpu_packed_layers(model: torch.nn.Module) -> int:
    """How many 4-bit layers bitsandbytes has repacked for its CPU inference kernel (chapter 01)."""
    return sum(bool(getattr(getattr(getattr(m, "weight", None), "quant_state", None), "packing_format_for_cpu", False))
               for m in model.modules() if type(m).__name__ == "Linear4bit")


def keep_trainable_on_cpu(model: torch.nn.Module) -> int:
    """Stop bitsandbytes repacking 4-bit layers for CPU inference, and undo it where done; returns layers undone (chapter 01).
    The undo is bitsandbytes' own best-effort inverse: the weights' 4-bit codes come back exactly, their block scales
    pass through bf16 and some change, so call it before a model's first evaluation where you can."""
    undone = 0
    for module in model.modules():
        if type(module).__name__ != "Linear4bit":
            continue
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.nn import modules as bnb_modules  # lazy: ~2 s, only for a layer bitsandbytes repacked

            module.weight.data, module.weight.quant_state = bnb_modules._convert_weight_packed_for_cpu_inverse(
                module.weight.data, state)
            undone += 1
    return undone
