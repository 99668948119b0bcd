"""The capstone as a script: the claims ledger, the fair comparison, its data-efficiency study, the news
check, the multi-label study and the budget axis from the results store, with their plots.

Taught in chapter 08. ``python -m tutorial_utils compare --profile cpu --out DIR`` writes the same tables
and plots to a folder.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from ..evaluation import plots
from ..setup.config import Profile
from . import comparison, ledger, studies, study_tables

__all__ = ["plot_tradeoff", "write_report", "run"]


def plot_tradeoff(table: pd.DataFrame, metric: str = "macro-F1", title: str = "", ax=None,
                  low: str | None = None, high: str | None = None):
    """Metric against trainable parameters (log scale), with error bars from the ``low`` and ``high`` columns
    (default: the metric's 95% interval, "<metric> CI low" and "<metric> CI high")."""
    ax = ax or plt.subplots(figsize=(7.5, 4.2))[1]
    low, high = low or f"{metric} CI low", high or f"{metric} CI high"
    shown = table.dropna(subset=["trainable params"])
    shown = shown[shown["trainable params"] > 0]
    for i, (name, row) in enumerate(shown.iterrows()):
        err = [[max(row[metric] - row[low], 0.0)], [max(row[high] - row[metric], 0.0)]]  # a mean of equal values
        # can sit a rounding error outside them
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


def run(profile: Profile, out_dir: str | Path, n_resamples: int = 2000, verbose: bool = True) -> dict[str, pd.DataFrame]:
    """Chapter 08's tables as a script: read every run from the results store, write tables and plots to
    ``out_dir``. Nothing trains here: ``reproduce`` makes the runs the store lacks, and the tables say which.
    """
    matplotlib.use("Agg")  # a script writes files: no window, whatever the machine's default backend
    plots.use_style()
    fair = comparison.study_runs(profile, verbose=verbose)
    news = comparison.study_runs(profile, studies.NEWS, verbose=verbose)
    multi = comparison.study_runs(profile, studies.MULTILABEL, verbose=verbose)
    tables = {"claims": ledger.table(profile, n_resamples=n_resamples),
              "single_label": comparison.seed_table(fair),
              "single_label_paired": comparison.paired_table(fair, n_resamples=n_resamples),
              "efficiency": study_tables.efficiency_table(profile, fair, n_resamples=n_resamples),
              "news": comparison.seed_table(news), "news_paired": comparison.paired_table(news, n_resamples=n_resamples),
              "multi_label": comparison.seed_table(multi),
              "multi_label_paired": comparison.paired_table(multi, n_resamples=n_resamples),
              "budget_axis": study_tables.budget_axis_table(profile)}
    figures = {"validation_curves": plots.plot_validation_curves(comparison.curves(fair)).figure,
               "single_label_paired": plots.plot_paired_differences(tables["single_label_paired"]).figure,
               "efficiency": plots.plot_efficiency(tables["efficiency"]).figure,
               "news_paired": plots.plot_paired_differences(tables["news_paired"]).figure,
               "multi_label_paired": plots.plot_paired_differences(tables["multi_label_paired"], metric="micro-F1").figure}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    plot_tradeoff(tables["multi_label"], metric="micro-F1 mean", low="micro-F1 min", high="micro-F1 max", ax=ax,
                  title="multi-label: test micro-F1 vs trainable parameters (bars: the range over seeds)")
    figures["multi_label"] = fig
    if len(tables["budget_axis"]):
        figures["budget_axis"] = plots.plot_budget_axis(tables["budget_axis"])[0].figure
    write_report(out_dir, tables, figures)
    return tables
