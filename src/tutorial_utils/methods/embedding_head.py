"""The LoRA embedding head (chapter 02): the profile's causal LM in 4-bit, LoRA adapters, and a linear head on
the last non-pad token's hidden state (or, in the pooling ablations, on the mean of the text's hidden states).
``run`` is the method's one run: chapter 02's demonstration, the protocol's runs (chapter 08, single- and
multi-label), chapter 05's multi-label head and your data's (chapter 09) all call it.
"""

from __future__ import annotations

from datasets import DatasetDict

from ..data.common import label_names
from ..modeling import models
from ..setup.config import Profile, TrainSettings
from ..setup.session import seed_everything
from .classifier import Fitted, Scorer, fit

__all__ = ["load", "run"]


def load(profile: Profile, data: DatasetDict, multi_label: bool = False, pooling: str | None = None) -> tuple:
    """The head ready to train, (model, tokenizer), with the profile's pooling and head start (chapter 08's
    ablations: ``profile.head_pooling`` "last" is transformers' own head on the last non-pad token, "mean" the
    hand-written one of ``heads``). ``pooling``: the hand-written head with this pooling, "last" included (chapter
    02's ablation, where every arm is the same hand-written head)."""
    if pooling is None and profile.head_pooling != "last":  # "last": transformers' own head
        pooling = profile.head_pooling
    return models.load_embedding_head(profile, label_names(data), multi_label=multi_label, pooling=pooling,
                                      label_token_init=profile.head_init == "label-tokens")


def run(profile: Profile, data: DatasetDict, seed: int, lr: float, *, until: str = "plateau",
        multi_label: bool = False, settings: TrainSettings | None = None, pooling: str | None = None,
        scorer: Scorer | None = None, class_weight: str | None = None, chunk: bool = False,
        by_length: bool = False, **trainer_options: object) -> Fitted:
    """Train the embedding head on ``data``'s train split at learning rate ``lr`` from ``seed``, ``until`` a
    validation plateau or for the profile's epochs, and predict the test split (``classifier.fit``).
    ``settings``: batch size and text length (default ``profile.train``); ``multi_label``: one sigmoid per label."""
    seed_everything(seed)  # the head's and LoRA's initialisation follow the seed
    model, tokenizer = load(profile, data, multi_label=multi_label, pooling=pooling)
    return fit(model, tokenizer, data, profile, settings or profile.train, seed, lr, until=until,
               multi_label=multi_label, scorer=scorer, class_weight=class_weight, chunk=chunk, by_length=by_length,
               **trainer_options)
