"""Thin wrappers over the transformers Trainer with the profile's settings, and plain inference loops.

Taught in chapter 02 (the embedding head) and reused by every later chapter that trains.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from datasets import DatasetDict, Sequence, Value
from sklearn.metrics import accuracy_score, f1_score
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, TrainerCallback

from ..data.common import label_names
from ..modeling.models import compute_dtype, device
from ..setup.assets import cache_dir
from ..setup.checks import DataError, check_finite, check_texts
from ..setup.config import Profile, TrainSettings
from ..setup.timing import timed

__all__ = ["CHUNK_OVERLAP", "world_size", "agreed", "windows", "tokenize", "training_arguments", "compute_metrics_fn", "make_trainer",
           "balanced_weights", "with_course_callbacks", "FiniteLoss", "predict_logits", "train_and_report", "learning_curve"]


CHUNK_OVERLAP = 0.25  # the share of a window that the next one repeats (``chunk=True``: texts longer than a run reads)


def world_size() -> int:
    """The processes that train together: those of the process group that ``torchrun`` or ``accelerate launch``
    started and the CLI joined (1 without one; book page "Scaling out"). Each takes ``per_device_train_batch_size``
    examples a step."""
    distributed = torch.distributed
    return distributed.get_world_size() if distributed.is_available() and distributed.is_initialized() else 1


def agreed(value: float) -> float:
    """``value`` as the first process has it, on every process of a group (alone: as it is). A decision taken on it
    (keep these weights, stop) is then the same everywhere: a process that stopped alone would leave the others
    waiting for its gradients."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return value
    shared = [value]
    distributed.broadcast_object_list(shared, src=0)
    return shared[0]


def windows(tokenizer, texts: list[str], max_length: int, chunk: bool = False) -> tuple[dict, np.ndarray]:
    """Token ids and masks of each text's first ``max_length`` tokens, or with ``chunk`` of every window of
    ``max_length`` tokens (overlapping by ``CHUNK_OVERLAP``), and the index of the text each row came from."""
    if not chunk:
        return tokenizer(texts, truncation=True, max_length=max_length), np.arange(len(texts))
    if not tokenizer.is_fast:
        raise DataError(f"Reading long texts as windows needs a fast tokenizer; {type(tokenizer).__name__} is not one. "
                        "Fix: load it with use_fast=True, or pass long_texts='truncate'.")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=int(max_length * CHUNK_OVERLAP),
                        return_overflowing_tokens=True)
    return encoded, np.asarray(encoded.pop("overflow_to_sample_mapping"))


def _mean_by_text(logits: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """Each text's logits averaged over its windows (``windows``)."""
    sums = np.zeros((n_texts, logits.shape[1]), dtype=logits.dtype)
    np.add.at(sums, owner, logits)
    return sums / np.bincount(owner, minlength=n_texts)[:, None]


def tokenize(data: DatasetDict, tokenizer, max_length: int, multi_label: bool = False,
             chunk: bool = False) -> DatasetDict:
    """Token ids, attention masks and ``labels`` (class ids, or float multi-hot rows) for every split;
    ``chunk``: a row per window of a long text (``windows``), each with the text's label."""
    num_labels = len(label_names(data)) if multi_label else 0

    def encode(batch: dict) -> dict:
        out, owner = windows(tokenizer, batch["text"], max_length, chunk)
        if multi_label:
            out["labels"] = [np.isin(np.arange(num_labels), batch["labels"][i]).astype(np.float32) for i in owner]
        else:
            out["labels"] = [batch["label"][i] for i in owner]
        return out

    encoded = data.map(encode, batched=True, remove_columns=data["train"].column_names)
    if multi_label:  # the new column would keep the input's ClassLabel type: BCE needs floats
        encoded = encoded.cast_column("labels", Sequence(Value("float32")))
    return encoded


def training_arguments(profile: Profile, settings: TrainSettings | None = None, run_name: str = "run",
                       args_class: type | None = None, **overrides: object):
    """TrainingArguments from the profile: mixed precision that suits the device, no checkpoints, seeded.

    ``args_class``: a subclass to build instead (chapter 04 passes TRL's ``SFTConfig``), so that every
    trainer of the course gets the same schedule, warmup, precision and seeds from this one place.
    """
    s = settings or profile.train
    dtype = compute_dtype()
    kwargs = dict(
        output_dir=str(cache_dir() / "trainer" / profile.name / run_name),
        num_train_epochs=s.epochs, learning_rate=s.learning_rate, weight_decay=s.weight_decay,
        per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.eval_batch_size,
        gradient_accumulation_steps=s.grad_accum, warmup_steps=s.warmup_ratio, lr_scheduler_type="linear",
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=device().type == "cpu",
        train_sampling_strategy="group_by_length",  # batches of similar length: less padding, about 2x faster here
        eval_strategy="epoch", save_strategy="no", logging_steps=5, report_to=[], seed=profile.seed,
        data_seed=profile.seed, remove_unused_columns=False, label_names=["labels"],
        disable_tqdm=os.environ.get("COURSE_HIDE_PROGRESS") == "1", dataloader_num_workers=0,
        # transformers 5 scales the loss by the number of processes when this is on (its default), which is
        # right for token-averaged LM losses but doubles a classifier's loss and gradients on 2 processes
        average_tokens_across_devices=False,
    )
    kwargs.update(overrides)
    return (args_class or TrainingArguments)(**kwargs)


def compute_metrics_fn(multi_label: bool = False):
    """A Trainer ``compute_metrics`` callback: accuracy and F1s (single-label) or micro/macro F1 (multi-label)."""
    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if multi_label:
            pred = (logits > 0).astype(int)
            return {"micro_f1": f1_score(labels, pred, average="micro", zero_division=0),
                    "macro_f1": f1_score(labels, pred, average="macro", zero_division=0)}
        pred = logits.argmax(-1)
        return {"accuracy": accuracy_score(labels, pred), "macro_f1": f1_score(labels, pred, average="macro")}

    return compute


def make_trainer(model, tokenizer, data: DatasetDict, profile: Profile, settings: TrainSettings | None = None,
                 multi_label: bool = False, run_name: str = "run", class_weights: list[float] | None = None,
                 chunk: bool = False, **overrides: object):
    """A Trainer on the tokenized train split, evaluating on validation each epoch, padding each batch.

    ``class_weights``: cross-entropy weighted by class (``balanced_weights``, chapter 09's skewed data);
    ``chunk``: train on every window of a long text (``windows``) instead of its first ``max_length`` tokens.
    """
    s = settings or profile.train
    if class_weights is not None and multi_label:
        raise DataError("Class weights weight one label per text; multi-label training uses a loss per label. Fix: "
                        "leave class_weights out for multi-label data.")
    encoded = tokenize(data, tokenizer, s.max_length, multi_label=multi_label, chunk=chunk)
    trainer = Trainer(model=model, args=training_arguments(profile, s, run_name, **overrides),
                      train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics_fn(multi_label),
                      compute_loss_func=None if class_weights is None else _weighted_cross_entropy(class_weights))
    return with_course_callbacks(trainer)


def _weighted_cross_entropy(class_weights: list[float]):
    """A Trainer ``compute_loss_func``: sum of w[label] x cross-entropy over the batch, divided by the examples in
    the whole accumulated batch (the Trainer passes ``num_items_in_batch`` and then leaves the scaling to this
    function), so that a rare class weighs as scikit-learn's ``class_weight`` makes it (chapter 09)."""
    weight = torch.tensor(class_weights, dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        total = torch.nn.functional.cross_entropy(outputs.logits.float(), labels, weight=weight.to(labels.device),
                                                  reduction="sum")
        return total / (labels.numel() if num_items_in_batch is None else num_items_in_batch)

    return loss


def balanced_weights(labels: list[int], n_classes: int) -> list[float]:
    """scikit-learn's ``class_weight="balanced"``: n / (classes x count) for each class, so that every class
    weighs as much in the loss as the others (chapter 09); a class absent from ``labels`` is refused."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    if (counts == 0).any():
        raise DataError(f"Class {int(np.argmin(counts))} has no training example, so it cannot be weighted. Fix: "
                        "give every class training examples, or drop the class.")
    return [float(len(labels) / (n_classes * c)) for c in counts]


def with_course_callbacks(trainer):
    """The Trainer without its PrinterCallback (without progress bars it prints raw log dicts), and stopping
    with a clear error at the first logged loss that is not finite (fp16 overflow, a diverging run)."""
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(FiniteLoss())
    return trainer


class FiniteLoss(TrainerCallback):
    """Raises at the first logged training loss that is NaN or infinite, instead of training on garbage."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Check the loss the Trainer is about to log."""
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
            raise FloatingPointError(
                f"The training loss is {loss} at step {state.global_step} ({precision} compute). Fix: in fp16 (a T4) "
                "some models overflow: set COURSE_COMPUTE_DTYPE=float32, or lower the learning rate.")


@torch.no_grad()
def predict_logits(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 64,
                   autocast: bool = True, chunk: bool = False, by_length: bool = False) -> np.ndarray:
    """Classifier logits for a list of texts, in order: a plain batched loop, no Trainer.

    ``autocast=False`` keeps float32 inputs, as an int8-quantised model's kernels need (chapter 07).
    ``chunk``: a text longer than ``max_length`` is read as overlapping windows, its logits their mean.
    ``by_length``: batch texts of similar length together (less padding: faster on long texts, chapter 05);
    the logits come back in the texts' order.
    """
    texts = check_texts(texts)
    if not texts:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    if by_length:
        order = np.argsort([len(t) for t in texts])
        logits = predict_logits(model, tokenizer, [texts[i] for i in order], batch_size, max_length, autocast, chunk)
        return logits[np.argsort(order)]
    model.eval()
    on = next(p for p in model.parameters()).device
    encoded, owner = windows(tokenizer, texts, max_length, chunk)
    out = []
    for start in range(0, len(owner), batch_size):
        batch = tokenizer.pad({k: encoded[k][start:start + batch_size] for k in ("input_ids", "attention_mask")},
                              return_tensors="pt").to(on)
        with torch.autocast(on.type, dtype=compute_dtype(on), enabled=autocast and (on.type == "cuda" or compute_dtype(on) == torch.bfloat16)):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out.append(logits.float().cpu().numpy())
    logits = np.concatenate(out)
    return check_finite(_mean_by_text(logits, owner, len(texts)) if chunk else logits, "the model's logits")


def train_and_report(trainer) -> dict:
    """Run ``trainer.train()`` and return its wall time and learning curve for the run's record (chapter 02)."""
    _, seconds = timed(trainer.train)
    return {"train_seconds": seconds,
            "learning_curve": learning_curve(trainer.state.log_history).to_dict(orient="list")}


def learning_curve(log_history: list[dict]) -> pd.DataFrame:
    """The Trainer's log as a table: step, epoch, training loss and the evaluation metrics where logged."""
    rows = [{k: v for k, v in entry.items() if k in {"step", "epoch", "loss", "eval_loss", "eval_accuracy", "eval_macro_f1", "eval_micro_f1"}}
            for entry in log_history if "loss" in entry or "eval_loss" in entry]
    return pd.DataFrame(rows)
