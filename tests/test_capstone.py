"""The capstone tables: intervals, paired comparisons with the reference, files written by the report."""

import numpy as np
import pytest

from tutorial_utils import capstone
from tutorial_utils.runs import RunResult


def run(name, y_true, y_pred, params):
    return RunResult(method=name, profile="tiny", seed=0, label_names=["a", "b", "c"], y_true=y_true, y_pred=y_pred,
                     probs=np.eye(3)[y_pred], metrics={"accuracy": float(np.mean(y_true == y_pred))},
                     extra={"trainable_params": params})


@pytest.fixture()
def results():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.where(rng.random(300) < 0.9, y, rng.integers(0, 3, 300))
    bad = np.where(rng.random(300) < 0.5, y, rng.integers(0, 3, 300))
    return {"head": run("head", y, good, 1000), "weak": run("weak", y, bad, 10), "same": run("same", y, good.copy(), 5)}


def test_single_label_table_compares_with_the_reference(results):
    table = capstone.single_label_table(results, "head", n_resamples=300)
    assert list(table.index) == ["head", "weak", "same"]
    assert (table["macro-F1 CI low"] <= table["macro-F1"]).all() and (table["macro-F1"] <= table["macro-F1 CI high"]).all()
    assert np.isnan(table.loc["head", "McNemar p"])
    assert table.loc["weak", "diff CI high"] < 0 and table.loc["weak", "McNemar p"] < 0.001
    assert table.loc["same", "vs head: diff"] == 0 and table.loc["same", "McNemar p"] == 1.0


def test_runs_on_other_examples_are_refused(results):
    results["other"] = run("other", results["head"].y_true[::-1].copy(), results["head"].y_pred, 1)
    with pytest.raises(ValueError, match="other test examples"):
        capstone.single_label_table(results, "head", n_resamples=50)


def test_report_writes_tables_and_figures(results, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    table = capstone.single_label_table(results, "head", n_resamples=50)
    ax = capstone.plot_tradeoff(table)
    written = capstone.write_report(tmp_path, {"t": table}, {"f": ax.figure})
    assert {p.name for p in written} == {"t.csv", "t.md", "f.png"}
    assert "weak" in (tmp_path / "t.md").read_text()
