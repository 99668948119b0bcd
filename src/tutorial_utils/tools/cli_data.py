"""The command line that trains and predicts: ``train METHOD [--data my.csv]``, ``predict`` and ``compare --data``.

Each checks its input and output before any model loads, prints the data's warnings (``checks.DataWarning``)
and keeps them in the run record; ``cli.main`` turns the errors that name a fix into one line and exit code 2.
Taught in chapter 09 ("From notebook to production").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

from .. import methods
from ..setup.checks import DataError, DataWarning

__all__ = ["ALIASES", "with_batch", "cmd_train", "cmd_predict", "compare_on_data", "csv_options"]

ALIASES = {"embedding-head": methods.EMBEDDING_HEAD, "encoder": methods.ENCODER, "tfidf": methods.TFIDF,
           "instruction": methods.INSTRUCTION_SCORED}  # -> registry


def _check_out(out: Path, overwrite: bool) -> Path:
    """``--out`` as a writable folder for a new run (``run_folder.prepare_out``), checked before any model loads,
    and never inside the chapters' run cache."""
    from ..storage.runs import runs_dir  # lazy: per command, so that cli starts fast
    from ..production.run_folder import prepare_out  # lazy: as above

    out = out.expanduser().resolve()
    if runs_dir().resolve() in (out, *out.parents):
        raise DataError(f"--out {out} is inside the chapters' run cache ({runs_dir()}), whose runs must stay as the "
                        "chapters wrote them. Fix: pass a folder outside it.")
    return prepare_out(out, overwrite)


def _read_data(args: argparse.Namespace, show: bool = True) -> tuple[object, list[str]]:
    """``--data`` read and checked (``data.from_csv``), with the data warnings it raised, each printed to stderr
    (``show``). (Texts longer than a run reads are counted by ``workflow.text_length``, once the run's length is chosen.)"""
    from .. import data  # lazy: per command, so that cli starts fast

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        mine = data.from_csv(args.data, text_column=args.text_column, label_column=args.label_column,
                             split_column=args.split_column, encoding=args.encoding, delimiter=args.delimiter)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    for w in caught:
        if not issubclass(w.category, DataWarning):  # someone else's warning: passed on as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in said if show else ():
        print(f"warning: {message}", file=sys.stderr, flush=True)
    return mine, said


_CSV_ONLY = {"--text-column": ("text_column", "text"), "--label-column": ("label_column", "label"),
             "--split-column": ("split_column", None), "--encoding": ("encoding", "utf-8"), "--delimiter": ("delimiter", ",")}


def _refuse_csv_options(args: argparse.Namespace) -> None:
    """The options that describe a CSV, given without ``--data``: refused, naming them (the profile's task has none)."""
    given = [flag for flag, (name, default) in _CSV_ONLY.items() if getattr(args, name, default) != default]
    if given:
        raise DataError(f"{' and '.join(given)} describe a CSV, and no --data was given: without it the profile's own "
                        "task trains. Fix: pass --data my.csv, or leave them out.")


_FIELD = {methods.ENCODER: "encoder_train", methods.INSTRUCTION_SCORED: "instruct_train"}  # else "train"
_ONE_PROCESS = {methods.TFIDF: "TF-IDF has no batches to split over processes",
                methods.INSTRUCTION_SCORED: "instruction tuning is not tested under DDP here (its loss runs the "
                                            "model twice a step)"}


def with_batch(profile, method: str, per_device: int | None, world: int):
    """The profile with a per-device batch that keeps the protocol's batch as the global batch across processes
    (``per_device``: this batch on each process instead); returns (profile, each process's batch, the examples a
    step takes: per process x processes x gradient accumulation)."""
    from ..methods.runners import protocol_profile  # lazy: per command, so that cli starts fast

    profile = protocol_profile(profile)  # the protocol's batch, once: the split below must not be undone
    profile = dataclasses.replace(profile, protocol=dataclasses.replace(profile.protocol, batch_size=None))
    field = _FIELD.get(method, "train")
    settings = getattr(profile, field)
    size = per_device or settings.batch_size // world
    if not per_device and settings.batch_size % world:
        raise DataError(f"The batch size {settings.batch_size} does not split over {world} processes. "
                        "Fix: pass --per-device-batch N (the global batch is then N x processes).")
    profile = dataclasses.replace(profile, **{field: dataclasses.replace(settings, batch_size=size)})
    return profile, size, size * world * settings.grad_accum


def cmd_train(args: argparse.Namespace) -> int:
    """``train METHOD [--data my.csv]``: one method on your table (without ``--data``: the profile's own task, read
    as the fair comparison reads it) to a validation plateau, saved to serve. Under ``torchrun`` or ``accelerate
    launch`` every process trains its share of each batch and the first writes the run (book page "Scaling out")."""
    import numpy as np  # lazy: per command, so that cli starts fast
    import pandas as pd  # lazy: as above
    import torch  # lazy: as above
    from accelerate import PartialState  # lazy: as above

    from .. import data as course_data  # lazy: as above
    from ..setup import assets, session  # lazy: as above
    from ..production import workflow  # lazy: as above

    method = ALIASES.get(args.method, args.method)
    if not args.data:
        _refuse_csv_options(args)
    workflow.check_options(method, args.class_weight, args.long_texts, args.tune, args.learning_rate)
    session.quiet(hide_progress=False)
    profile = session.start(args.profile, show=False)
    # join the process group first (a no-op on one process), so that the first process prepares files before the others read them
    cuda = torch.cuda.is_available()
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # by torchrun or accelerate launch
    state = PartialState(cpu=not cuda, **({"backend": "gloo"} if launched and not cuda else {}))
    world, rank, writes = state.num_processes, state.process_index, state.is_main_process
    if world > 1 and method in _ONE_PROCESS:
        raise DataError(f"{args.method} trains in one process: {_ONE_PROCESS[method]}. Fix: run it without torchrun "
                        "or accelerate launch.")
    profile, per_device, per_step = with_batch(profile, method, args.per_device_batch, world)
    out = _check_out(Path(args.out), args.overwrite) if writes else Path(args.out)
    with state.local_main_process_first():  # the model converted and the data built once a machine, then read
        if method != methods.TFIDF:
            assets.model_path(profile.encoder if method == methods.ENCODER else profile.causal_lm)
        mine, said = _read_data(args, show=writes) if args.data else (course_data.load_single_label(profile), [])

    def processes(record) -> dict:
        """Every process's steps and test probabilities, gathered (a collective: every process calls it)."""
        own = {"rank": rank, "optimizer steps": int(record.extra.get("optimizer_steps", 0)),
               "train seconds": round(record.train_seconds, 1), "probs": record.probs}
        print(f"rank {rank} of {world}: {own['optimizer steps']} optimizer steps, {per_device} examples per step "
              f"on this rank, {record.train_seconds:.1f} s", file=sys.stderr, flush=True)
        everyone = [None] * world
        torch.distributed.all_gather_object(everyone, own)
        return {"world_size": world, "backend": str(state.backend), "per_device_batch": per_device,
                "examples_per_step": per_step, "ranks": [{k: v for k, v in r.items() if k != "probs"} for r in everyone],
                "max |probability difference| between ranks": max(float(np.abs(r["probs"] - record.probs).max())
                                                                   for r in everyone)}

    # the profile's own task reads as many tokens as the fair comparison does, trains up to its epoch cap and prompts
    # with its word for a text (your data: the length chosen from the data, the cap for your data)
    length = args.max_length or (None if args.data else workflow.profile_length(profile, method))
    max_epochs = args.max_epochs or (None if args.data else profile.protocol.max_epochs)
    dataset = Path(args.data).stem if args.data else profile.single_label_data
    record = workflow.train(profile, method, mine, out, dataset=dataset, learning_rate=args.learning_rate,
                            overwrite=True, data_warnings=said, max_length=length, tune=args.tune,
                            class_weight=args.class_weight, long_texts=args.long_texts, max_epochs=max_epochs,
                            subject="text" if args.data else None,
                            command="python -m tutorial_utils " + " ".join(sys.argv[1:]), writes=writes,
                            distributed=processes if world > 1 else None)
    if writes:
        per_class = pd.DataFrame(json.loads((out / workflow.METRICS).read_text())["test_per_class"])
        print(f"{record.summary()}\ntest split, per class:\n{per_class.round(3).to_string(index=False)}")
        print(f"wrote model/, record/ and metrics.json to {out}"
              + (f" ({len(said)} data warning{'s' * (len(said) > 1)} above, kept in the record)" if said else ""),
              flush=True)
    # no barrier: the other processes need not wait (past a timeout) while the first exports the model
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def _check_predictions_out(out: Path, data: Path, overwrite: bool) -> Path:
    """``predict --out``: a new CSV (or, with ``--overwrite``, an old one) in a writable folder, never the input."""
    out = out.expanduser().resolve()
    if out == data.expanduser().resolve():
        raise DataError(f"--out {out} is the --data file: writing the predictions there would replace your texts. "
                        "Fix: pass another file name, e.g. --out predictions.csv.")
    if out.is_dir():
        raise DataError(f"--out {out} is a folder. Fix: pass a file name, e.g. --out {out / 'predictions.csv'}.")
    if out.exists() and not overwrite:
        raise DataError(f"--out {out} exists. Fix: pass a new file name, or --overwrite to replace it.")
    if not out.parent.is_dir():
        raise DataError(f"--out {out}: the folder {out.parent} does not exist. Fix: create it first (mkdir -p), or "
                        "pass a file in an existing folder.")
    if not os.access(out.parent, os.W_OK):
        raise DataError(f"--out {out}: the folder {out.parent} is not writable. Fix: pass a file in a folder you can "
                        "write to.")
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict --model run/ --data new.csv --out predictions.csv``: label new texts with a trained run."""
    from ..production import serving  # lazy: per command, so that cli starts fast
    from ..data.own import read_table  # lazy: as above

    out = _check_predictions_out(Path(args.out), Path(args.data), args.overwrite)  # before any text is predicted
    columns = [c for c in (args.text_column, args.label_column) if c]
    frame = read_table(args.data, columns, encoding=args.encoding, delimiter=args.delimiter)
    table = serving.predict(args.model, frame, args.text_column, args.label_column)
    partial = out.with_name(out.name + ".partial")
    table.to_csv(partial, index_label="row")
    os.replace(partial, out)  # whole or not at all
    print(f"wrote {len(table)} predictions to {out}" + (f"; accuracy {(table['true'] == table['predicted']).mean():.3f} "
                                                        "against --label-column" if args.label_column else ""))
    return 0


def compare_on_data(args: argparse.Namespace) -> int:
    """``compare --data my.csv``: TF-IDF, the probe, the encoder and the head on your table (one seed; defaults or --tune)."""
    from ..study import capstone, comparison  # lazy: per command, so that cli starts fast
    from ..setup import session  # lazy: per command, so that cli starts fast
    from ..production import workflow  # lazy: per command, so that cli starts fast

    session.quiet(hide_progress=False)
    profile = session.start(args.profile, show=False)
    mine, said = _read_data(args)
    found = workflow.compare(profile, mine, dataset=Path(args.data).stem, data_warnings=said,
                             max_length=args.max_length, tune=args.tune, class_weight=args.class_weight,
                             long_texts=args.long_texts, max_epochs=args.max_epochs,
                             command="python -m tutorial_utils " + " ".join(sys.argv[1:]))
    tables = {"comparison": comparison.seed_table(found), "paired": comparison.paired_table(found, n_resamples=args.resamples)}
    capstone.write_report(args.out, tables, {})
    for name, table in tables.items():
        print(f"\n## {name}\n{table.round(3).to_markdown()}")
    for line in comparison.verdict_lines(found, n_resamples=args.resamples):
        print("-", line)
    for message in said:  # again beside the verdicts they may undermine
        print(f"- warning about the data: {message}")
    chosen = "its learning rate chosen on validation" if args.tune else "at its default"
    print(f"\nwrote the tables to {args.out} (one seed, each method {chosen}: a first look)", file=sys.stderr)
    return 0


def csv_options(command: argparse.ArgumentParser) -> None:
    """``--encoding`` and ``--delimiter``, wherever a command reads a CSV."""
    command.add_argument("--encoding", default="utf-8", help="the CSV's encoding (default: utf-8; e.g. latin-1, cp1252)")
    command.add_argument("--delimiter", default=",", help="the CSV's delimiter (default: ','; a tab: $'\\t')")
