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
