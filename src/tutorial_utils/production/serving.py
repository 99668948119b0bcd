"""A trained run folder served: its files checked, its model loaded as a predictor, new texts labelled.

Taught in chapter 09 ("From notebook to production"); ``python -m tutorial_utils predict --model run/ --data
new.csv`` runs it from the shell. ``workflow.train`` writes the folders this module reads: ``model/`` (a plain
transformers folder, the TF-IDF arrays, or an instruction-tuned LoRA adapter with its prompt settings),
``record/`` (the run record) and ``metrics.json`` (label names, scores, the checksums of ``model/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..evaluation.metrics import softmax
from ..methods import tfidf
from ..methods.instruct import score_labels
from ..methods.instruct_train import PROMPT_FILE, load_tuned
from ..methods.train import predict_logits
from ..modeling.models import compute_dtype
from ..setup import files
from ..setup.checks import DataError, check_finite, check_safetensors, check_texts
from .run_folder import LABELS_FILE, METRICS, MODEL, REPLACED

__all__ = ["predict"]



def _read_info(folder: Path) -> dict:
    """A run folder's ``metrics.json``, its model files checked against the checksums it lists."""
    if (folder / REPLACED).is_dir() and not (folder / METRICS).is_file():
        raise DataError(f"{folder} holds a run that a killed training moved aside ({REPLACED}/). Fix: train into it "
                        "again, which puts the run back first, or move the files in .old/ back by hand.")
    if not (folder / METRICS).is_file() or not (folder / MODEL).is_dir():
        raise DataError(f"{folder} is not a run folder (it lacks {METRICS} or {MODEL}/). Fix: pass the --out folder "
                        "of `python -m tutorial_utils train`.")
    try:
        info = json.loads((folder / METRICS).read_text())
        names = info["label_names"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{folder / METRICS} is damaged ({type(error).__name__}: {error}). Fix: train the run again "
                        "(python -m tutorial_utils train ... --out the same folder --overwrite).") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{folder / METRICS} lists no label names. Fix: train the run again.")
    broken = files.damaged(folder / MODEL, info.get("model_files", {}))
    if broken:
        raise DataError(f"{folder / MODEL} is damaged: {', '.join(broken[:4])} missing or changed since training "
                        f"(their checksums are in {METRICS}). Fix: train the run again, or restore the folder "
                        "from a backup.")
    return info


def _load_run(folder: str | Path) -> tuple[dict, object]:
    """A run folder's ``metrics.json`` (its label names the model's own) and a predictor: texts -> class
    probabilities (plain transformers or scikit-learn; instruction tuning needs the course's prompts, so it loads
    through ``tutorial_utils``). Nothing from the folder is unpickled: TF-IDF is arrays, models safetensors."""
    folder = Path(folder)
    info = _read_info(folder)
    try:
        own, predictor = _load_model(folder / MODEL, info)
    except (OSError, ValueError, KeyError, EOFError) as error:  # transformers / safetensors on a damaged file
        raise DataError(f"{folder / MODEL} cannot be loaded ({type(error).__name__}: {str(error)[:200]}). Fix: train "
                        "the run again, or restore the folder from a backup.") from None
    if own != info["label_names"]:
        raise DataError(f"{folder / METRICS} lists the labels {info['label_names'][:6]}, the model itself "
                        f"{own[:6]}: one of them was edited, and its order would relabel every prediction. Fix: "
                        "restore metrics.json, or train the run again.")
    return info, predictor


def _load_model(model: Path, info: dict) -> tuple[list[str], object]:
    """The label names a saved model carries itself, and its predictor."""
    if (model / tfidf.SETTINGS_FILE).is_file():
        pipeline = tfidf.load(model)
        names = json.loads((model / LABELS_FILE).read_text())

        def predict_tfidf(texts: list[str]) -> np.ndarray:
            return tfidf.class_probs(pipeline, texts, len(names)) if texts else np.zeros((0, len(names)))

        return names, predict_tfidf
    if list(model.glob("*.joblib")) or list(model.glob("*.pkl")):
        raise DataError(f"{model} holds a pickled model ({', '.join(p.name for p in model.glob('*.[jp]*'))}): loading "
                        "a pickle can run any code it carries, so the course does not. Fix: train the run again; "
                        "TF-IDF runs are now saved as plain arrays.")

    if (model / PROMPT_FILE).is_file():

        tuned = load_tuned(model)
        return list(tuned.verbalizer.names), lambda texts: softmax(score_labels(
            tuned.model, tuned.tokenizer, tuned.prompts(texts), list(tuned.verbalizer.words)))
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # lazy: as above


    check_safetensors(model, "model")
    # on the CPU, in the dtype the course computes in there: the 16-bit export upcast to fp32 where bf16 is emulated
    network = AutoModelForSequenceClassification.from_pretrained(
        model, use_safetensors=True, dtype=compute_dtype(torch.device("cpu"))).eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    names = [network.config.id2label[i] for i in range(network.config.num_labels)]

    def predict_text(texts: list[str]) -> np.ndarray:
        return softmax(predict_logits(network, tokenizer, texts, max_length=info.get("max_length"), autocast=False,
                                      chunk=info.get("long_texts") == "chunk"))

    return names, predict_text


def predict(folder: str | Path, frame: pd.DataFrame, text_column: str = "text",
            label_column: str | None = None) -> pd.DataFrame:
    """Predictions for a table's texts: the label, its probability, and every label's probability.

    Checked before the first prediction (the run folder whole, its label names the model's own, every text
    non-empty) and after (every probability finite)."""
    if text_column not in frame.columns:
        raise DataError(f"No column {text_column!r} (columns: {', '.join(map(str, frame.columns))}). "
                        "Fix: pass text_column= (--text-column) naming the texts.")
    texts = check_texts(frame[text_column].tolist(), f"texts in column {text_column!r}")
    info, predictor = _load_run(folder)
    names = info["label_names"]
    if label_column is not None:
        if label_column not in frame.columns:
            raise DataError(f"No column {label_column!r} (columns: {', '.join(map(str, frame.columns))}).")
        unknown = sorted(set(frame[label_column].astype(str)) - set(names))
        if unknown:
            raise DataError(f"Labels the model does not know: {', '.join(unknown[:8])}. The model's labels: "
                            f"{', '.join(names)}. Fix: map your label names to the model's, or train on your labels.")
    try:
        probs = check_finite(predictor(texts), "the model's probabilities")
    except ValueError as error:  # NaN weights: every argmax would be class 0
        raise DataError(f"{folder}: {error}") from None
    table = pd.DataFrame(probs, columns=[f"p({n})" for n in names], index=frame.index)
    table.insert(0, "confidence", probs.max(1) if len(probs) else [])
    table.insert(0, "predicted", [names[i] for i in probs.argmax(1)])
    if label_column is not None:
        table.insert(0, "true", frame[label_column].astype(str).to_numpy())
    return table
