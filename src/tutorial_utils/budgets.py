"""Trainable-parameter budgets by formula: LoRA adds r x (in + out) weights per wrapped linear layer.

Works from a model's dimensions alone, so the paper's budgets for 3B-8B models can be recomputed
without downloading them. Dimensions are those of the models' public ``config.json`` files.
Taught in chapter 01; used in chapters 04 (instruction budgets) and 08 (the capstone table).
"""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ATTENTION + MLP


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
