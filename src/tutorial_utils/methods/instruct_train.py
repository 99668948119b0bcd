"""Instruction tuning's one run (chapter 04), and the chapter's read-outs: save and load, predict by scoring
and by generating.

A run puts together the profile's 4-bit causal LM with LoRA, the verbalizer's prompts and
``instruct_trainer``'s answer-only Trainer, and trains it for the profile's epochs or to a
validation plateau (``run``: chapter 04's and 05's runs, the protocol's, your data's). ``scored_result`` and
``generated_result`` read the test split by scoring every label and by generating; ``variant_row`` compares
variants on validation. Taught in chapter 04; chapter 05's multi-label runs call ``tune`` (``run`` for the
profile's epochs).
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from ..data import label_names, multi_hot
from ..data.common import sample_examples
from ..evaluation.metrics import classification_metrics, macro_f1, softmax
from ..evaluation.stats import micro_f1
from ..modeling import models
from ..setup import budgets
from ..setup.checks import check_safetensors
from ..setup.config import LoraSettings, Profile, get_profile
from ..setup.session import seed_everything
from ..setup.timing import timed
from ..storage import runs
from ..storage.records import RunRecord
from . import INSTRUCTION_GENERATED, INSTRUCTION_SCORED  # noqa: F401 (the names live in the registry)
from . import instruct
from .answers import parse_many
from .instruct import subject_of  # noqa: F401 (re-exported: chapters 03b, 04 and 05 call instruct_train.subject_of)
from .instruct_trainer import make_instruct_trainer
from .plateau import Evaluate, check_until, schedule, train_to_plateau
from .train import train_and_report
from .verbalizer import Verbalizer

__all__ = ["subject_of", "InstructionModel", "PROMPT_FILE", "save_tuned", "load_tuned", "tuning_report", "run",
           "tune", "max_answer_tokens",
           "label_scores", "scored_result", "generated_result", "tuned_record", "generation_probs",
           "validation_row", "variant_row"]



# ---- Chapter 04's runs ------------------------------------------------------------------------------------

@dataclass
class InstructionModel:
    """An instruction-tuned model with the verbalizer and prompt settings it was trained with (chapter 04)."""

    model: object
    tokenizer: object
    verbalizer: Verbalizer
    subject: str
    multi_label: bool
    max_text_tokens: int
    report: dict

    def prompts(self, texts: list[str]) -> list[str]:
        """The prompts this model was trained on, for new texts."""
        return [instruct.build_prompt(self.tokenizer, t, self.verbalizer, self.multi_label, self.subject,
                                      self.max_text_tokens) for t in texts]


PROMPT_FILE = "prompt.json"  # beside a saved adapter: the verbalizer and prompt settings it was trained with


def save_tuned(tuned: InstructionModel, profile: Profile, folder: Path) -> None:
    """Save an instruction-tuned model: its LoRA adapter and the prompt settings it was trained with (chapter 09)."""
    tuned.model.save_pretrained(folder)
    v = tuned.verbalizer
    (folder / PROMPT_FILE).write_text(json.dumps({
        "profile": profile.name, "causal_lm": profile.causal_lm, "kind": v.kind, "names": list(v.names),
        "words": list(v.words), "subject": tuned.subject, "multi_label": tuned.multi_label,
        "max_text_tokens": tuned.max_text_tokens}, indent=1))


def load_tuned(folder: Path) -> InstructionModel:
    """A model saved by ``save_tuned``: the profile's base model in its precision, with the adapter (chapter 09)."""
    from peft import PeftModel  # lazy: loads bitsandbytes, which warns unless models has quieted it

    settings = json.loads((folder / PROMPT_FILE).read_text())
    check_safetensors(folder, "adapter_model")
    base, tokenizer = models.load_causal_lm(get_profile(settings["profile"]))
    verbalizer = instruct.make_verbalizer(settings["names"], settings["kind"], settings["words"])
    return InstructionModel(PeftModel.from_pretrained(base, folder).eval(), tokenizer, verbalizer, settings["subject"],
                            settings["multi_label"], settings["max_text_tokens"], {})


def _prepare_tuning(profile: Profile, data: DatasetDict, kind: str = "names", lora: LoraSettings | None = None,
                   multi_label: bool = False, n_train: int | None = None, max_text_tokens: int | None = None,
                   subject: str | None = None, run_name: str = "instruct", seed: int | None = None,
                   **overrides: object) -> tuple[InstructionModel, "transformers.Trainer"]:  # noqa: F821
    """The 4-bit causal LM with LoRA, its prompts and its Trainer, ready to train (chapters 04, 05 and 08)."""
    settings, lora = profile.instruct_train, lora or profile.lora
    seed = profile.seed if seed is None else seed
    n_train = profile.instruct_train_size if n_train is None else n_train
    subject = subject or subject_of(profile.multi_label_data if multi_label else profile.single_label_data)
    max_text_tokens = max_text_tokens or settings.max_length
    seed_everything(seed)
    model, tokenizer = models.load_causal_lm(profile)
    model = models.add_lora(model, lora, task_type="CAUSAL_LM")
    verbalizer = instruct.make_verbalizer(label_names(data), kind)
    subset = sample_examples(data["train"], n_train, profile.seed, multi_label)
    pairs = instruct.prompt_completion(subset, tokenizer, verbalizer, multi_label, subject, max_text_tokens)
    if seed != profile.seed:
        overrides = {"seed": seed, "data_seed": seed, **overrides}
    trainer = make_instruct_trainer(model, tokenizer, pairs, profile, settings, run_name=run_name, **overrides)
    report = tuning_report(model, subset, kind, lora)
    return InstructionModel(model, tokenizer, verbalizer, subject, multi_label, max_text_tokens, report), trainer


def tuning_report(model, train_examples: Dataset, kind: str, lora: LoraSettings) -> dict:
    """What a tuned model's runs record of its training: examples, trainable parameters, verbalizer, LoRA (chapter 04)."""
    return {"train_examples": len(train_examples), "trainable_params": models.count_parameters(model).trainable,
            "verbalizer": kind, "lora": _lora_label(lora), "r": lora.r}


def run(profile: Profile, data: DatasetDict, seed: int, lr: float, *, until: str = "plateau",
        multi_label: bool = False, kind: str | None = None, lora: LoraSettings | None = None,
        n_train: int | None = None, max_text_tokens: int | None = None, subject: str | None = None,
        run_name: str = "protocol") -> InstructionModel:
    """Instruction tuning's one run (chapters 04, 05, 08, 09): the 4-bit LM with LoRA trained on prompt -> answer
    pairs of ``n_train`` training examples (default: all) at learning rate ``lr`` from ``seed``.

    ``until="epochs"``: the profile's epochs (a chapter's demonstration). ``until="plateau"``: the protocol's schedule,
    evaluated on validation by scoring every label (macro-F1) or, ``multi_label``, by generating the list of labels
    (micro-F1), the best weights kept. ``kind``: the verbalizer (default the profile's). The model's ``report`` holds
    what the training reported: examples, trainable parameters, timings and, to a plateau, the validation curve.
    """
    s = profile.instruct_train
    n_train = len(data["train"]) if n_train is None else n_train
    options = dict(kind=kind or profile.verbalizer, lora=lora, multi_label=multi_label, n_train=n_train,
                   max_text_tokens=max_text_tokens, subject=subject, run_name=run_name, seed=seed, learning_rate=lr)
    if check_until(until) == "epochs":
        tuned, trainer = _prepare_tuning(profile, data, **options)
        tuned.report.update(train_and_report(trainer))
        return tuned
    steps = schedule(n_train, s.batch_size, profile.protocol, s.grad_accum)
    tuned, trainer = _prepare_tuning(profile, data, num_train_epochs=steps["max_epochs"], **options)
    tuned.report.update(train_to_plateau(trainer, _validation_score(tuned, data, s.eval_batch_size), profile.protocol,
                                         steps))
    return tuned


def _validation_score(tuned: InstructionModel, data: DatasetDict, batch_size: int) -> Evaluate:
    """The protocol's evaluation of an instruction-tuned model (chapter 08): macro-F1 of the best-scored label, or
    multi-label, micro-F1 of the generated lists; with the validation probabilities (lists: 0/1)."""
    prompts = tuned.prompts(list(data["validation"]["text"]))
    if tuned.multi_label:
        Y, longest = multi_hot(data["validation"]).astype(int), max_answer_tokens(tuned, data)

        def evaluate(model) -> tuple[float, np.ndarray]:
            answers, _ = instruct.generate(model, tuned.tokenizer, prompts, max_new_tokens=longest,
                                           batch_size=batch_size)
            found = parse_many(answers, tuned.verbalizer, Y.shape[1])[0]
            return micro_f1(Y, found), found.astype(float)
    else:
        y, n = data["validation"]["label"], len(tuned.verbalizer.words)

        def evaluate(model) -> tuple[float, np.ndarray]:
            scores = instruct.score_labels(model, tuned.tokenizer, prompts, list(tuned.verbalizer.words),
                                           batch_size=batch_size)
            return macro_f1(y, scores.argmax(1), n), softmax(scores)

    return evaluate


def tune(profile: Profile, data: DatasetDict, kind: str = "names", lora: LoraSettings | None = None,
         multi_label: bool = False, n_train: int | None = None, max_text_tokens: int | None = None,
         subject: str | None = None, run_name: str = "instruct") -> InstructionModel:
    """Chapter 04's and 05's run: ``run`` for the profile's epochs at its learning rate and seed, on
    ``n_train`` examples (default ``profile.instruct_train_size``)."""
    return run(profile, data, profile.seed, profile.instruct_train.learning_rate, until="epochs",
               multi_label=multi_label, kind=kind, lora=lora, max_text_tokens=max_text_tokens, subject=subject,
               n_train=profile.instruct_train_size if n_train is None else n_train, run_name=run_name)


def max_answer_tokens(tuned: InstructionModel, data: DatasetDict, extra: int = 4) -> int:
    """The longest training answer's tokens plus ``extra``: room to see what the model over-generates (chapter 05)."""
    answers = {tuned.verbalizer.answer(ids) for ids in data["train"]["labels"]}
    return max(len(instruct.answer_ids(tuned.tokenizer, a)) for a in answers) + extra


def _lora_label(lora: LoraSettings) -> str:
    """A short name for LoRA settings: "r=8 on q,v" or "r=16 on all linear" (chapter 04)."""
    targets = tuple(lora.target_modules)
    names = {budgets.ALL_LINEAR: "all linear", budgets.ATTENTION: "attention"}
    short = names.get(targets, ",".join(t.split("_")[0] for t in targets))
    return f"r={lora.r} on {short}"


def label_scores(tuned: InstructionModel, texts: list[str], batch_size: int = 16) -> tuple[np.ndarray, float]:
    """Every label's log-likelihood for every text (constrained scoring), and the seconds it took (chapter 04)."""
    return timed(instruct.score_labels, tuned.model, tuned.tokenizer, tuned.prompts(texts),
                 list(tuned.verbalizer.words), batch_size=batch_size)


def scored_result(tuned: InstructionModel, profile: Profile, data: DatasetDict,
                  method: str = INSTRUCTION_SCORED) -> RunRecord:
    """Predict the test split by scoring every label string; probabilities are the softmax over the labels (chapter 04)."""
    texts = list(data["test"]["text"])
    scores, seconds = label_scores(tuned, texts, profile.instruct_train.eval_batch_size)
    return tuned_record(method, tuned, profile, data, scores.argmax(axis=1), softmax(scores),
                        test_texts_per_second=len(texts) / seconds)


def generated_result(tuned: InstructionModel, profile: Profile, data: DatasetDict,
                     method: str = INSTRUCTION_GENERATED) -> RunRecord:
    """Predict the test split by greedy generation and parsing; an unparsable answer is -1 and counts as wrong
    (chapter 04).

    ``probs`` puts the answer's probability on the parsed label and spreads the rest evenly (uniform
    for an unparsable answer); ``extra`` keeps the raw answers and their probabilities.
    """
    texts = list(data["test"]["text"])
    (answers, logp), seconds = timed(instruct.generate, tuned.model, tuned.tokenizer, tuned.prompts(texts),
                                     max_new_tokens=instruct.answer_budget(tuned.tokenizer, tuned.verbalizer), batch_size=profile.instruct_train.eval_batch_size)
    y_pred = np.array([instruct.parse_label(a, tuned.verbalizer) for a in answers])
    n = len(tuned.verbalizer.words)
    probs = generation_probs(y_pred, np.exp(logp), n)[:, :n]
    probs[y_pred < 0] = 1.0 / n
    probs /= probs.sum(axis=1, keepdims=True)
    return tuned_record(method, tuned, profile, data, y_pred, probs, test_texts_per_second=len(texts) / seconds,
                        answers=answers, answer_probability=np.exp(logp).tolist(), unparsable=int((y_pred < 0).sum()))


def tuned_record(method: str, tuned: InstructionModel, profile: Profile, data: DatasetDict, y_pred: np.ndarray,
                 probs: np.ndarray, **extra: object) -> RunRecord:
    """An instruction-tuned model's run on the test split (chapters 04, 05): its predictions, with what its training
    reported (examples, trainable parameters, timings, the curve) and ``extra``."""
    report = {k: v for k, v in tuned.report.items() if k != "extra"}
    kept = {k: report.pop(k) for k in ("verbalizer", "lora", "r", "learning_curve") if k in report}
    y_true = multi_hot(data["test"]).astype(int) if tuned.multi_label else np.asarray(data["test"]["label"])
    outcome = {**report, "y_true": y_true, "y_pred": y_pred, "probs": probs,
               "extra": {**tuned.report.get("extra", {}), **kept, **extra}}
    return runs.record(method, profile, data, outcome, report.get("train_seconds", 0.0))


def generation_probs(y_pred: np.ndarray, confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """An (n, classes + 1) probability matrix whose top entry is the generated answer's probability (chapter 04).

    The last column stands for "unparsable": an answer that names no label puts its confidence there,
    so it counts as a confident wrong answer in a reliability diagram. The rest is spread evenly.
    """
    y = np.asarray(y_pred)
    conf = np.clip(np.asarray(confidence, float), 1.0 / (n_classes + 1) + 1e-9, 1.0)
    probs = np.repeat(((1 - conf) / n_classes)[:, None], n_classes + 1, axis=1)
    probs[np.arange(len(y)), np.where(y < 0, n_classes, y)] = conf
    return probs


def validation_row(tuned: InstructionModel, data: DatasetDict, scores: np.ndarray, seconds: float) -> dict:
    """One comparison row from validation scores: verbalizer, budget, tokens, metrics, speed (chapter 04)."""
    y = np.asarray(data["validation"]["label"])
    task = instruct.instruction(tuned.verbalizer, tuned.multi_label, tuned.subject)
    return {"verbalizer": tuned.verbalizer.kind, "LoRA": tuned.report["lora"], "r": tuned.report["r"],
            "trainable params": tuned.report["trainable_params"],
            "answer tokens (mean)": float(np.mean(instruct.token_counts(tuned.tokenizer, tuned.verbalizer))),
            "instruction tokens": len(tuned.tokenizer(task, add_special_tokens=False)["input_ids"]),
            **{f"val {k}": v for k, v in classification_metrics(y, scores.argmax(1), scores.shape[1]).items()
               if k != "weighted_f1"},
            "scoring (texts/s)": len(y) / seconds, "train (s)": tuned.report["train_seconds"]}


def variant_row(profile: Profile, data: DatasetDict, kind: str = "names", lora: LoraSettings | None = None) -> dict:
    """Tune one variant on the same subset and seed, and score the validation split: one comparison row (chapter 04)."""
    tuned = tune(profile, data, kind=kind, lora=lora, run_name=f"instruct-{kind}")
    scores, seconds = label_scores(tuned, list(data["validation"]["text"]), profile.instruct_train.eval_batch_size)
    row = validation_row(tuned, data, scores, seconds)
    del tuned
    gc.collect()
    return row

