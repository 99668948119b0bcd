"""Datasets of the course: each loader returns a DatasetDict with train, validation and test splits (chapter 00); your
own data through ``own`` (chapter 09). Imports only ``setup``."""

from __future__ import annotations

from datasets import DatasetDict

from .common import (DataError, check_texts, encode_labels, label_counts, label_names, multi_hot, sample_examples,
                     with_train_cut)
from .hub import load_hub_single_label
from .multilabel import load_debian_tags
from .news import BBC_TOPICS, load_bbc_news
from .own import from_csv, from_dataset, from_pandas
from .patents import IPC_SECTIONS, SECTION_NAMES, load_ipc_sections

_OFFLINE_SINGLE_LABEL = {"ipc-sections": load_ipc_sections}
_OFFLINE_MULTI_LABEL = {"debian-tags": load_debian_tags}
_OFFLINE_NEWS = {"bbc-news": load_bbc_news}

__all__ = ["BBC_TOPICS", "DataError", "IPC_SECTIONS", "SECTION_NAMES", "check_texts", "encode_labels", "from_csv",
           "from_dataset", "from_pandas", "label_counts",
           "label_names", "load_bbc_news", "load_debian_tags", "load_ipc_sections", "load_multi_label", "load_news",
           "load_single_label",
           "multi_hot", "sample_examples", "with_train_cut"]


def _sizes(sizes: object) -> dict[str, int | None]:
    return {"train": sizes.train, "validation": sizes.validation, "test": sizes.test}


def _single_label(name: str, sizes: object, seed: int) -> DatasetDict:
    """A single-label task by name: an offline one (patents or news), else from the hub."""
    offline = {**_OFFLINE_SINGLE_LABEL, **_OFFLINE_NEWS}
    if name in offline:
        return offline[name](_sizes(sizes), seed=seed)
    return load_hub_single_label(name, _sizes(sizes), seed=seed)


def load_single_label(profile: object) -> DatasetDict:
    """The profile's single-label task (offline IPC sections, or a hub patent dataset on GPU profiles)."""
    return _single_label(profile.single_label_data, profile.single_label_sizes, profile.seed)


def load_multi_label(profile: object) -> DatasetDict:
    """The profile's multi-label task (the shipped Debian tags snapshot)."""
    name = profile.multi_label_data
    if name not in _OFFLINE_MULTI_LABEL:
        raise DataError(f"Unknown multi-label dataset {name!r}. Known: {', '.join(_OFFLINE_MULTI_LABEL)}.")
    return _OFFLINE_MULTI_LABEL[name](_sizes(profile.multi_label_sizes), seed=profile.seed)


def load_news(profile: object) -> DatasetDict:
    """The profile's news-topic task (offline BBC News, or AG News from the hub on GPU profiles)."""
    return _single_label(profile.news_data, profile.news_sizes, profile.seed)
