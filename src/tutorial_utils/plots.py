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


def plot_causal_mask(tokens: list[str], attention_mask: list[int] | None = None, ax=None):
    """Which positions each token may attend to: lower-triangular (causal), pad columns blanked."""
    import numpy as np

    n = len(tokens)
    allowed = np.tril(np.ones((n, n)))
    if attention_mask is not None:
        allowed = allowed * np.asarray(attention_mask)[None, :]
    ax = ax or plt.subplots(figsize=(0.35 * n + 1.5, 0.35 * n + 1))[1]
    sns.heatmap(allowed, xticklabels=tokens, yticklabels=tokens, cbar=False, cmap="Blues", linewidths=0.5,
                linecolor="white", ax=ax)
    ax.set(xlabel="attends to (key position)", ylabel="token (query position)", title="Causal attention mask")
    return ax


def plot_learning_curve(curve: pd.DataFrame, ax=None):
    """Training loss against step, with evaluation loss as points where it was logged."""
    ax = ax or plt.subplots()[1]
    train = curve.dropna(subset=["loss"]) if "loss" in curve else curve.iloc[0:0]
    sns.lineplot(train, x="step", y="loss", marker="o", label="training loss", ax=ax)
    if "eval_loss" in curve:
        evals = curve.dropna(subset=["eval_loss"])
        ax.scatter(evals["step"], evals["eval_loss"], color="C3", zorder=3, s=60, label="validation loss")
    ax.set(title="Learning curve", xlabel="optimizer step", ylabel="cross-entropy")
    ax.legend()
    return ax


def plot_confusion(y_true, y_pred, names: list[str], normalize: bool = True, ax=None):
    """A confusion-matrix heatmap; rows are true labels, normalised to recall per class by default."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=range(len(names)), normalize="true" if normalize else None)
    ax = ax or plt.subplots(figsize=(6.5, 5.2))[1]
    sns.heatmap(matrix, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", xticklabels=names,
                yticklabels=names, cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (rows sum to 1)" if normalize else
           "Confusion matrix")
    return ax
