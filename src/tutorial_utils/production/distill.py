"""Distillation: a fast encoder student learns from an LLM teacher's probabilities; speed and size measured.

The student and its loss live in ``methods.distillation`` (the protocol's distillation study trains it too); this
module holds chapter 07's recipe around it: the transfer set, the teacher's cached probabilities, the student's
speed, size and int8 copy. Taught in chapter 07.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import tempfile
from pathlib import Path

import huggingface_hub  # called as huggingface_hub.snapshot_download, so that a test can replace it
import numpy as np
import torch
from datasets import Dataset, DatasetDict, Features, Value
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..data import load_single_label
from ..evaluation.metrics import classification_metrics, softmax
from ..methods import STUDENT  # noqa: F401 (the names live in the registry)
from ..methods.distillation import distillation_loss, make_distillation_trainer, teacher_probabilities
from ..methods.distillation import run as run_student
from ..methods.recipes import fitted_result
from ..methods.train import predict_logits
from ..modeling import models
from ..setup import assets
from ..setup.checks import check_safetensors
from ..setup.config import DataSizes, Profile, TrainSettings
from ..setup.timing import timed
from ..storage.records import RunRecord

__all__ = ["distillation_loss", "make_distillation_trainer", "teacher_probabilities",
           "cached_teacher_probabilities", "student_run", "load_trained_student", "int8_student", "int8_comparison",
           "inference_speed", "disk_bytes", "base_disk_bytes", "transfer_set"]


def cached_teacher_probabilities(profile: Profile, teacher, tokenizer, texts: list[str], teacher_dir: str | Path) -> np.ndarray:
    """``teacher_probabilities``, stored next to the teacher's weights: a retrained teacher starts a new file."""
    digest = hashlib.sha1(json.dumps([profile.train.max_length, texts]).encode()).hexdigest()[:12]
    path = Path(teacher_dir) / f"teacher-probabilities-{digest}.npy"
    if path.exists():
        return np.load(path)
    probs = teacher_probabilities(teacher, tokenizer, texts, profile.train)
    np.save(path, probs)
    return probs


def student_run(profile: Profile, data: DatasetDict, transfer: DatasetDict, temperature: float, alpha: float,
                method: str = STUDENT, save_model: bool = True,
                settings: TrainSettings | None = None) -> RunRecord | tuple[RunRecord, object, object]:
    """Chapter 07's student: ``distillation.run`` for the profile's epochs on ``transfer``, ``data``'s test split
    predicted; with ``save_model``, its run, model and tokenizer (``runs.load_or_compute`` keeps the weights)."""
    s = settings or profile.encoder_train
    fitted = run_student(profile, data, transfer, profile.seed, s.learning_rate, temperature=temperature, alpha=alpha,
                         until="epochs", settings=s)
    result = fitted_result(method, profile, data, fitted)
    return (result, fitted.model, fitted.tokenizer) if save_model else result


def load_trained_student(folder: str | Path):
    """A student saved by ``student_run``; returns (model, tokenizer) on the course's device."""
    check_safetensors(folder, "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    return model.to(models.device()).eval(), AutoTokenizer.from_pretrained(folder)


def int8_student(model):
    """A CPU copy of the student with int8 weights in its linear layers (PyTorch's dynamic quantisation: weights
    quantised once, activations per batch at run time); predict with ``autocast=False`` (chapter 07)."""
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().float().eval(), {torch.nn.Linear},
                                                  dtype=torch.qint8)


def int8_comparison(student, tokenizer, texts: list[str], labels, max_length: int) -> dict[str, dict]:
    """The fp32 student against its int8 copy, both on the CPU in float32: macro-F1, agreement with the fp32
    predictions, the largest change of a probability, speed, and the bytes ``torch.save`` writes (chapter 07)."""
    full = copy.deepcopy(student).cpu().float().eval()
    rows, reference = {}, None
    for name, model in (("fp32 student", full), ("int8 student", int8_student(full))):
        probs = softmax(predict_logits(model, tokenizer, texts, 32, max_length, autocast=False))
        reference = probs if reference is None else reference
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        rows[name] = {"macro-F1": classification_metrics(labels, probs.argmax(1))["macro_f1"],
                      "same label as fp32": float(np.mean(probs.argmax(1) == reference.argmax(1))),
                      "largest probability change": float(np.abs(probs - reference).max()),
                      "texts/s (batch 32)": inference_speed(model, tokenizer, texts, 32, max_length, autocast=False)["texts/s"],
                      "weights (MiB)": buffer.getbuffer().nbytes / 2**20}
    return rows


def inference_speed(model, tokenizer, texts: list[str], batch_size: int, max_length: int, repeats: int = 2,
                    autocast: bool = True) -> dict:
    """Texts per second and milliseconds per batch for ``texts`` at one batch size (best of ``repeats``)."""
    predict_logits(model, tokenizer, texts[:batch_size], batch_size, max_length, autocast)   # warm-up
    best = float("inf")
    for _ in range(repeats):
        best = min(best, timed(predict_logits, model, tokenizer, texts, batch_size, max_length, autocast)[1])
    batches = -(-len(texts) // batch_size)
    return {"texts/s": len(texts) / best, "ms per batch": 1000 * best / batches}


def disk_bytes(model) -> int:
    """Bytes that ``save_pretrained`` writes for a model (for a PeftModel: only the adapter and head)."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def base_disk_bytes(profile: Profile) -> int:
    """Bytes of the profile's causal LM's weights on disk (safetensors in 16-bit): a course folder or the hub cache."""
    folder = Path(assets.model_path(profile.causal_lm))
    if not folder.is_dir():  # a hub model id: its files are in the hub cache once it has been loaded
        folder = Path(huggingface_hub.snapshot_download(str(assets.model_path(profile.causal_lm)), local_files_only=True))
    files = list(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No safetensors weights of {profile.causal_lm} in {folder}. Fix: load the model once "
                                "(models.load_causal_lm) so that its files are on disk.")
    return sum(f.stat().st_size for f in files)


def transfer_set(profile: Profile, data: DatasetDict) -> DatasetDict:
    """Train split + ``profile.distill_extra_texts`` further training-split texts, unlabelled (label -1).

    A larger sample of the same split with the same seed contains the profile's training sample, so the
    extra texts never overlap validation or test (chapter 07).
    """
    wanted = len(data["train"]) + profile.distill_extra_texts
    bigger = load_single_label(dataclasses.replace(profile, single_label_sizes=DataSizes(train=wanted, validation=0,
                                                                                         test=0)))["train"]
    known = set(data["train"]["text"])
    extra = [t for t in bigger["text"] if t not in known][: profile.distill_extra_texts]
    texts = list(data["train"]["text"]) + extra
    labels = list(data["train"]["label"]) + [-1] * len(extra)
    features = Features({"text": Value("string"), "label": Value("int64")})
    return DatasetDict(train=Dataset.from_dict({"text": texts, "label": labels}, features=features))
