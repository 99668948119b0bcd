"""The command line on your own data: ``train METHOD --data my.csv``, ``predict`` and ``compare --data``.

Each checks its input and output before any model loads, prints the data's warnings (``checks.DataWarning``)
and keeps them in the run record; ``cli.main`` turns the errors that name a fix into one line and exit code 2.
Taught in chapter 09 ("From notebook to production").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .. import methods
from ..setup.checks import DataError, DataWarning

__all__ = ["ALIASES", "check_out", "train_on_data", "cmd_predict", "compare_on_data", "csv_options"]

ALIASES = {"embedding-head": methods.EMBEDDING_HEAD, "encoder": methods.ENCODER, "tfidf": methods.TFIDF,
           "instruction": methods.INSTRUCTION_SCORED}  # -> registry


def check_out(out: Path, overwrite: bool) -> Path:
    """``--out`` as a writable folder for a new run (``workflow.prepare_out``), checked before any model loads,
    and never inside the chapters' run cache."""
    from ..storage.runs import runs_dir  # lazy: per command, so that cli starts fast
    from ..production.workflow import prepare_out  # lazy: as above

    out = out.expanduser().resolve()
    if runs_dir().resolve() in (out, *out.parents):
        raise DataError(f"--out {out} is inside the chapters' run cache ({runs_dir()}), whose runs must stay as the "
                        "chapters wrote them. Fix: pass a folder outside it.")
    return prepare_out(out, overwrite)


def _read_data(args: argparse.Namespace) -> tuple[object, list[str]]:
    """``--data`` read and checked (``data.from_csv``), with the data warnings it raised, each printed to stderr.
    (Texts longer than a run reads are counted by ``workflow.text_length``, once the run's length is chosen.)"""
    from .. import data  # lazy: per command, so that cli starts fast

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        mine = data.from_csv(args.data, text_column=args.text_column, label_column=args.label_column,
                             split_column=args.split_column, encoding=args.encoding, delimiter=args.delimiter)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    for w in caught:
        if not issubclass(w.category, DataWarning):  # someone else's warning: passed on as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in said:
        print(f"warning: {message}", file=sys.stderr, flush=True)
    return mine, said


def train_on_data(args: argparse.Namespace) -> int:
    """``train METHOD --data my.csv``: one method on your table, to a validation plateau, saved to serve."""
    import pandas as pd  # lazy: per command, so that cli starts fast

    from ..setup import session  # lazy: as above
    from ..production import workflow  # lazy: as above

    ignored = [flag for flag, value in (("--epochs", args.epochs), ("--per-device-batch", args.per_device_batch)) if value]
    if ignored:
        raise DataError(f"{' and '.join(ignored)} apply to the profile's data only: with --data a run trains to a "
                        "validation plateau (the protocol's patience and epoch cap) at the profile's batch. Fix: leave "
                        f"{' and '.join(ignored)} out (--max-epochs sets the cap), or pick another --profile.")
    session.quiet(hide_progress=False)
    profile = session.start(args.profile, show=False)
    out = check_out(Path(args.out), args.overwrite)
    mine, said = _read_data(args)
    record = workflow.train(profile, ALIASES.get(args.method, args.method), mine, out, dataset=Path(args.data).stem,
                            learning_rate=args.learning_rate, overwrite=True, data_warnings=said,
                            max_length=args.max_length, tune=args.tune, class_weight=args.class_weight,
                            long_texts=args.long_texts, max_epochs=args.max_epochs,
                            command="python -m tutorial_utils " + " ".join(sys.argv[1:]))
    per_class = pd.DataFrame(json.loads((out / workflow.METRICS).read_text())["test_per_class"])
    print(f"{record.summary()}\ntest split, per class:\n{per_class.round(3).to_string(index=False)}")
    print(f"wrote model/, record/ and metrics.json to {out}"
          + (f" ({len(said)} data warning{'s' * (len(said) > 1)} above, kept in the record)" if said else ""))
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
