"""The claims ledger: each claim of the paper, the test made here, its numbers and a verdict computed from them
(chapter 08 and ``book/claims.md``).

Every row reads the results store. A comparison of two methods is a two-level bootstrap of the seed-mean
difference (``stats.seed_bootstrap``: seeds and test items resampled), at the equivalence margin the
protocol fixes before any run (``Protocol.equivalence_margin``). The verdict follows from the interval
and the claim's kind, never from a word typed by hand:

* a claim that A **matches or beats** B holds (*reproduced*) when A is significantly better or not worse
  than B by more than the margin (the 90% interval's low end above -margin), reads *equivalent within the
  margin* when the 90% interval lies inside the margin, *contradicted* when B is significantly better;
* a claim that A **beats** B holds when A is significantly better, and is *contradicted* when B is better
  or the two are equivalent;
* a claim that A and B **match** holds (*equivalent within the margin*) when the 90% interval lies inside
  the margin (the two one-sided tests, TOST), and is *contradicted* when the 95% interval lies outside it;
* otherwise the test cannot tell: *not distinguishable*, with the smallest difference it could have found.

A run that is degenerate (``run_checks.degenerate``) or still improving at its epoch cap
(``run_checks.convergence``) enters no verdict: the row says so. A claim whose runs are not in the store
says *not run (cost)* with the estimated hours; one that a 135M model cannot test says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import methods
from ..evaluation import run_checks, stats
from ..evaluation.metrics import expected_calibration_error
from ..setup import budgets
from ..setup.config import ROOT, Profile
from ..storage.records import RunRecord
from . import comparison, experiment, store_audit
from .studies import BUDGET, COMPARISON, MULTILABEL, MULTILABEL_BUDGET, NEWS, POOLING, VERBALIZER, lora_tag

__all__ = ["VERDICTS", "UnknownClaim", "Arm", "Ledger", "excluded", "verdict", "numbers", "compare", "Claim",
           "NAMES", "claim", "row", "table", "markdown", "write_markdown"]

REPRODUCED, CONTRADICTED, EQUIVALENT = "reproduced", "contradicted", "equivalent within the margin"
UNDECIDED, AT_SCALE, NOT_RUN, EXCLUDED = ("not distinguishable", "not testable at this scale", "not run (cost)",
                                          "no verdict (a run is excluded)")
VERDICTS = (REPRODUCED, CONTRADICTED, EQUIVALENT, UNDECIDED, AT_SCALE, NOT_RUN, EXCLUDED)
AT_LEAST, BEATS, MATCHES = "matches or beats", "beats", "matches"
_REPORTED_ECE = 0.094  # the paper's (v3) ECE of its embedding head before temperature scaling, as quoted second-hand


class UnknownClaim(KeyError):
    """A claim name that is not in the ledger."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Arm:
    """One side of a test: a method's chosen runs in one study (and variant)."""

    study: str
    method: str
    variant: str = ""

    def label(self) -> str:
        """The arm as a reader sees it, e.g. "LoRA embedding head (pooling mean)"."""
        extra = f", {self.variant}" if self.variant else ""
        where = "" if self.study in {COMPARISON, MULTILABEL, NEWS} and not extra else f" ({self.study}{extra})"
        return methods.get(self.method).title + where


@dataclass
class Ledger:
    """The runs a ledger reads, loaded once per (study, variant), and the protocol's margin."""

    profile: Profile
    n_resamples: int = 1000

    def __post_init__(self):
        self.margin = self.profile.protocol.equivalence_margin
        self._runs: dict[tuple[str, str], dict[str, list[RunRecord]]] = {}
        self._plans: dict[str, list[experiment.Spec]] = {}
        self._missing: dict[str, list[experiment.Spec]] = {}

    def plan(self, study: str) -> list[experiment.Spec]:
        """The study's planned runs (made once)."""
        if study not in self._plans:
            self._plans[study] = [s for s in experiment.plan(self.profile, studies=(study,)) if s.study == study]
        return self._plans[study]

    def runs(self, arm: Arm) -> list[RunRecord]:
        """The arm's stored runs at its chosen value (each seed's try best on validation, ``experiment.best_try``)."""
        at = (arm.study, arm.variant)
        if at not in self._runs:
            self._runs[at] = experiment.records_of(self.profile, arm.study, arm.variant, self.plan(arm.study))
        return self._runs[at].get(arm.method, [])

    def missing(self, arms: list[Arm]) -> list[experiment.Spec]:
        """The planned runs of these arms' studies that the store lacks (known now)."""
        out = []
        for study in dict.fromkeys(a.study for a in arms):  # in the arms' order (a set's order moves with hash seeds)
            if study not in self._missing:
                self._missing[study] = [s for s in self.plan(study) if experiment.lookup(self.profile, s) is None]
            wanted = {(a.method, a.variant) for a in arms if a.study == study}
            out += [s for s in self._missing[study] if (s.method, s.variant) in wanted
                    or (experiment.produced_by(s.method), s.variant) in wanted]
        return out


def excluded(runs: list[RunRecord], margin: float, allow_degenerate: bool = False) -> str | None:
    """Why these runs cannot enter a verdict (``run_checks.exclusions``), or None."""
    return "; ".join(run_checks.exclusions(runs, margin, allow_degenerate)) or None


def verdict(test: stats.SeedBootstrap, kind: str, margin: float) -> str:
    """The verdict word for a claim of this kind (A matches or beats / beats / matches B) from the interval."""
    (lo95, hi95), (lo90, hi90) = test.ci95, test.ci90
    inside = -margin < lo90 and hi90 < margin
    if kind == MATCHES:
        return EQUIVALENT if inside else CONTRADICTED if (lo95 > margin or hi95 < -margin) else UNDECIDED
    if kind == BEATS:
        return REPRODUCED if lo95 > 0 else CONTRADICTED if (hi95 < 0 or inside) else UNDECIDED
    if lo95 > 0:
        return REPRODUCED
    if hi95 < 0:
        return CONTRADICTED
    if inside:
        return EQUIVALENT
    return REPRODUCED if lo90 > -margin else UNDECIDED


def numbers(test: stats.SeedBootstrap, a: list[RunRecord], b: list[RunRecord], metric_name: str,
            a_name: str, b_name: str) -> str:
    """The numbers behind a verdict, in one line: both seed means, the difference with its intervals, the seed
    pairings that agree, and the smallest difference the test could detect."""
    def mean(runs):
        values = [r.test_metrics[metric_name] for r in runs]
        return f"{np.mean(values):.3f} ({len(values)} run{'s' if len(values) > 1 else ''})"
    sign = comparison.signed
    return (f"{a_name} {mean(a)} vs {b_name} {mean(b)}: difference {sign(test.difference)}, 95% "
            f"[{sign(test.ci95[0])}, {sign(test.ci95[1])}], 90% [{sign(test.ci90[0])}, {sign(test.ci90[1])}]; "
            f"{test.agreeing}/{test.pairings} seed pairings agree; detectable: {test.detectable:.3f}")


def compare(ledger: Ledger, a: Arm, b: Arm, kind: str, allow_degenerate: tuple[str, ...] = ()) -> dict:
    """One test of ``a`` against ``b``: the verdict, its numbers, and the verdict without the seed that chose
    the learning rate (the first), where that leaves each tuned method at least one run."""
    runs_a, runs_b = ledger.runs(a), ledger.runs(b)
    missing = ledger.missing([a, b])
    line = ""
    if runs_a and runs_b:
        metric_name, _ = comparison.headline(runs_a[0])
        metric = comparison.metric_for(runs_a[0])
        if not np.array_equal(runs_a[0].y_true, runs_b[0].y_true):
            raise ValueError(f"{a.label()} and {b.label()} were scored on different test items; a ledger row compares "
                             "two methods on one test split.")
        test = stats.seed_bootstrap(runs_a[0].y_true, [r.y_pred for r in runs_a], [r.y_pred for r in runs_b], metric,
                                    ledger.n_resamples)
        line = numbers(test, runs_a, runs_b, metric_name, a.label(), b.label())
    if missing or not line:
        hours = store_audit.estimated_seconds(ledger.profile, missing) / 3600
        named = "; ".join(s.describe() for s in missing[:3]) + ("; ..." if len(missing) > 3 else "")
        so_far = f"so far (no verdict yet): {line}; " if line else f"{a.label()} vs {b.label()}: "
        return {"verdict": NOT_RUN, "numbers": f"{so_far}{len(missing)} planned run(s) not in the store yet, about "
                                               f"{hours:.1f} h on this machine ({named}; later seeds are planned once "
                                               "a grid is done)", "without selection seed": "-"}
    why = excluded(runs_a, ledger.margin, a.method in allow_degenerate) or \
        excluded(runs_b, ledger.margin, b.method in allow_degenerate)
    if why:
        return {"verdict": EXCLUDED, "numbers": f"{line}; excluded: {why}", "without selection seed": "-"}
    first = ledger.profile.protocol.seeds[0]
    later_a, later_b = ([r for r in runs if r.seed != first] or runs for runs in (runs_a, runs_b))
    later = stats.seed_bootstrap(runs_a[0].y_true, [r.y_pred for r in later_a], [r.y_pred for r in later_b], metric,
                                 ledger.n_resamples)
    return {"verdict": verdict(test, kind, ledger.margin), "numbers": line,
            "without selection seed": verdict(later, kind, ledger.margin), "test": test}


def _combined(verdicts: list[str]) -> str:
    """One verdict from several tests of one claim: contradicted if any is, reproduced (or equivalent) if all are."""
    if not verdicts:
        return NOT_RUN
    for word in (NOT_RUN, EXCLUDED, CONTRADICTED):
        if word in verdicts:
            return word
    if all(v in {REPRODUCED, EQUIVALENT} for v in verdicts):
        return EQUIVALENT if all(v == EQUIVALENT for v in verdicts) else REPRODUCED
    return UNDECIDED


# ---- the claims ------------------------------------------------------------------------------------------------

def _pair(a: Arm, b: Arm, kind: str, **options) -> Callable[[Ledger], dict]:
    """A claim tested by one comparison of two arms."""
    return lambda ledger: compare(ledger, a, b, kind, **options)


def _all(*tests: tuple[Arm, Arm, str]) -> Callable[[Ledger], dict]:
    """A claim tested by several comparisons, every one of which must hold (``_combined``)."""
    def run(ledger: Ledger) -> dict:
        rows = [compare(ledger, a, b, kind) for a, b, kind in tests]
        return {"verdict": _combined([r["verdict"] for r in rows]), "numbers": "\n".join(r["numbers"] for r in rows),
                "without selection seed": _combined([r["without selection seed"] for r in rows])
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
    """The distilled student is not part of the protocol's studies: its cost, from the stored runs it would repeat."""
    runs = [ledger.runs(Arm(COMPARISON, m)) for m in (methods.EMBEDDING_HEAD, methods.ENCODER)]
    cost = (f"about {sum(r.provenance['wall_seconds'] for r in runs[0] + runs[1]) / 3600:.1f} h, what the "
            f"{len(runs[0])} stored head runs and {len(runs[1])} encoder runs took" if all(runs) else "not known yet")
    return {"verdict": NOT_RUN, "without selection seed": "-", "numbers": f"a student needs its teacher retrained on "
            f"every seed (the store keeps no weights) and one student run each: {cost}; chapter 7 distils one teacher"}


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
          "a student distilled from the head under the protocol", _distillation),
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
