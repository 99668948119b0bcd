"""The seaborn figures the chapters share. Each returns the matplotlib Axes it drew on.

Taught in chapter 00 (label counts) and used throughout.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from datasets import DatasetDict

from .data.common import label_counts


def use_style() -> None:
    """The course's plot style: seaborn's whitegrid, readable sizes, figures sized for the book."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.figsize": (7.0, 3.6), "figure.dpi": 100, "axes.titleweight": "bold"})


def plot_label_counts(data: DatasetDict, title: str = "Examples per label and split", ax=None):
    """A horizontal bar chart of examples per label, one colour per split."""
    rows = [{"label": label, "split": split, "examples": n}
            for split, ds in data.items() for label, n in label_counts(ds).items()]
    ax = ax or plt.subplots(figsize=(7.0, 0.28 * len(rows) / len(data) + 1.2))[1]
    sns.barplot(pd.DataFrame(rows), y="label", x="examples", hue="split", ax=ax)
    ax.set(title=title, ylabel="")
    return ax
