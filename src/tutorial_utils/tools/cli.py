"""The course as commands: ``python -m tutorial_utils train ...``, ``predict``, ``compare``, ``reproduce``, ``ledger``
and ``bench``.

``train METHOD [--data my.csv --label-column L] --out run/`` trains one method to a validation plateau on your
own table (without ``--data``: on the profile's task) and saves a model that plain transformers serves, its run
record and ``metrics.json``; ``predict --model run/ --data new.csv`` labels new texts with it (``workflow`` and
``serving``, chapter 09). ``train`` runs unchanged on one process, under ``torchrun`` and under ``accelerate
launch``: every process trains its share of each batch and the first writes (book page "Scaling out",
book/scaling.md). ``compare`` shows the capstone comparison of chapter 08 from the results store (with
``--data``: trains it on your CSV) and writes its tables and plots to a folder; ``reproduce`` fills the store.
``bench`` measures what the course costs and writes ``benchmarks/results/<profile>-<device>.json`` and ``.md``
plus figures for the page "What it costs" (book/costs.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

from .. import methods
from ..setup.checks import DataError
from ..setup.config import CLASS_WEIGHTS, LONG_TEXTS
from ..setup.files import jsonable
from ..setup.timing import timed
from .bench_report import load_results, results_path, section_markdown, write_report
from .bench_sections import busy_seconds, measure, merge_rows, repo_root
from .cli_data import ALIASES, cmd_predict, cmd_train, compare_on_data, csv_options

__all__ = ["message", "positive", "parser", "main"]

_BENCH_STEPS = ("memory", "params", "train", "infer")
# errors that name the problem and its fix: main prints them in one line, exit code 2 (as argparse does)
_EXPECTED = (DataError, FileExistsError, methods.UnknownMethod)


def message(error: Exception) -> str:
    """An expected error's text (a KeyError's without the quotes ``str`` adds)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


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


def _data_options(command: argparse.ArgumentParser) -> None:
    """The options of a training to a plateau (``train``, ``compare --data``; chapter 09), and the CSV's format."""
    command.add_argument("--max-length", type=positive(int), help="tokens read of each text (default: enough "
                                                                  "for 95%% of the training texts, at most twice the "
                                                                  "profile's length)")
    command.add_argument("--max-epochs", type=positive(int), help="the epoch cap of training to a validation "
                                                                  "plateau (default: with --data the cap for your "
                                                                  "data, 3 epochs as in transformers; without, the "
                                                                  "comparison's cap)")
    command.add_argument("--tune", action="store_true", help="choose the learning rate (TF-IDF: C) on "
                                                             "validation from the protocol's grid (3 to 5 trainings each)")
    command.add_argument("--class-weight", choices=CLASS_WEIGHTS, help="weight the loss by class, for skewed "
                                                                       "labels (balanced: n / (classes x count))")
    command.add_argument("--long-texts", choices=LONG_TEXTS, default="truncate",
                         help="a text longer than the length read: its first tokens (truncate, the default), "
                              "or overlapping windows whose logits are averaged (chunk; embedding-head and encoder)")
    csv_options(command)


def _refuse_without_data(args: argparse.Namespace) -> None:
    """``compare``: options that apply to your data only, given without ``--data``: refused, naming them."""
    only_yours = [flag for flag, value in (("--learning-rate", getattr(args, "learning_rate", None)),
                                           ("--max-length", args.max_length), ("--max-epochs", args.max_epochs),
                                           ("--split-column", args.split_column),
                                           ("--tune", args.tune), ("--class-weight", args.class_weight),
                                           ("--long-texts", args.long_texts != "truncate")) if value]
    if only_yours:
        raise DataError(f"{' and '.join(only_yours)} apply to a comparison on your data only (--data my.csv); without it "
                        "compare reads the results store. Fix: pass --data, or leave them out.")


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run benchmark sections, merge them into the results file, rewrite its markdown and figures."""
    import torch  # lazy: per command, so that cli starts fast

    from . import bench  # lazy: as above
    from ..setup import session  # lazy: as above
    from ..setup.config import get_profile  # lazy: as above

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
    steps = {"all": _BENCH_STEPS, "report": ()}.get(args.step, (args.step,))
    for step in steps:
        print(f"bench {step} ({profile.name} profile, {device}) ...", file=sys.stderr, flush=True)
        load_before, busy, own = os.getloadavg(), busy_seconds(), sum(os.times()[:4])
        (rows, settings), seconds = timed(measure, step, profile, args)
        info = bench.machine()
        info["load average before (1, 5, 15 min)"] = [round(x, 2) for x in load_before]
        if busy is not None:  # CPU time all programs used meanwhile, less this one's (and its children's)
            others = busy_seconds() - busy - (sum(os.times()[:4]) - own)
            info["other programs' share of the CPU"] = max(others, 0.0) / (seconds * (os.cpu_count() or 1))
        partial = args.chapters is not None or not args.tests or not args.run_chapters
        measured_at = time.strftime("%Y-%m-%d %H:%M")
        if step == "course":  # each row says when and where it was measured, as a partial run updates its own rows
            rows = [dict(row, measured=f"{measured_at}, {info['cpu']}") for row in rows]
            if partial:
                rows = merge_rows(results["sections"].get("course", {}).get("rows", []), rows)
        results["sections"][step] = {"rows": rows, "settings": settings, "machine": info,
                                     "measured at": measured_at, "seconds": seconds}
        path.write_text(json.dumps(results, indent=1, default=jsonable))
        print(section_markdown(step, results["sections"][step]) + "\n", flush=True)
    images = None if args.no_figures else Path(args.images or repo_root() / "book" / "images")
    write_report(results, path, images)
    print(f"wrote {path} and {path.with_suffix('.md').name}", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    """The capstone comparison (chapter 08) as a script: tables and plots into ``--out``; with ``--data``, on your CSV."""
    from ..study import capstone  # lazy: per command, so that cli starts fast
    from ..setup import session  # lazy: per command, so that cli starts fast

    if args.data:
        return compare_on_data(args)
    _refuse_without_data(args)
    profile = session.start(args.profile)
    tables = capstone.run(profile, args.out, n_resamples=args.resamples)
    for name, table in tables.items():
        print(f"\n## {name}\n{table.round(3).to_markdown()}")
    print(f"\nwrote the tables and plots to {args.out}", file=sys.stderr)
    return 0


def _fits(hours: float, estimate: Callable[[object], float]) -> Callable[[object], str | None]:
    """``reproduce``'s ``stop_before`` for ``--hours``: a reason to stop before a run whose ``estimate`` in seconds
    (``store_audit.estimated_seconds``, from the stored runs) does not fit in the time left, else None."""
    deadline = time.monotonic() + hours * 3600

    def stop_before(spec) -> str | None:
        left, needs = deadline - time.monotonic(), estimate(spec)
        if needs <= left:
            return None
        return (f"stopping before {spec.describe()}: it takes about {needs / 60:.0f} min and {max(left, 0) / 60:.0f} "
                "min of --hours are left (run the command again to go on)")

    return stop_before


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """Run the fair comparison into the results store (resumable; each run written as it finishes)."""
    from ..study import experiment, specs, store_audit  # lazy: per command, so that cli starts fast
    from ..setup import session  # lazy: per command, so that cli starts fast
    from ..storage import store  # lazy: per command, so that cli starts fast

    session.quiet(hide_progress=False)
    profile = session.start(args.profile, show=False)
    for name in args.only or []:
        if not any(fnmatch(m, name) for m in methods.METHODS):
            raise SystemExit(str(methods.UnknownMethod(f"--only {name!r} matches no method. The registry holds: "
                                                       f"{', '.join(methods.METHODS)}.")))
    if args.list:
        for s in experiment.plan(profile):
            state = "stored " if specs.lookup(profile, s) else "missing"
            print(f"{state}  {s.describe()}  [{s.key}]")
        print(f"{experiment.expected_runs(profile)} runs in the whole plan (later seeds appear once their grid is "
              f"stored); results in {store.root() / profile.name}")
        hours = store_audit.wall_seconds(profile)
        print("wall time of the stored runs: " + ", ".join(f"{k} {v / 3600:.1f} h" for k, v in hours.items())
              + f"; {sum(hours.values()) / 3600:.1f} h in all (a run that shared the CPU with other work shows it)")
        todo = store_audit.study_hours(profile)
        print("still to run (known now; each estimated from the stored runs of its method and study variant): "
              + (", ".join(f"{study} {n} runs, about {h:.1f} h" for study, (n, h) in todo.items()) or "nothing")
              + (f"; {sum(h for _, h in todo.values()):.1f} h in all" if todo else ""))
        return 0
    if args.prune:  # first, so that a stale run is never mistaken for a finished one (--max-runs 0: prune only)
        removed = store_audit.prune(profile)
        print(f"removed {len(removed)} stale or unreadable run folders")
    made, seconds = timed(experiment.reproduce, profile, args.only, args.recompute or store.recompute_requested(),
                          command="python -m tutorial_utils " + " ".join(sys.argv[1:]), max_runs=args.max_runs,
                          studies=args.study, stop_before=None if args.hours is None else _fits(
                              args.hours, lambda spec: store_audit.estimated_seconds(profile, [spec])))
    problems = store_audit.audit(profile)
    print(f"{len(made)} runs made in {seconds:.0f} s; store {store.size_bytes(profile.name) / 1e6:.1f} MB "
          f"at {store.root() / profile.name}")
    for problem in problems:
        print("problem: " + problem)
    return 1 if problems else 0


def _cmd_ledger(args: argparse.Namespace) -> int:
    """Print the claims ledger from the results store; with --write, rewrite the book's generated table."""
    from ..study import ledger  # lazy: per command, so that cli starts fast
    from ..setup import session  # lazy: per command, so that cli starts fast

    session.quiet(hide_progress=False)
    profile = session.start(args.profile, show=False)
    for name in args.claim or []:
        if name not in ledger.NAMES:
            raise SystemExit(str(ledger.UnknownClaim(f"Unknown claim {name!r}. The ledger holds: "
                                                     f"{', '.join(ledger.NAMES)}.")))
    table = ledger.table(profile, tuple(args.claim or ledger.NAMES), n_resamples=args.resamples)
    if args.write:
        path = ledger.write_markdown(table, profile)
        print(f"wrote {path}", file=sys.stderr)
    for name, row in table.iterrows():
        print(f"{name}: {row['verdict']}\n    {row['numbers']}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m tutorial_utils``."""
    top = argparse.ArgumentParser(prog="python -m tutorial_utils", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one method to a validation plateau on your CSV (or the profile's "
                                              "task) and save a model that serves; under torchrun, the first process writes")
    train.add_argument("method", choices=tuple(ALIASES) + tuple(v for v in ALIASES.values() if v not in ALIASES))
    train.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    train.add_argument("--out", required=True, help="folder for model/, record/ and metrics.json (new or empty)")
    train.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    train.add_argument("--per-device-batch", type=positive(int),
                       help="batch per process (default: the profile's batch divided by the number of processes)")
    train.add_argument("--data", help="your CSV (default: the profile's own task, the patent sections)")
    train.add_argument("--text-column", default="text", help="--data: the column of texts (default: text)")
    train.add_argument("--label-column", default="label", help="--data: the column of labels (default: label)")
    train.add_argument("--split-column", help="--data: a column of train / validation / test (default: carved)")
    train.add_argument("--learning-rate", type=positive(float), help="learning rate (TF-IDF: C); default: the method's")
    _data_options(train)
    train.set_defaults(func=cmd_train)
    predict = commands.add_parser("predict", help="label the texts of a CSV with a model that train saved")
    predict.add_argument("--model", required=True, help="the --out folder of train")
    predict.add_argument("--data", required=True, help="a CSV of texts")
    predict.add_argument("--out", default="predictions.csv", help="the CSV to write (default: predictions.csv)")
    predict.add_argument("--text-column", default="text")
    predict.add_argument("--label-column", help="compare with these labels (must be names the model knows)")
    csv_options(predict)
    predict.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    predict.set_defaults(func=cmd_predict)
    bench = commands.add_parser("bench", help="measure what the course costs; write benchmarks/results")
    bench.add_argument("step", choices=[*_BENCH_STEPS, "course", "defaults", "all", "report", "memory-one"],
                       help="all = memory, params, train, infer; course runs every chapter and the tests; defaults: train --data "
                            "as shipped against a plain transformers + peft script on unseen long texts; "
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
    bench.add_argument("--save-outputs", action="store_true",
                       help="course: write each chapter's outputs into its notebook once it has run (the committed ones)")
    bench.add_argument("--precision", default="nf4-dq", help=argparse.SUPPRESS)
    bench.set_defaults(func=_cmd_bench)
    compare = commands.add_parser("compare", help="the capstone comparison (chapter 08): tables and plots to --out")
    compare.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    compare.add_argument("--out", required=True, help="folder for the tables (CSV, markdown) and plots (PNG)")
    compare.add_argument("--resamples", type=positive(int), default=2000, help="bootstrap resamples per interval")
    compare.add_argument("--data", help="your CSV: TF-IDF, probe, encoder and head on it (one seed; defaults, or --tune)")
    compare.add_argument("--text-column", default="text", help="--data: the column of texts (default: text)")
    compare.add_argument("--label-column", default="label", help="--data: the column of labels (default: label)")
    compare.add_argument("--split-column", help="--data: a column of train / validation / test (default: carved)")
    _data_options(compare)
    compare.set_defaults(func=_cmd_compare)
    reproduce = commands.add_parser("reproduce", help="the fair comparison into the results store (resumable)")
    reproduce.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    reproduce.add_argument("--only", nargs="+", metavar="METHOD",
                           help="run only these methods (names or patterns such as 'instruction-*')")
    from ..study.studies import STUDIES  # lazy: studies pulls datasets (~1.5 s); only --study needs it

    reproduce.add_argument("--study", nargs="+", choices=STUDIES,
                           help="run only these studies (default: all of them)")
    reproduce.add_argument("--recompute", action="store_true", help="run the selected runs again even if stored")
    reproduce.add_argument("--list", action="store_true", help="show the plan and what is stored; run nothing")
    reproduce.add_argument("--max-runs", type=positive(int, zero=True), help="stop after this many trainings (the next call resumes)")
    reproduce.add_argument("--hours", type=positive(float, zero=True),
                           help="stop before a run that would not end within this many hours (each run estimated "
                                "from the stored runs of its method, as --list does); the next call resumes")
    reproduce.add_argument("--prune", action="store_true",
                           help="first delete stored runs that the current code and data no longer use (with --max-runs 0: only that)")
    reproduce.set_defaults(func=_cmd_reproduce)
    claims = commands.add_parser("ledger", help="the claims ledger (chapter 08): each claim of the paper, its test "
                                                "here and a verdict computed from the results store")
    claims.add_argument("--profile", help="tiny, cpu, gpu or paper (default: COURSE_PROFILE, else by device)")
    claims.add_argument("--claim", nargs="+", help="only these claims (default: all)")
    claims.add_argument("--resamples", type=positive(int), default=1000, help="bootstrap resamples per test")
    claims.add_argument("--write", action="store_true", help="rewrite the book's table (book/generated/claims-<profile>.md)")
    claims.set_defaults(func=_cmd_ledger)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tutorial_utils``."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except _EXPECTED as error:  # the input's fault, and the message names the fix: no traceback
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
