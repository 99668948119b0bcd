"""The experiment layer: which runs the studies need (``studies``), running them into the results store,
and reading them back for the book (chapter 08; ``python -m tutorial_utils reproduce``).

Each tuned study chooses every method's learning rate (or C) on its grid on the first seed (the grid grown
past an end that wins, ``searched_grid``), and the chosen value trains on every seed (a deterministic
method, which a seed does not change, runs once); a chosen run still improving at its epoch cap trains
again at twice the cap (``extensions``). The plan depends on what is stored: the seeds after the grid are
known once the grid's runs are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fnmatch import fnmatch

from datasets import DatasetDict
from tqdm.auto import tqdm

from .. import methods
from ..methods import multilabel_protocol, runners
from ..modeling.models import compute_dtype_name
from ..setup.config import Profile
from ..setup.timing import timed
from ..storage import records, store
from ..storage.records import RunRecord
from .specs import Spec, extensions, longer_cap, lookup, spec
from .studies import (BASE_STUDY, COMPARISON, DISTILLATION, EFFICIENCY, EFFICIENCY_METHODS, SMALL_SETS_TOO,
                      STOCHASTIC_FAMILIES, STUDIES, TUNED_STUDIES, check_study, comparison_data, study_data,
                      study_methods, study_profile, variants)

__all__ = ["RUNNERS", "runner", "grid_values", "chosen", "validation_metrics",
           "searched_grid", "grown", "plan", "expected_runs", "produced_by", "execute", "reproduce", "records_of",
           "best_try"]

# the function that trains and predicts each method under the protocol (one training of instruction tuning gives
# the outcomes of both its read-outs, scored and generated)
RUNNERS: dict[str, Callable[..., dict]] = {
    methods.TFIDF: runners.tfidf, methods.ZERO_SHOT: runners.zero_shot, methods.FROZEN_PROBE: runners.probe,
    methods.EMBEDDING_HEAD: runners.embedding_head, methods.INSTRUCTION_SCORED: runners.instruction,
    methods.ENCODER: runners.encoder, methods.MULTILABEL_TFIDF: multilabel_protocol.multilabel_tfidf,
    methods.MULTILABEL_PROBE: multilabel_protocol.multilabel_probe,
    methods.MULTILABEL_ENCODER: multilabel_protocol.multilabel_encoder,
    methods.MULTILABEL_HEAD: multilabel_protocol.multilabel_head,
    methods.MULTILABEL_INSTRUCTION: multilabel_protocol.multilabel_instruction, methods.STUDENT: runners.student}


def runner(method: str) -> Callable[..., dict]:
    """The function that trains and predicts a registered method under the protocol (``RUNNERS``)."""
    methods.get(method)  # an unknown name fails here, listing the registry
    if method not in RUNNERS:
        raise methods.UnknownMethod(f"{method!r} has no runner under the protocol yet; the protocol runs: "
                                    f"{', '.join(methods.names(runnable=True))}.")
    return RUNNERS[method]


def _run_method(profile: Profile, method: str, data: DatasetDict, seed: int, value: float | None,
                **options: object) -> dict[str, dict]:
    """Train and predict one registered method; outcomes by method name (one training may serve two methods).
    ``options``: what the runner needs beyond the value (the distilled student: its teacher's learning rate)."""
    run = runner(method)
    out = run(runners.protocol_profile(profile), data, seed, value, **options)
    return out if run is runners.instruction else {method: out}


def grid_values(profile: Profile, method: str, below: int = 0, above: int = 0) -> list[float | None]:
    """The values the protocol tries for a method: the grid's factors times its default (or None), grown
    ``below`` steps under its smallest and ``above`` steps over its largest factor by the grid's end ratios."""
    default = runners.default_value(profile, method)
    if default is None:
        return [None]
    factors = list(profile.protocol.grid)
    if len(factors) > 1:
        down, up = factors[0] / factors[1], factors[-1] / factors[-2]
        factors = [factors[0] * down ** k for k in range(below, 0, -1)] + factors + \
                  [factors[-1] * up ** k for k in range(1, above + 1)]
    return [float(f"{default * f:.3g}") for f in factors]


def chosen(profile: Profile, grid: list[Spec]) -> float | None:
    """The grid value with the best validation metric on the first seed, once every grid run is stored."""
    metric = validation_metrics(profile, grid)
    return None if metric is None else grid[_best_index(metric)].value


def validation_metrics(profile: Profile, grid: list[Spec]) -> list[float] | None:
    """The stored validation metric of every grid run, or None while one is missing."""
    found = [lookup(profile, s) for s in grid]
    return None if any(r is None for r in found) else [r.validation_metric for r in found]


def _best_index(metric: list[float]) -> int:
    """The best of a grid's validation metrics; a tie goes to the smaller value."""
    return max(range(len(metric)), key=lambda i: (metric[i], -i))


def searched_grid(profile: Profile, study: str, method: str, data: DatasetDict, described: dict,
                  variant: str = "") -> list[Spec]:
    """A method's grid on the first seed, grown past an end while the best stored value sits there strictly
    (better than its neighbour) and the protocol allows another step: the runs that choose its value."""
    below = above = 0
    while True:
        grid = [spec(profile, study, method, data, profile.protocol.seeds[0], v, "grid" if v is not None else "once",
                     described, variant) for v in grid_values(profile, method, below, above)]
        metric = validation_metrics(profile, grid) if len(grid) > 1 else None
        steps = None if metric is None else grown(metric, below, above, profile.protocol.grid_extensions)
        if steps is None:
            return grid
        below, above = steps


def grown(metric: list[float], below: int, above: int, extensions: int) -> tuple[int, int] | None:
    """The grid's steps past its ends after one more, when the best of ``metric`` (in value order) sits at an end,
    strictly better than its neighbour, and the protocol allows another step; else None (the search is done)."""
    if len(metric) < 2 or below + above >= extensions:
        return None
    best = _best_index(metric)
    if best == len(metric) - 1 and metric[-1] > metric[-2]:
        return below, above + 1
    if best == 0 and metric[0] > metric[1]:
        return below + 1, above
    return None


def _tuned_study(profile: Profile, study: str, data: DatasetDict, described: dict,
                 variant: str = "") -> tuple[list[Spec], dict]:
    """A study that tunes: each method's grid on the first seed, then the chosen value on the other seeds."""
    p = profile.protocol
    specs: list[Spec] = []
    picked: dict[str, float | None] = {}
    for method in study_methods(study):
        entry = methods.get(method)
        grid = searched_grid(profile, study, method, data, described, variant)
        specs += grid
        picked[method] = chosen(profile, grid) if entry.tuned else None
        if entry.tuned and picked[method] is None:
            continue
        chosen_runs = [s for s in grid if s.value == picked[method]]
        if entry.family in STOCHASTIC_FAMILIES:
            chosen_runs += [spec(profile, study, method, data, seed, picked[method], "seed", described, variant)
                            for seed in p.seeds[1:]]
        specs += [s for s in chosen_runs if s.role != "grid"]
        specs += [longer for s in chosen_runs for longer in extensions(profile, s, data, described)]
    return specs, picked


def plan(profile: Profile, data: dict[int, DatasetDict] | None = None, studies: Iterable[str] = STUDIES) -> list[Spec]:
    """Every run the studies need that is known now (later seeds appear once their grid is stored).

    The comparison's runs are always planned (the data-efficiency study takes its values from them); the
    news check, the multi-label study and the budget studies only when ``studies`` holds them, so that a
    chapter that reads the comparison never loads their data (on a GPU profile, a download).
    """
    p = profile.protocol
    data = data or comparison_data(profile, p.efficiency_sizes)
    top, first = max(data), p.seeds[0]
    described = {n: records.data_description(d, profile.single_label_data) for n, d in data.items()}
    specs, picked = _tuned_study(profile, COMPARISON, data[top], described[top])
    for method in EFFICIENCY_METHODS:
        if methods.get(method).tuned and picked.get(method) is None:
            continue
        seeds = p.seeds if methods.get(method).family in STOCHASTIC_FAMILIES else (first,)
        for n in sorted(data):
            if n == top:
                continue
            runs = [spec(profile, EFFICIENCY, method, data[n], seed, picked.get(method), "once" if seed == first
                         else "seed", described[n]) for seed in seeds]
            specs += runs + [longer for s in runs for longer in extensions(profile, s, data[n], described[n])]
    if DISTILLATION in set(studies):
        specs += _distilled(profile, data[top], described[top], picked,
                            [s for s in specs if s.study == COMPARISON and s.train_size == top])
    for study in [s for s in STUDIES if s in set(studies) - {COMPARISON, EFFICIENCY, DISTILLATION}]:
        own = study_data(profile, study)
        for variant in variants(profile, study):
            view = study_profile(profile, study, variant)
            made, chose = _tuned_study(view, study, own, records.data_description(own, view.single_label_data), variant)
            specs += made
            if study in SMALL_SETS_TOO:  # its question is about few labels: the efficiency study's sizes too
                specs += _smaller_sets(view, study, data, described, chose, variant)
    return specs


def _smaller_sets(profile: Profile, study: str, data: dict[int, DatasetDict], described: dict[int, dict],
                  picked: dict[str, float | None], variant: str) -> list[Spec]:
    """A study's methods on the data-efficiency study's smaller training sets, at the values its grid chose, on
    every seed (and longer where a run was still improving at its cap)."""
    specs = []
    for method, value in picked.items():
        if value is None:
            continue
        for n in sorted(data)[:-1]:
            runs = [spec(profile, study, method, data[n], seed, value, "seed", described[n], variant)
                    for seed in profile.protocol.seeds]
            specs += runs + [longer for s in runs for longer in extensions(profile, s, data[n], described[n])]
    return specs


def _distilled(profile: Profile, data: DatasetDict, described: dict, picked: dict[str, float | None],
               comparison: list[Spec]) -> list[Spec]:
    """The distillation study's runs: a student on every seed, taught by the head run the comparison kept on that
    seed (its chosen value, and the epoch cap of its try best on validation; trained again: the store keeps no
    weights), at the value the comparison chose for the encoder, the student's own model (the distillation loss's
    T^2 keeps its gradients at the scale of cross-entropy's; no grid of its own); a seed waits while its head
    runs are not all stored. Longer where a student was still improving at its cap."""
    teacher, value = picked.get(methods.EMBEDDING_HEAD), picked.get(methods.ENCODER)
    if teacher is None or value is None:
        return []
    runs = []
    for seed in profile.protocol.seeds:
        tries = [(s.extension, lookup(profile, s)) for s in comparison if s.method == methods.EMBEDDING_HEAD
                 and s.value == teacher and s.seed == seed]
        if not tries or any(record is None for _, record in tries):
            continue
        cap = best_try(tries).extra.get("extension", 0)
        runs.append(spec(profile, DISTILLATION, methods.STUDENT, data, seed, value,
                         "once" if seed == profile.protocol.seeds[0] else "seed", described, teacher=teacher,
                         teacher_extension=cap))
    return runs + [longer for s in runs for longer in extensions(profile, s, data, described)]


def expected_runs(profile: Profile, studies: Iterable[str] = STUDIES) -> int:
    """How many runs the studies' plan holds once every grid is known (for the progress bar)."""
    p = profile.protocol
    total = 0
    for study in set(TUNED_STUDIES) & set(studies):
        for method in study_methods(study):
            entry = methods.get(method)
            per_variant = len(grid_values(study_profile(profile, BASE_STUDY.get(study, study)), method)) + (
                len(p.seeds) - 1) * (entry.family in STOCHASTIC_FAMILIES)
            total += per_variant * len(variants(profile, study))
    if DISTILLATION in studies:
        total += len(p.seeds)
    if EFFICIENCY in studies:
        sizes = {min(s, p.train_examples or s) for s in p.efficiency_sizes} - {p.train_examples}
        total += len(EFFICIENCY_METHODS) * len(sizes)
    return total


def produced_by(method: str) -> str:
    """The method whose training produces this one's record (instruction-generated: instruction-scored)."""
    return methods.get(method).trained_with or method


def execute(profile: Profile, s: Spec, data: DatasetDict, command: str | None = None) -> list[RunRecord]:
    """Train and predict one spec (and any method that shares its training); write each record to the store."""
    profile = study_profile(profile, s.study, s.variant)
    options = {} if s.teacher is None else {"teacher_lr": s.teacher, "teacher_profile": runners.protocol_profile(
        longer_cap(profile, s.teacher_extension))}
    outcomes, wall = timed(_run_method, longer_cap(profile, s.extension), produced_by(s.method), data, s.seed, s.value,
                           **options)
    written = []
    wanted = study_methods(s.study)
    for method, outcome in outcomes.items():
        if method not in wanted:
            continue
        twin = spec(profile, s.study, method, data, s.seed, s.value, s.role, variant=s.variant, extension=s.extension,
                    teacher=s.teacher, teacher_extension=s.teacher_extension)
        record = records.make_record(method, twin.dataset, twin.seed, twin.settings, data, outcome, wall, command,
                                     compute_dtype=compute_dtype_name())
        record.extra.update(study=twin.study, role=twin.role, **({"variant": twin.variant} if twin.variant else {}),
                            **({"extension": twin.extension} if twin.extension else {}))
        store.write(record, store.folder(profile.name, twin.dataset, method, twin.tag, twin.key))
        written.append(record)
    return written


def reproduce(profile: Profile, only: list[str] | None = None, recompute: bool = False,
              progress: Callable[[str], None] = print, command: str | None = None,
              max_runs: int | None = None, studies: Iterable[str] | None = None,
              stop_before: Callable[[Spec], str | None] | None = None) -> list[RunRecord]:
    """Run every missing run of the plan into the store, one at a time (safe to stop and resume).

    ``only``: method names or glob patterns (e.g. ``embedding-head``, ``instruction-*``) to run; others are
    left as they are. ``studies``: run only these studies (default all of ``STUDIES``). ``recompute``: run the
    selected ones again even when stored. ``max_runs``: stop after that many trainings, and ``stop_before``:
    stop before a run for which it returns a reason (the CLI's ``--hours``: the run would not fit in the time
    left), so that a time window ends between runs, not in one; the next call goes on from there.
    """
    data = comparison_data(profile, profile.protocol.efficiency_sizes)
    studies = {check_study(s) for s in studies or STUDIES}
    done: set[str] = set()
    made: list[RunRecord] = []
    trained: list[str] = []
    bar = tqdm(total=expected_runs(profile, studies), unit="run", desc=f"reproduce {profile.name}")
    while True:
        specs = [s for s in plan(profile, data, studies) if s.study in studies and (
            not only or any(fnmatch(produced_by(s.method), o) or fnmatch(s.method, o) for o in only))]
        selected = only or len(studies) < len(STUDIES)
        bar.total = len(specs) if selected else max(bar.total, len(specs))  # a selection: its runs
        todo = [s for s in specs if s.key not in done and (recompute or lookup(profile, s) is None)]
        bar.n = len(specs) - len(todo)
        bar.refresh()
        if not todo or (max_runs is not None and len(trained) >= max_runs):
            break
        s = todo[0]
        reason = stop_before(s) if stop_before else None
        if reason:
            progress(reason)
            break
        with store.locked(profile.name, s.key):
            if recompute or lookup(profile, s, verbose=True) is None:  # another process may have made it meanwhile
                older = store.others(profile.name, s.dataset, s.method, s.tag, s.key)
                if older:
                    progress(f"{s.method}: {len(older)} stored run(s) of the same size and seed were made with other "
                             "data or settings, so they are not used (reproduce --prune deletes them)")
                progress(f"running {s.describe()} ...")
                trained.append(s.key)
                for record in execute(profile, s, study_data(profile, s.study, s.train_size), command):
                    progress(f"  stored {record.summary()} in {record.provenance['wall_seconds']:.0f} s")
                    made.append(record)
                    done.add(record.key)
        done.add(s.key)
    bar.close()
    return made


def records_of(profile: Profile, study: str = COMPARISON, variant: str = "", specs: list[Spec] | None = None,
               train_size: int | None = None) -> dict[str, list[RunRecord]]:
    """The stored records of a study that the plan selects (the chosen value on every seed, each seed's longest
    try), by method (a study of variants: of one ``variant``). ``specs``: the study's plan, if made already.
    ``train_size``: the runs on that many training examples (default: the study's full size; the efficiency
    study: every size)."""
    check_study(study)
    specs = [s for s in (plan(profile, studies=(study,)) if specs is None else specs)
             if s.study == study and s.variant == variant]
    if study != EFFICIENCY or train_size is not None:
        size = train_size or max((s.train_size for s in specs), default=0)
        specs = [s for s in specs if s.train_size == size]
    grids: dict[str, list[Spec]] = {}
    for s in specs:
        if s.role == "grid":
            grids.setdefault(s.method, []).append(s)
    picked = {method: chosen(profile, grid) for method, grid in grids.items()}
    tries: dict[tuple, list[tuple[int, RunRecord]]] = {}  # (method, size, seed): its stored tries by extension
    for s in specs:
        if s.role == "grid" and s.value != picked.get(s.method):
            continue
        record = lookup(profile, s)
        if record is not None:
            tries.setdefault((s.method, s.train_size, s.seed), []).append((s.extension, record))
    out: dict[str, list[RunRecord]] = {}
    for (method, _, _), found in tries.items():
        out.setdefault(method, []).append(best_try(found))
    return out


def best_try(tries: list[tuple[int, RunRecord]]) -> RunRecord:
    """Of one run's tries (its first, and longer ones where it was still improving at its cap), the one with the
    best validation metric (never test; a tie keeps the shorter). When a longer try did no better, the chosen
    record says so (``extra["longer try validation"]``): more epochs were tried, so it is not a lower bound."""
    found = sorted(tries, key=lambda t: t[0])
    chosen = max(found, key=lambda t: (t[1].validation_metric, -t[0]))
    longer = [r.validation_metric for k, r in found if k > chosen[0]]
    if longer:
        chosen[1].extra["longer try validation"] = max(longer)
    return chosen[1]
