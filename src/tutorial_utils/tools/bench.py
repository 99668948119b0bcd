"""Cost benchmarks: weight memory per precision, trainable parameters, training and inference speed.

Each ``*_rows`` function measures the profile's real models and returns rows (dicts) that
``python -m tutorial_utils bench`` (``cli.py``) writes to ``benchmarks/results/<profile>-<device>.json``,
``.md`` and figures for the book page "What it costs" (book/costs.md). Ratios measured side by side in
one run are the figures to trust; absolute times hold for the machine written next to them (``machine()``).
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile  # "profile" names the course profile in this module
from transformers import AutoModelForCausalLM

from ..data import label_names, load_single_label
from ..methods import instruct
from ..modeling import models, quantization
from ..setup import budgets
from ..setup.config import LoraSettings, Profile
from ..setup.session import versions
from ..setup.timing import timed

__all__ = ["machine", "machine_line", "clock", "storage", "memory_one", "memory_ratios", "param_rows", "step_batch",
           "TRAIN_CONFIGS", "train_rows"]

_DEQUANT_OPS = ("bitsandbytes::dequantize_4bit", "bitsandbytes::dequantize_blockwise")


# ---- The machine, and timing that waits for the GPU -----------------------------------------------

def machine() -> dict:
    """What the figures were measured on: CPU model, cores, torch threads, GPU, library versions, load average."""
    info = Path("/proc/cpuinfo").read_text(errors="ignore") if os.path.exists("/proc/cpuinfo") else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    cuda = torch.cuda.is_available()
    return {
        "cpu": names[0] if names else platform.processor() or platform.machine(), "logical cores": os.cpu_count(),
        "usable cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "cpu bf16 instructions": [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in info],
        "compute dtype": models.compute_dtype_name(),  # float32 on a CPU whose bf16 torch would emulate
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu memory (GiB)": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "os": platform.platform(terse=True), "versions": versions(),
        "load average (1, 5, 15 min)": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def machine_line(info: dict) -> str:
    """One line naming the machine of a results section, for tables and plots."""
    gpu = f"GPU {info['gpu']} ({info['gpu memory (GiB)']} GiB)" if info.get("gpu") else "no GPU"
    before, after = info.get("load average before (1, 5, 15 min)"), info.get("load average (1, 5, 15 min)")
    load = f"; 1-min load average {before[0]:.2f} before, {after[0]:.2f} after" if before and after else ""
    dtype = f", computing in {info['compute dtype']}" if info.get("compute dtype") else ""  # older sections: bf16 on a CPU
    return (f"{info['cpu']}, {info['usable cores']} usable cores, {info['torch threads']} torch threads, {gpu}{dtype}; "
            f"torch {info['versions'].get('torch')}{load}")


def clock(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``, GPU work included."""
    return timed(fn)[1]


def _free() -> None:
    """Drop unreferenced models before the next measurement."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- Memory: the causal LM's weights in five precisions ------------------------------------------------

def storage(model: torch.nn.Module) -> dict:
    """Bytes of weights as stored (4-bit codes, int8 codes, their scales, buffers) and the bits of the quantised layers."""
    total = quantised = n_params = n_quantised = 0
    formula_bits, seen = 0.0, set()
    for param in model.parameters():  # each Parameter once: tied embeddings count once
        kind, nbytes = type(param).__name__, param.numel() * param.element_size()
        logical = param.numel() * (2 * param.element_size() if kind == "Params4bit" else 1)
        n_params += logical
        if kind == "Params4bit":  # packed codes + block scales (+ the scales' own scales with double quantisation)
            state = param.quant_state
            parts = [state.absmax, state.code] + ([state.state2.absmax, state.state2.code] if state.nested else [])
            nbytes += _new_bytes(parts, seen)
            formula_bits += logical * quantization.bits_per_parameter(
                state.blocksize, state.nested, state.state2.blocksize if state.nested else 256)
        elif kind == "Int8Params":  # int8 codes + one fp32 scale per output row
            nbytes += _new_bytes([getattr(param, "SCB", None)], seen)
            formula_bits += logical * 8 + 32 * param.shape[0]
        if kind in ("Params4bit", "Int8Params"):
            quantised += nbytes
            n_quantised += logical
        total += nbytes
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"weights (MiB)": total / 2**20, "parameters": n_params, "quantised parameters": n_quantised,
            "bits per quantised weight": 8 * quantised / n_quantised if n_quantised else None,
            "formula bits per quantised weight": formula_bits / n_quantised if n_quantised else None}


def _new_bytes(tensors: list, seen: set[int]) -> int:
    """Bytes of the tensors whose storage was not met before (lookup tables that layers share count once)."""
    fresh = [t for t in tensors if t is not None and t.untyped_storage().data_ptr() not in seen]
    seen.update(t.untyped_storage().data_ptr() for t in fresh)
    return sum(t.numel() * t.element_size() for t in fresh)


def _proc_status(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB; None off Linux."""
    path = Path("/proc/self/status")
    lines = path.read_text().splitlines() if path.exists() else []
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith(field + ":")), None)


def memory_one(profile: Profile, precision: str) -> dict:
    """Load the profile's causal LM in one precision and measure it; run it in a fresh process (the CLI does)."""
    _free()
    before = _proc_status("VmRSS")
    if Path("/proc/self/clear_refs").exists():  # reset the peak-RSS counter (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, seconds = timed(models.from_pretrained, AutoModelForCausalLM, profile.causal_lm, precision)
    row = {"precision": precision, **storage(model), "load (s)": seconds}
    peak = _proc_status("VmHWM")
    row["peak RSS on load above imports (MiB)"] = peak - before if peak and before else None
    with torch.no_grad():  # weights mapped from the file count once read; a forward reads them all
        model(input_ids=torch.tensor([[1, 2, 3]], device=models.device()))
    peak = _proc_status("VmHWM")
    row["peak RSS with a first forward (MiB)"] = peak - before if peak and before else None
    if torch.cuda.is_available():
        row["GPU peak allocated (MiB)"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def memory_ratios(rows: list[dict]) -> list[dict]:
    """Add each precision's weight ratio to bf16 and the physical limits it can reach (4 of 16 bits = 0.25)."""
    bf16 = next(r["weights (MiB)"] for r in rows if r["precision"] == "bf16")
    for row in rows:
        nominal = models.NOMINAL_BITS[row["precision"]]
        bits = row["formula bits per quantised weight"] or nominal
        share = row["quantised parameters"] / row["parameters"]
        row["ratio to bf16"] = row["weights (MiB)"] / bf16
        row["limit: quantised layers (nominal bits / 16)"] = nominal / 16
        row["limit: quantised layers with scales"] = bits / 16
        # what the quantised precisions leave unquantised (embeddings, norms) stays in 16 bits
        row["limit: whole model"] = share * bits / 16 + (1 - share) * 16 / 16 if share else nominal / 16
    return rows


# ---- Trainable parameters per method and LoRA budget ---------------------------------------------------

def _lora_budgets(profile: Profile) -> dict[str, LoraSettings]:
    """The LoRA budgets the chapters use: the profile's q,v adapters, wider targets at the same rank, all linear at r=64."""
    r, lora = profile.lora.r, profile.lora
    return {f"{','.join(t.removesuffix('_proj') for t in lora.target_modules)} r={r}": lora,
            f"attention r={r}": replace(lora, target_modules=budgets.ATTENTION),
            f"all linear r={r}": replace(lora, target_modules=budgets.ALL_LINEAR),
            "all linear r=64": replace(lora, r=64, alpha=128, target_modules=budgets.ALL_LINEAR)}


def param_rows(profile: Profile) -> list[dict]:
    """Trainable parameters counted by peft on the real models, next to the formula of chapter 01, and their ratios."""
    names = label_names(load_single_label(profile))
    rows = []
    for budget, lora in _lora_budgets(profile).items():
        for method, task in (("embedding head", "SEQ_CLS"), ("instruction tuning", "CAUSAL_LM")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = (models.load_embedding_head(profile, names, lora=lora)[0] if task == "SEQ_CLS"
                         else models.add_lora(models.load_causal_lm(profile)[0], lora, task_type=task))
            count, dims = models.count_parameters(model), budgets.dims_from_config(model.config)
            formula = budgets.lora_parameters(dims, lora.r, lora.target_modules)
            formula += budgets.head_parameters(dims, len(names)) if task == "SEQ_CLS" else 0
            rows.append({"method": method, "LoRA budget": budget, "trainable": count.trainable,
                         "formula": formula, "model parameters": count.total, "trainable %": count.percent})
            del model
            _free()
    encoder = models.count_parameters(models.load_encoder_classifier(profile, names)[0])
    rows.append({"method": "encoder, full fine-tuning", "LoRA budget": "none: every weight", "trainable": encoder.trainable,
                 "formula": None, "model parameters": encoder.total, "trainable %": encoder.percent})
    base = rows[0]["trainable"]
    for row in rows:
        row["ratio to embedding head (first row)"] = row["trainable"] / base
    return rows


# ---- Training throughput: one LoRA step at a fixed batch and length ------------------------------------

def _fill(sequences: list[list[int]], length: int) -> list[list[int]]:
    """Rows of exactly ``length`` real tokens: each sequence, preceded by earlier ones where it is shorter, cut on the left."""
    rows = []
    for i, seq in enumerate(sequences):
        row, j = list(seq), i - 1
        while len(row) < length:
            row = list(sequences[j % len(sequences)]) + row
            j -= 1
        rows.append(row[-length:])
    return rows


def step_batch(profile: Profile, tokenizer, texts: list[str], labels: list[int], names: list[str],
               method: str) -> dict[str, torch.Tensor]:
    """A training batch of the profile's batch size and max length: texts (embedding head) or prompt + answer."""
    size, length = profile.train.batch_size, profile.train.max_length
    texts, labels = texts[:size], labels[:size]
    if method == "embedding head":
        ids = _fill([tokenizer(t)["input_ids"] for t in texts], length)
        target = torch.tensor(labels)
    else:
        verbalizer = instruct.make_verbalizer(names)
        prompts = [tokenizer(instruct.build_prompt(tokenizer, t, verbalizer), add_special_tokens=False)["input_ids"]
                   for t in texts]
        answers = [instruct.answer_ids(tokenizer, verbalizer.answer(y)) for y in labels]
        ids = _fill([p + a for p, a in zip(prompts, answers)], length)
        target = torch.full((size, length), -100)
        for row, answer in enumerate(answers):  # the loss sees the answer tokens only
            target[row, length - len(answer):] = torch.tensor(answer)
    ids = torch.tensor(ids)
    on = models.device()
    return {"input_ids": ids.to(on), "attention_mask": torch.ones_like(ids).to(on), "labels": target.to(on)}


def _loss(model, batch: dict, answer_logits_only: bool) -> torch.Tensor:
    """The model's loss; optionally with LM-head logits only where answers are (as chapter 04's trainer does)."""
    if not answer_logits_only:
        return model(**batch).loss
    labels = batch["labels"]
    k = int((labels != -100).sum(1).max())
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=k + 1).logits
    logits = logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, -k:].reshape(-1),
                                             ignore_index=-100)


def _dequant_share(fn: Callable[[], object]) -> float | None:
    """Share of one call's wall time spent in bitsandbytes' 4-bit dequantisation ops (torch profiler); None if none ran."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        wall = clock(fn)
    events = [e for e in prof.key_averages() if e.key in _DEQUANT_OPS]
    busy = sum(getattr(e, "device_time_total", 0) if torch.cuda.is_available() else e.cpu_time_total for e in events)
    return busy / 1e6 / wall if events else None


TRAIN_CONFIGS = (("embedding head", True, False), ("embedding head", False, False),
                 ("instruction tuning", True, False), ("instruction tuning", False, False),
                 ("instruction tuning", True, True))


def train_rows(profile: Profile, steps: int = 3) -> list[dict]:
    """Seconds per LoRA training step (forward, backward, clip, AdamW) for each of ``TRAIN_CONFIGS``, same batch and length."""
    data = load_single_label(profile)
    names, texts, labels = label_names(data), list(data["train"]["text"]), list(data["train"]["label"])
    dtype = models.compute_dtype()
    rows = []
    for method, quantize, answer_only in TRAIN_CONFIGS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "embedding head":
                model, tokenizer = models.load_sequence_classifier(profile, names, quantize=quantize)
            else:
                model, tokenizer = models.load_causal_lm(profile, quantize=quantize)
            model = models.add_lora(model, profile.lora, task_type="SEQ_CLS" if method == "embedding head" else "CAUSAL_LM")
        batch = step_batch(profile, tokenizer, texts, labels, names, method)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=profile.train.learning_rate)
        model.train()

        def step() -> None:
            with torch.autocast(models.device().type, dtype=dtype, enabled=dtype != torch.float32):
                loss = _loss(model, batch, answer_only)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # warm-up: first-call allocations and kernel choices
        seconds = statistics.median(clock(step) for _ in range(steps))
        share = _dequant_share(step) if quantize else None
        size, length = batch["input_ids"].shape
        rows.append({"method": method + (", LM-head logits on answers only" if answer_only else ""),
                     "weights": "4-bit NF4" if quantize else f"16-bit ({str(dtype).replace('torch.', '')})",
                     "batch x length": f"{size} x {length}", "step (s)": seconds, "examples/s": size / seconds,
                     "tokens/s": size * length / seconds, "dequantisation share of step": share})
        del model, optimizer, batch, params
        _free()
    base = rows[0]["step (s)"]
    for row in rows:
        row["step time / embedding head 4-bit"] = row["step (s)"] / base
    return rows


# ---- Inference throughput and latency -----------------------------------------------------------------
