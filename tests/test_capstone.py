"""The capstone report: the trade-off plot's error bars, and the files the report writes."""

import pandas as pd

from tutorial_utils.study import capstone


def test_report_writes_tables_and_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    table = pd.DataFrame({"trainable params": [1000, 10, 0], "micro-F1 mean": [0.8, 0.5, 0.4],
                          "micro-F1 min": [0.75, 0.5, 0.4], "micro-F1 max": [0.85, 0.5, 0.4]},
                         index=pd.Index(["head", "weak", "untrained"], name="method"))
    ax = capstone.plot_tradeoff(table, metric="micro-F1 mean", low="micro-F1 min", high="micro-F1 max")
    bars = [c for c in ax.containers]
    assert len(bars) == 2  # a method that trains nothing has no place on a log axis of trainable parameters
    lows, highs = bars[0].lines[1][0].get_ydata(), bars[0].lines[1][1].get_ydata()
    assert lows[0] == 0.75 and highs[0] == 0.85
    written = capstone.write_report(tmp_path, {"t": table}, {"f": ax.figure})
    assert {p.name for p in written} == {"t.csv", "t.md", "f.png"}
    assert "weak" in (tmp_path / "t.md").read_text()


def test_budget_axis_names_each_budget_once_on_one_axis_for_every_task():
    """Chapter 08's budget figure: one tick per LoRA budget (its name and size), the same x range in each panel,
    so a task with one budget stored so far is drawn on the scale of the others."""
    import matplotlib

    matplotlib.use("Agg")
    from tutorial_utils.evaluation import plots

    rows = [("single", "head", "r8-q-v", 465_408, 0.68), ("single", "instruction", "r8-q-v", 460_800, 0.66),
            ("single", "instruction", "r16-all", 4_884_480, 0.74), ("multi", "head", "r8-q-v", 472_896, 0.61)]
    table = pd.DataFrame([{"task": t, "method": m, "LoRA": lora, "trainable params": n, "mean": f, "min": f - 0.01,
                           "max": f + 0.01, "metric": "F1"} for t, m, lora, n, f in rows])
    axes = plots.plot_budget_axis(table)
    assert [a.get_title() for a in axes] == ["single", "multi"]
    for ax in axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["r8-q-v\n0.47M", "r16-all\n4.88M"]
        assert ax.get_xlim() == axes[0].get_xlim() and not ax.xaxis.get_minor_ticks()
