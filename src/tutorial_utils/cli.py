"""The course as commands: ``python -m tutorial_utils train ...`` and ``python -m tutorial_utils bench ...``.

``compare`` runs the capstone comparison of chapter 08 and writes its tables and plots to a folder.
``train`` is the capstone training script: one method trained and tested on a profile, its metrics and test
predictions written once (by rank 0) into ``--out``. It runs unchanged on one process, under
``torchrun`` and under ``accelerate launch`` (book page "Scaling out", book/scaling.md). ``bench``
measures what the course costs and writes ``benchmarks/results/<profile>-<device>.json`` and ``.md``
plus figures for the page "What it costs" (book/costs.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

from .bench_report import load_results, results_path, section_markdown, write_report
from .runs import jsonable

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("embedding-head", "encoder", "tfidf")
BENCH_STEPS = ("memory", "params", "train", "infer")


def repo_root() -> Path:
    """The checkout the package was installed from (``pip install -e .``), else the working directory."""
    return ROOT if (ROOT / "_toc.yml").exists() else Path.cwd()


# ---- train: the capstone script ---------------------------------------------------------------------

def _with_batch(profile, method: str, per_device: int | None, world: int):
    """The profile with a per-device batch that keeps the profile's batch as the global batch across processes."""
    field = "encoder_train" if method == "encoder" else "train"
    settings = getattr(profile, field)
    size = per_device or settings.batch_size // world
    if not per_device and settings.batch_size % world:
        raise SystemExit(f"The profile's batch size {settings.batch_size} does not split over {world} processes. "
                         "Fix: pass --per-device-batch N (the global batch is then N x processes).")
    return dataclasses.replace(profile, **{field: dataclasses.replace(settings, batch_size=size)}), size


def positive(kind: type, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above 0 (or at least 0), else a usage error that says so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n' if kind is int else ''} {kind.__name__}") from None
        if not (value >= 0 if zero else value > 0):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero else 'above 0'}, got {text}")
        return value
    return parse


def check_out(out: Path, overwrite: bool) -> Path:
    """``--out`` as a writable folder for a new run, checked before any model loads (or SystemExit naming the fix)."""
    from .runs import runs_dir

    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file. Fix: pass a folder, e.g. --out runs/my-run.")
    if runs_dir().resolve() in (out, *out.parents):
        raise SystemExit(f"--out {out} is inside the chapters' run cache ({runs_dir()}), whose runs must stay as the "
                         "chapters wrote them. Fix: pass a folder outside it.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SystemExit(f"--out {out} already holds files ({', '.join(sorted(p.name for p in out.iterdir())[:4])}). "
                         "Fix: pass a new folder, or --overwrite to replace that run.")
    if overwrite:  # nothing of the previous run may stay beside the new one
        shutil.rmtree(out / "model", ignore_errors=True)
        for name in ("metrics.json", "predictions.csv"):
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as error:
        raise SystemExit(f"--out {out} is not writable ({error.strerror}). Fix: pass a folder you can write to.") from None
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train and test one method; rank 0 writes metrics.json and predictions.csv into --out."""
    import numpy as np
    import pandas as pd
    import torch
    from accelerate import PartialState

    from . import assets, recipes, session
    from .config import get_profile
    from .data import load_single_label

    session.quiet()
    cuda = torch.cuda.is_available()
    # join the process group first (a no-op on one process), so that rank 0 can prepare files before the others read them
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # by torchrun or accelerate launch
    state = PartialState(cpu=not cuda, **({"backend": "gloo"} if launched and not cuda else {}))
    world, rank = state.num_processes, state.process_index
    profile = get_profile(args.profile)
    out = check_out(Path(args.out), args.overwrite) if state.is_main_process else Path(args.out)
    if args.epochs:
        for field in ("train", "encoder_train"):
            profile = dataclasses.replace(profile, **{field: dataclasses.replace(getattr(profile, field), epochs=args.epochs)})
    profile, per_device = _with_batch(profile, args.method, args.per_device_batch, world)
    with state.main_process_first():
        assets.model_path(profile.encoder if args.method == "encoder" else profile.causal_lm)
        data = load_single_label(profile)
    run = {"embedding-head": recipes.embedding_head_run, "encoder": recipes.encoder_run, "tfidf": recipes.tfidf_run}
    result = run[args.method](profile, data)
    curve = result.extra.get("learning_curve", {})
    mine = {"rank": rank, "optimizer steps": int(max(curve.get("step", [0]) or [0])),
            "train seconds": result.extra.get("train_seconds"), "probs": result.probs}
    everyone = [mine]
    if world > 1:
        everyone = [None] * world
        torch.distributed.all_gather_object(everyone, mine)
    print(f"rank {rank} of {world}: {mine['optimizer steps']} optimizer steps, {per_device} examples per step "
          f"on this rank, {mine['train seconds'] or 0:.1f} s", file=sys.stderr, flush=True)
    if state.is_main_process:
        if result.model is not None:  # the trained weights, beside the metrics of the same training
            result.model.save_pretrained(out / "model")
        ranks = [{k: v for k, v in r.items() if k != "probs"} for r in everyone]
        spread = max(float(np.abs(r["probs"] - result.probs).max()) for r in everyone)
        record = {"method": result.method, "profile": result.profile, "seed": result.seed, "metrics": result.metrics,
                  "label_names": result.label_names, "extra": result.extra,
                  "command": "python -m tutorial_utils " + " ".join(sys.argv[1:]),
                  "distributed": {"world_size": world, "backend": str(state.backend), "per_device_batch": per_device,
                                  "global_batch": per_device * world, "ranks": ranks,
                                  "max |probability difference| between ranks": spread}}
        (out / "metrics.json").write_text(json.dumps(record, indent=1, default=jsonable))
        table = pd.DataFrame(result.probs, columns=[f"p({n})" for n in result.label_names])
        table.insert(0, "predicted", [result.label_names[i] for i in result.y_pred])
        table.insert(0, "true", [result.label_names[i] for i in result.y_true])
        table.to_csv(out / "predictions.csv", index_label="test example")
        wrote = "metrics.json, predictions.csv" + (" and model/" if result.model is not None else "")
        print(f"rank 0 wrote {wrote} to {out}: " + result.summary(), flush=True)
    state.wait_for_everyone()
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def measure(step: str, profile, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Rows and settings of one benchmark section."""
    from . import bench

    if step == "memory":
        from .assets import model_path

        model_path(profile.causal_lm)  # convert once, outside the measured processes
        rows = [_memory_in_fresh_process(profile.name, p) for p in bench.PRECISIONS]
        return bench.memory_ratios(rows), {"model": profile.causal_lm, "precisions": list(bench.PRECISIONS)}
    if step == "params":
        return bench.param_rows(profile), {"model": profile.causal_lm, "encoder": profile.encoder}
    if step == "train":
        return bench.train_rows(profile, steps=args.steps), {"model": profile.causal_lm, "timed steps": args.steps,
                                                            "LoRA": dataclasses.asdict(profile.lora)}
    if step == "infer":
        rows = bench.infer_rows(profile, single=args.single, batched=args.batched)
        return rows, {"model": profile.causal_lm, "encoder": profile.encoder, "texts at batch 1": args.single,
                      "texts at batch 32": args.batched}
    if step == "course":
        chapters = args.chapters if args.run_chapters else []
        return course_rows(profile.name, chapters, args.tests), {"run cache": "empty (a cold run)"}
    raise ValueError(step)


def _memory_in_fresh_process(profile: str, precision: str) -> dict:
    """Run ``bench memory-one`` in a new Python process, so that its peak memory is this load's alone."""
    done = subprocess.run([sys.executable, "-m", "tutorial_utils", "bench", "memory-one", "--profile", profile,
                           "--precision", precision], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"measuring {precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def course_rows(profile: str, chapters: list[str] | None, tests: bool) -> list[dict]:
    """Wall time of each chapter notebook executed top to bottom with an empty run cache, and of the test suite.

    ``chapters``: None for all, else the file-name prefixes to run ([] for none).
    """
    import nbformat
    from nbclient import NotebookClient

    rows = []
    paths = sorted((repo_root() / "chapters").glob("*.ipynb"))
    paths = [p for p in paths if chapters is None or any(p.stem.startswith(c) for c in chapters)]
    with tempfile.TemporaryDirectory() as runs:
        os.environ.update(COURSE_PROFILE=profile, COURSE_RUNS=runs, COURSE_HIDE_PROGRESS="1")
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            client = NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            start = time.perf_counter()
            client.execute()
            rows.append({"what": f"chapter {path.stem}", "profile": profile, "seconds": time.perf_counter() - start,
                         "result": "ran top to bottom"})
    if tests:
        env = dict(os.environ, COURSE_PROFILE="tiny")
        env.pop("COURSE_RUNS", None)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=repo_root(), env=env,
                              capture_output=True, text=True, check=False)
        summary = (done.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
        rows.append({"what": "test suite (pytest, with every chapter under nbval)", "profile": "tiny",
                     "seconds": time.perf_counter() - start, "result": summary})
    return rows


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Course rows: the new ones replace the old ones of the same name; chapters in order, the test suite last."""
    merged = {row["what"]: row for row in old} | {row["what"]: row for row in new}
    return sorted(merged.values(), key=lambda row: (not row["what"].startswith("chapter"), row["what"]))


def _busy_seconds() -> float | None:
    """CPU seconds that all programs have used since boot (/proc/stat; None off Linux)."""
    path = Path("/proc/stat")
    if not path.exists():
        return None
    ticks = [int(x) for x in path.read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def cmd_bench(args: argparse.Namespace) -> int:
    """Run benchmark sections, merge them into the results file, rewrite its markdown and figures."""
    import torch

    from . import bench, session
    from .config import get_profile

    session.quiet(hide_progress=True)
    profile = get_profile(args.profile)
    if args.step == "memory-one":
        print(json.dumps(bench.memory_one(profile, args.precision)))
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = results_path(Path(args.results or repo_root() / "benchmarks" / "results"), profile.name, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = load_results(path)
    results.update(profile=profile.name, device=device)
    steps = {"all": BENCH_STEPS, "report": ()}.get(args.step, (args.step,))
    for step in steps:
        print(f"bench {step} ({profile.name} profile, {device}) ...", file=sys.stderr, flush=True)
        load_before, busy, own, start = os.getloadavg(), _busy_seconds(), sum(os.times()[:4]), time.perf_counter()
        rows, settings = measure(step, profile, args)
        seconds, info = time.perf_counter() - start, bench.machine()
        info["load average before (1, 5, 15 min)"] = [round(x, 2) for x in load_before]
        if busy is not None:  # CPU time all programs used meanwhile, less this one's (and its children's)
            others = _busy_seconds() - busy - (sum(os.times()[:4]) - own)
            info["other programs' share of the CPU"] = max(others, 0.0) / (seconds * (os.cpu_count() or 1))
        partial = args.chapters is not None or not args.tests or not args.run_chapters
        if step == "course" and partial:  # a partial run updates its own rows
            rows = merge_rows(results["sections"].get("course", {}).get("rows", []), rows)
        results["sections"][step] = {"rows": rows, "settings": settings, "machine": info,
                                     "measured at": time.strftime("%Y-%m-%d %H:%M"), "seconds": seconds}
        path.write_text(json.dumps(results, indent=1, default=jsonable))
        print(section_markdown(step, results["sections"][step]) + "\n", flush=True)
    images = None if args.no_figures else Path(args.images or repo_root() / "book" / "images")
    write_report(results, path, images)
    print(f"wrote {path} and {path.with_suffix('.md').name}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """The capstone comparison (chapter 08) as a script: tables and plots into ``--out``."""
    from . import capstone, session

    profile = session.start(args.profile)
    tables = capstone.run(profile, args.out, n_resamples=args.resamples)
    for name, table in tables.items():
        print(f"\n## {name}\n{table.round(3).to_markdown()}")
    print(f"\nwrote the tables and plots to {args.out}", file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run the fair comparison into the results store (resumable; each run written as it finishes)."""
    from . import experiment, methods, session, store

    session.quiet(hide_progress=False)
    profile = session.start(args.profile, show=False)
    for name in args.only or []:
        if not any(fnmatch(m, name) for m in methods.METHODS):
            raise SystemExit(str(methods.UnknownMethod(f"--only {name!r} matches no method. The registry holds: "
                                                       f"{', '.join(methods.METHODS)}.")))
    if args.list:
        for s in experiment.plan(profile):
            state = "stored " if experiment.lookup(profile, s) else "missing"
            print(f"{state}  {s.describe()}  [{s.key}]")
        print(f"{experiment.expected_runs(profile)} runs in the whole plan (later seeds appear once their grid is "
              f"stored); results in {store.root() / profile.name}")
        return 0
    start = time.perf_counter()
    if args.prune:  # first, so that a stale run is never mistaken for a finished one (--max-runs 0: prune only)
        removed = experiment.prune(profile)
        print(f"removed {len(removed)} stale or unreadable run folders")
    made = experiment.reproduce(profile, args.only, args.recompute or store.recompute_requested(),
                                command="python -m tutorial_utils " + " ".join(sys.argv[1:]), max_runs=args.max_runs)
    problems = experiment.audit(profile)
    print(f"{len(made)} runs made in {time.perf_counter() - start:.0f} s; store {store.size_bytes(profile.name) / 1e6:.1f} MB "
          f"at {store.root() / profile.name}")
    for problem in problems:
        print("problem: " + problem)
    return 1 if problems else 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m tutorial_utils``."""
    top = argparse.ArgumentParser(prog="python -m tutorial_utils", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train and test one method; rank 0 writes the results (capstone)")
    train.add_argument("method", choices=METHODS)
    train.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    train.add_argument("--out", required=True, help="folder for metrics.json, predictions.csv and model/ (new or empty)")
    train.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    train.add_argument("--epochs", type=positive(float), help="override the profile's epochs (a number > 0)")
    train.add_argument("--per-device-batch", type=positive(int),
                       help="batch per process (default: the profile's batch divided by the number of processes)")
    train.set_defaults(func=cmd_train)
    bench = commands.add_parser("bench", help="measure what the course costs; write benchmarks/results")
    bench.add_argument("step", choices=[*BENCH_STEPS, "course", "all", "report", "memory-one"],
                       help="all = memory, params, train, infer; course runs every chapter and the tests; "
                            "report rewrites the markdown and figures from the JSON")
    bench.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    bench.add_argument("--results", help="results folder (default: benchmarks/results in the checkout)")
    bench.add_argument("--images", help="figures folder (default: book/images in the checkout)")
    bench.add_argument("--no-figures", action="store_true", help="write JSON and markdown only")
    bench.add_argument("--steps", type=positive(int), default=3, help="timed training steps per configuration (median)")
    bench.add_argument("--single", type=positive(int), default=16, help="texts timed one by one (batch 1)")
    bench.add_argument("--batched", type=positive(int), default=64, help="texts timed in batches of 32")
    bench.add_argument("--chapters", nargs="*", help="course: only chapters whose file name starts so (e.g. 00 02)")
    bench.add_argument("--no-tests", dest="tests", action="store_false", help="course: skip the test suite")
    bench.add_argument("--no-chapters", dest="run_chapters", action="store_false", help="course: only the test suite")
    bench.add_argument("--precision", default="nf4-dq", help=argparse.SUPPRESS)
    bench.set_defaults(func=cmd_bench)
    compare = commands.add_parser("compare", help="the capstone comparison (chapter 08): tables and plots to --out")
    compare.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    compare.add_argument("--out", required=True, help="folder for the tables (CSV, markdown) and plots (PNG)")
    compare.add_argument("--resamples", type=positive(int), default=2000, help="bootstrap resamples per interval")
    compare.set_defaults(func=cmd_compare)
    reproduce = commands.add_parser("reproduce", help="the fair comparison into the results store (resumable)")
    reproduce.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    reproduce.add_argument("--only", nargs="+", metavar="METHOD",
                           help="run only these methods (names or patterns such as 'instruction-*')")
    reproduce.add_argument("--recompute", action="store_true", help="run the selected runs again even if stored")
    reproduce.add_argument("--list", action="store_true", help="show the plan and what is stored; run nothing")
    reproduce.add_argument("--max-runs", type=positive(int, zero=True), help="stop after this many trainings (the next call resumes)")
    reproduce.add_argument("--prune", action="store_true",
                           help="first delete stored runs that the current code and data no longer use (with --max-runs 0: only that)")
    reproduce.set_defaults(func=cmd_reproduce)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tutorial_utils``."""
    args = parser().parse_args(argv)
    return args.func(args)
