"""The claims ledger: each claim of the paper, the test made here, its numbers and a verdict computed from them
(chapter 08 and ``book/claims.md``).

Every row reads the results store; ``verdicts`` holds the tests and the rules that turn an interval into a
verdict word (reproduced, contradicted, equivalent within the margin, not distinguishable), so that no
verdict is typed by hand. A claim whose runs are not in the store says *not run (cost)* with the estimated
hours; one that a 135M model cannot test says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import methods
from ..evaluation import stats
from ..evaluation.metrics import expected_calibration_error
from ..setup import budgets
from ..setup.config import ROOT, Profile
from ..storage.records import RunRecord
from . import comparison, store_audit
from .studies import BUDGET, COMPARISON, DISTILLATION, MULTILABEL, MULTILABEL_BUDGET, NEWS, POOLING, VERBALIZER, lora_tag
from .verdicts import (AT_LEAST, AT_SCALE, BEATS, EXCLUDED, MATCHES, NOT_RUN, NOT_WORSE, VERDICTS, Arm, Ledger,
                       combined, compare, excluded, verdict)

__all__ = ["VERDICTS", "UnknownClaim", "Claim", "NAMES", "claim", "row", "table", "markdown", "write_markdown"]

_REPORTED_ECE = 0.094  # the paper's (v3) ECE of its embedding head before temperature scaling, as quoted second-hand
_KEPT_SHARE = 0.97  # the paper's distilled student keeps at least this share of its teacher's F1 (second-hand)


class UnknownClaim(KeyError):
    """A claim name that is not in the ledger."""

    def __str__(self) -> str:
        return str(self.args[0])


# ---- the claims ------------------------------------------------------------------------------------------------

def _pair(a: Arm, b: Arm, kind: str, **options) -> Callable[[Ledger], dict]:
    """A claim tested by one comparison of two arms."""
    return lambda ledger: compare(ledger, a, b, kind, **options)


def _all(*tests: tuple[Arm, Arm, str]) -> Callable[[Ledger], dict]:
    """A claim tested by several comparisons, every one of which must hold (``verdicts.combined``)."""
    def run(ledger: Ledger) -> dict:
        rows = [compare(ledger, a, b, kind) for a, b, kind in tests]
        lines = [r["numbers"] if r["verdict"] == NOT_RUN else f"{r['verdict']}: {r['numbers']}" for r in rows]
        return {"verdict": combined([r["verdict"] for r in rows]), "numbers": "\n".join(lines),
                "without selection seed": combined([r["without selection seed"] for r in rows])
                if all(r["without selection seed"] != "-" for r in rows) else "-"}
    return run


def _budget_claim(ledger: Ledger) -> dict:
    """The head at the profile's LoRA budget against instruction tuning at each larger budget (single-label)."""
    head = Arm(COMPARISON, methods.EMBEDDING_HEAD)
    tests = [(head, Arm(BUDGET, methods.INSTRUCTION_SCORED, lora_tag(lora)), AT_LEAST)
             for lora in ledger.profile.protocol.budgets]
    out = _all(*tests)(ledger)
    return {**out, "numbers": _budget_sizes(ledger) + "\n" + out["numbers"]}


def _budget_sizes(ledger: Ledger) -> str:
    """Each LoRA budget's trainable parameters (peft's count from a stored run, else by formula) and its share
    of the model, so a reader can map it onto a 3-8B model."""
    arch = budgets.ARCH_OF.get(ledger.profile.causal_lm)
    dims = budgets.KNOWN_ARCHS.get(arch)
    total = budgets.base_parameters(dims, budgets.TIED_EMBEDDINGS[arch]) if dims else None
    parts = []
    for lora, study in ((ledger.profile.lora, COMPARISON), *((b, BUDGET) for b in ledger.profile.protocol.budgets)):
        runs = ledger.runs(Arm(study, methods.INSTRUCTION_SCORED, "" if study == COMPARISON else lora_tag(lora)))
        count = runs[0].trainable_params if runs else (
            budgets.lora_parameters(dims, lora.r, lora.target_modules) if dims else None)
        if count is not None:
            share = f", {count / total:.2%} of the model" if total else ""
            parts.append(f"{lora_tag(lora)}: {count / 1e6:.2f}M{share}")
    return "instruction tuning's trainable parameters: " + "; ".join(parts)


def _multilabel_budget(ledger: Ledger) -> dict:
    """Instruction tuning at the largest budget against the head at the profile's budget, multi-label."""
    largest = max(ledger.profile.protocol.budgets, key=lambda lora: lora.r * len(lora.target_modules))
    return compare(ledger, Arm(MULTILABEL_BUDGET, methods.MULTILABEL_INSTRUCTION, lora_tag(largest)),
                   Arm(MULTILABEL, methods.MULTILABEL_HEAD), AT_LEAST)


def _hundred_million(ledger: Ledger) -> dict:
    """The paper's threshold in absolute parameters, against the whole model here (and as a share of a model)."""
    arch = budgets.ARCH_OF.get(ledger.profile.causal_lm)
    if arch is None:
        return {"verdict": AT_SCALE, "numbers": f"{ledger.profile.causal_lm}: its size is not in budgets.KNOWN_ARCHS",
                "without selection seed": "-"}
    total = budgets.base_parameters(budgets.KNOWN_ARCHS[arch], budgets.TIED_EMBEDDINGS[arch])
    mistral = budgets.REPORTED_BUDGETS["Mistral-7B"] / budgets.base_parameters(budgets.KNOWN_ARCHS["Mistral-7B"], False)
    text = (f"100M trainable parameters is {100e6 / total:.0%} of this {total / 1e6:.0f}M-parameter model, so the "
            f"threshold cannot be reached here; as a share of the model, the paper's 167.8M is {mistral:.1%} of "
            f"Mistral-7B, about {mistral * total / 1e6:.1f}M here: the budget rows test that share")
    return {"verdict": AT_SCALE, "numbers": text, "without selection seed": "-"}


def _pooling(ledger: Ledger) -> dict:
    """Mean against last-token pooling for the head under the protocol; the frozen probe's finding beside it."""
    out = compare(ledger, Arm(POOLING, methods.EMBEDDING_HEAD, "mean"), Arm(COMPARISON, methods.EMBEDDING_HEAD),
                  MATCHES)
    return {**out, "numbers": out["numbers"] + "\n" + _probe_pooling(ledger)}


def _probe_pooling(ledger: Ledger) -> str:
    """What the frozen probe's records say about pooling: mean minus last on validation, per dataset (best layer)."""
    parts = []
    for study, method in ((COMPARISON, methods.FROZEN_PROBE), (NEWS, methods.FROZEN_PROBE),
                          (MULTILABEL, methods.MULTILABEL_PROBE)):
        runs = ledger.runs(Arm(study, method))
        scores = runs[0].extra.get("validation_by_layer_pooling", {}) if runs else {}
        by = {pool: max(v for k, v in scores.items() if k.endswith("/" + pool)) for pool in ("last", "mean")
              if any(k.endswith("/" + pool) for k in scores)}
        if len(by) == 2:
            parts.append(f"{runs[0].dataset} {by['mean'] - by['last']:+.3f}")
    return "frozen probe, validation, mean minus last pooling: " + (", ".join(parts) or "no probe stored")


def _calibration(ledger: Ledger) -> dict:
    """The head's test ECE before temperature scaling (seed mean), against the value the paper reports."""
    arm = Arm(COMPARISON, methods.EMBEDDING_HEAD)
    runs = ledger.runs(arm)
    if not runs:
        return {"verdict": NOT_RUN, "numbers": "no head run stored", "without selection seed": "-"}
    test = stats.seed_bootstrap(runs[0].y_true, [r.probs for r in runs], [],
                                lambda y, p: expected_calibration_error(p, y), ledger.n_resamples,
                                reference=_REPORTED_ECE)
    spread = ", ".join(f"{expected_calibration_error(r.probs, r.y_true):.3f}" for r in runs)
    other = ledger.runs(Arm(COMPARISON, methods.INSTRUCTION_SCORED))
    beside = ("; instruction tuning (scored) " + ", ".join(f"{expected_calibration_error(r.probs, r.y_true):.3f}"
                                                          for r in other)) if other else ""
    mean = test.difference + _REPORTED_ECE
    line = (f"head test ECE {mean:.3f} (per seed {spread}{beside}); minus the reported {_REPORTED_ECE}: "
            f"{test.difference:+.3f}, 90% [{test.ci90[0]:+.3f}, {test.ci90[1]:+.3f}]")
    return {"verdict": verdict(test, MATCHES, ledger.margin), "numbers": line, "without selection seed": "-"}


def _distillation(ledger: Ledger) -> dict:
    """The distilled student against its own teacher (the head run the comparison kept on the student's seed,
    trained again): the share of the teacher's F1 it keeps, tested one-sided at the paper's 97% with each student
    paired with its teacher; its speed beside the teacher's; the encoder trained on the labels alone for scale."""
    arm = Arm(DISTILLATION, methods.STUDENT)
    students, missing = ledger.runs(arm), ledger.missing([arm])
    if not missing and not students:
        return {"verdict": NOT_RUN, "without selection seed": "-", "numbers": "no student is planned yet: it waits "
                "for the comparison's head and encoder to choose their learning rates and store their runs"}
    if missing:
        hours = store_audit.estimated_seconds(ledger.profile, missing) / 3600
        return {"verdict": NOT_RUN, "without selection seed": "-", "numbers": f"{len(missing)} planned run(s) not in "
                f"the store yet, about {hours:.1f} h on this machine (on each seed the head trained again as the "
                "teacher, then its student; `reproduce --study distillation`)"}
    metric_name, metric = comparison.headline(students[0])[0], comparison.metric_for(students[0])
    y, first = students[0].y_true, ledger.profile.protocol.seeds[0]
    heads = {r.seed: r for r in ledger.runs(Arm(COMPARISON, methods.EMBEDDING_HEAD))}
    taught = {r.seed: np.asarray(r.extra["teacher"]["y_pred"]) for r in students}  # each teacher's test predictions
    teacher_f1 = {seed: metric(y, pred) for seed, pred in taught.items()}

    def test(runs: list) -> tuple[stats.SeedBootstrap, float]:
        """Students against their own teachers, and the difference that keeping 97% of the teachers' F1 allows."""
        allowed = (1 - _KEPT_SHARE) * float(np.mean([teacher_f1[r.seed] for r in runs]))
        return stats.seed_bootstrap(y, [r.y_pred for r in runs], [taught[r.seed] for r in runs], metric,
                                    ledger.n_resamples, paired=True), allowed

    result, margin = test(students)
    later, later_margin = test([r for r in students if r.seed != first] or students)
    teacher = [teacher_f1[r.seed] for r in students]
    student = [r.test_metrics[metric_name] for r in students]
    kept = ", ".join(f"{a / b:.1%}" if b else "n/a (teacher F1 0)" for a, b in zip(student, teacher))
    speed = [r.extra["test_texts_per_second"] / r.extra["teacher"]["test_texts_per_second"] for r in students]
    same = sum(r.seed in heads and np.array_equal(heads[r.seed].y_pred, taught[r.seed]) for r in students)
    sign = comparison.signed
    lines = [f"student {np.mean(student):.3f} ({len(student)} runs) vs its teacher {np.mean(teacher):.3f}: difference "
             f"{sign(result.difference)}, 95% [{sign(result.ci95[0])}, {sign(result.ci95[1])}], 90% "
             f"[{sign(result.ci90[0])}, {sign(result.ci90[1])}]; keeping {_KEPT_SHARE:.0%} allows {sign(-margin)}; "
             f"kept per seed: {kept}; {result.agreeing}/{result.pairings} students agree in sign with the mean; "
             f"detectable: {result.detectable:.3f}",
             f"speed on the test split (this machine, printed, not tested): the student is {np.mean(speed):.1f}x as "
             f"fast as its teacher (per seed {', '.join(f'{v:.1f}x' for v in speed)}); {_sizes(ledger, students[0])}",
             f"each teacher is the head run the comparison kept on its seed, trained again: its test predictions equal "
             f"the stored run's on {same} of {len(students)} seeds{_machines(students, heads)}"]
    encoder = ledger.runs(Arm(COMPARISON, methods.ENCODER))
    if encoder:
        lines.append(f"the encoder trained on the labels alone (the comparison's): "
                     f"{np.mean([r.test_metrics[metric_name] for r in encoder]):.3f} ({len(encoder)} runs)")
    why = excluded(students, ledger.margin) or excluded([heads[r.seed] for r in students if r.seed in heads],
                                                        ledger.margin)
    if why:
        return {"verdict": EXCLUDED, "numbers": "\n".join([*lines, f"excluded: {why}"]), "without selection seed": "-"}
    return {"verdict": verdict(result, NOT_WORSE, margin), "numbers": "\n".join(lines),
            "without selection seed": verdict(later, NOT_WORSE, later_margin)}


def _machines(students: list[RunRecord], heads: dict[int, RunRecord]) -> str:
    """Where the stored head runs and the students' teachers were trained, when that differs: another CPU sums in
    another order (its vector width), so a run trained again there gives close but not equal predictions."""
    made = {heads[r.seed].provenance.get("machine") for r in students if r.seed in heads}
    taught = {r.provenance.get("machine") for r in students}
    if not made or made == taught:
        return ""
    return (f" (the stored runs were trained on {', '.join(sorted(map(str, made)))}, the teachers on "
            f"{', '.join(sorted(map(str, taught)))}: another CPU sums in another order)")


def _sizes(ledger: Ledger, student: RunRecord) -> str:
    """The teacher's and the student's sizes here, beside the paper's pair (its speed ratio grows with the gap)."""
    arch = budgets.ARCH_OF.get(ledger.profile.causal_lm)
    here = ""
    if arch is not None and student.trainable_params:
        total = budgets.base_parameters(budgets.KNOWN_ARCHS[arch], budgets.TIED_EMBEDDINGS[arch])
        here = (f"here the teacher ({ledger.profile.causal_lm}, {total / 1e6:.0f}M parameters) is "
                f"{total / student.trainable_params:.0f}x the student's size ({ledger.profile.encoder}, "
                f"{student.trainable_params / 1e6:.1f}M); ")
    return here + "the paper's about 45x is a 3B teacher against ModernBERT-base (149M), about 20x its size"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how the ledger tests it."""

    name: str  # the id, e.g. "head-vs-instruction"
    paper: str  # the claim, as the paper (or the notes quoting it) states it
    test: str  # the test made here
    run: Callable[[Ledger], dict]


_CLAIMS: tuple[Claim, ...] = (
    Claim("head-vs-instruction", "single-label: the embedding head matches or exceeds instruction tuning",
          "head vs instruction tuning (scored) at the same LoRA budget, patents", _pair(
              Arm(COMPARISON, methods.EMBEDDING_HEAD), Arm(COMPARISON, methods.INSTRUCTION_SCORED), AT_LEAST)),
    Claim("parameter-ratio", "...while training 10-30x fewer parameters than instruction tuning",
          "head at r=8 on q,v vs instruction tuning at each larger budget (r=16 and r=64 on every linear layer)",
          _budget_claim),
    Claim("head-vs-encoder", "single-label: the head matches or beats a fine-tuned BERT-class encoder",
          "head vs MiniLM, fully fine-tuned, patents", _pair(
              Arm(COMPARISON, methods.EMBEDDING_HEAD), Arm(COMPARISON, methods.ENCODER), AT_LEAST)),
    Claim("multilabel-small-budget", "multi-label: instruction tuning is competitive only with a large budget "
          "(so not at the head's small one)", "head vs instruction tuning at the same small budget (r=8 on q,v), "
          "software tags", _pair(Arm(MULTILABEL, methods.MULTILABEL_HEAD),
                                 Arm(MULTILABEL, methods.MULTILABEL_INSTRUCTION), BEATS)),
    Claim("multilabel-large-budget", "multi-label: with a large budget instruction tuning is competitive",
          "instruction tuning at the largest budget vs the head at r=8, software tags", _multilabel_budget),
    Claim("hundred-million", "...once it trains about 100M parameters or more",
          "the threshold in absolute parameters", _hundred_million),
    Claim("multilabel-head-vs-encoder", "multi-label: the head matches or beats a fine-tuned BERT-class encoder",
          "head vs MiniLM with one sigmoid per tag, software tags", _pair(
              Arm(MULTILABEL, methods.MULTILABEL_HEAD), Arm(MULTILABEL, methods.MULTILABEL_ENCODER), AT_LEAST)),
    Claim("news", "news topics (AG News): every working configuration within about a point, no consistent winner",
          "head vs encoder, vs the frozen probe and vs instruction tuning, BBC News (each must match)", _all(
              *((Arm(NEWS, methods.EMBEDDING_HEAD), Arm(NEWS, other), MATCHES)
                for other in (methods.ENCODER, methods.FROZEN_PROBE, methods.INSTRUCTION_SCORED)))),
    Claim("pooling", "last-token and mean pooling within 0.014 F1 (single-label)",
          "the head with mean pooling vs last-token pooling under the protocol, patents", _pooling),
    Claim("verbalizer", "the verbalizer is an ablation of the paper (its result is not quoted in our sources)",
          "instruction tuning (scored) with code words vs label names, patents (they must match)", _pair(
              Arm(VERBALIZER, methods.INSTRUCTION_SCORED, "codes"), Arm(COMPARISON, methods.INSTRUCTION_SCORED),
              MATCHES)),
    Claim("calibration", f"the head's ECE is {_REPORTED_ECE} without temperature scaling",
          "the head's test ECE (seed mean) against that number", _calibration),
    Claim("distillation", "a distilled BERT-class student keeps >= 97% of the teacher's F1 at about 45x its speed",
          "a student (the encoder) distilled from the head on the training texts under the protocol, against its own "
          "teacher (F1 tested; speed printed)",
          _distillation),
    Claim("zero-shot", "zero-shot prompting is far below fine-tuning",
          "head vs the instruct model's zero-shot label scores, patents", _pair(
              Arm(COMPARISON, methods.EMBEDDING_HEAD), Arm(COMPARISON, methods.ZERO_SHOT), BEATS,
              allow_degenerate=(methods.ZERO_SHOT,))),
)
NAMES = tuple(c.name for c in _CLAIMS)


def claim(name: str) -> Claim:
    """The ledger's claim of this name; an error that lists the claims otherwise."""
    for c in _CLAIMS:
        if c.name == name:
            return c
    raise UnknownClaim(f"Unknown claim {name!r}. The ledger holds: {', '.join(NAMES)}.")


def row(ledger: Ledger, name: str) -> dict:
    """One row of the ledger: the claim, the test made here, its numbers and the generated verdict."""
    c = claim(name)
    out = c.run(ledger)
    return {"claim": c.name, "the paper says": c.paper, "tested here": c.test, "verdict": out["verdict"],
            "without the selection seed": out["without selection seed"], "numbers": out["numbers"]}


def table(profile: Profile, names: tuple[str, ...] = NAMES, n_resamples: int = 1000) -> pd.DataFrame:
    """The claims ledger: one row per claim (``_CLAIMS``), every verdict computed from the store."""
    ledger = Ledger(profile, n_resamples)
    return pd.DataFrame([row(ledger, name) for name in names]).set_index("claim")


def _markdown_path(profile: Profile) -> Path:
    """Where the book's generated ledger of a profile lives (``book/claims.md`` includes the cpu one)."""
    return ROOT / "book" / "generated" / f"claims-{profile.name}.md"


def markdown(table: pd.DataFrame) -> str:
    """The ledger in markdown: a table of claims and verdicts, then each claim's test and numbers."""
    shown = table.reset_index()[["claim", "the paper says", "verdict", "without the selection seed"]]
    details = [f"- **{name}** ({row['tested here']}):\n" + "\n".join(f"  - {line}" for line in row["numbers"].splitlines())
               for name, row in table.iterrows()]
    return shown.to_markdown(index=False) + "\n\nThe tests and their numbers:\n\n" + "\n".join(details)


def write_markdown(table: pd.DataFrame, profile: Profile) -> Path:
    """Write the ledger's markdown table for the book, with the line that says what made it."""
    path = _markdown_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!-- generated by `python -m tutorial_utils ledger --profile {profile.name} --write` from "
                    f"results/{profile.name}/; do not edit -->\n\n{markdown(table)}\n")
    return path
