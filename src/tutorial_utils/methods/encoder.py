"""The encoder baseline (chapter 03): a BERT-class encoder (MiniLM) with a fresh head, every weight trained.
``run`` is the method's one run: chapter 03's and chapter 07's demonstrations, the protocol's runs (chapter 08,
single- and multi-label) and your data's (chapter 09) all call it.
"""

from __future__ import annotations

from datasets import DatasetDict

from ..data import label_names, multi_hot
from ..modeling import models
from ..modeling.heads import tag_encoder
from ..setup.config import Profile, TrainSettings
from ..setup.session import seed_everything
from .classifier import Fitted, Scorer, fit

__all__ = ["load", "run"]


def load(profile: Profile, data: DatasetDict, multi_label: bool = False) -> tuple:
    """The encoder ready to train, (model, tokenizer); multi-label, it pools by the mean and starts each tag's
    bias at the tag's training frequency (``heads.tag_encoder``: without it the encoder collapsed to the priors)."""
    model, tokenizer = models.load_encoder_classifier(profile, label_names(data), multi_label=multi_label)
    return (tag_encoder(model, multi_hot(data["train"])) if multi_label else model), tokenizer


def run(profile: Profile, data: DatasetDict, seed: int, lr: float, *, until: str = "plateau",
        multi_label: bool = False, settings: TrainSettings | None = None, scorer: Scorer | None = None,
        class_weight: str | None = None, chunk: bool = False, by_length: bool = False,
        **trainer_options: object) -> Fitted:
    """Fine-tune the encoder on ``data``'s train split at learning rate ``lr`` from ``seed``, ``until`` a validation
    plateau or for the profile's epochs, and predict the test split (``classifier.fit``).
    ``settings``: default ``profile.encoder_train``; ``multi_label``: one sigmoid per label."""
    seed_everything(seed)
    model, tokenizer = load(profile, data, multi_label=multi_label)
    return fit(model, tokenizer, data, profile, settings or profile.encoder_train, seed, lr, until=until,
               multi_label=multi_label, scorer=scorer, class_weight=class_weight, chunk=chunk, by_length=by_length,
               **trainer_options)
