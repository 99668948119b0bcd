"""The distilled student (chapter 07): a fresh encoder trained on a teacher's class probabilities and the labels.

Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(labels), where _T means softmax of
logits / T (Hinton et al., 2015). ``run`` is the student's one run: chapter 07's demonstration (the profile's
epochs) and the protocol's distillation study (chapter 08, to a validation plateau) both call it.
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import DatasetDict
from torch.nn import functional as F
from transformers import DataCollatorWithPadding, Trainer

from ..evaluation.metrics import softmax
from ..setup.config import Profile, TrainSettings
from ..setup.session import seed_everything
from .classifier import Fitted, predicted
from .encoder import load as load_encoder
from .plateau import check_until, classifier_scorer, schedule, train_to_plateau
from .train import predict_logits, tokenize, train_and_report, training_arguments, with_course_callbacks

__all__ = ["distillation_loss", "make_distillation_trainer", "teacher_probabilities", "with_teacher", "run"]


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


class DistillationTrainer(Trainer):
    """Trainer with the distillation loss (``distillation_loss``) at a temperature and mix ``alpha``."""

    def __init__(self, *args, temperature: float, alpha: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature, self.alpha = temperature, alpha

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The distillation loss of a batch, its ``teacher_probs`` taken out of the model's inputs."""
        teacher = inputs.pop("teacher_probs")
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        loss = distillation_loss(outputs.logits, teacher, labels, self.temperature, self.alpha)
        return (loss, outputs) if return_outputs else loss


def make_distillation_trainer(model, tokenizer, data: DatasetDict, profile: Profile, temperature: float,
                              alpha: float, settings: TrainSettings | None = None, **overrides: object):
    """A Trainer whose loss is ``distillation_loss``; ``data``'s train split needs a ``teacher_probs`` column
    (``with_teacher``); ``overrides`` go to ``TrainingArguments``."""
    s = settings or profile.encoder_train
    encoded = tokenize(data, tokenizer, s.max_length)
    for split in encoded:
        encoded[split] = encoded[split].add_column("teacher_probs", [list(map(float, p)) for p in data[split]["teacher_probs"]])
    trainer = DistillationTrainer(model=model, args=training_arguments(profile, s, "distill", eval_strategy="no",
                                                                       **overrides),
                                  train_dataset=encoded["train"], data_collator=DataCollatorWithPadding(tokenizer),
                                  temperature=temperature, alpha=alpha)
    return with_course_callbacks(trainer)


def teacher_probabilities(model, tokenizer, texts: list[str], settings: TrainSettings) -> np.ndarray:
    """The teacher's class probabilities (softmax at T = 1) for a list of texts."""
    return softmax(predict_logits(model, tokenizer, texts, settings.eval_batch_size, settings.max_length))


def with_teacher(transfer: DatasetDict, probs: np.ndarray) -> DatasetDict:
    """The transfer set with the teacher's probabilities of its train split as the ``teacher_probs`` column."""
    if len(probs) != len(transfer["train"]):
        raise ValueError(f"{len(probs)} teacher probabilities for {len(transfer['train'])} transfer texts. Fix: "
                         "compute them on the transfer set's train split, in its order.")
    out = DatasetDict(transfer)
    out["train"] = transfer["train"].add_column("teacher_probs", [list(map(float, p)) for p in probs])
    return out


def run(profile: Profile, data: DatasetDict, transfer: DatasetDict, seed: int, lr: float, *, temperature: float,
        alpha: float, until: str = "plateau", settings: TrainSettings | None = None) -> Fitted:
    """Train a fresh student (``encoder.load``) on ``transfer`` (texts, labels or -1, ``teacher_probs``) with the
    distillation loss at learning rate ``lr`` from ``seed``, ``until`` a plateau of macro-F1 on ``data``'s
    validation split (the protocol's schedule) or for the profile's epochs; predict ``data``'s test split."""
    s = settings or profile.encoder_train
    seed_everything(seed)
    model, tokenizer = load_encoder(profile, data)
    options = {"learning_rate": lr, "seed": seed, "data_seed": seed}
    if check_until(until) == "plateau":
        steps = schedule(len(transfer["train"]), s.batch_size, profile.protocol, s.grad_accum)
        trainer = make_distillation_trainer(model, tokenizer, transfer, profile, temperature, alpha, settings=s,
                                            num_train_epochs=steps["max_epochs"], **options)
        report = train_to_plateau(trainer, classifier_scorer(tokenizer, data, s), profile.protocol, steps)
    else:
        trainer = make_distillation_trainer(model, tokenizer, transfer, profile, temperature, alpha, settings=s,
                                            **options)
        report = {**train_and_report(trainer), "extra": {}}
    return predicted(model, tokenizer, data, s, report)
