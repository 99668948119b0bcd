"""Trainable-parameter and memory budgets by formula, taught in chapter 01.

LoRA adds r x (in + out) weights per wrapped linear layer. Works from a model's dimensions alone, so
the paper's budgets for 3B-8B models can be recomputed without downloading them. Dimensions are those
of the models' public ``config.json`` files. Used in chapters 04 (instruction budgets) and 08 (the capstone
table); ``activations`` measures on a live model what the memory formula estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .config import ALL_LINEAR, Profile  # the one home of the layer names (the profiles' LoRA budgets use them)

__all__ = ["ArchDims", "KNOWN_ARCHS", "dims_from_config", "lora_parameters", "head_parameters", "base_parameters",
           "TARGET_SETS", "REPORTED_BUDGETS", "TIED_EMBEDDINGS", "lora_budget_rows", "budget_table",
           "linear_parameters", "weight_bytes", "ARCH_OF", "ACTIVATION_BYTES", "training_memory", "PROMPT_TOKENS",
           "profile_training_memory"]

ATTENTION, MLP = ALL_LINEAR[:4], ALL_LINEAR[4:]  # q, k, v, o; gate, up, down


@dataclass(frozen=True)
class ArchDims:
    """The shapes that fix a Llama-style decoder's linear layers."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer in one decoder block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (q, self.hidden), "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate), "down_proj": (self.intermediate, self.hidden)}


KNOWN_ARCHS = {
    "SmolLM2-135M": ArchDims("SmolLM2-135M", 576, 1536, 30, 9, 3, 64, 49152),
    "Qwen2.5-0.5B": ArchDims("Qwen2.5-0.5B", 896, 4864, 24, 14, 2, 64, 151936),
    "Llama-3.2-3B": ArchDims("Llama-3.2-3B", 3072, 8192, 28, 24, 8, 128, 128256),
    "Mistral-7B": ArchDims("Mistral-7B", 4096, 14336, 32, 32, 8, 128, 32768),
    "Qwen2.5-7B": ArchDims("Qwen2.5-7B", 3584, 18944, 28, 28, 4, 128, 152064),
    "Llama-3.1-8B": ArchDims("Llama-3.1-8B", 4096, 14336, 32, 32, 8, 128, 128256),
}


def dims_from_config(config: object, name: str = "model") -> ArchDims:
    """ArchDims read from a transformers config of a Llama-style model."""
    heads = config.num_attention_heads
    return ArchDims(name, config.hidden_size, config.intermediate_size, config.num_hidden_layers, heads,
                    getattr(config, "num_key_value_heads", heads) or heads,
                    getattr(config, "head_dim", None) or config.hidden_size // heads, config.vocab_size)


def lora_parameters(dims: ArchDims, r: int, targets: tuple[str, ...] | list[str] = ("q_proj", "v_proj")) -> int:
    """LoRA's trainable weights: sum over layers and targets of r x (in + out); no biases."""
    shapes = dims.linear_shapes()
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise ValueError(f"Unknown target modules {unknown}; a Llama-style block has {list(shapes)}.")
    return dims.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def head_parameters(dims: ArchDims, num_labels: int) -> int:
    """A linear classification head on the hidden state, without bias (as transformers' ``score``)."""
    return dims.hidden * num_labels


def base_parameters(dims: ArchDims, tied_embeddings: bool = True) -> int:
    """Approximate parameter count of the model: embeddings, linear layers and norms."""
    block = sum(i * o for i, o in dims.linear_shapes().values()) + 2 * dims.hidden
    embeddings = dims.vocab * dims.hidden * (1 if tied_embeddings else 2)
    return dims.layers * block + embeddings + dims.hidden


# ---- Chapter 01: budgets against rank and targets, memory by formula -------------------------------------

TARGET_SETS = {"q,v": ("q_proj", "v_proj"), "attention (q,k,v,o)": ATTENTION, "all linear": ALL_LINEAR}

# Trainable parameters reported by the paper (v3, as quoted second-hand: see PAPER.md), not measured here.
REPORTED_BUDGETS = {"Llama-3.2-3B": 12.2e6, "Mistral-7B": 167.8e6}
# Whether the LM head shares the input embedding matrix (public config.json: tie_word_embeddings).
TIED_EMBEDDINGS = {"SmolLM2-135M": True, "Qwen2.5-0.5B": True, "Llama-3.2-3B": True, "Mistral-7B": False,
                   "Qwen2.5-7B": False, "Llama-3.1-8B": False}


def lora_budget_rows(archs: dict[str, ArchDims], ranks: list[int] | range,
                     target_sets: dict[str, tuple[str, ...]] | None = None) -> list[dict]:
    """One row (model, targets, r, LoRA parameters) per combination: the chapter 01 budget plot."""
    target_sets = target_sets or TARGET_SETS
    return [{"model": name, "targets": label, "r": r, "LoRA parameters": lora_parameters(dims, r, targets)}
            for name, dims in archs.items() for label, targets in target_sets.items() for r in ranks]


def budget_table(dims: ArchDims, embedding_budget: int, ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
                 target_sets: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """LoRA parameters per rank and target set, and their ratio to the embedding head's budget (chapter 04)."""
    table = pd.DataFrame(lora_budget_rows({dims.name: dims}, list(ranks), target_sets))
    table["x embedding head"] = table["LoRA parameters"] / embedding_budget
    return table.drop(columns="model")


def linear_parameters(dims: ArchDims) -> int:
    """Weights in the decoder blocks' linear layers: the part that 4-bit loading quantises (chapter 01)."""
    return dims.layers * sum(i * o for i, o in dims.linear_shapes().values())


def weight_bytes(dims: ArchDims, linear_bits: float, other_bits: float = 16, tied_embeddings: bool = True) -> float:
    """Weight memory by formula: linear layers at ``linear_bits``, embeddings and norms at ``other_bits`` (chapter 01)."""
    linear = linear_parameters(dims)
    other = base_parameters(dims, tied_embeddings) - linear
    return (linear * linear_bits + other * other_bits) / 8


# The profiles' causal LMs, by their dimensions above: sized without downloading anything.
ARCH_OF = {"smollm2-135m-instruct": "SmolLM2-135M", "Qwen/Qwen2.5-0.5B-Instruct": "Qwen2.5-0.5B",
           "Qwen/Qwen2.5-7B-Instruct": "Qwen2.5-7B"}


# Bytes saved for backward per token, hidden unit and block in a 4-bit LoRA training step. Measured with
# ``activations.measure_activations`` on the cpu profile's SmolLM2-135M (LoRA on q,v; a batch of 4 x 64
# tokens): 281.5 MiB over 30 blocks of width 576, about 67. Korthikanti et al. (2022) count 34 for a 16-bit
# block without quantisation or LoRA; dequantised weights, LoRA's inputs and dropout masks add the rest.
ACTIVATION_BYTES = 67


def training_memory(dims: ArchDims, tied_embeddings: bool, batch: int, length: int, lora_params: int,
                    linear_bits: float = 4.127) -> dict[str, float]:
    """GPU bytes of one 4-bit LoRA training step by formula: weights, LoRA with Adam, saved activations.

    A rough estimate (attention kernels and the MLP's width move the activations), meant to tell a profile
    that cannot fit a GPU from one that can, not to promise a peak.
    """
    parts = {"weights": weight_bytes(dims, linear_bits, 16, tied_embeddings),
             "LoRA, gradients, Adam": lora_params * (4 + 4 + 8),  # fp32 weights and gradients, two fp32 moments
             "activations": dims.layers * batch * length * dims.hidden * ACTIVATION_BYTES}
    return {**parts, "total": sum(parts.values())}


PROMPT_TOKENS = 64  # instruction tuning's instruction and answer, on top of the text (a rough mean)


def profile_training_memory(profile: Profile) -> dict[str, float] | None:
    """``training_memory`` of the profile's most demanding chapter run (largest batch x length), or None for
    a model whose dimensions are not in ``KNOWN_ARCHS``. Instruction prompts add about 64 tokens."""
    arch = ARCH_OF.get(profile.causal_lm)
    if arch is None:
        return None
    dims, tied = KNOWN_ARCHS[arch], TIED_EMBEDDINGS[arch]
    runs = [(profile.train, profile.lora, 0), (profile.multilabel_train, profile.lora, 0),
            *((profile.instruct_train, lora, PROMPT_TOKENS) for lora in (profile.lora, *profile.instruct_budgets))]
    sizes = [training_memory(dims, tied, s.batch_size, s.max_length + extra,
                             lora_parameters(dims, lora.r, ALL_LINEAR if "all-linear" in lora.target_modules
                                             else lora.target_modules))
             for s, lora, extra in runs]
    return max(sizes, key=lambda m: m["total"])
