"""Multi-label classification: the embedding head with sigmoid + BCE and tuned thresholds, and instruction
tuning that answers with a list of labels; parsing that list, and the runs that compare the two.

Taught in chapter 05. The threshold search itself lives in ``thresholds``, the metrics in ``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasets import DatasetDict

from ..data import label_names, multi_hot
from ..data.common import with_train_cut
from ..evaluation import thresholds
from ..evaluation.metrics import multilabel_metrics, sigmoid
from ..setup.config import Profile
from ..setup.timing import timed
from ..storage import runs
from ..storage.records import RunRecord
from . import MULTILABEL_HEAD, MULTILABEL_INSTRUCTION  # noqa: F401 (the names live in the registry)
from . import embedding_head, instruct
from .answers import parse_many  # noqa: F401 (re-exported: chapter 05 calls multilabel_runs.parse_many)
from .instruct_train import InstructionModel, max_answer_tokens, tune, tuned_record  # noqa: F401 (max_answer_tokens: re-exported)
from .train import predict_logits

__all__ = ["parse_many", "label_table", "train_subset", "HeadScores", "train_head", "threshold_comparison",
           "head_result", "tune_multilabel", "max_answer_tokens", "instruction_result", "comparison"]



def label_table(data: DatasetDict) -> pd.DataFrame:
    """Examples per label in each split, most frequent first (chapter 05)."""
    names = label_names(data)
    table = pd.DataFrame({split: multi_hot(ds).sum(axis=0).astype(int) for split, ds in data.items()}, index=names)
    return table.sort_values("train", ascending=False)


def train_subset(profile: Profile, data: DatasetDict, n: int | None = None) -> DatasetDict:
    """The data with its training split cut to ``profile.multilabel_train_size`` examples (chapter 05)."""
    n = profile.multilabel_train_size if n is None else n
    return with_train_cut(data, n, profile.seed, multi_label=True)


@dataclass
class HeadScores:
    """A multi-label head's sigmoid probabilities on validation and test, and its training record (chapter 05)."""

    validation: np.ndarray
    test: np.ndarray
    report: dict


def train_head(profile: Profile, data: DatasetDict) -> HeadScores:
    """Chapter 05's embedding head: 4-bit LM + LoRA + a head trained with sigmoid + BCE for the profile's epochs
    (``embedding_head.run``), then its probabilities on validation and test (in batches of similar length)."""
    s, subset = profile.multilabel_train, train_subset(profile, data)
    fitted = embedding_head.run(profile, subset, profile.seed, s.learning_rate, until="epochs", multi_label=True,
                                settings=s, by_length=True, run_name=MULTILABEL_HEAD, eval_strategy="no",
                                logging_steps=2)
    logits, seconds = timed(predict_logits, fitted.model, fitted.tokenizer, list(data["validation"]["text"]),
                            batch_size=s.eval_batch_size, max_length=s.max_length, by_length=True)
    report = {"train_seconds": fitted.report["train_seconds"], "learning_curve": fitted.report["learning_curve"],
              "train_examples": len(subset["train"]), "trainable_params": fitted.report["trainable_params"],
              "validation_texts_per_second": len(logits) / seconds,
              "test_texts_per_second": fitted.report["extra"]["test_texts_per_second"]}
    return HeadScores(sigmoid(logits), sigmoid(fitted.logits), report)


def _threshold_rules(val_probs: np.ndarray, Y_val: np.ndarray) -> dict[str, np.ndarray | float]:
    """The decision rules chapter 05 compares: 0.5, one tuned global threshold, one tuned threshold per label."""
    return {"global 0.5": 0.5,
            "tuned global": thresholds.tune_global_threshold(val_probs, Y_val, metric="micro_f1"),
            "tuned per label": thresholds.tune_per_class_thresholds(val_probs, Y_val)}


def threshold_comparison(scores: HeadScores, data: DatasetDict) -> pd.DataFrame:
    """Micro-, macro- and samples-F1 on validation and test per threshold rule, tuned on validation (chapter 05)."""
    Y_val, Y_test = multi_hot(data["validation"]).astype(int), multi_hot(data["test"]).astype(int)
    rows = []
    for name, t in _threshold_rules(scores.validation, Y_val).items():
        shown = f"{t:.2f}" if np.ndim(t) == 0 else f"{np.min(t):.2f}-{np.max(t):.2f}"
        for split, P, Y in (("validation", scores.validation, Y_val), ("test", scores.test, Y_test)):
            rows.append({"rule": name, "threshold(s)": shown, "split": split,
                         **multilabel_metrics(Y, thresholds.apply_thresholds(P, t))})
    table = pd.DataFrame(rows).pivot(index=["rule", "threshold(s)"], columns="split").swaplevel(axis=1)
    return table[["validation", "test"]].reindex(list(dict.fromkeys(r["rule"] for r in rows)), level=0)


def head_result(scores: HeadScores, profile: Profile, data: DatasetDict, rule: str = "tuned per label") -> RunRecord:
    """The embedding head's test predictions under one threshold rule, as a chapter's run (chapter 05)."""
    Y_val, Y_test = multi_hot(data["validation"]).astype(int), multi_hot(data["test"]).astype(int)
    t = _threshold_rules(scores.validation, Y_val)[rule]
    Y_pred = thresholds.apply_thresholds(scores.test, t)
    counts = ("train_seconds", "train_examples", "trainable_params")  # the record's own fields
    extra = {k: v for k, v in scores.report.items() if k not in counts}
    outcome = {**{k: scores.report[k] for k in counts}, "y_true": Y_test, "y_pred": Y_pred, "probs": scores.test,
               "extra": {**extra, "threshold_rule": rule, "thresholds": np.atleast_1d(t).tolist()}}
    return runs.record(MULTILABEL_HEAD, profile, data, outcome, scores.report.get("train_seconds", 0.0))


def tune_multilabel(profile: Profile, data: DatasetDict) -> InstructionModel:
    """Instruction-tune on multi-label answers ("label, label" in the label list's order) (chapter 05)."""
    return tune(profile, data, multi_label=True, max_text_tokens=profile.multilabel_train.max_length,
                run_name=MULTILABEL_INSTRUCTION)


def instruction_result(tuned: InstructionModel, profile: Profile, data: DatasetDict) -> RunRecord:
    """Generate and parse every answer of the test split, and score the label sets; failures are counted (chapter 05)."""
    texts = list(data["test"]["text"])
    (answers, logp), seconds = timed(instruct.generate, tuned.model, tuned.tokenizer, tuned.prompts(texts),
                                     max_new_tokens=max_answer_tokens(tuned, data),
                                     batch_size=profile.instruct_train.eval_batch_size)
    Y_pred, report = parse_many(answers, tuned.verbalizer, len(label_names(data)))
    return tuned_record(MULTILABEL_INSTRUCTION, tuned, profile, data, Y_pred, Y_pred.astype(float), parsing=report,
                        answers=answers, test_texts_per_second=len(texts) / seconds)


def comparison(results: list[RunRecord]) -> pd.DataFrame:
    """Method, examples, trainable parameters, the three F1s, failures and speed, one row per run (chapter 05)."""
    return pd.DataFrame([{"method": r.method, "train examples": r.train_examples,
                          "trainable params": r.trainable_params, **r.test_metrics,
                          "unparsable answers": r.extra.get("parsing", {}).get("failed", 0),
                          "test texts/s": r.extra.get("test_texts_per_second")} for r in results]).set_index("method")
