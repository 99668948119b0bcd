"""Run-size profiles: the one switch that sizes every chapter.

Pick a profile with the ``COURSE_PROFILE`` environment variable (``tiny``, ``cpu``, ``gpu``,
``paper``). Without it the course uses ``gpu`` when CUDA is available and ``cpu`` otherwise.
``COURSE_LOAD_IN_4BIT=0`` loads every model in 16-bit where bitsandbytes is unavailable.
Every hyperparameter a chapter uses lives here, so a chapter never hard-codes a model or a size.
Taught in chapter 00 (setup). This module imports no other module of the package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ROOT", "LoraSettings", "LONG_TEXTS", "CLASS_WEIGHTS", "ALL_LINEAR", "TrainSettings", "DataSizes",
           "Protocol", "Profile", "CPU", "GPU", "PAPER", "PROFILES", "ProfileError", "get_profile",
           "profiles_table"]

ROOT = Path(__file__).resolve().parents[3]  # the repository: results/, benchmarks/, chapters/, _config.yml
_PROFILE_ENV = "COURSE_PROFILE"
_LOAD_4BIT_ENV = "COURSE_LOAD_IN_4BIT"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter settings: rank, scaling numerator, dropout and the layers it wraps."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    @property
    def scaling(self) -> float:
        """The factor alpha / r that multiplies the low-rank update B A."""
        return self.alpha / self.r

    @property
    def peft_targets(self) -> str | list[str]:
        """``target_modules`` as peft's ``LoraConfig`` takes it: the string "all-linear" for that shorthand (a
        one-item list would be read as a layer named "all-linear"), else the list of layer names."""
        return "all-linear" if tuple(self.target_modules) == ("all-linear",) else list(self.target_modules)


# every linear layer of a Llama-style block: the largest LoRA target set (the budget axis, chapters 04 and 08)
# the options of a training to a plateau (chapter 09, ``train``): a text longer than the run reads gives its first tokens or
# overlapping windows whose logits are averaged; the loss optionally weighted by class, n / (classes x count)
LONG_TEXTS = ("truncate", "chunk")
CLASS_WEIGHTS = ("balanced",)
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and batching settings shared by the chapters' training runs."""

    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 16
    eval_batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_length: int = 64

    def summary(self, tokens: str = "tokens") -> str:
        """One line as the profile's header shows it, e.g. "1 epoch, lr 0.001, batch 16, 64 tokens" (chapter 00)."""
        accumulation = f" x {self.grad_accum}" if self.grad_accum > 1 else ""  # "batch 8 x 4": 4 accumulated steps
        return (f"{self.epochs:g} epoch{'' if self.epochs == 1 else 's'}, lr {self.learning_rate:g}, "
                f"batch {self.batch_size}{accumulation}, {self.max_length} {tokens}")


@dataclass(frozen=True)
class DataSizes:
    """How many examples each split keeps (None keeps the whole split)."""

    train: int | None = None
    validation: int | None = None
    test: int | None = None


@dataclass(frozen=True)
class Protocol:
    """The comparison protocol every results table follows (chapters 06 and 08; ``reproduce`` runs it).

    Within one comparison every trained method learns from the same ``train_examples`` (a fixed, stratified
    subset of the train split), in batches of the same ``batch_size``; each trains until its validation metric stops improving (evaluated
    ``evals_per_epoch`` times an epoch, the best evaluation's weights kept, at most ``max_epochs``, and at
    least ``min_steps`` optimiser steps on small sets); its learning rate (for a scikit-learn model: its
    regularisation C) is chosen on validation from the same ``grid`` of factors on the method's default,
    on the first seed, and when the best value is an end of the grid and strictly better than its
    neighbour, the grid grows one step past that end (the grid's own ratio), at most ``grid_extensions``
    times; every seed then trains with the chosen value.
    """

    train_examples: int | None = 800
    max_epochs: int = 4
    batch_size: int | None = 16  # every gradient-trained method's batch in the comparison (None: each its own)
    evals_per_epoch: int = 2
    patience: int = 3  # evaluations without improvement on validation before training stops
    min_steps: int = 100
    grid: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # factors on each method's default learning rate (or C)
    grid_extensions: int = 2  # steps the grid may grow past an end where the best value sits
    seeds: tuple[int, ...] = (1, 2, 3)
    efficiency_sizes: tuple[int, ...] = (100, 300)  # nested smaller training sets (the full size is added)
    # the budget axis (the paper's trainable-parameter claims): LoRA budgets the embedding head and instruction
    # tuning also train at, beside the profile's own ``lora`` (r=8 on q,v: about 0.46M on SmolLM2-135M)
    budgets: tuple[LoraSettings, ...] = (LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=ALL_LINEAR),
                                         LoraSettings(r=64, alpha=128, dropout=0.05, target_modules=ALL_LINEAR))
    equivalence_margin: float = 0.02  # |difference| below which two methods "match" (TOST), fixed before looking
    cap_extensions: int = 2  # a chosen run still improving at its cap trains again at twice the cap, this often at most
    # your own data (``workflow.train`` and ``compare``, ``train --data``): the epoch cap of a first model, the
    # transformers default (``num_train_epochs=3``), so that it costs what a plain script costs (``bench defaults``);
    # the rule within it is the protocol's, and a run still improving at this cap says so, with the fix
    your_data_max_epochs: int = 3
    # the distillation study (chapter 07's recipe under the protocol): the student's loss mixes the teacher's
    # probabilities at this temperature (weight alpha) with cross-entropy on the labels
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5

    def summary(self) -> str:
        """Two lines for a notebook's header: the examples, batch and seeds; the stopping rule and tuning."""
        examples = "all training examples" if self.train_examples is None else f"{self.train_examples} examples"
        batch = "each method's own batch" if self.batch_size is None else f"batch {self.batch_size}"
        return (f"{examples} and {batch} for every method, seeds {', '.join(map(str, self.seeds))} (chapters 06, 08)\n"
                f"each until validation stops improving (at most {self.max_epochs} epochs), lr chosen on validation")

    def grid_label(self) -> str:
        """The grid as a reader sees it, e.g. "default / 3, default, default x 3 (grown up to 2 steps past a winning end)"."""
        grid = ", ".join("default" if f == 1 else (f"default / {1 / f:g}" if f < 1 else f"default x {f:g}")
                         for f in self.grid)
        return grid + (f" (grown up to {self.grid_extensions} steps past a winning end)" if self.grid_extensions else "")


@dataclass(frozen=True)
class Profile:
    """Everything that differs between a test run, a laptop run, a Colab run and the paper's scale."""

    name: str
    description: str
    causal_lm: str
    encoder: str
    single_label_data: str
    multi_label_data: str
    single_label_sizes: DataSizes
    multi_label_sizes: DataSizes
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    encoder_train: TrainSettings = field(default_factory=lambda: TrainSettings(learning_rate=5e-5))
    ablation_train_size: int | None = None  # training examples per arm of an ablation (equal budgets)
    distill_extra_texts: int = 600  # unlabelled texts the teacher labels for distillation (chapter 07)
    cpu_serving_texts: int = 600  # test texts the int8 student is compared on, on the CPU even with a GPU (chapter 07)
    news_data: str = "bbc-news"  # the news-topic generalisation check of chapter 08
    news_sizes: DataSizes = field(default_factory=lambda: DataSizes(train=600, validation=150, test=400))
    # Instruction tuning (chapters 04-05). instruct_train.max_length is the text's token budget inside the
    # prompt (the instruction and the answer come on top); instruct_budgets are the extra LoRA budgets
    # chapter 04 trains for its sweep (its main run uses ``lora``, the embedding head's budget).
    instruct_train: TrainSettings = field(default_factory=lambda: TrainSettings(
        learning_rate=2e-4, batch_size=8, eval_batch_size=16, max_length=128))
    instruct_train_size: int | None = None  # training examples for instruction tuning (None or more: the whole split)
    instruct_budgets: tuple[LoraSettings, ...] = ()
    # Multi-label (chapter 05): longer texts than the single-label titles, so their own length and subset size.
    multilabel_train: TrainSettings = field(default_factory=lambda: TrainSettings(max_length=256))
    multilabel_train_size: int | None = None  # training examples for the multi-label runs (None or more: all)
    protocol: Protocol = field(default_factory=Protocol)  # the fair comparison (``python -m tutorial_utils reproduce``)
    # The ablations under the protocol (chapter 08's claims ledger; each a study of ``experiment``): the
    # embedding head's pooling ("last" non-pad token, or "mean" over the text), the first-seen state of its
    # head ("random", or "label-tokens": each class's row from the LM's embedding of its name's first token),
    # and instruction tuning's verbalizer ("names" or "codes", chapter 04).
    head_pooling: str = "last"
    head_init: str = "random"
    verbalizer: str = "names"
    load_in_4bit: bool = True
    needs_gpu: bool = False
    meaningful: bool = True
    seed: int = 42

    def summary(self) -> str:
        """A few lines that say what this profile runs, for a notebook's first output."""
        runs = [f"embedding head      {self.train.summary()}",
                f"encoder             {self.encoder_train.summary()}",
                f"instruction tuning  {self.instruct_train.summary('text tokens')}, "
                f"{_at_most(self.instruct_train_size)}",
                f"multi-label         {self.multilabel_train.summary()}, {_at_most(self.multilabel_train_size)}",
                f"ablations           {_at_most(self.ablation_train_size)} each",
                f"seed                {self.seed}"]
        lines = [
            f"profile      : {self.name} ({self.description})",
            f"causal LM    : {self.causal_lm} ({'4-bit NF4' if self.load_in_4bit else '16/32-bit'})",
            f"encoder      : {self.encoder}",
            f"data         : {self.single_label_data} (single-label), {self.multi_label_data} (multi-label)",
            f"LoRA         : r={self.lora.r}, alpha={self.lora.alpha}, targets={','.join(self.lora.target_modules)}",
            "chapter runs : " + "\n               ".join(runs),
            "fair runs    : " + self.protocol.summary().replace("\n", "\n" + " " * 15),
        ]
        if not self.meaningful:
            lines.append("note         : a random tiny model: its numbers test the code and mean nothing")
        return "\n".join(lines)


def _at_most(examples: int | None) -> str:
    """A training-set cap as the header shows it."""
    return "all training examples" if examples is None else f"at most {examples} examples"


# The cpu profile is written out once; the others are the differences from it (nanoGPT's configs do the same).
CPU = Profile(
    name="cpu",
    description="offline default: SmolLM2-135M-Instruct in 4-bit and MiniLM on a laptop CPU, minutes",
    causal_lm="smollm2-135m-instruct",
    encoder="all-minilm-l6-v2",
    single_label_data="ipc-sections",
    multi_label_data="debian-tags",
    single_label_sizes=DataSizes(train=2000, validation=200, test=600),
    multi_label_sizes=DataSizes(train=1200, validation=300, test=500),
    lora=LoraSettings(r=8, alpha=16, dropout=0.05),
    train=TrainSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=64),
    encoder_train=TrainSettings(epochs=3, learning_rate=1e-4, batch_size=32, max_length=64),
    ablation_train_size=600,
    instruct_train=TrainSettings(epochs=1, learning_rate=2e-3, batch_size=8, eval_batch_size=16, max_length=48),
    instruct_train_size=240,
    instruct_budgets=(LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=ALL_LINEAR),),
    multilabel_train=TrainSettings(epochs=1, learning_rate=3e-3, batch_size=16, eval_batch_size=32, max_length=96),
    multilabel_train_size=480,
)

_TINY_TRAIN = TrainSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=48)
_TINY = dataclasses.replace(
    CPU,
    name="tiny",
    description="tests: a random tiny Llama, a few hundred examples, seconds",
    causal_lm="tiny-random-llama",
    encoder="tiny-random-bert",
    single_label_sizes=DataSizes(train=192, validation=64, test=96),
    multi_label_sizes=DataSizes(train=192, validation=64, test=96),
    lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    train=_TINY_TRAIN,
    encoder_train=_TINY_TRAIN,
    ablation_train_size=64,
    distill_extra_texts=48,
    news_sizes=DataSizes(train=128, validation=32, test=64),
    instruct_train=TrainSettings(epochs=1, learning_rate=1e-3, batch_size=8, eval_batch_size=16, max_length=32),
    instruct_train_size=48,
    instruct_budgets=(LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=ALL_LINEAR),),
    multilabel_train=_TINY_TRAIN,
    multilabel_train_size=64,
    protocol=Protocol(train_examples=96, max_epochs=2, your_data_max_epochs=2, patience=2, min_steps=0, efficiency_sizes=(32,),
                      budgets=(LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=ALL_LINEAR),)),
    meaningful=False,
)

GPU = dataclasses.replace(
    CPU,
    name="gpu",
    description="a Colab T4 or any CUDA GPU: a 0.5B instruct model and BERT from the hub",
    causal_lm="Qwen/Qwen2.5-0.5B-Instruct",
    encoder="google-bert/bert-base-uncased",
    single_label_data="ccdv/patent-classification",
    # Sized so that each chapter fits a free Colab T4 session (the worked estimate: sizing.py, book/costs.md).
    single_label_sizes=DataSizes(train=4000, validation=500, test=1500),
    multi_label_sizes=DataSizes(),  # every split whole
    train=TrainSettings(epochs=1, learning_rate=2e-4, batch_size=16, eval_batch_size=64, max_length=256),
    encoder_train=TrainSettings(epochs=2, learning_rate=3e-5, batch_size=32, eval_batch_size=128, max_length=256),
    ablation_train_size=2000,
    news_data="fancyzhx/ag_news",
    news_sizes=DataSizes(train=4000, validation=500, test=1500),
    instruct_train=TrainSettings(epochs=1, learning_rate=2e-4, batch_size=16, eval_batch_size=64, max_length=256),
    instruct_train_size=1000,
    instruct_budgets=(LoraSettings(r=2, alpha=4, dropout=0.05),
                      LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=ALL_LINEAR),
                      LoraSettings(r=64, alpha=128, dropout=0.05, target_modules=ALL_LINEAR)),
    multilabel_train=TrainSettings(epochs=2, learning_rate=2e-4, batch_size=16, eval_batch_size=64, max_length=256),
    multilabel_train_size=100_000,  # more than the split holds: all of it
    protocol=Protocol(train_examples=2000, max_epochs=4, efficiency_sizes=(100, 300, 1000)),
    cpu_serving_texts=64,  # BERT-base at 256 tokens on Colab's two vCPUs: about 4 s a text for the six passes
    needs_gpu=True,
)

_PAPER_TRAIN = TrainSettings(epochs=2, learning_rate=1e-4, batch_size=8, grad_accum=4, eval_batch_size=32, max_length=512)
PAPER = dataclasses.replace(
    GPU,
    name="paper",
    description="the paper's scale: a 7B instruct model and a patent BERT on an A100-class GPU",
    causal_lm="Qwen/Qwen2.5-7B-Instruct",
    encoder="anferico/bert-for-patents",
    single_label_sizes=DataSizes(),
    train=_PAPER_TRAIN,
    encoder_train=TrainSettings(epochs=3, learning_rate=2e-5, batch_size=32, eval_batch_size=128, max_length=512),
    ablation_train_size=8000,
    news_sizes=DataSizes(),
    instruct_train=_PAPER_TRAIN,
    instruct_train_size=100_000,  # more than the split holds: all of it
    instruct_budgets=(LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=ALL_LINEAR),
                      LoraSettings(r=64, alpha=128, dropout=0.05, target_modules=ALL_LINEAR)),
    multilabel_train=_PAPER_TRAIN,
    protocol=Protocol(train_examples=None, max_epochs=3, batch_size=None, efficiency_sizes=(100, 300, 1000, 3000, 10000)),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (_TINY, CPU, GPU, PAPER)}


class ProfileError(ValueError):
    """An unknown or unusable profile name."""


def _cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch  # lazy: config imports no heavy library (torch costs ~2 s), and torch may be absent

    return torch.cuda.is_available()


def _default_profile_name() -> str:
    """The profile used when ``COURSE_PROFILE`` is unset: ``gpu`` with CUDA, else ``cpu``."""
    return "gpu" if _cuda_available() else "cpu"


def get_profile(name: str | None = None, **overrides: object) -> Profile:
    """Return the named profile (or the one ``COURSE_PROFILE`` picks), with optional field overrides."""
    chosen = (name or os.environ.get(_PROFILE_ENV) or _default_profile_name()).strip().lower()
    if chosen not in PROFILES:
        raise ProfileError(
            f"Unknown profile {chosen!r}. Choose one of {', '.join(PROFILES)}: "
            f"set {_PROFILE_ENV}=cpu (or tiny, gpu, paper) before starting Python or Jupyter."
        )
    profile = PROFILES[chosen]
    if profile.needs_gpu and not _cuda_available() and not os.environ.get("COURSE_ALLOW_CPU"):
        raise ProfileError(
            f"Profile {chosen!r} needs a CUDA GPU, and torch sees none. Fix: use {_PROFILE_ENV}=cpu on this "
            "machine, or run on Colab with a GPU runtime (Runtime > Change runtime type > T4 GPU)."
        )
    if os.environ.get(_LOAD_4BIT_ENV) == "0":
        overrides.setdefault("load_in_4bit", False)
    return dataclasses.replace(profile, **overrides) if overrides else profile


def profiles_table() -> list[dict[str, object]]:
    """One row per profile (model, encoder, data, sizes, LoRA, needs a GPU): the setup chapter's table."""
    return [{
        "profile": p.name,
        "causal LM": p.causal_lm,
        "encoder": p.encoder,
        "single-label data": p.single_label_data,
        "train / val / test": " / ".join("all" if n is None else f"{n:,}" for n in
                                       (p.single_label_sizes.train, p.single_label_sizes.validation,
                                        p.single_label_sizes.test)),
        "LoRA r / alpha": f"{p.lora.r} / {p.lora.alpha}",
        "max length": p.train.max_length,
        "needs GPU": "yes" if p.needs_gpu else "no",
    } for p in PROFILES.values()]
