"""Your own data in the course's shape: a CSV, a pandas DataFrame or a ``datasets`` dataset, checked.

``from_csv`` / ``from_pandas`` / ``from_dataset`` return the same ``DatasetDict`` as the course's loaders
(``train``, ``validation``, ``test``; a ``text`` column and a ``label`` ClassLabel, or ``labels`` for
multi-label), so every recipe runs on it unchanged. Splits you do not give are carved from train,
stratified by label and deterministic (a stable hash of each text), with identical texts kept in one split. What would train or score
silently wrong is an error that names the fix (missing columns, empty texts, missing labels, one class,
labels that only validation or test has, a class too small to reach every carved split); what may only
hurt is a ``checks.DataWarning``, which the course's quiet mode never silences (rare classes, texts in
train and in validation or test, a class that a given validation or test split lacks). Texts longer than a
run reads are counted where the run's length is chosen (``workflow.text_length``). Taught in chapter 09
("Your data, checked").
"""

from __future__ import annotations

import csv
import difflib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as HFSequence, Value

from ..setup.checks import DataError, DataWarning, check_label_names, check_texts
from .common import SPLITS, grouped_split

__all__ = ["read_table", "from_csv", "from_dataset", "from_pandas"]

_MIN_PER_CLASS = 5  # fewer training examples of a class than this: a warning


def read_table(path: str | Path, columns: list[str], encoding: str = "utf-8", delimiter: str = ",") -> pd.DataFrame:
    """A CSV (or TSV) as strings, with clear errors for a missing file, a wrong encoding or a wrong delimiter.

    ``columns``: the columns the caller needs; when one is missing and the header looks separated by
    another character, the error names that delimiter (chapter 09's ``predict`` reads new texts with it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a file. Fix: pass the path of your CSV.")
    try:
        frame = pd.read_csv(path, encoding=encoding, sep=delimiter, dtype=str, keep_default_na=False)
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not valid {encoding} ({error.reason} at byte {error.start}). Fix: pass its "
                        "encoding: encoding='latin-1' or 'cp1252' (Excel on Windows); on the command line "
                        "--encoding latin-1.") from error
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty. Fix: pass a CSV with a header row and one row per text.") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path} is not a well-formed CSV ({str(error).strip()}). Fix: check its quoting and "
                        f"delimiter (here {delimiter!r}; --delimiter on the command line).") from None
    except LookupError as error:
        raise DataError(f"{error}. Fix: pass an encoding Python knows, e.g. utf-8, latin-1, cp1252.") from None
    if any(c not in frame.columns for c in columns):
        with open(path, encoding=encoding, errors="replace") as handle:
            header = handle.readline()
        try:
            found = csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
        except csv.Error:
            found = delimiter
        if found != delimiter:
            raise DataError(f"{path} looks {'tab' if found == chr(9) else repr(found)}-separated, not "
                            f"{delimiter!r}-separated (its header: {header.strip()[:120]!r}). Fix: pass "
                            f"delimiter={found!r} (--delimiter on the command line).")
    if frame.empty:
        raise DataError(f"{path} has a header ({', '.join(map(str, frame.columns))[:120]}) but no rows. Fix: pass the "
                        "CSV with your texts in it.")
    return frame


def from_csv(path: str | Path, text_column: str = "text", label_column: str | None = None,
             labels_column: str | None = None, encoding: str = "utf-8", delimiter: str = ",",
             **options: object) -> DatasetDict:
    """Read a CSV (or TSV with ``delimiter="\\t"``) and check it as ``from_pandas`` does."""
    frame = read_table(path, [c for c in (text_column, label_column, labels_column) if c], encoding, delimiter)
    return from_pandas(frame, text_column, label_column, labels_column, **options)


def from_dataset(dataset: Dataset | DatasetDict, text_column: str = "text", label_column: str | None = None,
                 labels_column: str | None = None, **options: object) -> DatasetDict:
    """A ``datasets`` Dataset (or DatasetDict: its splits become the split column), checked as ``from_pandas``."""
    if isinstance(dataset, DatasetDict):
        frames = [split.to_pandas().assign(split=name) for name, split in dataset.items()]
        return from_pandas(pd.concat(frames, ignore_index=True), text_column, label_column, labels_column,
                           split_column="split", **options)
    return from_pandas(dataset.to_pandas(), text_column, label_column, labels_column, **options)


def from_pandas(frame: pd.DataFrame, text_column: str = "text", label_column: str | None = None,
                labels_column: str | None = None, split_column: str | None = None, label_separator: str = "|",
                validation_size: float = 0.1, test_size: float = 0.2, label_names: list[str] | None = None,
                verbose: bool = True) -> DatasetDict:
    """Your table as the course's DatasetDict: name the text column and the label column (single-label) or the
    labels column (multi-label, names joined by ``label_separator``, e.g. "a|b").

    ``split_column`` holds train / validation / test per row; missing splits are carved from train
    (``validation_size``, ``test_size``: shares of it). ``label_names`` fixes the class order (else sorted).
    Texts longer than a run reads are counted where the run's length is chosen (``workflow.text_length``, chapter 09).
    """
    if (label_column is None) == (labels_column is None):
        raise DataError("Name exactly one label column: label_column='...' (one label per text) or labels_column='...' "
                        "(multi-label, several names in one cell joined by label_separator).")
    _require_columns(frame, [c for c in (text_column, label_column or labels_column, split_column) if c])
    frame = frame.reset_index(drop=True)
    texts = check_texts(frame[text_column].tolist(), f"texts in column {text_column!r}")
    multi = labels_column is not None
    raw = frame[labels_column if multi else label_column].tolist()
    missing = [i for i, v in enumerate(raw) if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""]
    if missing and not multi:
        raise DataError(f"{len(missing)} rows have no label (first: row {missing[0]}). Fix: label them, or drop them "
                        f"first: frame[frame[{label_column!r}].astype(str).str.strip() != '']")
    labels = [_split_names(v, label_separator) for v in raw] if multi else [str(v).strip() for v in raw]
    splits = _splits(frame, split_column, texts, labels, multi, validation_size, test_size, verbose)
    train_names = sorted({n for i, s in enumerate(splits) if s == "train" for n in (labels[i] if multi else [labels[i]])})
    names = check_label_names(list(label_names) if label_names else train_names, minimum=1 if multi else 2)
    _check_label_coverage(labels, splits, names, train_names, multi)
    data = _build(texts, labels, splits, names, multi)
    _warn_rare(data["train"], names, multi)
    if not multi:
        _warn_absent(data, names)
    return data


def _require_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        hints = [f"{c!r} (did you mean {difflib.get_close_matches(c, map(str, frame.columns), 1)[0]!r}?)"
                 if difflib.get_close_matches(c, map(str, frame.columns), 1) else repr(c) for c in absent]
        raise DataError(f"No column {', '.join(hints)}; the table has {list(frame.columns)}. Fix: pass the names of "
                        "your text and label columns, e.g. from_csv(path, text_column='review', label_column='stars').")


def _split_names(value: object, separator: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return sorted({part.strip() for part in str(value).split(separator) if part.strip()})


def _splits(frame, split_column, texts, labels, multi, validation_size, test_size, verbose) -> list[str]:
    """Each row's split: the user's column, with the splits it lacks carved from train (identical texts together)."""
    if split_column is None:
        given = ["train"] * len(texts)
    else:
        given = [str(v).strip().lower() for v in frame[split_column]]
        unknown = sorted(set(given) - set(SPLITS))
        if unknown:
            raise DataError(f"Column {split_column!r} holds {unknown[:5]}; it may hold only {list(SPLITS)}. Fix: map "
                            "your split names to these, e.g. 'dev' -> 'validation'.")
    if "train" not in given:
        raise DataError(f"No row is in the train split. Fix: mark the training rows 'train' in {split_column!r}, or "
                        "leave out the split column to carve validation and test from all rows.")
    carve = [s for s, share in (("validation", validation_size), ("test", test_size)) if s not in given and share > 0]
    if not carve:
        return given
    shares = {"validation": validation_size if "validation" in carve else 0.0,
              "test": test_size if "test" in carve else 0.0}
    rows = [i for i, s in enumerate(given) if s == "train"]
    strata = [(labels[i][0] if labels[i] else "") if multi else labels[i] for i in rows]
    parts = grouped_split([texts[i] for i in rows], strata, (1 - shares["validation"] - shares["test"],
                                                              shares["validation"], shares["test"]), every_split=True)
    out = list(given)
    for i, part in zip(rows, parts):
        out[i] = part
    if not multi:
        _check_carve_reaches(strata, parts, carve)
    if verbose:
        carved = ", ".join(f"{s} ({out.count(s)} rows, {shares[s]:.0%} of train)" for s in carve)
        print(f"carved {carved} from train, stratified by label; identical texts stay in one split")
    return out


def _check_carve_reaches(labels: list[str], parts: list[str], carve: list[str]) -> None:
    """Every class in every carved split (a class that no test example has would be scored by nothing), or an
    error with each short class's counts."""
    short = {}
    for name in sorted(set(labels)):
        counts = {split: sum(p == split for p, n in zip(parts, labels) if n == name) for split in SPLITS}
        if any(counts[split] == 0 for split in carve):
            short[name] = counts
    if short:
        shown = "; ".join(f"{n!r}: " + ", ".join(f"{c} {s}" for s, c in counts.items()) for n, counts in list(short.items())[:6])
        raise DataError(f"{len(short)} classes have too few distinct texts to reach every split ({shown}): their "
                        f"{' and '.join(carve)} scores would rest on no example. Fix: label more examples of them (a "
                        "few each at least), merge them into a neighbouring class, or give a split column.")


def _check_label_coverage(labels, splits, names, train_names, multi) -> None:
    unseen = sorted({n for row, s in zip(labels, splits) if s != "train" for n in (row if multi else [row])}
                    - set(train_names))
    if unseen:
        raise DataError(f"Labels {unseen[:5]} occur in validation or test but never in train, so no model can learn "
                        "them and every one of those examples counts as an error. Fix: move some of their examples "
                        "into train, or drop those rows.")
    used = {n for row in labels for n in (row if multi else [row])}
    unnamed = sorted(used - set(names))
    if unnamed:
        raise DataError(f"Labels {unnamed[:5]} are not in label_names {names}. Fix: add them to label_names.")


def _build(texts, labels, splits, names, multi) -> DatasetDict:
    index = {n: i for i, n in enumerate(names)}
    column, feature = ("labels", HFSequence(ClassLabel(names=names))) if multi else ("label", ClassLabel(names=names))
    features = Features({"text": Value("string"), column: feature})
    out = {}
    for split in SPLITS:
        rows = [i for i, s in enumerate(splits) if s == split]
        ids = [[index[n] for n in labels[i]] if multi else index[labels[i]] for i in rows]
        out[split] = Dataset.from_dict({"text": [texts[i] for i in rows], column: ids}, features=features)
    _warn_leakage(out)
    return DatasetDict(out)


def _warn_leakage(splits: dict[str, Dataset]) -> None:
    train = set(splits["train"]["text"])
    for split in ("validation", "test"):
        shared = sum(t in train for t in splits[split]["text"])
        if shared:
            warnings.warn(f"{shared} {split} texts also occur in train: the {split} scores will be optimistic "
                          "(leakage). Fix: drop duplicates across splits, e.g. keep each text's first row.", DataWarning,
                          stacklevel=3)


def _warn_rare(train: Dataset, names: list[str], multi: bool) -> None:
    ids = [i for row in train["labels"] for i in row] if multi else train["label"]
    counts = np.bincount(np.asarray(ids, dtype=int), minlength=len(names))
    rare = [f"{names[i]} ({c})" for i, c in enumerate(counts) if c < _MIN_PER_CLASS]
    if rare:
        warnings.warn(f"Classes with fewer than {_MIN_PER_CLASS} training examples: {', '.join(rare[:8])}. Their "
                      "scores will be noisy and the model may never predict them. Fix: label more of them, or merge "
                      "them into a neighbouring class.", DataWarning, stacklevel=3)


def _warn_absent(data: DatasetDict, names: list[str]) -> None:
    """A class that validation or test lacks: macro-F1 averages over every class, and it would count as 0."""
    for split in ("validation", "test"):
        absent = sorted(set(names) - {names[i] for i in data[split]["label"]})
        if absent:
            warnings.warn(f"The {split} split has no example of {', '.join(absent[:8])}: macro-F1 there averages "
                          f"over every class, and each of these counts as F1 0 whatever the model does (a perfect "
                          f"model scores {1 - len(absent) / len(names):.2f}). Fix: give {split} a few examples of "
                          "each class, or let the course carve it (no split column).", DataWarning, stacklevel=3)
