"""One run the studies need (chapter 08): its ``Spec`` (method, study, size, seed, tuned value, key), the key
computed from the method's settings, the data and the seed, its longer tries where it was still improving at
its epoch cap, and its stored record. ``experiment`` plans the specs and runs the missing ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from datasets import DatasetDict

from .. import methods
from ..evaluation import run_checks
from ..methods import runners
from ..setup.config import Profile
from ..storage import records, store
from ..storage.records import RunRecord

__all__ = ["Spec", "spec", "longer_cap", "extensions", "lookup"]


@dataclass(frozen=True)
class Spec:
    """One run the studies need: method, study, training-set size, seed, tuned value; its key and folder tag."""

    study: str
    method: str
    dataset: str
    train_size: int
    seed: int
    value: float | None
    role: str  # "grid" (a value on the first seed), "seed" (the chosen value on another seed) or "once"
    key: str
    settings: dict
    variant: str = ""  # what a study of variants tries in this run (``variants``); "" in the other studies
    extension: int = 0  # k > 0: the run again with 2**k times the epoch cap (its first try was still improving)
    teacher: float | None = None  # a distilled student's: its teacher's learning rate (part of the key)
    teacher_extension: int = 0  # and its teacher's epoch cap, 2**k times the protocol's (the kept head run's)

    @property
    def tag(self) -> str:
        """A readable folder name: size, variant (if any), tuned value and seed (the key makes it exact)."""
        tuned = methods.get(self.method).tuned
        value = "" if self.value is None else f"-{'lr' if tuned == 'learning_rate' else tuned}{self.value:.3g}"
        variant = f"-{self.variant}" if self.variant else ""
        longer = f"-cap-x{2 ** self.extension}" if self.extension else ""
        return f"n{self.train_size}{variant}{value}-seed{self.seed}{longer}"

    def describe(self) -> str:
        """One line for progress output."""
        shown = "" if self.value is None else f"{self.value:.2e}" if self.value < 1e-3 else f"{self.value:.3g}"
        value = shown and f", {methods.get(self.method).tuned} {shown}"
        variant = f" {self.variant}" if self.variant else ""
        longer = f", cap x{2 ** self.extension}" if self.extension else ""
        return f"{self.study}{variant}: {self.method} (n={self.train_size}{value}, seed {self.seed}, {self.role}{longer})"


def spec(profile: Profile, study: str, method: str, data: DatasetDict, seed: int, value: float | None,
         role: str, described: dict | None = None, variant: str = "", extension: int = 0,
         teacher: float | None = None, teacher_extension: int = 0) -> Spec:
    """The spec of one run, its key computed from the method's settings, the data and the seed (a distilled
    student's: with its teacher's, the head at learning rate ``teacher`` and ``2**teacher_extension`` times the
    epoch cap).

    ``described``: the data's ``records.data_description`` when the caller already has it (a plan makes
    dozens of specs on the same data; fingerprinting it once is enough).
    """
    taught = None if teacher is None else runners.settings(longer_cap(profile, teacher_extension),
                                                           methods.EMBEDDING_HEAD, teacher)
    config = runners.settings(longer_cap(profile, extension), method, value, taught)
    described = described or records.data_description(data, profile.single_label_data)
    return Spec(study, method, profile.single_label_data, len(data["train"]), seed, value, role,
                records.run_key(method, config, described, seed), config, variant, extension, teacher,
                teacher_extension)


def longer_cap(profile: Profile, extension: int) -> Profile:
    """The profile with ``2**extension`` times the protocol's epoch cap (and minimum steps, which set the cap of
    small training sets): where a run still improving at its cap trains again."""
    if not extension:
        return profile
    p = profile.protocol
    return dataclasses.replace(profile, protocol=dataclasses.replace(
        p, max_epochs=p.max_epochs * 2 ** extension, min_steps=p.min_steps * 2 ** extension))


def extensions(profile: Profile, s: Spec, data: DatasetDict, described: dict) -> list[Spec]:
    """The longer runs a run needs: while its latest stored try is still improving at its cap
    (``run_checks.convergence``), the same run at twice that cap, ``Protocol.cap_extensions`` times at most."""
    out, current = [], s
    for k in range(1, profile.protocol.cap_extensions + 1):
        record = lookup(profile, current)
        if record is None or run_checks.convergence(record) != run_checks.IMPROVING:
            break
        current = spec(profile, s.study, s.method, data, s.seed, s.value, "longer", described, s.variant, k, s.teacher,
                       s.teacher_extension)
        out.append(current)
    return out


def lookup(profile: Profile, s: Spec, verbose: bool = False) -> RunRecord | None:
    """The stored record of a spec, or None."""
    return store.find(profile.name, s.dataset, s.method, s.tag, s.key, verbose=verbose)
