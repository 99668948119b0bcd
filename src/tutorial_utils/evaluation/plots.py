"""The seaborn figures the chapters share. Each returns the matplotlib Axes it drew on.

Taught in chapter 00 (label counts) and used throughout.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from datasets import DatasetDict
from sklearn.metrics import confusion_matrix

from ..data.common import label_counts

__all__ = ["use_style", "plot_label_counts", "plot_causal_mask", "plot_learning_curve", "plot_confusion",
           "plot_reliability", "plot_budget_sweep", "plot_f1_vs_threshold", "plot_cooccurrence",
           "plot_f1_vs_support", "plot_validation_curves", "plot_efficiency", "plot_paired_differences",
           "plot_budget_axis"]


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
    matrix = confusion_matrix(y_true, y_pred, labels=range(len(names)), normalize="true" if normalize else None)
    ax = ax or plt.subplots(figsize=(6.5, 5.2))[1]
    sns.heatmap(matrix, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", xticklabels=names,
                yticklabels=names, cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (rows sum to 1)" if normalize else
           "Confusion matrix")
    return ax


# ---- Chapters 04-05: calibration, trainable budgets, thresholds, multi-label -----------------------------

def plot_reliability(tables: dict[str, pd.DataFrame], ax=None):
    """Reliability diagram: accuracy against mean confidence per bin, one line per method (chapter 04).

    ``tables`` maps a method's name to ``metrics.reliability_table(...)``; a point's size shows how many
    examples its bin holds, and the dashed diagonal is perfect calibration.
    """
    ax = ax or plt.subplots(figsize=(5.2, 4.6))[1]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for i, (name, table) in enumerate(tables.items()):
        ax.plot(table["confidence"], table["accuracy"], color=f"C{i}", lw=1.5, label=name)
        ax.scatter(table["confidence"], table["accuracy"], s=8 + 300 * table["count"] / table["count"].sum(),
                   color=f"C{i}", alpha=0.7, zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (mean in bin)", ylabel="accuracy in bin",
           title="Reliability diagram")
    ax.legend(fontsize="small", loc="upper left")
    return ax


def plot_budget_sweep(table: pd.DataFrame, trained: pd.DataFrame | None = None, band: tuple[float, float] = (10, 30),
                      ax=None):
    """LoRA budget as a multiple of the embedding head's, against rank, per target set (chapter 04).

    ``table`` comes from ``budgets.budget_table``; ``trained`` rows (columns r, "x embedding head",
    macro_f1) are the budgets that were actually trained, marked with their F1. The shaded band is
    the 10-30x the paper reports for its instruction-tuned models.
    """
    ax = ax or plt.subplots(figsize=(7.0, 4.0))[1]
    ax.axhspan(*band, color="C3", alpha=0.12, label=f"paper: {band[0]}-{band[1]}x")
    ax.axhline(1, color="grey", lw=1, ls="--")
    sns.lineplot(table, x="r", y="x embedding head", hue="targets", marker="o", ax=ax)
    if trained is not None:
        ax.scatter(trained["r"], trained["x embedding head"], s=140, facecolors="none", edgecolors="k", zorder=4,
                   label="trained here")
        for _, row in trained.iterrows():
            ax.annotate(f"macro-F1 {row['macro_f1']:.2f}", (row["r"], row["x embedding head"]), xytext=(8, -12),
                        textcoords="offset points", fontsize="small")
    ax.set(xscale="log", yscale="log", xlabel="LoRA rank r", ylabel="trainable params / embedding head's",
           title="Instruction-tuning budgets relative to the embedding head")
    ax.set_xticks(sorted(table["r"].unique()), labels=[str(r) for r in sorted(table["r"].unique())])
    ax.legend(fontsize="small")
    return ax


def plot_f1_vs_threshold(curves: pd.DataFrame, labels: list[str], tuned: dict[str, float] | None = None, ax=None):
    """F1 of each of ``labels`` against its decision threshold, with the tuned thresholds marked (chapter 05).

    ``curves`` comes from ``thresholds.f1_vs_threshold``; ``tuned`` maps a label to its tuned threshold.
    """
    ax = ax or plt.subplots(figsize=(7.0, 4.0))[1]
    shown = curves[curves["label"].isin(labels)]
    sns.lineplot(shown, x="threshold", y="f1", hue="label", hue_order=labels, ax=ax)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    for i, label in enumerate(labels):
        if tuned and label in tuned:
            curve = shown[shown["label"] == label]
            best = curve.iloc[(curve["threshold"] - tuned[label]).abs().argmin()]
            ax.scatter([best["threshold"]], [best["f1"]], color=f"C{i}", s=60, zorder=3, edgecolor="k")
    ax.set(xlabel="decision threshold", ylabel="F1 (validation)", title="F1 against the threshold, per label",
           ylim=(0, 1))
    ax.legend(fontsize="small", ncol=2)
    return ax


def plot_cooccurrence(Y, names: list[str], ax=None):
    """How often label j (column) is present when label i (row) is: P(j | i), diagonal = 1 (chapter 05)."""
    Y = np.asarray(Y, dtype=float)
    counts = Y.T @ Y
    conditional = counts / np.maximum(np.diag(counts)[:, None], 1)
    ax = ax or plt.subplots(figsize=(8.0, 6.8))[1]
    sns.heatmap(pd.DataFrame(conditional, index=names, columns=names), cmap="Blues", vmin=0, vmax=1, square=True,
                cbar_kws={"label": "P(column label | row label)", "shrink": 0.7}, ax=ax)
    ax.set(title="Label co-occurrence (training split)")
    return ax


def plot_f1_vs_support(frames: dict[str, pd.DataFrame], ax=None, annotate: int = 4):
    """Per-label F1 against the label's number of test examples, one colour per method (chapter 05).

    Each frame comes from ``metrics.per_label_f1``; the ``annotate`` rarest labels are named.
    """
    ax = ax or plt.subplots(figsize=(7.0, 4.2))[1]
    for i, (name, frame) in enumerate(frames.items()):
        ax.scatter(frame["support"], frame["f1"], color=f"C{i}", label=name, alpha=0.8)
    first = next(iter(frames.values()))
    for _, row in first.nsmallest(annotate, "support").iterrows():
        ax.annotate(row["label"], (row["support"], row["f1"]), xytext=(4, 4), textcoords="offset points",
                    fontsize="small")
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="test examples with the label (support)", ylabel="F1",
           title="Per-label F1 against label frequency")
    ax.legend(fontsize="small")
    return ax


def plot_validation_curves(curves: pd.DataFrame, ax=None):
    """The validation metric against epoch for each trained method; the kept (best) evaluation ringed (chapter 08)."""
    ax = ax or plt.subplots(figsize=(7.5, 3.8))[1]
    if curves.empty:  # nothing stored yet for this profile: say so on the figure instead of failing
        ax.text(0.5, 0.5, "no stored validation curves for this profile yet\n(python -m tutorial_utils reproduce)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    metric = next(c for c in curves.columns if c.startswith("validation "))  # macro-F1, or micro-F1 multi-label
    sns.lineplot(curves, x="epoch", y=metric, hue="method", marker="o", ax=ax)
    best = curves[curves["best"]]
    ax.scatter(best["epoch"], best[metric], s=160, facecolors="none", edgecolors="black", zorder=4,
               label="kept (best on validation)")
    ax.set(title="Validation curves: each method until validation stops improving, or its epoch cap")
    ax.legend(fontsize=8)
    return ax


def plot_efficiency(table: pd.DataFrame, ax=None):
    """Test macro-F1 (seed mean) against training examples (log scale) per method, with 95% intervals over seeds
    and test items (chapter 08)."""
    ax = ax or plt.subplots(figsize=(7.5, 4.2))[1]
    for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
        rows = rows.sort_values("train examples")
        ax.plot(rows["train examples"], rows["macro-F1"], marker="o", color=f"C{i}", label=method)
        ax.fill_between(rows["train examples"], rows["CI low"], rows["CI high"], color=f"C{i}", alpha=0.15)
    sizes = sorted(table["train examples"].unique())
    ax.set(xscale="log", xlabel="labelled training examples (log scale)", ylabel="test macro-F1",
           title="Data efficiency: the same nested training sets for every method")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_paired_differences(paired: pd.DataFrame, ax=None, metric: str = "macro-F1"):
    """A forest plot: each method's ``metric`` minus the head's, per seed, with its paired 95% interval (chapter 08)."""
    rows = paired.reset_index(drop=True)
    ax = ax or plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.2))[1]
    labels = [f"{m} (seed {s})" for m, s in zip(rows["method"], rows["seed"])]
    y = range(len(rows))[::-1]
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(rows["method"]))}
    for yi, (_, row) in zip(y, rows.iterrows()):
        diff = row["difference (method - head)"]
        ax.errorbar(diff, yi, xerr=[[diff - row["CI low"]], [row["CI high"] - diff]], fmt="o", capsize=3,
                    color=colours[row["method"]])
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.set(xlabel=f"{metric} difference: method minus embedding head (95% paired bootstrap)",
           title="Paired differences against the embedding head")
    return ax


def plot_budget_axis(table: pd.DataFrame, axes=None):
    """The paper's axis: test F1 (seed mean, bars the seed range) against trainable parameters (log scale), one
    panel per task, one line per method, each point a LoRA budget (``study_tables.budget_axis_table``, chapter 08)."""
    tasks = list(dict.fromkeys(table["task"]))
    if axes is None:
        _, axes = plt.subplots(1, max(len(tasks), 1), figsize=(6.5 * max(len(tasks), 1), 4.2), squeeze=False)
        axes = axes[0]
    budgets = table.groupby("LoRA", sort=False)["trainable params"].mean().sort_values()  # one tick per budget
    for ax, task in zip(axes, tasks):
        rows = table[table["task"] == task]
        for i, (method, own) in enumerate(rows.groupby("method", sort=False)):
            own = own.sort_values("trainable params")
            err = [(own["mean"] - own["min"]).clip(lower=0), (own["max"] - own["mean"]).clip(lower=0)]
            ax.errorbar(own["trainable params"], own["mean"], yerr=err, marker="o", capsize=3, color=f"C{i}",
                        label=method)
        ax.set(xscale="log", xlim=(budgets.min() / 1.6, budgets.max() * 1.6),  # the same axis in every panel
               xlabel="trainable parameters (log scale), LoRA budget", ylabel=f"test {rows['metric'].iloc[0]}",
               title=task)
        ax.set_xticks(list(budgets), [f"{name}\n{n / 1e6:.2f}M" for name, n in budgets.items()])
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.legend(fontsize=8, loc="best")
    return axes
