"""The results store against the plan: which stored runs are used, stale or waiting for a grid's search,
pruning the stale ones, and what the stored runs cost (chapter 08; ``reproduce`` reports the problems, ``--prune`` deletes them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable

import numpy as np

from .. import methods
from ..setup.config import Profile
from ..storage import records, store
from .experiment import plan, validation_metrics
from .specs import Spec, spec
from .studies import COMPARISON, EFFICIENCY, EFFICIENCY_METHODS, comparison_data, study_data, study_profile

__all__ = ["wall_seconds", "waiting", "audit", "prune", "estimated_seconds", "study_hours"]


def wall_seconds(profile: Profile, longer: bool = True) -> dict[str, float]:
    """The kept stored runs' wall time by study, a training that serves two methods counted once (the cost of
    ``reproduce``; runs waiting for a grid's search count, since they were paid for). ``longer=False`` leaves
    out the longer tries of runs that were still improving at their cap."""
    kept, out = _kept(profile), {}
    for _, record in store.stored(profile.name):
        if isinstance(record, store.StoreError) or record.key not in kept or methods.get(record.method).trained_with:
            continue
        if not longer and record.extra.get("extension"):
            continue
        study = record.extra.get("study", COMPARISON)
        out[study] = out.get(study, 0.0) + record.provenance["wall_seconds"]
    return out


def waiting(profile: Profile, specs: list[Spec] | None = None) -> set[str]:
    """The keys of runs the plan may still use: every seed at every value of a grid whose search is not over
    (a run past its end still missing, say), and the data-efficiency sizes at those values. Until the
    search ends, the value those seeds train with is not known, so such stored runs are not stale. So too every
    stored distilled student while the plan cannot name each seed's (its teacher's search or runs not over).
    ``specs``: the plan, when the caller has made it already."""
    p = profile.protocol
    specs = plan(profile) if specs is None else specs
    grids: dict[tuple[str, str, str], list[Spec]] = {}
    for s in specs:
        if s.role == "grid":
            grids.setdefault((s.study, s.variant, s.method), []).append(s)
    data = comparison_data(profile, p.efficiency_sizes)
    keys: set[str] = set()
    described: dict[str, dict] = {}  # each study's data fingerprinted once
    for (study, variant, method), grid in grids.items():
        if validation_metrics(profile, grid) is not None:
            continue
        view, own = study_profile(profile, study, variant), study_data(profile, study)
        if study not in described:
            described[study] = records.data_description(own, view.single_label_data)
        about = described[study]
        values = [s.value for s in grid]
        keys |= {spec(view, study, method, own, seed, v, "seed", about, variant).key for v in values for seed in p.seeds}
        if study == COMPARISON and method in EFFICIENCY_METHODS:
            keys |= {spec(profile, EFFICIENCY, method, data[n], p.seeds[0], v, "once",
                          records.data_description(data[n], profile.single_label_data)).key
                     for n in data if n != max(data) for v in values}
    return keys | _students_waiting(profile, specs)


def _students_waiting(profile: Profile, specs: list[Spec]) -> set[str]:
    """The stored students' keys, when some seed has no student in the plan yet: a student's key holds its teacher's
    learning rate and epoch cap, which the plan names only once the comparison's head runs on that seed are done."""
    if {s.seed for s in specs if s.method == methods.STUDENT} >= set(profile.protocol.seeds):
        return set()
    return {where.name.rsplit("-", 1)[-1] for where in store.run_folders(profile.name) if where.parent.name == methods.STUDENT}


def _kept(profile: Profile) -> set[str]:
    """The keys a stored run may have and stay: the plan's, and those ``waiting`` for a grid's search."""
    specs = plan(profile)
    return {s.key for s in specs} | waiting(profile, specs)


def _verdict(record, where, kept: set[str]) -> str | None:
    """Why a stored record should go ("unreadable", "stale", "misplaced"), or None if it stays."""
    if isinstance(record, store.StoreError):
        return "unreadable"
    if record.key not in kept:
        return "stale"
    return None if where.name.endswith(record.key) else "misplaced"


def audit(profile: Profile) -> list[str]:
    """Problems of the profile's stored results: unreadable records, and records no current plan run has (stale)."""
    kept = _kept(profile)
    problems = []
    for where, record in store.stored(profile.name):
        why = _verdict(record, where, kept)
        if why == "unreadable":
            problems.append(f"unreadable: {record}")
        elif why == "stale":
            problems.append(f"stale: {where} (method {record.method}, seed {record.seed}) was made with data or "
                            "settings the current code does not use. Fix: delete it and run "
                            f"`python -m tutorial_utils reproduce --profile {profile.name} --only {record.method}`.")
        elif why == "misplaced":
            problems.append(f"misplaced: {where} holds the record of key {record.key}")
    return problems


def prune(profile: Profile) -> list[str]:
    """Delete the stored runs that ``audit`` finds stale, unreadable or misplaced; returns their folders."""
    kept = _kept(profile)
    removed = []
    for where, record in store.stored(profile.name):
        if _verdict(record, where, kept):
            shutil.rmtree(where)
            removed.append(str(where))
    return removed


def estimated_seconds(profile: Profile, specs: Iterable[Spec]) -> float:
    """What these runs would take on this machine, from the stored runs' wall times: per run, the median of
    the stored runs of its method on its dataset (of its study's variant where some are stored: a larger LoRA
    budget trains slower), scaled by its training-set size (100 at least) and by its epoch cap
    (``Spec.extension``; ``_per_example``). A method that shares another's training (instruction-generated)
    costs nothing of its own."""
    walls: dict[tuple[str, str, str | None], list[tuple[int, float]]] = {}
    for _, record in store.stored(profile.name):
        if not isinstance(record, store.StoreError):
            seen = (record.train_examples, record.provenance["wall_seconds"])
            walls.setdefault((record.method, record.dataset, None), []).append(seen)
            walls.setdefault((record.method, record.dataset, record.extra.get("variant", "")), []).append(seen)
    total = 0.0
    for s in specs:
        if methods.get(s.method).trained_with:  # its training is the method it shares it with: counted there
            continue
        total += _per_example(walls, s.method, s.dataset, s.variant) * max(s.train_size, 100) * 2 ** s.extension
    return float(total)


def _per_example(walls: dict, method: str, dataset: str, variant: str) -> float:
    """Seconds per training example of a run of ``method``: the median of its stored runs (its variant's where some
    are stored); a distilled student with none stored: its teacher's (the head's) and its own model's (the
    encoder's), both of which it trains; 10 minutes per 800 examples where none is stored."""
    stored = walls.get((method, dataset, variant)) or walls.get((method, dataset, None), [])
    if stored:
        return float(np.median([w / max(n, 1) for n, w in stored]))
    if method == methods.STUDENT:
        return sum(_per_example(walls, m, dataset, "") for m in (methods.EMBEDDING_HEAD, methods.ENCODER))
    return 600 / 800


def study_hours(profile: Profile, longer: bool = True) -> dict[str, tuple[int, float]]:
    """Per study: the planned runs (known now) the store lacks, and their estimated hours (``estimated_seconds``);
    ``longer=False`` leaves out the longer tries of runs still improving at their cap."""
    missing: dict[str, list[Spec]] = {}
    for s in plan(profile):
        if not longer and s.extension:
            continue
        if store.find(profile.name, s.dataset, s.method, s.tag, s.key, verbose=False) is None:
            missing.setdefault(s.study, []).append(s)
    return {study: (len(specs), estimated_seconds(profile, specs) / 3600) for study, specs in missing.items()}
