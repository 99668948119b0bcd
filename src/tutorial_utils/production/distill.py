"""Distillation: a fast encoder student learns from an LLM teacher's probabilities; speed and size measured.

Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(labels), where _T means
softmax of logits / T (Hinton et al., 2015). Taught in chapter 07.
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
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ..data import label_names, load_single_label
from ..evaluation.metrics import classification_metrics, softmax
from ..methods import STUDENT  # noqa: F401 (the names live in the registry)
from ..methods.recipes import classifier_result, train_and_report
from ..methods.train import predict_logits, tokenize, training_arguments, with_course_callbacks
from ..modeling import models
from ..setup import assets
from ..setup.checks import check_safetensors
from ..setup.config import DataSizes, Profile, TrainSettings
from ..setup.session import seed_everything
from ..setup.timing import timed

__all__ = ["distillation_loss", "make_distillation_trainer", "teacher_probabilities",
           "cached_teacher_probabilities", "student_run", "load_trained_student", "int8_student", "int8_comparison",
           "inference_speed", "disk_bytes", "base_disk_bytes", "transfer_set"]



def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """alpha * T^2 * KL(teacher at T || student at T) + (1 - alpha) * CE(student, labels); label -1 = unlabelled."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    soft_teacher = teacher_probs.float() ** (1.0 / temperature)        # re-temper the stored T=1 probabilities
    soft_teacher = soft_teacher / soft_teacher.sum(dim=-1, keepdim=True)
    kd = F.kl_div(log_student, soft_teacher, reduction="batchmean") * temperature ** 2
    if labels is None or alpha >= 1.0 or not (labels >= 0).any():   # unlabelled texts carry label -1
        return kd
    return alpha * kd + (1.0 - alpha) * F.cross_entropy(student_logits.float(), labels, ignore_index=-1)


def make_distillation_trainer(model, tokenizer, data: DatasetDict, profile: Profile, temperature: float,
                              alpha: float, settings: TrainSettings | None = None, **overrides: object):
    """A Trainer whose loss is ``distillation_loss``; ``data`` splits need a ``teacher_probs`` column."""
    from transformers import Trainer  # lazy: loads bitsandbytes, which warns unless models has quieted it

    class DistillationTrainer(Trainer):
        """Trainer with the distillation loss; evaluation still reports plain cross-entropy metrics."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher = inputs.pop("teacher_probs")
            labels = inputs.pop("labels", None)
            outputs = model(**inputs)
            loss = distillation_loss(outputs.logits, teacher, labels, temperature, alpha)
            return (loss, outputs) if return_outputs else loss

    s = settings or profile.encoder_train
    encoded = tokenize(data, tokenizer, s.max_length)
    for split in encoded:
        encoded[split] = encoded[split].add_column("teacher_probs", [list(map(float, p)) for p in data[split]["teacher_probs"]])
    trainer = DistillationTrainer(model=model, args=training_arguments(profile, s, "distill", eval_strategy="no",
                                                                       **overrides),
                                  train_dataset=encoded["train"], data_collator=DataCollatorWithPadding(tokenizer))
    return with_course_callbacks(trainer)


def teacher_probabilities(model, tokenizer, texts: list[str], settings: TrainSettings) -> np.ndarray:
    """The teacher's class probabilities (softmax at T = 1) for a list of texts."""
    return softmax(predict_logits(model, tokenizer, texts, settings.eval_batch_size, settings.max_length))


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
                method: str = STUDENT, save_model: bool = True, settings: TrainSettings | None = None):
    """Train a fresh student on ``transfer`` with the distillation loss, predict ``data``'s test split, keep its weights."""
    seed_everything(profile.seed)
    student, tokenizer = models.load_encoder_classifier(profile, label_names(data))  # a fresh student
    trainer = make_distillation_trainer(student, tokenizer, transfer, profile, temperature, alpha, settings=settings)
    report = train_and_report(trainer)
    result = classifier_result(method, profile, data, student, tokenizer, settings=settings or profile.encoder_train,
                               extra=report)
    return dataclasses.replace(result, model=student, tokenizer=tokenizer) if save_model else result


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
