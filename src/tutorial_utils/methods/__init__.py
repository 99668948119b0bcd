"""The method registry: every method the book shows, declared once (name, task, family, how it trains,
how its trainable parameters are counted, which chapter teaches it).

Chapters, the capstone, the results store and the command line take method names from here; an unknown
name gets an error that lists the registry. Each trained method has one ``run`` (``embedding_head.run``,
``encoder.run``, ``instruct_train.run``) that chapters, the protocol and your data's runs all call; how each is
scored under the comparison protocol lives in ``runners`` and ``multilabel_protocol``, and
``experiment.RUNNERS`` maps each method to that function.
Taught in chapter 08 (the capstone); every chapter's method is listed here.
The modules of this folder implement the methods; they import ``setup``, ``modeling``, ``data``, ``evaluation``
and ``storage``, never ``study``, ``production`` or ``tools``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MULTI_LABEL", "TFIDF", "ZERO_SHOT", "FROZEN_PROBE", "EMBEDDING_HEAD", "INSTRUCTION_SCORED",
           "INSTRUCTION_GENERATED", "ENCODER", "STUDENT", "MULTILABEL_HEAD", "MULTILABEL_INSTRUCTION",
           "MULTILABEL_PROBE", "MULTILABEL_TFIDF", "MULTILABEL_ENCODER", "UnknownMethod", "Method", "REGISTRY",
           "METHODS", "get", "names", "table"]

_SINGLE_LABEL = "single-label"
MULTI_LABEL = "multi-label"

# The names, once: every other module imports them from here.
TFIDF = "tfidf-logreg"
ZERO_SHOT = "zero-shot-scored"
_FEW_SHOT = "few-shot-scored"
FROZEN_PROBE = "frozen-llm-probe"
EMBEDDING_HEAD = "embedding-head"
INSTRUCTION_SCORED = "instruction-scored"
INSTRUCTION_GENERATED = "instruction-generated"
_INSTRUCTION_BUDGET = "instruction-scored-all-linear"
ENCODER = "encoder-finetune"
STUDENT = "distilled-student"
MULTILABEL_HEAD = "multilabel-embedding-head"
MULTILABEL_INSTRUCTION = "multilabel-instruction"
MULTILABEL_PROBE = "multilabel-frozen-llm-probe"
MULTILABEL_TFIDF = "multilabel-tfidf-logreg"
MULTILABEL_ENCODER = "multilabel-encoder-finetune"


class UnknownMethod(KeyError):
    """A method name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Method:
    """One method of the comparison: what it is, how it learns, and what its trainable parameters are."""

    name: str  # the registry key: used in the results store, the run cache and on the command line
    title: str  # the row name in the book's tables
    task: str  # _SINGLE_LABEL or MULTI_LABEL
    family: str  # floor, no fine-tuning, embedding head, instruction tuning, encoder, distilled
    trains: str  # how it learns, in a few words
    trainable: str  # what its trainable-parameter count counts
    chapter: str  # the chapter that teaches it
    tuned: str | None = None  # the setting the protocol chooses on validation: "learning_rate", "C" or None
    protocol: bool = False  # trains and predicts under the comparison protocol (its function: experiment.RUNNERS)
    trained_with: str | None = None  # a method whose training this one shares (it only predicts differently)
    adapts: str | None = None  # a multi-label method: the single-label method whose settings it extends

    @property
    def learns(self) -> bool:
        """True when the method learns from labelled examples (so it takes part in the equal-data rule)."""
        return self.family != "no fine-tuning" or self.tuned is not None


REGISTRY: tuple[Method, ...] = (
    Method(TFIDF, "TF-IDF + logistic regression", _SINGLE_LABEL, "floor",
           "fits a logistic regression on word and word-pair TF-IDF features (closed form, L-BFGS)",
           "the logistic regression's weights and intercepts", "03", tuned="C", protocol=True),
    Method(ZERO_SHOT, "zero-shot prompt (scored)", _SINGLE_LABEL, "no fine-tuning",
           "does not learn: the instruct model scores every label after a prompt that lists them",
           "none", "03b", protocol=True),
    Method(_FEW_SHOT, "few-shot prompt (scored)", _SINGLE_LABEL, "no fine-tuning",
           "does not learn: k labelled examples go into the prompt", "none", "03b"),
    Method(FROZEN_PROBE, "frozen-LLM probe", _SINGLE_LABEL, "no fine-tuning",
           "a logistic regression on the frozen 4-bit model's hidden states (layer and pooling chosen on validation)",
           "the logistic regression's weights and intercepts", "03b", tuned="C", protocol=True),
    Method(EMBEDDING_HEAD, "LoRA embedding head", _SINGLE_LABEL, "embedding head",
           "LoRA adapters and a linear head on the last non-pad token, trained with cross-entropy (4-bit base)",
           "LoRA matrices + the head (peft's count of weights with requires_grad)", "02",
           tuned="learning_rate", protocol=True),
    Method(INSTRUCTION_SCORED, "instruction tuning, scored", _SINGLE_LABEL, "instruction tuning",
           "LoRA adapters trained on prompt -> label text (loss on the answer only); predicts by scoring every label",
           "LoRA matrices (peft's count)", "04", tuned="learning_rate", protocol=True),
    Method(INSTRUCTION_GENERATED, "instruction tuning, generated", _SINGLE_LABEL, "instruction tuning",
           "the same trained model as instruction-scored; predicts by greedy generation and parsing",
           "LoRA matrices (peft's count)", "04", tuned="learning_rate", trained_with=INSTRUCTION_SCORED),
    Method(_INSTRUCTION_BUDGET, "instruction tuning, scored (larger LoRA budget)", _SINGLE_LABEL,
           "instruction tuning", "instruction tuning with a larger LoRA budget (every linear layer, higher rank)",
           "LoRA matrices (peft's count)", "04", tuned="learning_rate"),
    Method(ENCODER, "encoder, full fine-tune", _SINGLE_LABEL, "encoder",
           "every weight of a BERT-class encoder and a fresh head, trained with cross-entropy",
           "every weight of the encoder and its head", "03", tuned="learning_rate", protocol=True),
    Method(STUDENT, "distilled student (MiniLM)", _SINGLE_LABEL, "distilled",
           "the encoder trained on the embedding head's probabilities (KL at a temperature) and the labels",
           "every weight of the student encoder and its head", "07", tuned="learning_rate", protocol=True),
    Method(MULTILABEL_TFIDF, "TF-IDF + logistic regression", MULTI_LABEL, "floor",
           "one logistic regression per label on word and word-pair TF-IDF features; a threshold tuned on validation",
           "the logistic regressions' weights and intercepts", "05", tuned="C", protocol=True,
           adapts=TFIDF),
    Method(MULTILABEL_PROBE, "frozen-LLM probe", MULTI_LABEL, "no fine-tuning",
           "one logistic regression per label on frozen hidden states; thresholds tuned on validation",
           "the logistic regressions' weights and intercepts", "05", tuned="C", protocol=True,
           adapts=FROZEN_PROBE),
    Method(MULTILABEL_ENCODER, "encoder, full fine-tune", MULTI_LABEL, "encoder",
           "every weight of a BERT-class encoder and a head with one sigmoid per label (BCE)",
           "every weight of the encoder and its head", "05", tuned="learning_rate", protocol=True,
           adapts=ENCODER),
    Method(MULTILABEL_HEAD, "LoRA embedding head", MULTI_LABEL, "embedding head",
           "LoRA and a head with one sigmoid per label (BCE); thresholds tuned on validation",
           "LoRA matrices + the head", "05", tuned="learning_rate", protocol=True, adapts=EMBEDDING_HEAD),
    Method(MULTILABEL_INSTRUCTION, "instruction tuning (generated)", MULTI_LABEL, "instruction tuning",
           "LoRA on prompt -> the list of labels; predicts by generating and parsing the list",
           "LoRA matrices", "05", tuned="learning_rate", protocol=True,
           adapts=INSTRUCTION_GENERATED),
)

METHODS: dict[str, Method] = {m.name: m for m in REGISTRY}


def get(name: str) -> Method:
    """The registered method of this name; an error listing the registry otherwise."""
    if name not in METHODS:
        raise UnknownMethod(f"Unknown method {name!r}. The registry holds: {', '.join(METHODS)}. "
                            "Fix: use one of these names (python -m tutorial_utils reproduce --list shows them).")
    return METHODS[name]


def names(task: str | None = None, runnable: bool = False) -> list[str]:
    """Registered method names, optionally of one task, or only those the protocol can run."""
    return [m.name for m in REGISTRY if (task is None or m.task == task) and (not runnable or m.protocol)]


def table() -> list[dict[str, str]]:
    """The registry as rows (method, task, family, how it learns, what its parameters count, chapter)."""
    return [{"method": m.name, "task": m.task, "family": m.family, "learns by": m.trains,
             "trainable parameters counted": m.trainable, "tuned on validation": m.tuned or "-",
             "chapter": m.chapter} for m in REGISTRY]
