"""The capstone comparison: every method from the run cache in one table like the paper's, with
bootstrap confidence intervals and McNemar p-values against the embedding head; also as a script.

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
from .methods import INSTRUCTION_BUDGET
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


def single_label_table(results: dict[str, RunResult], reference: str, families: dict[str, str] | None = None,
                       n_resamples: int = 2000, seed: int = 0, examples: dict[str, int | None] | None = None) -> pd.DataFrame:
    """Trainable parameters, accuracy, macro-F1 with its 95% interval, and the paired comparison with ``reference``."""
    ref = results[reference]
    rows = []
    for name, run in results.items():
        if not np.array_equal(run.y_true, ref.y_true):
            raise ValueError(f"{name} was scored on other test examples than {reference}; compare runs on one split.")
        point, low, high = stats.bootstrap_ci(run.y_true, run.y_pred, stats.macro_f1, n_resamples, seed=seed)
        row = {"method": name, "family": (families or {}).get(name, ""),
               "train examples": run.extra.get("train_examples", (examples or {}).get(name, np.nan)),
               "trainable params": run.extra.get("trainable_params", np.nan),
               "accuracy": run.metrics["accuracy"], "macro-F1": point, "macro-F1 CI low": low, "macro-F1 CI high": high}
        if name != reference:
            boot = stats.paired_bootstrap(run.y_true, run.y_pred, ref.y_pred, stats.macro_f1, n_resamples, seed=seed)
            row.update({"vs head: diff": boot.difference, "diff CI low": boot.ci_low, "diff CI high": boot.ci_high,
                        "McNemar p": stats.mcnemar_test(run.y_true, run.y_pred, ref.y_pred).pvalue})
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


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


def instruction_budget_entry(profile: Profile, data, lora) -> Entry:
    """Instruction tuning scored over the labels at another LoRA budget (e.g. all linear layers, a higher rank)."""
    from .instruct_train import lora_label, scored_result, tune

    label, method = lora_label(lora), INSTRUCTION_BUDGET

    def compute() -> RunResult:
        tuned = tune(profile, data, lora=lora, run_name=method)
        return scored_result(tuned, profile, data, method=method)

    return Entry(f"instruction tuning, scored ({label})", method, compute, "instruction tuning")


def single_label_entries(profile: Profile, data) -> list[Entry]:
    """The single-label comparison: floor, prompting, frozen probe, embedding head, instruction tuning, encoder."""
    from . import probe, prompting, recipes
    from .instruct_train import INSTRUCTION_SCORED, cached_instruction_runs, lora_label

    n = len(data["train"])  # instruction runs record their own (smaller) training set in extra["train_examples"]
    entries = [
        Entry("TF-IDF + logistic regression", recipes.TFIDF, lambda: recipes.tfidf_run(profile, data), "floor", n),
        Entry("zero-shot prompt (scored)", prompting.ZERO_SHOT, lambda: prompting.zero_shot_run(profile, data),
              "no fine-tuning", 0),
        Entry("frozen-LLM probe", probe.FROZEN_PROBE, lambda: probe.probe_run(profile, data), "no fine-tuning", n),
        Entry("LoRA embedding head", recipes.EMBEDDING_HEAD, lambda: recipes.embedding_head_run(profile, data),
              "embedding head", n),
        Entry(f"instruction tuning, scored ({lora_label(profile.lora)})", INSTRUCTION_SCORED,
              lambda: cached_instruction_runs(profile, data, verbose=False)[0], "instruction tuning"),
    ]
    if profile.instruct_budgets:
        entries.append(instruction_budget_entry(profile, data, profile.instruct_budgets[-1]))
    entries.append(Entry("encoder, full fine-tune", recipes.ENCODER, lambda: recipes.encoder_run(profile, data), "encoder", n))
    return entries


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


def news_entries(profile: Profile, data) -> list[Entry]:
    """The news-topic check: the floor, the embedding head and the encoder on the profile's news data."""
    from . import recipes

    n = len(data["train"])
    return [
        Entry("TF-IDF + logistic regression", "news-" + recipes.TFIDF,
              lambda: recipes.tfidf_run(profile, data, "news-" + recipes.TFIDF), "floor", n),
        Entry("LoRA embedding head", "news-" + recipes.EMBEDDING_HEAD,
              lambda: recipes.embedding_head_run(profile, data, "news-" + recipes.EMBEDDING_HEAD), "embedding head", n),
        Entry("encoder, full fine-tune", "news-" + recipes.ENCODER,
              lambda: recipes.encoder_run(profile, data, "news-" + recipes.ENCODER), "encoder", n),
    ]


def families(entries: list[Entry]) -> dict[str, str]:
    """Display name -> method family, for the tables."""
    return {e.name: e.family for e in entries}


def examples(entries: list[Entry]) -> dict[str, int | None]:
    """Display name -> labelled training examples, for the tables."""
    return {e.name: e.train_examples for e in entries}


def run(profile: Profile, out_dir: str | Path, n_resamples: int = 2000, verbose: bool = True) -> dict[str, pd.DataFrame]:
    """The whole comparison as a script: collect (or compute) every run, write tables and plots to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import load_multi_label, load_news, load_single_label
    from .plots import use_style

    use_style()
    tables, figures = {}, {}
    for name, loader, make_entries in [("single_label", load_single_label, single_label_entries),
                                       ("news", load_news, news_entries)]:
        entries = make_entries(profile, loader(profile))
        results = collect(profile, entries, verbose)
        tables[name] = single_label_table(results, "LoRA embedding head", families(entries), n_resamples, profile.seed,
                                          examples(entries))
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        plot_tradeoff(tables[name], title=f"{name.replace('_', '-')}: macro-F1 vs trainable parameters", ax=ax)
        figures[name] = fig
    entries = multi_label_entries(profile, load_multi_label(profile))
    tables["multi_label"] = multi_label_table(collect(profile, entries, verbose), families(entries),
                                              n_resamples // 2, profile.seed, examples(entries))
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    plot_tradeoff(tables["multi_label"], metric="micro-F1", title="multi-label: micro-F1 vs trainable parameters", ax=ax)
    figures["multi_label"] = fig
    write_report(out_dir, tables, figures)
    return tables
