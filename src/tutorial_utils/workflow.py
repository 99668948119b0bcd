"""Your data end to end: train one method on a table of your own the way the fair comparison trains it,
keep a model that serves without the course, and predict new texts with it.

Taught in chapter 09 ("From notebook to production"); ``python -m tutorial_utils train METHOD --data
my.csv --out run/`` and ``python -m tutorial_utils predict --model run/ --data new.csv`` run it from the
shell. A run folder holds ``model/`` (a plain transformers folder, the TF-IDF pipeline, or an instruction-tuned
LoRA adapter with its prompt settings),
``record/`` (the run record: settings, validation curve, test metrics, provenance) and ``metrics.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from datasets import DatasetDict

from . import methods, records, runners, store
from .checks import DataError
from .config import Profile
from .metrics import softmax
from .timing import timed

MODEL, RECORD, METRICS = "model", "record", "metrics.json"
WRITES = (MODEL, RECORD, METRICS, "predictions.csv")  # what a run folder holds: all that --overwrite replaces
# methods whose model leaves the course (instruction tuning: an adapter that the course's prompts serve)
SERVABLE = (methods.EMBEDDING_HEAD, methods.ENCODER, methods.TFIDF, methods.INSTRUCTION_SCORED)
TFIDF_FILE, LABELS_FILE = "tfidf.joblib", "labels.json"


def prepare_out(out: str | Path, overwrite: bool = False) -> Path:
    """A folder that may take a new run: refused if it holds files, unless ``overwrite`` (``train`` then
    replaces only a run's own files, once the new run is trained: a failed training loses nothing)."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file. Fix: pass a folder, e.g. runs/my-run.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds files ({', '.join(sorted(p.name for p in out.iterdir())[:4])}). "
                              "Fix: pass a new folder, or overwrite=True (--overwrite) to replace the run in it.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def clear_run(out: Path) -> None:
    """Delete a run's own files from its folder; whatever else the user keeps there stays."""
    for name in WRITES:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def train(profile: Profile, method: str, data: DatasetDict, out: str | Path, dataset: str = "my-data",
          learning_rate: float | None = None, seed: int | None = None, overwrite: bool = False,
          command: str | None = None) -> records.RunRecord:
    """Train ``method`` on ``data`` to a validation plateau (the comparison's protocol) and save the run in ``out``.

    ``learning_rate`` (for TF-IDF: C) defaults to the method's default, the centre of the protocol's grid.
    """
    if method not in SERVABLE:
        raise methods.UnknownMethod(f"{method!r} cannot be trained and exported on your data yet. Choose one of: "
                                    f"{', '.join(SERVABLE)}.")
    out = prepare_out(out, overwrite)
    profile = runners.protocol_profile(profile)
    seed = profile.seed if seed is None else seed
    value = runners.default_value(profile, method) if learning_rate is None else learning_rate
    names = data["train"].features["label"].names

    def fit() -> tuple:
        if method == methods.TFIDF:
            return runners.fit_tfidf(data, seed, value)
        if method == methods.INSTRUCTION_SCORED:  # a text of your own is a "text" in the prompt
            tuned, outcomes = runners.fit_instruction(profile, data, seed, value, subject="text")
            return tuned, outcomes[method]
        *trained, outcome = runners.train_classifier(profile, data, seed, value, encoder=method == methods.ENCODER)
        return trained, outcome

    (trained, outcome), seconds = timed(fit)
    clear_run(out)  # the previous run's files go only now that the new run is trained
    save_model(method, trained, profile, names, out / MODEL)
    config = runners.settings(profile, method, value)
    record = records.make_record(method, dataset, seed, config, data, outcome, seconds, command)
    store.write(record, out / RECORD)
    (out / METRICS).write_text(json.dumps({  # max_length: the text length it trained on (none for TF-IDF)
        "method": method, "dataset": dataset, "label_names": names, "max_length": config.get("train", {}).get("max_length"),
        "train_examples": record.train_examples, "tuned": {methods.get(method).tuned: value},
        "best_epoch": record.best_epoch, "validation_macro_f1": record.validation_metric,
        "test_metrics": record.test_metrics, "trainable_params": record.trainable_params}, indent=1))
    return record


def save_model(method: str, trained, profile: Profile, names: list[str], folder: Path) -> None:
    """Write a trained servable method to ``folder``: a TF-IDF pipeline, the encoder, the merged LoRA head, or
    instruction tuning's adapter with its prompt settings."""
    from . import export  # lazy: torch, transformers (~3 s); TF-IDF runs need neither
    from .instruct_train import save_tuned  # lazy: as above

    if method == methods.TFIDF:
        folder.mkdir()
        joblib.dump(trained, folder / TFIDF_FILE)
        (folder / LABELS_FILE).write_text(json.dumps(names))
    elif method == methods.INSTRUCTION_SCORED:
        folder.mkdir()
        save_tuned(trained, profile, folder)
    elif method == methods.ENCODER:
        export.export_plain(*trained, names, folder, max_length=profile.encoder_train.max_length)
    else:
        export.export_classifier(*trained, profile, names, folder)


def load_run(folder: str | Path) -> tuple[dict, object]:
    """A run folder's ``metrics.json`` and a predictor: texts -> class probabilities (plain transformers or
    scikit-learn; instruction tuning needs the course's prompts, so it loads through ``tutorial_utils``)."""
    folder = Path(folder)
    if not (folder / METRICS).is_file() or not (folder / MODEL).is_dir():
        raise DataError(f"{folder} is not a run folder (it lacks {METRICS} or {MODEL}/). Fix: pass the --out folder "
                        "of `python -m tutorial_utils train`.")
    info = json.loads((folder / METRICS).read_text())
    if (folder / MODEL / TFIDF_FILE).is_file():
        pipeline = joblib.load(folder / MODEL / TFIDF_FILE)
        return info, lambda texts: pipeline.predict_proba(texts)
    from .instruct_train import PROMPT_FILE, load_tuned  # lazy: torch, transformers (~3 s); TF-IDF runs need neither

    if (folder / MODEL / PROMPT_FILE).is_file():
        from .instruct import score_labels  # lazy: as above

        tuned = load_tuned(folder / MODEL)
        return info, lambda texts: softmax(score_labels(tuned.model, tuned.tokenizer, tuned.prompts(texts),
                                                        list(tuned.verbalizer.words)))
    import torch  # lazy: torch, transformers (~3 s); TF-IDF runs need neither
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # lazy: as above

    model = AutoModelForSequenceClassification.from_pretrained(folder / MODEL).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / MODEL)

    def predict(texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                  max_length=info["max_length"], return_tensors="pt")
                out.append(torch.softmax(model(**batch).logits.float(), -1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(info["label_names"])))

    return info, predict


def predict(folder: str | Path, frame: pd.DataFrame, text_column: str = "text",
            label_column: str | None = None) -> pd.DataFrame:
    """Predictions for a table's texts: the label, its probability, and every label's probability."""
    info, predictor = load_run(folder)
    names = info["label_names"]
    if text_column not in frame.columns:
        raise DataError(f"No column {text_column!r} (columns: {', '.join(map(str, frame.columns))}). "
                        "Fix: pass text_column= (--text-column) naming the texts.")
    if label_column is not None:
        if label_column not in frame.columns:
            raise DataError(f"No column {label_column!r} (columns: {', '.join(map(str, frame.columns))}).")
        unknown = sorted(set(frame[label_column].astype(str)) - set(names))
        if unknown:
            raise DataError(f"Labels the model does not know: {', '.join(unknown[:8])}. The model's labels: "
                            f"{', '.join(names)}. Fix: map your label names to the model's, or train on your labels.")
    texts = frame[text_column].fillna("").astype(str).tolist()
    probs = predictor(texts)
    table = pd.DataFrame(probs, columns=[f"p({n})" for n in names], index=frame.index)
    table.insert(0, "confidence", probs.max(1) if len(probs) else [])
    table.insert(0, "predicted", [names[i] for i in probs.argmax(1)])
    if label_column is not None:
        table.insert(0, "true", frame[label_column].astype(str).to_numpy())
    return table


COMPARED_ON_YOURS = (methods.TFIDF, methods.FROZEN_PROBE, methods.ENCODER, methods.EMBEDDING_HEAD)


def compare(profile: Profile, data: DatasetDict, dataset: str = "my-data", seed: int | None = None,
            compared: tuple[str, ...] = COMPARED_ON_YOURS, command: str | None = None) -> dict[str, list[records.RunRecord]]:
    """The comparison on your data: each method at its default value, trained to a validation plateau, one seed.

    Returns records by method, the shape ``comparison.seed_table`` and ``comparison.paired_table`` read.
    One seed and no grid: a first look, not chapter 8's protocol (run ``train`` with other learning rates
    to tune one method, and compare on validation).
    """
    seed = profile.seed if seed is None else seed
    found = {}
    for method in compared:
        value = runners.default_value(profile, method)
        outcomes, seconds = timed(runners.run, profile, method, data, seed, value)
        config = runners.settings(profile, method, value)
        found[method] = [records.make_record(method, dataset, seed, config, data, outcomes[method], seconds, command)]
    return found
