"""Inference benchmarks: texts per second and latency of every predictor the course trains or serves.

Part of ``python -m tutorial_utils bench infer`` (book page "What it costs", book/costs.md): the embedding
head as trained (4-bit + LoRA), plain 4-bit, and as exported for serving (one 16-bit folder, chapter 09);
instruction tuning scored and generated; the encoder (chapter 03's baseline, chapter 07's student) in
fp32 and, on a CPU, with int8 dynamic quantisation of its linear layers.
"""

from __future__ import annotations

import statistics
import tempfile
import warnings

import torch
from transformers import AutoModelForSequenceClassification

from ..data import label_names, load_single_label
from ..methods import instruct
from ..methods.train import predict_logits
from ..modeling import models
from ..production.distill import int8_student
from ..production.export import export_classifier
from ..setup.config import Profile
from .bench import _free, clock

__all__ = ["infer_rows"]


def _predictors(profile: Profile, names: list[str]):
    """(name, loader) pairs; a loader returns ``predict(texts, batch_size)`` closures by method name."""
    verbalizer = instruct.make_verbalizer(names)

    def classifier(load: Callable, settings) -> dict:
        model, tokenizer = load()
        return {"": lambda texts, b: predict_logits(model, tokenizer, texts, batch_size=b,
                                                    max_length=settings.max_length)}

    def head(adapter: bool) -> tuple:
        return models.load_embedding_head(profile, names) if adapter else models.load_sequence_classifier(profile, names)

    def instruction(adapter: bool):
        model, tokenizer = models.load_causal_lm(profile)
        model = models.add_lora(model, profile.lora, task_type="CAUSAL_LM") if adapter else model
        prompt = {}
        new_tokens = max(instruct.token_counts(tokenizer, verbalizer))

        def prompts(texts: list[str]) -> list[str]:
            return [prompt.setdefault(t, instruct.build_prompt(tokenizer, t, verbalizer)) for t in texts]

        return {", label scoring": lambda texts, b: instruct.score_labels(model, tokenizer, prompts(texts),
                                                                          list(verbalizer.words), batch_size=b),
                ", generation": lambda texts, b: instruct.generate(model, tokenizer, prompts(texts),
                                                                   max_new_tokens=new_tokens, batch_size=b)}

    def exported(dtype: torch.dtype) -> tuple:
        """The head as ``export.export_classifier`` writes it, loaded back with plain transformers."""
        model, tokenizer = head(True)
        with tempfile.TemporaryDirectory() as folder:
            export_classifier(model, tokenizer, profile, names, f"{folder}/model", dtype=dtype)
            plain = AutoModelForSequenceClassification.from_pretrained(f"{folder}/model", dtype=dtype)
        return plain.to(models.device()).eval(), tokenizer

    def int8() -> dict:
        """The encoder with int8 dynamic quantisation of its linear layers (PyTorch's CPU serving form).

        Its kernels take float32 inputs, so it runs without the bf16 autocast of ``predict_logits``.
        """
        model, tokenizer = models.load_encoder_classifier(profile, names)
        model = int8_student(model)
        return {"": lambda texts, b: predict_logits(model, tokenizer, texts, batch_size=b,
                                                    max_length=profile.encoder_train.max_length, autocast=False)}

    encoder = f"encoder {profile.encoder} (all weights fine-tuned)"
    rows = [("embedding head, 4-bit + LoRA (as trained)", lambda: classifier(lambda: head(True), profile.train)),
            ("embedding head, plain 4-bit", lambda: classifier(lambda: head(False), profile.train)),
            ("embedding head, exported 16-bit (as served)", lambda: classifier(
                lambda: exported(models.compute_dtype()), profile.train)),
            ("instruction tuning, 4-bit + LoRA (as trained)", lambda: instruction(True)),
            ("instruction tuning, plain 4-bit", lambda: instruction(False)),
            (encoder, lambda: classifier(lambda: models.load_encoder_classifier(profile, names), profile.encoder_train))]
    if not torch.cuda.is_available():  # int8 dynamic quantisation runs on the CPU only
        rows.append((encoder.replace("(all", "int8 dynamic (all"), int8))
    return rows


def infer_rows(profile: Profile, single: int = 16, batched: int = 64, batch_size: int = 32) -> list[dict]:
    """Texts/s and latency of each predictor at batch 1 (``single`` texts) and batch ``batch_size`` (``batched`` texts)."""
    data = load_single_label(profile)
    names, pool = label_names(data), list(data["test"]["text"])
    texts = (pool * (1 + max(single, batched) // len(pool)))[:max(single, batched)]
    rows = []
    for name, load in _predictors(profile, names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for suffix, predict in load().items():
                for text in texts[:single if torch.cuda.is_available() else 1]:  # warm-up (GPU: each shape once;
                    predict([text], 1)  # plain 4-bit on CPU: bitsandbytes' one-time repack)
                times = [clock(lambda t=t: predict([t], 1)) for t in texts[:single]]
                rows.append({"method": name.replace(",", suffix + ",", 1) if suffix else name, "batch": 1,
                             "texts/s": single / sum(times), "latency per call (ms)": 1000 * statistics.median(times)})
                predict(texts[:batch_size], batch_size)
                seconds = clock(lambda: predict(texts[:batched], batch_size))
                calls = -(-batched // batch_size)
                rows.append({"method": rows[-1]["method"], "batch": batch_size, "texts/s": batched / seconds,
                             "latency per call (ms)": 1000 * seconds / calls})
        _free()
    reference = {r["batch"]: r["texts/s"] for r in rows[:2]}
    for row in rows:
        row["speed / embedding head (LoRA)"] = row["texts/s"] / reference[row["batch"]]
    return rows
