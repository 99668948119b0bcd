"""Benchmark results as files: JSON records, markdown tables and figures for the page "What it costs".

Used by ``python -m tutorial_utils bench`` (cli.py); the page is book/costs.md.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

__all__ = ["results_path", "load_results", "fmt", "section_markdown", "write_markdown", "write_report"]

_TABLE_COLUMNS = {
    "memory": ["precision", "weights (MiB)", "ratio to bf16", "limit: quantised layers (nominal bits / 16)",
               "limit: quantised layers with scales", "limit: whole model", "bits per quantised weight",
               "peak RSS on load above imports (MiB)", "peak RSS with a first forward (MiB)",
               "GPU peak allocated (MiB)", "load (s)"],
    "params": ["method", "LoRA budget", "trainable", "formula", "trainable %", "ratio to embedding head (first row)"],
    "train": ["method", "weights", "batch x length", "step (s)", "examples/s", "tokens/s",
              "dequantisation share of step", "step time / embedding head 4-bit"],
    "infer": ["method", "batch", "texts/s", "latency per call (ms)", "speed / embedding head (LoRA)"],
    "course": ["what", "profile", "seconds", "result", "measured"],
    "defaults": ["run", "text length", "epochs", "macro-F1", "accuracy", "seconds", "time / plain script",
                 "macro-F1 - plain script", "95% interval (paired bootstrap)"],
}
_TITLES = {"memory": "Memory of the causal LM's weights", "params": "Trainable parameters",
          "train": "Training throughput (one LoRA step)", "infer": "Inference throughput and latency",
          "course": "Course cost: wall time of each chapter and of the test suite",
          "defaults": "Defaults on unseen long texts: the command line against a plain transformers + peft script"}


def results_path(folder: Path, profile: str, device: str) -> Path:
    """``<folder>/<profile>-<device>.json``: one results file per profile and device type."""
    return Path(folder) / f"{profile}-{device}.json"


def load_results(path: Path) -> dict:
    """The results file, or an empty record."""
    return json.loads(path.read_text()) if path.exists() else {"sections": {}}


def fmt(value: object) -> str:
    """A table cell: thousands separators for counts, three significant figures for measurements."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


def section_markdown(name: str, section: dict) -> str:
    """One section as markdown: what and where it was measured, then the table."""
    from .bench import machine_line  # lazy: bench pulls torch (~2 s); the cli loads this module at start

    columns = [c for c in _TABLE_COLUMNS[name] if any(c in row for row in section["rows"])]
    others = section["machine"].get("other programs' share of the CPU")
    meanwhile = f"; other programs used {100 * others:.0f}% of the CPU meanwhile" if others is not None else ""
    when = ("Each row says when it was measured; the latest run" if all("measured" in row for row in section["rows"])
            else "Measured")  # a partial course run replaces its own rows only
    lines = [f"**{_TITLES[name]}.** {when} {section['measured at']} in {section['seconds']:.0f} s on "
             f"{machine_line(section['machine'])}{meanwhile}.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in section["rows"]]
    return "\n".join(lines)


def write_markdown(results: dict, path: Path) -> None:
    """The whole results file as markdown, each section between ``<!-- name -->`` markers (the book includes them)."""
    parts = [f"# Benchmarks: profile `{results['profile']}` on {results['device']}", "",
             f"Written by `python -m tutorial_utils bench` from `{path.with_suffix('.json').name}`; "
             "regenerate it rather than editing it.", ""]
    for name in [s for s in ("memory", "params", "train", "infer", "course", "defaults") if s in results["sections"]]:
        parts += [f"<!-- {name} -->", section_markdown(name, results["sections"][name]), f"<!-- /{name} -->", ""]
    path.with_suffix(".md").write_text("\n".join(parts))


def _plot_section(name: str, section: dict, title: str, path: Path) -> None:
    """The figure the page shows for one section, saved as PNG."""
    import matplotlib  # lazy: matplotlib and pandas cost ~1 s; the cli loads this module at start

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must load after matplotlib.use("Agg")
    import pandas as pd  # lazy: as matplotlib above

    rows = pd.DataFrame(section["rows"])
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.6))
    if name == "memory":
        ax.barh(rows["precision"], rows["ratio to bf16"], color="C0", label="measured: weights / bf16 weights")
        ax.scatter(rows["limit: whole model"], rows["precision"], color="C3", zorder=3, label="limit: whole model")
        ax.scatter(rows["limit: quantised layers with scales"], rows["precision"], color="C2", marker="|", s=300,
                   zorder=3, label="limit: quantised layers with scales")
        ax.set_xlabel("weight memory relative to bf16")
    elif name == "params":
        labels = rows["method"] + " | " + rows["LoRA budget"]
        ax.barh(labels, rows["trainable"], color=["C0" if "embedding" in m else "C1" if "instruction" in m else "C2"
                                                  for m in rows["method"]])
        ax.set(xscale="log", xlabel="trainable parameters (log scale)")
    elif name == "train":
        ax.barh(rows["method"] + " | " + rows["weights"], rows["examples/s"], color="C0")
        ax.set_xlabel(f"training examples per second (batch x length {rows['batch x length'][0]})")
    elif name == "infer":
        wide = rows.pivot_table(index="method", columns="batch", values="texts/s", sort=False)
        wide.plot.barh(ax=ax, logx=True)
        ax.set_xlabel("texts per second (log scale)")
        ax.legend(title="batch size")
    elif name == "defaults":
        ax.barh(rows["run"], rows["macro-F1"], color=["C7" if run.startswith("plain") else "C0" for run in rows["run"]])
        for y, (f1, seconds) in enumerate(zip(rows["macro-F1"], rows["seconds"])):
            ax.text(f1, y, f" {f1:.3f} in {seconds / 60:.1f} min", va="center", fontsize=8)
        ax.set(xlim=(0, 1), xlabel="test macro-F1 (4 eras of State of the Union paragraphs)")
    else:
        ax.barh(rows["what"], rows["seconds"] / 60, color="C0")
        ax.set_xlabel("wall time (minutes)")
    if name == "memory":
        ax.legend(loc="lower right", fontsize=8)
    ax.invert_yaxis()
    fig.suptitle("\n".join(textwrap.fill(line, 110) for line in title.splitlines()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: dict, json_path: Path, images: Path | None) -> None:
    """Write the markdown next to the JSON, and one figure per section into ``images``."""
    write_markdown(results, json_path)
    if images is None:
        return
    from .bench import machine_line  # lazy: bench pulls torch (~2 s); the cli loads this module at start

    images.mkdir(parents=True, exist_ok=True)
    for name, section in results["sections"].items():
        title = f"{_TITLES[name]}: profile {results['profile']}, {results['device']}\n{machine_line(section['machine'])}"
        _plot_section(name, section, title, images / f"costs-{json_path.stem}-{name}.png")
