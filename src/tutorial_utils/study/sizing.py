"""What each chapter costs on a GPU, by a worked estimate: tokens x FLOPs per token / a stated throughput (book/costs.md).

No GPU was lent to this course's sessions so far, so the figures are arithmetic, not measurements, and
every assumption is a named constant here: the accelerator's peak, the share of it a step sustains, and
the tokens each run processes (read off the profile, the way the chapters use it). A measurement on a
GPU (``python -m tutorial_utils bench all`` there) replaces the assumed shares.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..setup.budgets import ARCH_OF, KNOWN_ARCHS, PROMPT_TOKENS, linear_parameters
from ..setup.config import PROFILES, ROOT, Profile
from .store_audit import study_hours, wall_seconds

__all__ = ["Accelerator", "T4", "CHAPTER_LIMIT_MINUTES", "COURSE_LIMIT_HOURS", "CHAPTERS", "ENCODER_SHAPES",
           "SPLIT_SIZES", "Work", "reproduction_work", "seconds", "table", "largest", "REPORT", "report", "main"]


@dataclass(frozen=True)
class Accelerator:
    """A device's dense fp16 peak and the share of it each kind of step is assumed to sustain."""

    name: str
    peak_tflops: float  # the maker's dense fp16 tensor-core figure
    llm_share: float  # a 4-bit LoRA step or forward pass: dequantisation and small matrices keep it low
    encoder_share: float  # a 16-bit encoder (BERT-base) step: plain fp16 matrix products


# NVIDIA's T4 datasheet: 65 TFLOPS fp16 with tensor cores, 16 GB. The shares are assumptions (a small model
# at batch 16 x 256 tokens, bitsandbytes dequantising every 4-bit weight for each product), not measurements.
T4 = Accelerator("NVIDIA T4 (Colab's free GPU), fp16", 65.0, llm_share=0.10, encoder_share=0.25)
_COLAB_CPU_GFLOPS = 50.0  # Colab's two vCPUs (one core, hyper-threaded) in fp32: an assumption, for CPU-only steps
_SETUP_MINUTES = 3.0  # per chapter: the install cell, downloading the model(s) and the data (assumed)
CHAPTER_LIMIT_MINUTES = 20.0  # the target: each chapter well inside a free Colab session
COURSE_LIMIT_HOURS = 3.0
CHAPTERS = ("00", "01", "02", "03", "03b", "04", "05", "06", "07", "08", "09")  # 00, 01, 08 train nothing here

# Encoders by (layers, hidden, intermediate), from their config.json: a BERT block's linear layers hold
# 4 x hidden^2 (query, key, value, output) + 2 x hidden x intermediate weights.
ENCODER_SHAPES = {"all-minilm-l6-v2": (6, 384, 1536), "google-bert/bert-base-uncased": (12, 768, 3072),
                  "anferico/bert-for-patents": (24, 1024, 4096)}
# Whole-split sizes (train, validation, test) of the datasets whose profile keeps a split whole.
SPLIT_SIZES = {"debian-tags": (4005, 498, 500), "ccdv/patent-classification": (25000, 5000, 5000),
               "fancyzhx/ag_news": (120000, 1000, 7600)}  # AG News: validation carved from train
_FLOPS_PER_TOKEN = {"forward": 2, "lora": 4, "full": 6}  # x the linear weights: forward; + activation gradients;
# + weight gradients (a frozen 4-bit base needs no weight gradients, so LoRA training costs about 2 forwards)


@dataclass(frozen=True)
class Work:
    """One part of a chapter: a model trained or run over so many tokens."""

    chapter: str
    what: str
    model: str  # "llm" or "encoder"
    mode: str  # "lora", "full" or "forward" (_FLOPS_PER_TOKEN), or "cpu-forward" (on the CPU, fp32)
    tokens: float
    reused_from: str | None = None  # an earlier chapter's run: free when the Drive cache keeps it


def _encoder_linear(name: str) -> int:
    """Weights in an encoder's linear layers (the part every token multiplies through)."""
    if name not in ENCODER_SHAPES:
        raise ValueError(f"No shapes for the encoder {name!r}; add (layers, hidden, intermediate) to "
                         f"sizing.ENCODER_SHAPES (known: {sorted(ENCODER_SHAPES)}).")
    layers, hidden, inter = ENCODER_SHAPES[name]
    return layers * (4 * hidden * hidden + 2 * hidden * inter)


def _llm_linear(name: str) -> int:
    """Weights in a causal LM's decoder blocks, from ``budgets.KNOWN_ARCHS``."""
    if name not in ARCH_OF:
        raise ValueError(f"No dimensions for the causal LM {name!r}; add it to budgets.ARCH_OF and KNOWN_ARCHS.")
    return linear_parameters(KNOWN_ARCHS[ARCH_OF[name]])


def _sizes(profile: Profile, dataset: str, sizes) -> tuple[int, int, int]:
    whole = SPLIT_SIZES.get(dataset)
    wanted = (sizes.train, sizes.validation, sizes.test)
    if None in wanted and whole is None:
        raise ValueError(f"The {profile.name} profile keeps a split of {dataset!r} whole, and sizing.SPLIT_SIZES "
                         "does not know its size; add it.")
    return tuple(w if w is not None else h for w, h in zip(wanted, whole or wanted))


def _chapter_work(profile: Profile) -> list[Work]:
    """Every run the chapters make on ``profile``, as tokens through a model (texts counted at ``max_length``).

    Texts are counted at the profile's token budget: an upper bound that patent abstracts nearly reach (the
    gpu profile's 256), while the cpu profile's short titles stay well under it.
    """
    n_tr, n_val, n_te = _sizes(profile, profile.single_label_data, profile.single_label_sizes)
    m_tr, m_val, m_te = _sizes(profile, profile.multi_label_data, profile.multi_label_sizes)
    t, e, i, m, p = profile.train, profile.encoder_train, profile.instruct_train, profile.multilabel_train, profile.protocol
    L, Le, Li, Lm = t.max_length, e.max_length, i.max_length + PROMPT_TOKENS, m.max_length + PROMPT_TOKENS
    evaluate = n_val + n_te
    abl = min(profile.ablation_train_size or n_tr, n_tr)
    n_it, m_head, m_it = min(profile.instruct_train_size or n_tr, n_tr), min(profile.multilabel_train_size or m_tr, m_tr), \
        min(profile.instruct_train_size or m_tr, m_tr)
    head = [Work("02", "embedding head: train", "llm", "lora", n_tr * L * t.epochs),
            Work("02", "embedding head: validation and test", "llm", "forward", evaluate * L)]
    encoder = [Work("03", "encoder: full fine-tune", "encoder", "full", n_tr * Le * e.epochs),
               Work("03", "encoder: validation and test", "encoder", "forward", evaluate * Le)]
    again = lambda works, chapter: [Work(chapter, w.what, w.model, w.mode, w.tokens, w.chapter) for w in works]  # noqa: E731
    instruct_arm = lambda what, n: [Work("04", f"{what}: train", "llm", "lora", n * Li * i.epochs),  # noqa: E731
                                    Work("04", f"{what}: score validation", "llm", "forward", n_val * Li)]
    work = [
        *head,
        *(w for arm in ("last", "mean") for w in (Work("02", f"pooling ablation ({arm}): train", "llm", "lora", abl * L * t.epochs),
                                                   Work("02", f"pooling ablation ({arm}): validation and test", "llm",
                                                        "forward", evaluate * L))),
        *encoder, *again(head, "03"),
        Work("03b", "frozen features: every split, all layers in one pass", "llm", "forward", (n_tr + evaluate) * L),
        Work("03b", "zero-shot: score and generate", "llm", "forward", (n_te + n_val) * Li),
        Work("03b", "few-shot curve: k = 0, 1, 2, 4 on validation", "llm", "forward", n_val * (4 * Li + 7 * L)),
        Work("03b", "multi-label frozen features", "llm", "forward", (m_head + m_val + m_te) * m.max_length),
        *again(head, "03b"),
        *instruct_arm("instruction tuning", n_it),
        Work("04", "instruction tuning: score test, generate test", "llm", "forward", 2 * n_te * Li),
        *(w for arm in ("codes", "letters") for w in instruct_arm(f"verbalizer arm ({arm})", n_it)),
        *(w for lora in profile.instruct_budgets for w in instruct_arm(f"LoRA budget arm (r={lora.r})", n_it)),
        Work("05", "multi-label head: train", "llm", "lora", m_head * m.max_length * m.epochs),
        Work("05", "multi-label head: validation and test", "llm", "forward", (m_val + m_te) * m.max_length),
        Work("05", "multi-label instruction tuning: train", "llm", "lora", m_it * Lm * i.epochs),
        Work("05", "multi-label instruction tuning: generate test", "llm", "forward", m_te * Lm),
        *again(head, "07"),
        Work("07", "teacher probabilities on the transfer set", "llm", "forward", (n_tr + profile.distill_extra_texts) * L),
        Work("07", "student: distil", "encoder", "full", (n_tr + profile.distill_extra_texts) * Le * e.epochs),
        *(Work("07", f"temperature sweep ({k} of 4): distil", "encoder", "full", abl * Le * e.epochs) for k in range(1, 5)),
        *(Work("07", f"temperature sweep ({k} of 4): test", "encoder", "forward", evaluate * Le) for k in range(1, 5)),
        *again(encoder, "07"),
        Work("07", "int8 student against fp32 on the CPU (3 passes each)", "encoder", "cpu-forward",
             4.5 * min(n_te, profile.cpu_serving_texts) * Le),  # int8 at about twice fp32's speed: 3 + 3/2 passes
        Work("09", "your data: embedding head to a plateau (at most)", "llm", "lora",
             min(p.train_examples or n_tr, n_tr) * L * p.max_epochs),
        Work("09", "your data: validation at every evaluation, test", "llm", "forward",
             (n_val * p.evals_per_epoch * p.max_epochs + n_te) * L),
        Work("09", "served: test split and the news batch", "llm", "forward", 2 * n_te * L),
    ]
    return work


def reproduction_work(profile: Profile) -> list[Work]:
    """The fair reproduction (``reproduce``, read by chapter 08): every study's grid and seeds, each run at the
    protocol's epoch cap (an upper bound: a plateau stops most runs sooner; grid growth and the longer tries of
    runs still improving at their cap are left out)."""
    p = profile.protocol
    runs = len(p.grid) + len(p.seeds) - 1  # the grid on the first seed, then the other seeds at the chosen value
    n_tr, n_val, n_te = _sizes(profile, profile.single_label_data, profile.single_label_sizes)
    m_tr, m_val, m_te = _sizes(profile, profile.multi_label_data, profile.multi_label_sizes)
    w_tr, w_val, w_te = _sizes(profile, profile.news_data, profile.news_sizes)
    L, Le, Lm = profile.train.max_length, profile.encoder_train.max_length, profile.multilabel_train.max_length

    def trained(study: str, what: str, model: str, n: int, n_val: int, n_te: int, length: int, times: int) -> list[Work]:
        seen = max(n * p.max_epochs, p.min_steps * (p.batch_size or profile.train.batch_size))
        mode = "full" if model == "encoder" else "lora"
        return [Work("08", f"{study}: {what}, {times} run(s): train", model, mode, times * seen * length),
                Work("08", f"{study}: {what}, {times} run(s): evaluate", model, "forward",
                     times * (n_val * p.evals_per_epoch * p.max_epochs + n_te) * length)]

    work = []
    for study, (n, nv, nt), (length, elength) in (("patents", (n_tr, n_val, n_te), (L, Le)),
                                                  ("news", (w_tr, w_val, w_te), (L, Le)),
                                                  ("multi-label", (m_tr, m_val, m_te), (Lm, Lm))):
        n = min(p.train_examples or n, n)
        work += [*trained(study, "embedding head", "llm", n, nv, nt, length, runs),
                 *trained(study, "encoder", "encoder", n, nv, nt, elength, runs),
                 Work("08", f"{study}: frozen-LLM features", "llm", "forward", (n + nv + nt) * length),
                 *trained(study, "instruction tuning", "llm", n, nv, nt, length + PROMPT_TOKENS, runs)]
        if study != "news":  # the budget axis: both LLM methods again at each larger LoRA budget
            for what, extra in (("embedding head", 0), ("instruction tuning", PROMPT_TOKENS)):
                work += trained(f"{study} budgets", what, "llm", n, nv, nt, length + extra, runs * len(p.budgets))
    n = min(p.train_examples or n_tr, n_tr)
    work.append(Work("08", "patents: zero-shot", "llm", "forward", n_te * (L + PROMPT_TOKENS)))
    for what, extra in (("pooling", 0), ("verbalizer", PROMPT_TOKENS), ("head init", 0)):  # studies.ABLATIONS
        work += trained(f"ablation {what}", "one method", "llm", n, n_val, n_te, L + extra, runs)
    # the distillation study: on every seed the head again as the teacher, its probabilities on the training texts,
    # and an encoder student
    work += [*trained("distillation", "teacher (embedding head)", "llm", n, n_val, n_te, L, len(p.seeds)),
             Work("08", "distillation: teacher probabilities", "llm", "forward", len(p.seeds) * n * L),
             *trained("distillation", "student (encoder)", "encoder", n, n_val, n_te, Le, len(p.seeds))]
    for size in p.efficiency_sizes:
        for what, model, length in (("embedding head", "llm", L), ("encoder", "encoder", Le),
                                    ("instruction tuning", "llm", L + PROMPT_TOKENS)):
            work += trained(f"data efficiency ({size})", what, model, size, n_val, n_te, length, len(p.seeds))
        work += trained(f"ablation head init ({size})", "embedding head", "llm", size, n_val, n_te, L, len(p.seeds))
    return work


def seconds(work: Work, profile: Profile, device: Accelerator = T4) -> float:
    """Estimated seconds of one part on ``device``."""
    if work.mode == "cpu-forward":
        return work.tokens * _FLOPS_PER_TOKEN["forward"] * _encoder_linear(profile.encoder) / (_COLAB_CPU_GFLOPS * 1e9)
    weights = _llm_linear(profile.causal_lm) if work.model == "llm" else _encoder_linear(profile.encoder)
    share = device.llm_share if work.model == "llm" else device.encoder_share
    return work.tokens * _FLOPS_PER_TOKEN[work.mode] * weights / (device.peak_tflops * 1e12 * share)


def _chapter_minutes(profile: Profile, device: Accelerator = T4, drive_cache: bool = False) -> dict[str, float]:
    """Estimated minutes per chapter: setup plus compute; with ``drive_cache`` an earlier chapter's runs are free."""
    minutes: dict[str, float] = {}
    for w in _chapter_work(profile):
        if drive_cache and w.reused_from:
            continue
        minutes[w.chapter] = minutes.get(w.chapter, _SETUP_MINUTES) + seconds(w, profile, device) / 60
    return minutes


def table(profile: Profile, device: Accelerator = T4) -> list[dict]:
    """One row per chapter: tokens trained and run, minutes without and with the Drive cache, within the target."""
    works = _chapter_work(profile)
    cold, cached = _chapter_minutes(profile, device), _chapter_minutes(profile, device, drive_cache=True)
    rows = []
    for chapter in CHAPTERS:
        mine = [w for w in works if w.chapter == chapter]
        rows.append({"chapter": chapter,
                     "tokens trained (M)": sum(w.tokens for w in mine if w.mode in ("lora", "full")) / 1e6,
                     "tokens run (M)": sum(w.tokens for w in mine if "forward" in w.mode) / 1e6,
                     "minutes, fresh runtime": cold.get(chapter, _SETUP_MINUTES),
                     "minutes, Drive cache": cached.get(chapter, _SETUP_MINUTES),
                     f"within {CHAPTER_LIMIT_MINUTES:g} min": cold.get(chapter, _SETUP_MINUTES) <= CHAPTER_LIMIT_MINUTES})
    return rows


def largest(works: Iterable[Work], profile: Profile, device: Accelerator = T4, n: int = 5) -> list[tuple[str, str, float]]:
    """The ``n`` costliest parts as (chapter, what, minutes): where a smaller profile would save most."""
    ranked = sorted(((w.chapter, w.what, seconds(w, profile, device) / 60) for w in works), key=lambda r: -r[2])
    return ranked[:n]


REPORT = ROOT / "benchmarks" / "results" / "t4-estimate.md"
_BENCH_JSON = ROOT / "benchmarks" / "results" / "cpu-cpu.json"
_STUDY_OF = {"patents": "comparison", "news": "news", "multi-label": "multi-label", "data efficiency": "efficiency",
            "patents budgets": "budget", "multi-label budgets": "multi-label budget", "ablation pooling": "pooling",
            "ablation verbalizer": "verbalizer", "ablation head init": "head init", "distillation": "distillation"}


def _measured_cpu(profile: Profile, bench_json: Path = _BENCH_JSON) -> Accelerator:
    """This machine as an Accelerator: the FLOP rate of the 4-bit embedding-head step ``bench train`` measured."""
    rows = json.loads(bench_json.read_text())["sections"]["train"]["rows"]
    step = next(r for r in rows if r["method"] == "embedding head" and r["weights"].startswith("4-bit"))
    rate = step["tokens/s"] * _FLOPS_PER_TOKEN["lora"] * _llm_linear(profile.causal_lm) / 1e12
    return Accelerator("this course's 2-core CPU, at the rate `bench train` measured", rate, 1.0, 1.0)


def _markdown_table(rows: list[dict]) -> str:
    return pd.DataFrame(rows).round(1).to_markdown(index=False)


def report(profile: Profile, device: Accelerator = T4, check: Profile | None = None) -> str:
    """The estimate as markdown: per chapter on ``device``, the course, the reproduction, and the same
    arithmetic checked against what ``check`` (the cpu profile) really took on this course's CPU."""
    rows = table(profile, device)
    cold = sum(r["minutes, fresh runtime"] for r in rows)
    cached = sum(r["minutes, Drive cache"] for r in rows)
    reproduction = sum(seconds(w, profile, device) for w in reproduction_work(profile)) / 3600
    lines = [f"**Estimated cost of the `{profile.name}` profile on an {device.name}** (`python -m tutorial_utils.study.sizing`; "
             "arithmetic, not a measurement).", "",
             f"- peak {device.peak_tflops:g} TFLOPS; assumed sustained share: {device.llm_share:.0%} for the 4-bit "
             f"LLM, {device.encoder_share:.0%} for the 16-bit encoder; CPU-only steps at {_COLAB_CPU_GFLOPS:g} GFLOP/s;",
             f"- {_SETUP_MINUTES:g} minutes of set-up per chapter (install cell, model and data downloads);",
             f"- FLOPs per token: {_FLOPS_PER_TOKEN['forward']}, {_FLOPS_PER_TOKEN['lora']} and {_FLOPS_PER_TOKEN['full']} x "
             "the linear weights for a forward pass, a LoRA step on a frozen base and a full fine-tuning step; every "
             f"text counted at the profile's token budget (instruction prompts +{PROMPT_TOKENS} tokens);",
             "- *Drive cache*: runs an earlier chapter made are loaded from Google Drive instead of trained again;",
             "- chapters 00 and 01 train nothing, and chapter 08 reads the results store: their set-up is their cost.", "",
             _markdown_table(rows), "",
             f"The chapters: {cold:.0f} minutes in fresh runtimes, {cached:.0f} with the Drive cache "
             f"(target: at most {CHAPTER_LIMIT_MINUTES:g} minutes a chapter, {COURSE_LIMIT_HOURS:g} hours in all). "
             "Chapters 06 and 08 read the results store, and show the cpu profile's runs while this profile's store is "
             f"empty: making it (`python -m tutorial_utils reproduce --profile {profile.name}`: every grid and seed "
             f"at the epoch cap) would take about {reproduction:.1f} hours, a job for a longer GPU session that "
             "resumes where it stopped.", "",
             "The costliest parts:", "",
             *(f"- chapter {c}, {what}: {m:.1f} min" for c, what, m in largest(_chapter_work(profile), profile, device, 3))]
    if check is not None:
        cpu = _measured_cpu(check)
        predicted: dict[str, float] = {}
        for w in reproduction_work(check):
            study = _STUDY_OF[w.what.split(":")[0].split(" (")[0]]
            predicted[study] = predicted.get(study, 0.0) + seconds(w, check, cpu) / 3600
        # a study still missing runs is left out: its wall time is not its cost yet (longer tries are not estimated)
        unfinished = set(study_hours(check, longer=False))
        stored = {k: v / 3600 for k, v in wall_seconds(check, longer=False).items() if k not in unfinished}
        lines += ["", f"**How far to trust it.** The same arithmetic, on the `{check.name}` profile at the rate this "
                  f"course's CPU measured ({cpu.peak_tflops * 1000:.0f} GFLOP/s in the 4-bit LoRA step of "
                  "`benchmarks/results/cpu-cpu.json`), against the wall time its reproduction really took "
                  "(the results store's provenance), for the studies whose runs are all stored:", "",
                  _markdown_table([{"study": k, "estimated (h)": predicted.get(k, 0.0), "measured (h)": stored[k],
                                     "measured / estimated": stored[k] / predicted[k]} for k in sorted(stored) if k in predicted]),
                  "", "The arithmetic leaves out what the measured runs also paid for: grids that grew past an end, "
                  "answers generated token by token at each evaluation, data preparation, and CPU time shared with "
                  "other work. Read the GPU figures above as the compute a chapter needs at the least, and expect "
                  "the clock to show up to the ratio in the last column more."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the estimate for a profile to ``benchmarks/results/t4-estimate.md`` (book/costs.md includes it)."""
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils.study.sizing", description=main.__doc__)
    parser.add_argument("--profile", default="gpu", choices=sorted(PROFILES))
    parser.add_argument("--out", default=str(REPORT))
    args = parser.parse_args(argv)
    Path(args.out).write_text(report(PROFILES[args.profile], T4, PROFILES["cpu"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
