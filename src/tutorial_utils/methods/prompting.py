"""Zero- and few-shot prompting of the instruct model, predicted by scoring every label (chapter 03b).

Reuses chapter 04's machinery (``instruct``): the verbalizers, the instruction, and the label scorer
that runs the shared prompt prefix once and scores all candidate answers from its key/value cache.
Few-shot examples are chat turns (user: text, assistant: label) between the instruction and the text.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from ..data import label_names
from ..evaluation.metrics import softmax
from ..modeling.models import load_causal_lm
from ..setup.timing import timed
from ..storage import runs
from ..storage.records import RunRecord
from . import ZERO_SHOT  # noqa: F401 (the names live in the registry)
from .instruct import instruction, make_verbalizer, score_labels, subject_of, truncate
from .verbalizer import Verbalizer

__all__ = ["PromptTooLong", "pick_examples", "few_shot_prompt", "context_limit", "fit_examples", "prompt_scores",
           "zero_shot_run"]


class PromptTooLong(ValueError):
    """A few-shot prompt that does not fit the model's context."""


def pick_examples(train: Dataset, k: int, seed: int, column: str = "label") -> list[tuple[str, object]]:
    """``k`` training examples for the prompt, seeded, drawn round-robin over the classes (different labels first)."""
    if k <= 0:
        return []
    rng = np.random.default_rng(seed)
    labels = np.asarray(train[column]) if column == "label" else np.zeros(len(train), dtype=int)
    order = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in rng.permutation(np.unique(labels))}
    picked: list[int] = []
    while len(picked) < k and any(order.values()):
        for c in list(order):
            if order[c] and len(picked) < k:
                picked.append(int(order[c].pop()))
    return [(train[i]["text"], train[i][column]) for i in picked]


def few_shot_prompt(tokenizer, text: str, verbalizer: Verbalizer, examples: list[tuple[str, object]],
                    subject: str = "text", multi_label: bool = False, max_text_tokens: int | None = None) -> str:
    """Instruction (system), then k worked examples as user/assistant turns, then the text to classify."""
    messages = [{"role": "system", "content": instruction(verbalizer, multi_label, subject)}]
    for example_text, label in examples:
        messages += [{"role": "user", "content": truncate(tokenizer, example_text, max_text_tokens)},
                     {"role": "assistant", "content": verbalizer.answer(label)}]
    messages.append({"role": "user", "content": truncate(tokenizer, text, max_text_tokens)})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages[1:]]
    return messages[0]["content"] + "\n\n" + "\n".join(turns) + "\nAssistant: "


def context_limit(model) -> int:
    """The longest sequence the model was trained for (``max_position_embeddings``)."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def fit_examples(tokenizer, texts: list[str], verbalizer: Verbalizer, examples: list[tuple[str, object]],
                 limit: int, subject: str = "text", strict: bool = False, max_text_tokens: int | None = None,
                 answer_tokens: int = 16) -> list[tuple[str, object]]:
    """The examples, cut to the largest k whose longest prompt (plus an answer) fits ``limit`` tokens.

    With ``strict`` a prompt that does not fit raises PromptTooLong naming k and the length instead.
    """
    k = len(examples)
    while True:
        longest = max(len(tokenizer(few_shot_prompt(tokenizer, t, verbalizer, examples[:k], subject,
                                                    max_text_tokens=max_text_tokens))["input_ids"]) for t in texts)
        if longest + answer_tokens <= limit:
            if k < len(examples):
                print(f"notice: k reduced from {len(examples)} to {k}: with more examples the longest prompt "
                      f"exceeds the model's {limit}-token context")
            return examples[:k]
        if strict or k == 0:
            raise PromptTooLong(f"With k={k} examples the longest prompt is {longest} tokens (+{answer_tokens} for "
                                f"the answer), over the model's context of {limit}. Fix: use fewer or shorter "
                                "examples, or truncate the texts (max_text_tokens).")
        k -= 1


def prompt_scores(model, tokenizer, texts: list[str], verbalizer: Verbalizer, examples: list[tuple[str, object]],
                  subject: str = "text", max_text_tokens: int | None = None, batch_size: int = 16) -> tuple[np.ndarray, float]:
    """Log-likelihood of every label's answer for every text under a k-shot prompt, and the seconds it took."""
    prompts = [few_shot_prompt(tokenizer, t, verbalizer, examples, subject, max_text_tokens=max_text_tokens)
               for t in texts]
    return timed(score_labels, model, tokenizer, prompts, list(verbalizer.words), batch_size=batch_size)




def zero_shot_run(profile, data, model=None, tokenizer=None, kind: str = "names", method: str = ZERO_SHOT) -> RunRecord:
    """Zero-shot prompting of the frozen instruct model on the test split, by label scoring, as a chapter's run
    (chapter 03b)."""
    if model is None:
        model, tokenizer = load_causal_lm(profile, padding_side="right")
    names = label_names(data)
    texts = list(data["test"]["text"])
    scores, seconds = prompt_scores(model, tokenizer, texts, make_verbalizer(names, kind), [],
                                    subject_of(profile.single_label_data))
    outcome = {"y_true": np.asarray(data["test"]["label"]), "y_pred": scores.argmax(1), "probs": softmax(scores),
               "trainable_params": 0, "extra": {"test_texts_per_second": len(texts) / seconds, "verbalizer": kind}}
    return runs.record(method, profile, data, outcome)
