"""Instruction tuning's loss on the answer tokens only, its collator and its two Trainers (chapter 04).

The loss is written out in a few lines (``completion_loss``) instead of TRL's ``SFTTrainer`` because
it teaches the masking and, on a CPU, is several times faster: logits only where answers are, and
the instruction every prompt shares runs once per batch. ``make_sft_trainer`` builds TRL's trainer on
the same data, so a chapter can check that both mask the same tokens. Chapter 04's runs
(``instruct_train``) train with ``make_instruct_trainer``.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from transformers import Trainer

from ..modeling import models
from ..modeling.activations import checkpointing_enabled
from ..setup.config import Profile, TrainSettings
from . import instruct
from .train import training_arguments, with_course_callbacks

__all__ = ["tokenize_completions", "completion_labels", "CompletionCollator", "completion_loss",
           "CompletionOnlyTrainer", "instruction_prefix",
           "make_instruct_trainer", "make_sft_trainer"]


def tokenize_completions(pairs: Dataset, tokenizer) -> Dataset:
    """Token ids of prompt + answer (+ EOS) and the prompt's length: what the loss mask needs (chapter 04)."""
    def encode(batch: dict) -> dict:
        prompts = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
        answers = [instruct.answer_ids(tokenizer, c) for c in batch["completion"]]
        return {"input_ids": [p + a for p, a in zip(prompts, answers)], "prompt_length": [len(p) for p in prompts]}

    return pairs.map(encode, batched=True, remove_columns=pairs.column_names)


def completion_labels(input_ids: torch.Tensor, prompt_lengths: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """Labels for the loss: the input ids, with -100 (ignored) on the prompt and the padding (chapter 04)."""
    width = input_ids.shape[1]
    start = width - attention_mask.sum(1, keepdim=True)  # left padding: where each row's tokens begin
    answer = torch.arange(width, device=input_ids.device) >= start + prompt_lengths[:, None]
    return input_ids.masked_fill(~answer, -100)


class CompletionCollator:
    """Left-pads a batch and masks its prompts; the instruction every prompt shares is passed once (chapter 04)."""

    def __init__(self, pad_token_id: int, prefix: list[int] | None = None):
        self.pad, self.prefix = pad_token_id, list(prefix or [])

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        """A batch: suffix ids and mask (left-padded), labels of the last columns, the shared prefix ids."""
        n = len(self.prefix)
        rows = [list(f["input_ids"])[n:] for f in features]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[self.pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        labels = completion_labels(ids, torch.tensor([f["prompt_length"] - n for f in features]), mask)
        keep = width - int((labels != -100).float().argmax(1).min()) + 1  # answers + the token before them
        return {"input_ids": ids, "attention_mask": mask, "labels": labels[:, -keep:],
                "prefix_ids": torch.tensor([self.prefix], dtype=torch.long)}


def completion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy on the answer tokens only, computing logits only where answers are (chapter 04).

    With ``prefix_ids`` (the shared instruction), the prefix runs once per batch and its key/value
    cache, gradients included, is repeated for every example: the same loss as running it per example.
    """
    labels, ids, mask, cache = batch["labels"], batch["input_ids"], batch["attention_mask"], None
    prefix = batch.get("prefix_ids")
    if prefix is not None and prefix.numel():
        if checkpointing_enabled(model):  # recomputation keeps no cache: run the prefix in every row
            ids = torch.cat([prefix.expand(ids.shape[0], -1), ids], dim=1)
        else:
            cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(ids.shape[0])
        mask = torch.cat([torch.ones(mask.shape[0], prefix.shape[1], dtype=mask.dtype, device=mask.device), mask], 1)
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)[:, mask.shape[1] - ids.shape[1]:]
    out = model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=False,
                position_ids=positions, logits_to_keep=labels.shape[1])
    logits = out.logits[:, :-1].float()  # the logit at position t predicts the token at t + 1
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                             ignore_index=-100)


class CompletionOnlyTrainer(Trainer):
    """transformers' Trainer whose loss is ``completion_loss``: the answer tokens only (chapter 04)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = completion_loss(model, inputs)
        return (loss, None) if return_outputs else loss


def instruction_prefix(encoded: Dataset) -> list[int]:
    """The token ids every prompt begins with (the instruction), which ``CompletionCollator`` runs once (chapter 04)."""
    prompts = [ids[:n] for ids, n in zip(encoded["input_ids"], encoded["prompt_length"])]
    return prompts[0][:instruct.shared_prefix(prompts)] if len(prompts) > 1 else []


def make_instruct_trainer(model, tokenizer, pairs: Dataset, profile: Profile, settings: TrainSettings | None = None,
                          run_name: str = "instruct", share_prefix: bool = True,
                          **overrides: object) -> CompletionOnlyTrainer:
    """Chapter 04's Trainer for prompt -> answer pairs, with the loss on the answers only (its cells show the calls)."""
    encoded = tokenize_completions(pairs, tokenizer)
    prefix = instruction_prefix(encoded) if share_prefix else []
    overrides.setdefault("eval_strategy", "no")
    overrides.setdefault("logging_steps", 2)
    args = training_arguments(profile, settings or profile.instruct_train, run_name, **overrides)
    trainer = CompletionOnlyTrainer(model=model, args=args, train_dataset=encoded,
                                    data_collator=CompletionCollator(tokenizer.pad_token_id, prefix))
    return with_course_callbacks(trainer)


def make_sft_trainer(model, tokenizer, pairs: Dataset, profile: Profile, settings: TrainSettings | None = None,
                     run_name: str = "instruct-trl", **overrides: object) -> "trl.SFTTrainer":  # noqa: F821
    """TRL's SFTTrainer on the same prompt-completion data: it too masks the prompt out of the loss (chapter 04)."""
    from trl import SFTConfig, SFTTrainer  # lazy: loads bitsandbytes, which warns unless models has quieted it

    dtype = models.compute_dtype()
    # the course's schedule, warmup, precision and seeds (train.training_arguments), with TRL's own needs:
    # no recomputation (TRL's default gradient checkpointing is slower here), its text columns dropped once
    # tokenized, and its loss averaged over the answer tokens of all processes (an LM loss, unlike a classifier's)
    sft = {"max_length": None, "completion_only_loss": True, "gradient_checkpointing": False, "eval_strategy": "no",
           "remove_unused_columns": True, "average_tokens_across_devices": True}
    args = training_arguments(profile, settings or profile.instruct_train, run_name, args_class=SFTConfig,
                              **{**sft, **overrides})
    trainer = with_course_callbacks(SFTTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer))
    # TRL casts a 4-bit model's adapters to bf16 (QLoRA's recipe): fp16 mixed precision (a T4 has no bf16) cannot
    # unscale bf16 gradients, and a CPU without bf16 arithmetic would emulate every adapter product; keep them fp32
    if dtype != torch.bfloat16:
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return trainer
