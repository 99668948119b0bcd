"""Your data end to end: train one method on a table of your own the way the fair comparison trains it, and
keep a model that serves without the course (``serving`` reads it back and predicts new texts).

Taught in chapter 09 ("From notebook to production"); ``python -m tutorial_utils train METHOD --data
my.csv --out run/`` runs it from the shell (without ``--data``: on the profile's own task). A run folder holds ``model/`` (a plain transformers folder, the
TF-IDF arrays, or an instruction-tuned LoRA adapter with its prompt settings), ``record/`` (the run record:
settings, validation curve, test metrics, provenance) and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import DatasetDict

from .. import methods
from ..evaluation import run_checks
from ..evaluation.metrics import per_class_scores
from ..evaluation.stats import present_classes
from ..methods import runners, tfidf
from ..methods.instruct_train import save_tuned
from ..methods.train import world_size
from ..modeling.models import compute_dtype_name, load_tokenizer
from ..setup import files
from ..setup.checks import DataError, NotFinite
from ..setup.config import CLASS_WEIGHTS, LONG_TEXTS, Profile
from ..setup.timing import timed
from ..storage import records, store
from ..study import experiment
from . import export
from .run_folder import LABELS_FILE, LOCK, METRICS, MODEL, RECORD, STAGED, busy, install, prepare_out

__all__ = ["check_options", "profile_length", "text_length", "train", "tune", "ended", "save_model", "COMPARED_ON_YOURS", "compare"]

# methods whose model leaves the course (instruction tuning: an adapter that the course's prompts serve)
_SERVABLE = (methods.EMBEDDING_HEAD, methods.ENCODER, methods.TFIDF, methods.INSTRUCTION_SCORED)
# the default length covers this share of the training texts, in steps of LENGTH_STEP tokens, up to LENGTH_BUDGET
# times the profile's length: a step's cost grows with the length, and a profile's length is what its time was sized for
LENGTH_COVERS, LENGTH_STEP, LENGTH_BUDGET = 0.95, 16, 2

# the methods that honour --class-weight and --long-texts chunk, and why the others do not
_WEIGHTED = (methods.EMBEDDING_HEAD, methods.ENCODER, methods.TFIDF)
_CHUNKED = (methods.EMBEDDING_HEAD, methods.ENCODER)
_NOT_APPLIED = {methods.TFIDF: "TF-IDF reads every word of a text already",
               methods.FROZEN_PROBE: "the probe fits a plain logistic regression on one feature vector per text",
               methods.INSTRUCTION_SCORED: "instruction tuning reads a text inside its prompt, once"}


def check_options(method: str, class_weight: str | None, long_texts: str, tune: bool,
                  learning_rate: float | None) -> None:
    """Refuse a combination of options that ``train`` cannot honour, naming the fix (the CLI calls it first)."""
    if long_texts not in LONG_TEXTS:
        raise DataError(f"long_texts={long_texts!r}. Fix: pass one of {', '.join(LONG_TEXTS)}.")
    if class_weight is not None and class_weight not in CLASS_WEIGHTS:
        raise DataError(f"class_weight={class_weight!r}. Fix: pass {CLASS_WEIGHTS[0]!r} or leave it out.")
    if tune and learning_rate is not None:
        raise DataError("--tune chooses the learning rate on validation, and --learning-rate sets it. Fix: pass one "
                        "of them.")
    if long_texts == "chunk" and method not in _CHUNKED:
        raise DataError(f"--long-texts chunk applies to {' and '.join(_CHUNKED)}: {_NOT_APPLIED[method]}. "
                        "Fix: leave it out.")
    if class_weight and method not in _WEIGHTED:
        raise DataError(f"--class-weight applies to {', '.join(_WEIGHTED)}: instruction tuning's loss is over the "
                        "label's tokens. Fix: leave it out.")


def _option_settings(options: dict) -> dict:
    """The options of a run on your data that differ from the defaults, as its record's settings keep them."""
    return {k: v for k, v in options.items() if v not in (False, None, "truncate")}


def _length_field(method: str) -> str:
    """The settings whose ``max_length`` a method reads its texts with (instruction tuning: the text in its prompt)."""
    return "encoder_train" if method == methods.ENCODER else "train"


def profile_length(profile: Profile, method: str) -> int:
    """The tokens ``method`` reads of each text on the profile's own task, as the fair comparison reads them."""
    return getattr(profile, _length_field(method)).max_length


def text_length(profile: Profile, method: str, data: DatasetDict, max_length: int | None = None,
                long_texts: str = "truncate") -> tuple[Profile, str]:
    """The profile with the number of tokens ``method`` reads of each text, and a line saying the choice and its cost.

    ``max_length`` if given; else enough for ``LENGTH_COVERS`` of the training texts, rounded up to ``LENGTH_STEP``,
    at most ``LENGTH_BUDGET`` times the profile's length (what its time was sized for) and the model's own limit.
    """
    if method == methods.TFIDF:
        return profile, ""

    field = _length_field(method)
    default = getattr(profile, field).max_length
    tokenizer = load_tokenizer(profile.encoder if method == methods.ENCODER else profile.causal_lm)
    lengths = np.array([len(ids) for ids in tokenizer(list(data["train"]["text"]))["input_ids"]])
    limit = int(min(LENGTH_BUDGET * default, tokenizer.model_max_length))
    if max_length is not None and max_length > tokenizer.model_max_length:
        raise DataError(f"max_length {max_length} is more than the model reads ({tokenizer.model_max_length} tokens). "
                        f"Fix: pass at most {tokenizer.model_max_length} (--max-length).")
    if max_length is None:
        needed = int(np.ceil(np.quantile(lengths, LENGTH_COVERS) / LENGTH_STEP) * LENGTH_STEP)
        chosen = min(limit, max(LENGTH_STEP, needed))
        how = (f"enough for {LENGTH_COVERS:.0%} of the training texts, at most {limit}, {LENGTH_BUDGET}x the profile's "
               f"length" + (f"; {LENGTH_COVERS:.0%} would need {needed}: --max-length {needed}" if needed > limit else ""))
    else:
        chosen, how = int(max_length), "as asked"
    fate = ("are longer, read as overlapping windows whose logits are averaged" if long_texts == "chunk" else "are longer and get cut")
    line = (f"text length: {chosen} tokens ({how}); {int((lengths > chosen).sum())} of {len(lengths)} training texts "
            f"{fate} (the longest has {lengths.max()}); against the profile's {default} tokens a step "
            f"costs up to about {chosen / default:.1f}x as much")
    adjusted = dataclasses.replace(getattr(profile, field), max_length=chosen)
    return dataclasses.replace(profile, **{field: adjusted}), line


def train(profile: Profile, method: str, data: DatasetDict, out: str | Path, dataset: str = "my-data",
          learning_rate: float | None = None, seed: int | None = None, overwrite: bool = False,
          command: str | None = None, data_warnings: list[str] | None = None,
          max_length: int | None = None, tune: bool = False, class_weight: str | None = None,
          long_texts: str = "truncate", max_epochs: int | None = None, subject: str | None = "text",
          writes: bool = True, distributed: Callable[[records.RunRecord], dict] | None = None) -> records.RunRecord:
    """Train ``method`` on ``data`` to a validation plateau (the comparison's protocol) and save the run in ``out``.

    ``learning_rate`` (for TF-IDF: C) defaults to the method's default, the centre of the protocol's grid;
    ``tune``: chosen on validation from the protocol's grid instead (``tune``; every value's score is recorded).
    ``max_length``: the tokens read of each text; by default chosen from the data (``text_length``, printed).
    ``class_weight="balanced"``: the loss weighted by class, for skewed data; ``long_texts="chunk"``: a text longer
    than ``max_length`` read as overlapping windows, logits averaged (training sees every window).
    ``max_epochs``: the epoch cap (default: ``Protocol.your_data_max_epochs``, transformers' 3 epochs, where the
    comparison's protocol trains up to ``Protocol.max_epochs``); a run still improving at its cap says so (``ended``).
    The run is written beside ``out``'s files and swapped in only when complete, under a lock: a second
    training into the same folder is refused while this one runs. ``data_warnings``: what reading the data
    warned of (leakage, rare classes, a class a split lacks), kept in the record and in ``metrics.json``.
    ``subject``: what instruction tuning's prompt calls a text (None: the profile's dataset's word, as chapters 4
    and 8 prompt it).
    Under a launcher (``torchrun``; book page "Scaling out") every process trains and only the first ``writes``
    (the others neither check nor touch ``out``, nor print); ``distributed(record)``, called on every process after
    training, returns what the record and ``metrics.json`` keep of the processes under "distributed".
    """
    if method not in _SERVABLE:
        raise methods.UnknownMethod(f"{method!r} cannot be trained and exported on your data yet. Choose one of: "
                                    f"{', '.join(_SERVABLE)}.")
    check_options(method, class_weight, long_texts, tune, learning_rate)
    profile = _with_max_epochs(profile, max_epochs)
    options = {"tune": tune, "class_weight": class_weight, "long_texts": long_texts}
    if not writes:
        return _train(profile, method, data, Path(out), dataset, learning_rate, seed, command, data_warnings or [],
                      max_length, options, subject, writes, distributed)
    out = prepare_out(out, overwrite)
    try:
        with files.locked(out / LOCK, busy=busy(out)):
            return _train(profile, method, data, out, dataset, learning_rate, seed, command, data_warnings or [],
                          max_length, options, subject, writes, distributed)
    except BlockingIOError as error:
        raise DataError(str(error)) from None


def tune(profile: Profile, method: str, fit, say: Callable[[str], None] = print) -> tuple[float, tuple, dict[float, float | None]]:
    """The protocol's learning-rate search on your data: ``fit(value) -> (model, outcome)`` at each value of the
    grid (``experiment.grid_values``), grown past an end that wins, as ``reproduce`` does; the best on validation
    (a tie: the smaller value). A value whose training diverges (a loss or scores not finite) scores None and
    ranks last. ``say`` prints each value tried. Returns (the value, its model and outcome, every value's validation
    score)."""
    below = above = 0
    tried: dict[float, float | None] = {}
    best = None
    while True:
        for value in experiment.grid_values(profile, method, below, above):
            if value in tried:
                continue
            say(f"--tune: {methods.get(method).tuned} {value:g}")
            try:
                result = fit(value)
            except (FloatingPointError, NotFinite) as error:  # a diverged run: the grid's answer is "too large"
                say(f"--tune: {value:g} diverged ({str(error)[:80]}...)")
                tried[value] = None
                continue
            tried[value] = float(result[1]["validation_metric"])
            if best is None or (tried[value], -value) > (tried[best[0]], -best[0]):
                best = (value, result)
            del result  # only the best model stays in memory
            gc.collect()
        if best is None:
            raise NotFinite(f"Every learning rate tried diverged ({', '.join(f'{v:g}' for v in tried)}). Fix: train "
                            "in fp32 (COURSE_COMPUTE_DTYPE=float32), or pass a smaller --learning-rate.")
        metric = [-np.inf if m is None else m for _, m in sorted(tried.items())]
        steps = experiment.grown(metric, below, above, profile.protocol.grid_extensions)
        if steps is None:
            return best[0], best[1], dict(sorted(tried.items()))
        below, above = steps


def _fit_method(profile: Profile, method: str, data: DatasetDict, seed: int, value: float,
               class_weight: str | None = None, chunk: bool = False, subject: str | None = "text") -> tuple:
    """One method trained on your data at ``value`` (learning rate, or C): (what ``save_model`` writes, its outcome).
    ``class_weight`` and ``chunk`` reach the methods that honour them (``check_options``, ``compare``); ``subject``:
    what instruction tuning's prompt calls a text (None: the profile's dataset's word for it)."""
    if method == methods.TFIDF:
        return runners.fit_tfidf(data, seed, value, class_weight=class_weight)
    if method == methods.INSTRUCTION_SCORED:  # a text of your own is a "text" in the prompt
        tuned, outcomes = runners.fit_instruction(profile, data, seed, value, subject=subject)
        return tuned, outcomes[method]
    if method == methods.FROZEN_PROBE:  # its layer and pooling are chosen on validation inside; nothing to save
        return None, runners.probe(profile, data, seed, value)
    *trained, outcome = runners.train_classifier(profile, data, seed, value, encoder=method == methods.ENCODER,
                                                 class_weight=class_weight, chunk=chunk)
    return trained, outcome


def _fit_or_tune(profile: Profile, method: str, fit, tune_it: bool, learning_rate: float | None,
                 say: Callable[[str], None] = print) -> tuple:
    """``fit(value)`` at ``learning_rate`` (default: the method's), or at the value ``tune`` chooses on validation:
    (value, trained, outcome, seconds, what the record keeps of the search: empty without one)."""
    if tune_it:
        (value, (trained, outcome), tried), seconds = timed(tune, profile, method, fit, say)
        chosen = {"tuned on validation": {f"{v:g}": None if m is None else round(m, 4) for v, m in tried.items()},
                  "chosen": value}
        return value, trained, outcome, seconds, chosen
    value = runners.default_value(profile, method) if learning_rate is None else learning_rate
    (trained, outcome), seconds = timed(fit, value)
    return value, trained, outcome, seconds, {}


def _train(profile: Profile, method: str, data: DatasetDict, out: Path, dataset: str, learning_rate: float | None,
           seed: int | None, command: str | None, data_warnings: list[str], max_length: int | None,
           options: dict, subject: str | None = "text", writes: bool = True,
           distributed: Callable[[records.RunRecord], dict] | None = None) -> records.RunRecord:
    """``train``'s work: fit (or tune); the process that ``writes`` (under the lock) saves into a staged folder and
    swaps it in."""
    say = print if writes else _silent
    profile, length = text_length(runners.protocol_profile(profile), method, data, max_length, options["long_texts"])
    if length:
        say(length)
    seed = profile.seed if seed is None else seed
    names = data["train"].features["label"].names
    chunk, weight = options["long_texts"] == "chunk", options["class_weight"]

    def fit(value: float) -> tuple:
        return _fit_method(profile, method, data, seed, value, class_weight=weight, chunk=chunk, subject=subject)

    value, trained, outcome, seconds, chosen = _fit_or_tune(profile, method, fit, options["tune"], learning_rate, say)
    outcome = _with_extra(outcome, **{"data warnings": data_warnings, "text length": length, "tuning": chosen,
                                     "long texts": options["long_texts"] if chunk else ""})
    config = {**runners.settings(profile, method, value), **_option_settings(options)}
    if distributed:  # each process's batch is in the settings; how many took one a step, too
        config["processes"] = world_size()
    record = records.make_record(method, dataset, seed, config, data, outcome, seconds, command,
                                 compute_dtype=compute_dtype_name())
    if distributed:
        record.extra["distributed"] = distributed(record)  # every process takes part
    if not writes:
        return record
    ending = ended(record, profile)
    if ending:
        print(ending, flush=True)
    staged = files.staging(out / STAGED)
    save_model(method, trained, profile, names, staged / MODEL, chunk)
    store.write(record, staged / RECORD)
    (staged / METRICS).write_text(json.dumps({  # max_length: the text length it trained on (none for TF-IDF)
        "method": method, "profile": profile.name, "dataset": dataset, "label_names": names, "max_length": config.get("train", {}).get("max_length"),
        "long_texts": options["long_texts"], "class_weight": weight, "tuning": chosen,
        "train_examples": record.train_examples, "tuned": {methods.get(method).tuned: value},
        "best_epoch": record.best_epoch, "validation_macro_f1": record.validation_metric,
        "test_metrics": record.test_metrics, "trainable_params": record.trainable_params,
        "test_per_class": per_class_scores(record.y_true, record.y_pred, names).to_dict(orient="records"),
        "macro_f1_over": [names[c] for c in present_classes(record.y_true, record.y_pred, len(names))],
        "data_warnings": list(data_warnings), "ended": run_checks.convergence(record),
        "model_files": files.checksums(staged / MODEL),
        **({"distributed": record.extra["distributed"]} if distributed else {})},
        indent=1, default=files.jsonable))
    install(staged, out)  # the previous run's files go only now that the new run is trained and saved
    return record


def _silent(_: str) -> None:
    """What a process that does not write prints: nothing (the first process says it once)."""


def _with_max_epochs(profile: Profile, max_epochs: int | None) -> Profile:
    """The profile with its protocol's epoch cap at ``max_epochs`` (None: the cap for your data,
    ``Protocol.your_data_max_epochs``)."""
    if max_epochs is None:
        max_epochs = profile.protocol.your_data_max_epochs
    if max_epochs < 1:
        raise DataError(f"max_epochs={max_epochs}. Fix: pass a whole number of epochs, 1 or more (--max-epochs).")
    return dataclasses.replace(profile, protocol=dataclasses.replace(profile.protocol, max_epochs=int(max_epochs)))


def ended(record: records.RunRecord, profile: Profile) -> str:
    """A line for a run still improving at its epoch cap (its best evaluation its last), else ""."""
    if run_checks.convergence(record) != run_checks.IMPROVING:
        return ""
    cap = max(profile.protocol.max_epochs, int(np.ceil(record.epochs_run)))
    return (f"{record.method}: validation macro-F1 was still rising at the last evaluation (epoch {record.best_epoch:g} of "
            f"{record.epochs_run:g}): its score is a lower bound. Fix: train again with twice the cap "
            f"(--max-epochs {2 * cap}, or max_epochs={2 * cap} in workflow.train; about twice the time), as the course's "
            f"protocol does with such a run.")


def _with_extra(outcome: dict, **entries: object) -> dict:
    """A runner's outcome with these entries added to its ``extra`` (the run record keeps them); empty ones left out."""
    kept = {name: list(value) if isinstance(value, list) else value for name, value in entries.items() if value}
    return {**outcome, "extra": {**outcome.get("extra", {}), **kept}} if kept else outcome


def save_model(method: str, trained, profile: Profile, names: list[str], folder: Path, chunk: bool = False) -> None:
    """Write a trained servable method to ``folder``: a TF-IDF pipeline, the encoder, the merged LoRA head, or
    instruction tuning's adapter with its prompt settings (``chunk``: long texts read as windows, said in the config)."""
    if method == methods.TFIDF:
        folder.mkdir()
        tfidf.save(trained, folder)
        (folder / LABELS_FILE).write_text(json.dumps(names))
    elif method == methods.INSTRUCTION_SCORED:
        folder.mkdir()
        save_tuned(trained, profile, folder)
    elif method == methods.ENCODER:
        export.export_plain(*trained, names, folder, max_length=profile.encoder_train.max_length, chunk=chunk)
    else:
        export.export_classifier(*trained, profile, names, folder, chunk=chunk)


COMPARED_ON_YOURS = (methods.TFIDF, methods.FROZEN_PROBE, methods.ENCODER, methods.EMBEDDING_HEAD)


def compare(profile: Profile, data: DatasetDict, dataset: str = "my-data", seed: int | None = None,
            compared: tuple[str, ...] = COMPARED_ON_YOURS, command: str | None = None,
            data_warnings: list[str] | None = None, max_length: int | None = None, tune: bool = False,
            class_weight: str | None = None, long_texts: str = "truncate",
            max_epochs: int | None = None) -> dict[str, list[records.RunRecord]]:
    """The comparison on your data: each method at its default value (``tune``: chosen on validation from the
    protocol's grid) and a text length chosen from the data (``text_length``; ``max_length`` sets it), trained to a
    validation plateau, one seed. ``class_weight`` and ``long_texts`` reach the methods that honour them; a line
    says which do not.

    Returns records by method, the shape ``comparison.seed_table`` and ``comparison.paired_table`` read.
    One seed: a first look, not chapter 8's protocol.
    """
    check_options(methods.EMBEDDING_HEAD, class_weight, long_texts, False, None)  # the names; each method below
    seed = profile.seed if seed is None else seed
    profile = runners.protocol_profile(_with_max_epochs(profile, max_epochs))
    found = {}
    for method in compared:
        weight = class_weight if method in _WEIGHTED else None
        chunk = long_texts == "chunk" and method in _CHUNKED
        skipped = [flag for flag, asked, used in (("--class-weight", class_weight, weight),
                                                  ("--long-texts chunk", long_texts == "chunk", chunk)) if asked and not used]
        if skipped:
            print(f"{method}: {' and '.join(skipped)} not applied ({_NOT_APPLIED[method]})", flush=True)
        fitted, length = text_length(profile, method, data, max_length, "chunk" if chunk else "truncate")
        if length:  # the probe reads as the head does
            print(f"{method}: {length}", flush=True)

        def fit(value: float, method=method, fitted=fitted, weight=weight, chunk=chunk) -> tuple:
            return _fit_method(fitted, method, data, seed, value, class_weight=weight, chunk=chunk)

        value, _, outcome, seconds, chosen = _fit_or_tune(fitted, method, fit, tune, None)
        config = {**runners.settings(fitted, method, value),
                  **_option_settings({"tune": tune, "class_weight": weight, "long_texts": "chunk" if chunk else "truncate"})}
        outcome = _with_extra(outcome, **{"data warnings": data_warnings, "text length": length, "tuning": chosen})
        found[method] = [records.make_record(method, dataset, seed, config, data, outcome, seconds, command,
                                             compute_dtype=compute_dtype_name())]
        ending = ended(found[method][0], profile)
        if ending:
            print(ending, flush=True)
    return found
