"""A teaching NF4 quantiser, small enough to read, checked against bitsandbytes, and what quantising does to a model.

NF4 (QLoRA, Dettmers et al. 2023) stores each weight as one of 16 levels placed at quantiles of a
normal distribution, scaled per block of 64 weights by the block's absolute maximum. Double
quantisation then stores those per-block scales in 8 bits. Taught in chapter 01.
"""

from __future__ import annotations

import warnings

import torch
from scipy.stats import norm

__all__ = ["quantize_nf4", "dequantize_nf4", "bnb_roundtrip", "bits_per_parameter", "relative_error", "ROUNDTRIPS",
           "roundtrip", "bnb_codes", "stored_bits_per_parameter", "quant_state_bytes", "next_token_logits",
           "output_drift", "params_by_dtype"]

_NF4_OFFSET = 0.9677083  # QLoRA's choice: the outermost quantile used, so that +-1 stay representable


def _nf4_levels(offset: float = _NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels: 8 positive and 7 negative normal quantiles plus an exact zero, scaled to [-1, 1]."""
    positive = norm.ppf(torch.linspace(offset, 0.5, 9)[:-1].numpy())
    negative = -norm.ppf(torch.linspace(offset, 0.5, 8)[:-1].numpy())
    levels = torch.tensor(sorted([*positive, 0.0, *negative]), dtype=torch.float32)
    return levels / levels.abs().max()


def quantize_nf4(weight: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise NF4: returns (codes 0..15 per weight, absmax per block). The tensor size must divide by blocksize."""
    flat = weight.float().reshape(-1, blocksize)
    absmax = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    normalised = flat / absmax                                    # every block now lies in [-1, 1]
    codes = (normalised.unsqueeze(-1) - _nf4_levels()).abs().argmin(dim=-1)   # nearest level
    return codes.to(torch.uint8), absmax.squeeze(1)


def dequantize_nf4(codes: torch.Tensor, absmax: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Invert ``quantize_nf4``: look each code up in the level table and rescale by its block's absmax."""
    return (_nf4_levels()[codes.long()] * absmax.unsqueeze(1)).reshape(shape)


def bnb_roundtrip(weight: torch.Tensor, quant_type: str = "nf4", blocksize: int = 64,
                  double_quant: bool = False) -> torch.Tensor:
    """Quantise and dequantise with bitsandbytes itself (CPU or CUDA), for comparison."""
    import bitsandbytes.functional as F  # lazy: ~2 s and a CPU warning at import; the teaching quantiser does not need it

    packed, state = F.quantize_4bit(weight.float(), blocksize=blocksize, quant_type=quant_type,
                                    compress_statistics=double_quant)
    return F.dequantize_4bit(packed, state)


def bits_per_parameter(blocksize: int = 64, double_quant: bool = False, dq_blocksize: int = 256) -> float:
    """Storage per weight: 4 bits plus the block scale (fp32, or 8-bit with an fp32 scale per 256 scales)."""
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    return 4 + 32 / blocksize


def relative_error(original: torch.Tensor, approx: torch.Tensor) -> float:
    """Mean absolute error divided by the mean absolute value of the original tensor."""
    return float((original - approx).abs().mean() / original.abs().mean())


# ---- Chapter 01: the same tensor through bitsandbytes' 4-bit and 8-bit formats ----------------------------

ROUNDTRIPS = ("NF4", "NF4 + double quant", "FP4", "8-bit blockwise")


def roundtrip(weight: torch.Tensor, method: str, blocksize: int = 64) -> torch.Tensor:
    """Quantise and dequantise with bitsandbytes in one of ``ROUNDTRIPS`` (chapter 01)."""
    import bitsandbytes.functional as F  # lazy: ~2 s and a CPU warning at import; the teaching quantiser does not need it

    if method == "8-bit blockwise":
        codes, state = F.quantize_blockwise(weight.float(), blocksize=blocksize)
        return F.dequantize_blockwise(codes, state)
    quant_type = {"NF4": "nf4", "NF4 + double quant": "nf4", "FP4": "fp4"}[method]
    return bnb_roundtrip(weight, quant_type, blocksize, double_quant=method.endswith("double quant"))


def bnb_codes(weight: torch.Tensor, quant_type: str = "nf4", blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4-bit codes bitsandbytes stores (two per byte, unpacked) and its 16-level table (chapter 01)."""
    import bitsandbytes.functional as F  # lazy: ~2 s and a CPU warning at import; the teaching quantiser does not need it

    packed, state = F.quantize_4bit(weight.float(), blocksize=blocksize, quant_type=quant_type)
    packed = packed.flatten()
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).flatten()
    return codes[: weight.numel()], state.code.float().cpu()


def stored_bits_per_parameter(weight: torch.Tensor, double_quant: bool, blocksize: int = 64) -> float:
    """Bits per weight that bitsandbytes really stores: packed codes, block scales, second-level scales (chapter 01)."""
    import bitsandbytes.functional as F  # lazy: ~2 s and a CPU warning at import; the teaching quantiser does not need it

    packed, state = F.quantize_4bit(weight.float(), blocksize=blocksize, quant_type="nf4",
                                    compress_statistics=double_quant)
    tensors = [packed, state.absmax] + ([state.state2.absmax] if double_quant else [])
    return 8 * sum(t.numel() * t.element_size() for t in tensors) / weight.numel()


def quant_state_bytes(model: torch.nn.Module) -> int:
    """Bytes of the 4-bit block scales, which ``get_memory_footprint`` does not count (chapter 01)."""
    total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        if state is None or not hasattr(state, "absmax"):
            continue
        parts = [state.absmax, state.code] + ([state.state2.absmax, state.state2.code] if state.nested else [])
        total += sum(t.numel() * t.element_size() for t in parts)
    return total


@torch.no_grad()
def next_token_logits(model, tokenizer, texts: list[str], max_length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 next-token logits at every position of a right-padded batch, and its attention mask (chapter 01)."""
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = model(**batch.to(model.device)).logits
    return logits.float().cpu(), batch["attention_mask"].bool().cpu()


def output_drift(reference: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far a model's logits move from a reference at the real (non-pad) positions (chapter 01)."""
    ref, out = reference[mask], logits[mask]
    log_p, log_q = ref.log_softmax(-1), out.log_softmax(-1)
    return {
        "mean |logit diff|": float((out - ref).abs().mean()),
        "max |logit diff|": float((out - ref).abs().max()),
        "KL(ref || model)": float((log_p.exp() * (log_p - log_q)).sum(-1).mean()),
        "top-1 agreement": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
    }


def params_by_dtype(model: torch.nn.Module) -> dict[str, int]:
    """Weights per storage type, 4-bit packed weights counted as two per byte (chapter 01)."""
    counts: dict[str, int] = {}
    for param in model.parameters():
        packed = type(param).__name__ == "Params4bit"
        key = "4-bit (packed in uint8)" if packed else str(param.dtype).replace("torch.", "")
        counts[key] = counts.get(key, 0) + param.numel() * (2 * param.element_size() if packed else 1)
    return counts
