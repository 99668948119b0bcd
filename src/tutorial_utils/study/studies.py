"""The studies of the fair comparison: their names, the methods each runs, the settings it varies, and the
data and view of the profile its runs see (chapter 08; ``experiment`` plans and runs them).

The studies, each under the profile's ``Protocol``:

* **comparison**: every method on the same ``train_examples`` training examples; each learning rate
  (or C) on the grid trains on the first seed (the grid grown past an end that wins, ``searched_grid``), the
  best on validation is chosen, and the chosen value trains on every seed (deterministic methods, which a seed does not change, run once);
* **efficiency**: the data-efficiency study, on nested smaller training sets (the first ``n`` of one
  stratified order), each method at the value the comparison chose, on the first seed;
* **news**: the news-topic check (the paper's AG News experiment): the comparison's protocol, grid and
  seeds on the profile's news task, for the methods in ``NEWS_METHODS``;
* **multi-label**: the same protocol on the profile's multi-label task, for the multi-label methods in
  ``MULTILABEL_METHODS`` (judged by micro-F1; ``multilabel_protocol`` trains them);
* **budget** and **multi-label budget**: the paper's trainable-parameter axis: the embedding head and
  instruction tuning again at each LoRA budget of ``Protocol.budgets`` (the profile's own ``lora`` is the
  comparison's and the multi-label study's), on those studies' data, each budget with its own grid and seeds;
* **pooling**, **verbalizer** and **head init**: the paper's ablations on the comparison's data: the head
  with mean pooling, instruction tuning with code words for labels, the head started from the LM's rows of
  the label names' first tokens (``Profile.head_pooling``, ``verbalizer``, ``head_init``); head init also
  at the data-efficiency study's smaller sizes, every seed (does the LM's prior help with few labels?);
* **distillation**: the paper's distillation recipe: on every seed, the head at the value the comparison chose
  is trained again and its probabilities on the training texts teach an encoder student (the comparison's
  encoder, at the value the comparison chose for it), which predicts the test split (no grid of its own).

A study that varies settings (budget, multi-label budget and the ablations) names each setting it tries a *variant* (``variants``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable

import numpy as np
from datasets import DatasetDict

from .. import methods
from ..data import load_multi_label, load_single_label
from ..data.common import with_train_cut
from ..setup.config import ALL_LINEAR, LoraSettings, Profile

__all__ = ["STUDIES", "TUNED_STUDIES", "BASE_STUDY", "ABLATIONS", "SMALL_SETS_TOO", "COMPARED",
           "EFFICIENCY_METHODS", "NEWS_METHODS", "MULTILABEL_METHODS", "BUDGET_METHODS",
           "MULTILABEL_BUDGET_METHODS", "DISTILLATION_METHODS", "STOCHASTIC_FAMILIES", "lora_tag", "variants", "nested_order",
           "UnknownStudy", "check_study", "study_methods", "study_profile", "news_data", "multilabel_data",
           "study_data", "comparison_data"]

COMPARISON, EFFICIENCY, NEWS, MULTILABEL = "comparison", "efficiency", "news", "multi-label"
BUDGET, MULTILABEL_BUDGET = "budget", "multi-label budget"
POOLING, VERBALIZER, HEAD_INIT, DISTILLATION = "pooling", "verbalizer", "head init", "distillation"
STUDIES = (COMPARISON, EFFICIENCY, NEWS, MULTILABEL, BUDGET, MULTILABEL_BUDGET, POOLING, VERBALIZER, HEAD_INIT,
           DISTILLATION)
# the studies that choose their values on their own grid (the other two take the comparison's)
TUNED_STUDIES = tuple(s for s in STUDIES if s not in {EFFICIENCY, DISTILLATION})
# a study of variants trains on its base study's data, with one profile field changed per variant
BASE_STUDY = {BUDGET: COMPARISON, MULTILABEL_BUDGET: MULTILABEL, POOLING: COMPARISON, VERBALIZER: COMPARISON,
              HEAD_INIT: COMPARISON}
ABLATIONS = {POOLING: ("head_pooling", ("mean",)), VERBALIZER: ("verbalizer", ("codes",)),
             HEAD_INIT: ("head_init", ("label-tokens",))}  # study: (the Profile field it changes, its variants)
SMALL_SETS_TOO = (HEAD_INIT,)  # studies that also train at the data-efficiency study's smaller sizes
COMPARED = (methods.TFIDF, methods.ZERO_SHOT, methods.FROZEN_PROBE, methods.ENCODER, methods.EMBEDDING_HEAD,
            methods.INSTRUCTION_SCORED, methods.INSTRUCTION_GENERATED)  # the order reproduce runs them: cheap first
EFFICIENCY_METHODS = (methods.TFIDF, methods.FROZEN_PROBE, methods.ENCODER, methods.EMBEDDING_HEAD,
                      methods.INSTRUCTION_SCORED)
NEWS_METHODS = (methods.TFIDF, methods.FROZEN_PROBE, methods.ENCODER, methods.EMBEDDING_HEAD,
                methods.INSTRUCTION_SCORED, methods.INSTRUCTION_GENERATED)
MULTILABEL_METHODS = (methods.MULTILABEL_TFIDF, methods.MULTILABEL_PROBE, methods.MULTILABEL_ENCODER,
                      methods.MULTILABEL_HEAD, methods.MULTILABEL_INSTRUCTION)
BUDGET_METHODS = (methods.EMBEDDING_HEAD, methods.INSTRUCTION_SCORED, methods.INSTRUCTION_GENERATED)
MULTILABEL_BUDGET_METHODS = (methods.MULTILABEL_HEAD, methods.MULTILABEL_INSTRUCTION)
DISTILLATION_METHODS = (methods.STUDENT,)
_ABLATION_METHODS = {POOLING: (methods.EMBEDDING_HEAD,), HEAD_INIT: (methods.EMBEDDING_HEAD,),
                    VERBALIZER: (methods.INSTRUCTION_SCORED, methods.INSTRUCTION_GENERATED)}
STOCHASTIC_FAMILIES = {"embedding head", "instruction tuning", "encoder", "distilled"}  # a seed changes the result


def lora_tag(lora: LoraSettings) -> str:
    """A LoRA budget in a few characters, e.g. "r16-all" (every linear layer) or "r8-q-v"."""
    targets = "all" if tuple(lora.target_modules) == ALL_LINEAR else "-".join(
        t.removesuffix("_proj") for t in lora.target_modules)
    return f"r{lora.r}-{targets}"


def variants(profile: Profile, study: str) -> list[str]:
    """The variants a study trains: a budget study's LoRA budgets (``lora_tag``), an ablation's settings (e.g.
    "mean" pooling); [""] for the studies without variants."""
    if study in ABLATIONS:
        return list(ABLATIONS[study][1])
    return [lora_tag(lora) for lora in profile.protocol.budgets] if study in BASE_STUDY else [""]


def nested_order(labels: Iterable[int], seed: int) -> np.ndarray:
    """An order of the examples whose every prefix keeps each class's share (nested stratified subsets)."""
    labels = np.asarray(list(labels))
    rng = np.random.default_rng(seed)
    position = np.empty(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        position[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(position, kind="stable")


class UnknownStudy(ValueError):
    """A study name that is not one of ``STUDIES``."""


def check_study(study: str) -> str:
    """The study name if it is one of ``STUDIES``; an error that lists them otherwise."""
    if study not in STUDIES:
        raise UnknownStudy(f"Unknown study {study!r}. The studies are: {', '.join(STUDIES)}. Fix: use one of these "
                           "(python -m tutorial_utils reproduce --list shows their runs).")
    return study


def study_methods(study: str) -> tuple[str, ...]:
    """The methods a study runs, in the order ``reproduce`` runs them."""
    check_study(study)
    return {COMPARISON: COMPARED, EFFICIENCY: EFFICIENCY_METHODS, NEWS: NEWS_METHODS,
            MULTILABEL: MULTILABEL_METHODS, BUDGET: BUDGET_METHODS, MULTILABEL_BUDGET: MULTILABEL_BUDGET_METHODS,
            DISTILLATION: DISTILLATION_METHODS, **_ABLATION_METHODS}[study]


def study_profile(profile: Profile, study: str, variant: str = "") -> Profile:
    """The profile as a study's runs see it: the news check puts the news task where the single-label task
    was; the multi-label study its task, with the multi-label text length for every method; a budget study
    its base study's view with the budget's LoRA settings (``variant``: its ``lora_tag``); an ablation its
    base study's view with the ablated field set to ``variant``."""
    check_study(study)
    if study in ABLATIONS:
        field, tried = ABLATIONS[study]
        if variant not in tried:
            raise ValueError(f"Unknown variant {variant!r} of the {study} study; it tries {', '.join(tried)}.")
        return dataclasses.replace(study_profile(profile, BASE_STUDY[study]), **{field: variant})
    if study in BASE_STUDY:
        view = study_profile(profile, BASE_STUDY[study])
        budgets = {lora_tag(lora): lora for lora in profile.protocol.budgets}
        if variant not in budgets:
            raise ValueError(f"Unknown LoRA budget {variant!r} for the {study} study; the protocol's budgets are "
                             f"{', '.join(budgets)}.")
        return dataclasses.replace(view, lora=budgets[variant])
    if study == NEWS:
        return dataclasses.replace(profile, single_label_data=profile.news_data, single_label_sizes=profile.news_sizes)
    if study == MULTILABEL:
        ml = profile.multilabel_train
        return dataclasses.replace(profile, single_label_data=profile.multi_label_data,
                                   single_label_sizes=profile.multi_label_sizes, train=ml,
                                   encoder_train=dataclasses.replace(profile.encoder_train, max_length=ml.max_length))
    return profile


def news_data(profile: Profile) -> DatasetDict:
    """The news check's data: its train split cut to the protocol's ``train_examples`` (or all, if fewer)."""
    data = comparison_data(study_profile(profile, NEWS))
    return data[max(data)]


@functools.lru_cache(maxsize=4)
def multilabel_data(profile: Profile) -> DatasetDict:
    """The multi-label study's data: its train split cut to the protocol's ``train_examples`` (or all, if fewer)."""
    return with_train_cut(load_multi_label(profile), profile.protocol.train_examples, profile.seed, multi_label=True)


def study_data(profile: Profile, study: str, train_size: int | None = None) -> DatasetDict:
    """The data one study's runs train on (the comparison's and efficiency study's: by training-set size)."""
    study = BASE_STUDY.get(study, study)
    if study == NEWS:
        return news_data(profile)
    if study == MULTILABEL:
        return multilabel_data(profile)
    data = comparison_data(profile, profile.protocol.efficiency_sizes)
    return data[train_size or max(data)]


@functools.lru_cache(maxsize=4)
def comparison_data(profile: Profile, sizes: tuple[int, ...] = ()) -> dict[int, DatasetDict]:
    """The comparison's data (train cut to ``train_examples``) and nested smaller train sets, by train size.

    Cached per profile: ``plan``, ``records_of`` and the chapter's tables all need it, and loading is the
    slow part of making a plan.
    """
    full = load_single_label(profile)
    order = nested_order(full["train"]["label"], profile.seed)
    top = min(profile.protocol.train_examples or len(order), len(order))
    out = {}
    for n in sorted({top, *(min(s, top) for s in sizes)}):
        out[n] = DatasetDict(train=full["train"].select(sorted(order[:n])), validation=full["validation"],
                             test=full["test"])
    return out

