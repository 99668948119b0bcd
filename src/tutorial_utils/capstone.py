"""The capstone as a script: the fair comparison, its data-efficiency study and the news check from the
results store, and the multi-label table from the chapters' run cache, with their plots.

Taught in chapter 08. ``python -m tutorial_utils compare --profile cpu --out DIR`` writes the same tables
and plots to a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .config import Profile
from .runs import RunResult, load_or_compute


@dataclass(frozen=True)
class Entry:
    """One row of a comparison: a display name, its run-cache key and how to compute it if missing."""

    name: str
    method: str
    compute: Callable[[], RunResult]
    family: str
    train_examples: int | None = None  # labelled examples the method learned from (0: none)


def collect(profile: Profile, entries: list[Entry], verbose: bool = True) -> dict[str, RunResult]:
    """The runs of all entries, from the cache or computed now (each is then cached)."""
    return {e.name: load_or_compute(profile, e.method, e.compute, verbose=verbose) for e in entries}


def multi_label_table(results: dict[str, RunResult], families: dict[str, str] | None = None,
                      n_resamples: int = 1000, seed: int = 0, examples: dict[str, int | None] | None = None) -> pd.DataFrame:
    """Trainable parameters, micro-F1 (with its 95% interval) and macro-F1 of multi-label runs."""
    rows = []
    for name, run in results.items():
        point, low, high = stats.bootstrap_ci(run.y_true, run.y_pred, stats.micro_f1, n_resamples, seed=seed)
        rows.append({"method": name, "family": (families or {}).get(name, ""),
                     "train examples": run.extra.get("train_examples", (examples or {}).get(name, np.nan)),
                     "trainable params": run.extra.get("trainable_params", np.nan), "micro-F1": point,
                     "micro-F1 CI low": low, "micro-F1 CI high": high, "macro-F1": run.metrics.get("macro_f1", np.nan)})
    return pd.DataFrame(rows).set_index("method")


def plot_tradeoff(table: pd.DataFrame, metric: str = "macro-F1", title: str = "", ax=None):
    """Metric against trainable parameters (log scale), with the 95% interval as error bars."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7.5, 4.2))[1]
    shown = table.dropna(subset=["trainable params"])
    shown = shown[shown["trainable params"] > 0]
    for i, (name, row) in enumerate(shown.iterrows()):
        err = [[row[metric] - row[f"{metric} CI low"]], [row[f"{metric} CI high"] - row[metric]]]
        ax.errorbar(row["trainable params"], row[metric], yerr=err, fmt="o", ms=8, capsize=4, color=f"C{i}", label=name)
    ax.set(xscale="log", xlabel="trainable parameters (log scale)", ylabel=metric, title=title or f"{metric} vs trainable parameters")
    ax.legend(fontsize=8, loc="best")
    return ax


def write_report(out_dir: str | Path, tables: dict[str, pd.DataFrame], figures: dict[str, object]) -> list[Path]:
    """Write each table as CSV and markdown and each figure as PNG into ``out_dir``; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv")
        (out / f"{name}.md").write_text(table.round(4).to_markdown() + "\n")
        written += [out / f"{name}.csv", out / f"{name}.md"]
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
        written.append(out / f"{name}.png")
    return written


def multi_label_entries(profile: Profile, data) -> list[Entry]:
    """The multi-label comparison: frozen probe, embedding head (tuned thresholds), instruction tuning."""
    from . import probe
    from .multilabel_runs import MULTILABEL_HEAD, MULTILABEL_INSTRUCTION, cached_multilabel_runs, train_subset

    subset = train_subset(profile, data)
    return [
        Entry("frozen-LLM probe", probe.MULTILABEL_PROBE, lambda: probe.multilabel_probe_run(profile, subset),
              "no fine-tuning", len(subset["train"])),
        Entry("LoRA embedding head", MULTILABEL_HEAD, lambda: cached_multilabel_runs(profile, data, verbose=False)[0],
              "embedding head", len(subset["train"])),
        Entry("instruction tuning (generated)", MULTILABEL_INSTRUCTION,
              lambda: cached_multilabel_runs(profile, data, verbose=False)[1], "instruction tuning"),
    ]


def families(entries: list[Entry]) -> dict[str, str]:
    """Display name -> method family, for the tables."""
    return {e.name: e.family for e in entries}


def examples(entries: list[Entry]) -> dict[str, int | None]:
    """Display name -> labelled training examples, for the tables."""
    return {e.name: e.train_examples for e in entries}


def run(profile: Profile, out_dir: str | Path, n_resamples: int = 2000, verbose: bool = True) -> dict[str, pd.DataFrame]:
    """Chapter 08's tables as a script: collect (or compute) every run, write tables and plots to ``out_dir``.

    The fair comparison, the data-efficiency study and the news check come from the results store
    (computing what it lacks, as ``reproduce`` would); the multi-label table from the chapters' run cache.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import comparison, experiment, plots
    from .data import load_multi_label

    plots.use_style()
    fair = comparison.collect(profile, verbose=verbose)
    news = comparison.collect(profile, experiment.NEWS, verbose=verbose)
    tables = {"single_label": comparison.seed_table(fair),
              "single_label_paired": comparison.paired_table(fair, n_resamples=n_resamples),
              "efficiency": comparison.efficiency_table(profile, fair, n_resamples=n_resamples),
              "news": comparison.seed_table(news), "news_paired": comparison.paired_table(news, n_resamples=n_resamples)}
    entries = multi_label_entries(profile, load_multi_label(profile))
    tables["multi_label"] = multi_label_table(collect(profile, entries, verbose), families(entries),
                                              n_resamples // 2, profile.seed, examples(entries))
    figures = {"validation_curves": plots.plot_validation_curves(comparison.curves(fair)).figure,
               "single_label_paired": plots.plot_paired_differences(tables["single_label_paired"]).figure,
               "efficiency": plots.plot_efficiency(tables["efficiency"]).figure,
               "news_paired": plots.plot_paired_differences(tables["news_paired"]).figure}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    plot_tradeoff(tables["multi_label"], metric="micro-F1", title="multi-label: micro-F1 vs trainable parameters", ax=ax)
    figures["multi_label"] = fig
    write_report(out_dir, tables, figures)
    return tables
