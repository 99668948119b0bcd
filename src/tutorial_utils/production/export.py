"""Out of the course with a trained model: one folder that plain transformers loads, no ``tutorial_utils``.

The embedding head trains LoRA adapters on a 4-bit base. Merging the adapters into that 4-bit base
re-quantises the sum and changes the logits (``../shared/OFFLINE_ASSETS.md``: up to 1.28 on a tiny
model). ``export_classifier`` instead rebuilds the model in 16-bit: every 4-bit weight dequantised to
the values the adapters were trained against, each adapter's update added to its layer, the trained
head copied; the label names go into the config. The folder then serves through
``AutoModelForSequenceClassification.from_pretrained(folder)`` and ``pipeline("text-classification")``.
Taught in chapter 09 ("From notebook to production").
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..methods.train import CHUNK_OVERLAP
from ..modeling import models
from ..setup.config import Profile

__all__ = ["export_classifier", "export_plain"]

_PEFT_PREFIX = "base_model.model."


def _dequantized(module) -> torch.Tensor:
    """A linear layer's weight in float32: dequantised from 4-bit NF4 when it is stored so."""
    weight = module.weight
    if type(weight).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf  # lazy: ~2 s and a CPU warning at import; only 4-bit weights need it

        return bnbf.dequantize_4bit(weight.data, weight.quant_state).float()
    return weight.detach().float()


def _merged_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """The weights of the plain model that computes what ``peft_model`` (4-bit base + LoRA + head) computes."""
    from peft.tuners.lora import LoraLayer  # lazy: peft costs ~3 s (bitsandbytes with it); export_plain needs neither
    from peft.utils import ModulesToSaveWrapper  # lazy: as above

    state: dict[str, torch.Tensor] = {}
    for name, module in peft_model.named_modules():
        plain = name.removeprefix(_PEFT_PREFIX)
        if isinstance(module, LoraLayer):
            base = module.get_base_layer()
            state[f"{plain}.weight"] = _dequantized(base) + module.get_delta_weight("default").float()
            if getattr(base, "bias", None) is not None:
                state[f"{plain}.bias"] = base.bias.detach().float()
        elif isinstance(module, ModulesToSaveWrapper):  # the trained head (peft keeps a copy it trains)
            for key, value in module.modules_to_save["default"].state_dict().items():
                state[f"{plain}.{key}"] = value.detach().float()
        elif type(module).__name__ == "Linear4bit" and ".base_layer" not in name:
            state[f"{plain}.weight"] = _dequantized(module)
            if module.bias is not None:
                state[f"{plain}.bias"] = module.bias.detach().float()
    for name, param in peft_model.named_parameters():  # embeddings, norms: kept in 16 or 32 bits all along
        plain = name.removeprefix(_PEFT_PREFIX)
        if ("lora_" in name or ".base_layer." in name or "modules_to_save" in name or "original_module" in name
                or type(param).__name__ == "Params4bit" or plain in state):
            continue
        state[plain] = param.detach().float()
    return state


def export_classifier(peft_model, tokenizer, profile: Profile, label_names: list[str], folder: str | Path,
                      dtype: torch.dtype = torch.bfloat16, chunk: bool = False) -> Path:
    """Save a trained embedding head (4-bit base + LoRA + head) as one plain 16-bit transformers folder.

    The tokenizer is saved with ``model_max_length`` at the profile's training length, so that a
    ``pipeline(..., truncation=True)`` cuts texts where training did; ``chunk``: said in the config (``export_plain``).
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty. Fix: export into a new folder (nothing was overwritten).")
    plain, _ = models.load_sequence_classifier(profile, label_names, quantize=False)
    state = _merged_state_dict(peft_model)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"The merged weights do not fit the plain model: missing {sorted(set(missing) - tied)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}. Fix: export a model trained with "
                           "models.add_lora on the profile's base model.")
    plain = plain.to(dtype)
    plain.config.pad_token_id = tokenizer.pad_token_id
    return export_plain(plain, tokenizer, label_names, folder, max_length=profile.train.max_length, chunk=chunk)


def _save_tokenizer(tokenizer, folder: Path, max_length: int | None) -> None:
    """Save the tokenizer with the training length as its ``model_max_length`` (the caller's object unchanged)."""
    before = tokenizer.model_max_length
    try:
        if max_length:
            tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.model_max_length = before


def export_plain(model, tokenizer, label_names: list[str], folder: str | Path, max_length: int | None = None,
                 chunk: bool = False) -> Path:
    """Save a plain transformers classifier (the encoder, the distilled student) with its label names; ``chunk``:
    trained on long texts as windows, which ``config.json`` says, since a plain pipeline would cut them instead."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty. Fix: export into a new folder (nothing was overwritten).")
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {n: i for i, n in enumerate(label_names)}
    if chunk:
        model.config.long_texts = {
            "read_as": "windows of model_max_length tokens (the tokenizer's), each overlapping the next by "
                       f"{CHUNK_OVERLAP:.0%}", "combine": "the mean of the windows' logits",
            "serve_with": "python -m tutorial_utils predict, or tokenizer(..., stride=..., "
                          "return_overflowing_tokens=True) and a mean of the logits per text"}
    model.save_pretrained(folder, safe_serialization=True)
    _save_tokenizer(tokenizer, folder, max_length)
    return folder
