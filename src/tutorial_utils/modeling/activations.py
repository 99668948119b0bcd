"""Activations measured on a live model: what one training step saves for backward (chapter 01).

``budgets`` estimates memory by formula from a model's dimensions; this module measures a loaded model,
so that chapter 01 can show what gradient checkpointing changes and ``budgets.ACTIVATION_BYTES`` has a
measured source. Chapter 04's loss asks ``checkpointing_enabled`` whether it may share a cached prefix.
"""

from __future__ import annotations

import torch

__all__ = ["measure_activations", "checkpointing_enabled"]


def measure_activations(model: torch.nn.Module, batch: dict, seed: int = 0) -> dict[str, float]:
    """One training forward + backward: activation MiB saved for backward, and forward passes per block (chapter 01).

    Saved tensors are seen through autograd's saved-tensor hooks (parameters excluded, shared storage
    counted once); a block's MLP entered twice means its forward was recomputed in the backward pass.
    Seeded, so that two measurements of one model draw the same dropout masks.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = tensor.untyped_storage().nbytes()
        return tensor

    blocks = [m for n, m in model.named_modules() if type(m).__name__.endswith("MLP")]
    calls = [0]
    hooks = [m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)) for m in blocks]
    model.train()
    torch.manual_seed(seed)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            loss = model(**inputs, labels=batch.get("labels", batch["input_ids"])).loss
        loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        model.eval()
    return {"activations saved for backward (MiB)": sum(saved.values()) / 2**20,
            "forward passes per block": calls[0] / max(len(blocks), 1), "loss": float(loss.detach())}


def checkpointing_enabled(model: torch.nn.Module) -> bool:
    """True when any block of the model recomputes its forward in the backward pass (chapter 01)."""
    return any(getattr(module, "gradient_checkpointing", False) for module in model.modules())
