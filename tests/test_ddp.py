"""``train`` under DDP: two CPU processes (gloo) on the tiny profile train as one.

Launched unchanged with ``torchrun`` and with ``accelerate launch``; both ranks train to the same validation
plateau, rank 0 alone writes the run folder, and it matches a single-process run within the tolerance that the
book page "Scaling out" (book/scaling.md) states: bf16 arithmetic on differently padded half-batches.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

TOLERANCE = {"accuracy": 0.03, "macro_f1": 0.03, "probability": 0.01, "agreement": 0.95}
LAUNCHERS = {  # {port}: a free port, so that two test runs on one machine do not meet
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port={port}",
                 "-m", "tutorial_utils"],
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2",
                   "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", "--main_process_port={port}",
                   "-m", "tutorial_utils"],
}
SINGLE = [sys.executable, "-m", "tutorial_utils"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(launcher: list[str], out, runs, method: str = "embedding-head", ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, COURSE_PROFILE="tiny", COURSE_HIDE_PROGRESS="1", COURSE_RUNS=str(runs),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    port = str(free_port())
    launcher = [arg.replace("{port}", port) for arg in launcher]
    done = subprocess.run([*launcher, "train", method, "--profile", "tiny", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode == 0) == ok, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_a_method_that_does_not_split_refuses_a_launcher_before_writing(tmp_path):
    done = train(LAUNCHERS["torchrun"], tmp_path / "out", tmp_path / "runs", method="tfidf", ok=False)
    assert "tfidf trains in one process: TF-IDF has no batches to split" in done.stderr
    assert not (tmp_path / "out").exists()


def read(out) -> tuple[dict, object]:
    from tutorial_utils.storage import store

    return json.loads((out / "metrics.json").read_text()), store.read(out / "record")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    train(SINGLE, root / "out", root / "runs")
    return read(root / "out")


@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_two_processes_train_as_one(name, single, tmp_path):
    done = train(LAUNCHERS[name], tmp_path / "out", tmp_path / "runs")
    metrics, record = read(tmp_path / "out")
    alone_metrics, alone = single

    # both ranks trained: each ran every optimizer step on its half of each global batch of 16, and they stopped
    # at the same plateau as one process does
    dist = metrics["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert (dist["per_device_batch"], dist["examples_per_step"]) == (8, 16)
    assert record.settings["processes"] == 2 and record.extra["distributed"]["world_size"] == 2
    steps = [r["optimizer steps"] for r in dist["ranks"]]
    assert sorted(r["rank"] for r in dist["ranks"]) == [0, 1]
    assert steps == [alone.extra["optimizer_steps"]] * 2 == [record.extra["optimizer_steps"]] * 2 and steps[0] > 0
    assert f"rank 1 of 2: {steps[1]} optimizer steps, 8 examples per step" in done.stderr
    # DDP kept the replicas identical, and the run was written once, by rank 0
    assert dist["max |probability difference| between ranks"] == 0.0
    assert done.stdout.count("wrote model/, record/ and metrics.json") == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".lock") == ["metrics.json", "model", "record"]

    # the same run as on one process, within the tolerance
    for metric in ("accuracy", "macro_f1"):
        assert abs(metrics["test_metrics"][metric] - alone_metrics["test_metrics"][metric]) <= TOLERANCE[metric], metric
    assert np.abs(record.probs - alone.probs).max() <= TOLERANCE["probability"]
    assert (record.y_pred == alone.y_pred).mean() >= TOLERANCE["agreement"]
    ours, theirs = record.validation_curve, alone.validation_curve  # validation macro-F1 at each evaluation
    assert [p["step"] for p in ours] == [p["step"] for p in theirs]
    assert max(abs(a["value"] - b["value"]) for a, b in zip(ours, theirs)) <= TOLERANCE["macro_f1"]
