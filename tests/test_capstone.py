"""The capstone report: the multi-label table with its intervals, and the files the report writes."""

import numpy as np
import pytest

from tutorial_utils import capstone
from tutorial_utils.runs import RunResult


def run(name, y_true, y_pred, params):
    return RunResult(method=name, profile="tiny", seed=0, label_names=["a", "b", "c"], y_true=y_true, y_pred=y_pred,
                     probs=y_pred.astype(float), metrics={"macro_f1": 0.5}, extra={"trainable_params": params})


@pytest.fixture()
def results():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (300, 3))
    good = np.where(rng.random((300, 3)) < 0.9, y, 1 - y)
    bad = np.where(rng.random((300, 3)) < 0.5, y, 1 - y)
    return {"head": run("head", y, good, 1000), "weak": run("weak", y, bad, 10)}


def test_multi_label_table_has_intervals_around_micro_f1(results):
    table = capstone.multi_label_table(results, n_resamples=200)
    assert list(table.index) == ["head", "weak"]
    assert (table["micro-F1 CI low"] <= table["micro-F1"]).all() and (table["micro-F1"] <= table["micro-F1 CI high"]).all()
    assert table.loc["weak", "micro-F1 CI high"] < table.loc["head", "micro-F1 CI low"]


def test_report_writes_tables_and_figures(results, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    table = capstone.multi_label_table(results, n_resamples=50)
    ax = capstone.plot_tradeoff(table, metric="micro-F1")
    written = capstone.write_report(tmp_path, {"t": table}, {"f": ax.figure})
    assert {p.name for p in written} == {"t.csv", "t.md", "f.png"}
    assert "weak" in (tmp_path / "t.md").read_text()
