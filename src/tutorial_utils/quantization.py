"""A teaching NF4 quantiser, small enough to read, checked against bitsandbytes.

NF4 (QLoRA, Dettmers et al. 2023) stores each weight as one of 16 levels placed at quantiles of a
normal distribution, scaled per block of 64 weights by the block's absolute maximum. Double
quantisation then stores those per-block scales in 8 bits. Taught in chapter 01.
"""

from __future__ import annotations

import torch
from scipy.stats import norm

NF4_OFFSET = 0.9677083  # QLoRA's choice: the outermost quantile used, so that +-1 stay representable


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
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
    codes = (normalised.unsqueeze(-1) - nf4_levels()).abs().argmin(dim=-1)   # nearest level
    return codes.to(torch.uint8), absmax.squeeze(1)


def dequantize_nf4(codes: torch.Tensor, absmax: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Invert ``quantize_nf4``: look each code up in the level table and rescale by its block's absmax."""
    return (nf4_levels()[codes.long()] * absmax.unsqueeze(1)).reshape(shape)


def bnb_roundtrip(weight: torch.Tensor, quant_type: str = "nf4", blocksize: int = 64,
                  double_quant: bool = False) -> torch.Tensor:
    """Quantise and dequantise with bitsandbytes itself (CPU or CUDA), for comparison."""
    import bitsandbytes.functional as F

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
