"""The verdicts of the claims ledger (chapter 08): the arms a test compares, the runs it reads from the store,
and a verdict computed from the interval of the difference, never typed by hand (``ledger`` holds the claims).

A comparison of two methods is a two-level bootstrap of the seed-mean difference (``stats.seed_bootstrap``:
seeds and test items resampled), at the equivalence margin the protocol fixes before any run
(``Protocol.equivalence_margin``; the distillation row's margin is 3% of its teacher's F1, the paper's share). The verdict follows from the interval and the claim's kind:

* a claim that A **matches or beats** B holds (*reproduced*) when A is significantly better or not worse
  than B by more than the margin (the 90% interval's low end above -margin), reads *equivalent within the
  margin* when the 90% interval lies inside the margin, *contradicted* when B is significantly better;
* a claim that A **beats** B holds when A is significantly better, and is *contradicted* when B is better
  or the two are equivalent;
* a claim that A and B **match** holds (*equivalent within the margin*) when the 90% interval lies inside
  the margin (the two one-sided tests, TOST), and is *contradicted* when the 95% interval lies outside it;
* a claim that A is **not worse** than B by more than a margin (the distilled student keeps 97% of its
  teacher's F1) holds when the 90% interval's low end is above -margin (a one-sided test), and is
  *contradicted* when the 95% interval lies below -margin;
* otherwise the test cannot tell: *not distinguishable*, with the smallest difference it could have found.

A run that is degenerate (``run_checks.degenerate``) or still improving at its epoch cap
(``run_checks.convergence``) enters no verdict: the row says so. A claim whose runs are not in the store
says *not run (cost)* with the estimated hours; one that a 135M model cannot test says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import methods
from ..evaluation import run_checks, stats
from ..setup.config import Profile
from ..storage.records import RunRecord
from . import comparison, experiment, store_audit
from .specs import Spec, lookup
from .studies import COMPARISON, MULTILABEL, NEWS

__all__ = ["REPRODUCED", "CONTRADICTED", "EQUIVALENT", "UNDECIDED", "AT_SCALE", "NOT_RUN", "EXCLUDED", "VERDICTS",
           "AT_LEAST", "BEATS", "MATCHES", "NOT_WORSE", "Arm", "Ledger", "excluded", "verdict", "numbers", "compare",
           "combined"]

REPRODUCED, CONTRADICTED, EQUIVALENT = "reproduced", "contradicted", "equivalent within the margin"
UNDECIDED, AT_SCALE, NOT_RUN, EXCLUDED = ("not distinguishable", "not testable at this scale", "not run (cost)",
                                          "no verdict (a run is excluded)")
VERDICTS = (REPRODUCED, CONTRADICTED, EQUIVALENT, UNDECIDED, AT_SCALE, NOT_RUN, EXCLUDED)
AT_LEAST, BEATS, MATCHES, NOT_WORSE = "matches or beats", "beats", "matches", "is not worse by more than the margin"


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
        self._plans: dict[str, list[Spec]] = {}
        self._missing: dict[str, list[Spec]] = {}

    def plan(self, study: str) -> list[Spec]:
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

    def missing(self, arms: list[Arm]) -> list[Spec]:
        """The planned runs of these arms' studies that the store lacks (known now)."""
        out = []
        for study in dict.fromkeys(a.study for a in arms):  # in the arms' order (a set's order moves with hash seeds)
            if study not in self._missing:
                self._missing[study] = [s for s in self.plan(study) if lookup(self.profile, s) is None]
            wanted = {(a.method, a.variant) for a in arms if a.study == study}
            out += [s for s in self._missing[study] if (s.method, s.variant) in wanted
                    or (experiment.produced_by(s.method), s.variant) in wanted]
        return out


def excluded(runs: list[RunRecord], margin: float, allow_degenerate: bool = False) -> str | None:
    """Why these runs cannot enter a verdict (``run_checks.exclusions``), or None."""
    return "; ".join(run_checks.exclusions(runs, margin, allow_degenerate)) or None


def verdict(test: stats.SeedBootstrap, kind: str, margin: float) -> str:
    """The verdict word for a claim of this kind (A matches or beats / beats / matches / is not worse than B by
    more than the margin) from the interval."""
    (lo95, hi95), (lo90, hi90) = test.ci95, test.ci90
    inside = -margin < lo90 and hi90 < margin
    if kind == NOT_WORSE:
        return REPRODUCED if lo90 > -margin else CONTRADICTED if hi95 < -margin else UNDECIDED
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


def combined(verdicts: list[str]) -> str:
    """One verdict from several tests of one claim: contradicted if any is, reproduced (or equivalent) if all are."""
    if not verdicts:
        return NOT_RUN
    for word in (CONTRADICTED, NOT_RUN, EXCLUDED):  # one test that contradicts is enough; the rest may wait
        if word in verdicts:
            return word
    if all(v in {REPRODUCED, EQUIVALENT} for v in verdicts):
        return EQUIVALENT if all(v == EQUIVALENT for v in verdicts) else REPRODUCED
    return UNDECIDED
