"""Classification as prompt -> response: verbalizers, chat prompts, SFT data, label scoring and parsing.

An instruction-tuned classifier answers a prompt (an instruction listing the labels, then the text)
with a label's words. Two ways to read its prediction: **generate** and parse the answer, or **score**
every label string and pick the most likely one. Taught in chapter 04 (instruction tuning) and reused
in chapter 05 (multi-label) and by zero-/few-shot prompting.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import Profile, TrainSettings
from .models import compute_dtype

VERBALIZERS = ("names", "codes", "letters")
SEPARATOR = ", "  # between labels of a multi-label answer
NONE_ANSWER = "none"  # the answer for a text with no label
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPLIT = re.compile(r"[,;|\n/]+|\s+and\s+")
_PREFIX = re.compile(r"^(?:the\s+)?(?:answer|label|labels|tags?|category|section)\s*(?:is|are)?\s*[:=]?\s*", re.I)


# ---- Verbalizers: what the model writes for each label ----------------------------------------------

@dataclass(frozen=True)
class Verbalizer:
    """The words the model answers with for each label (in class order), and how the prompt lists them."""

    kind: str
    names: tuple[str, ...]
    words: tuple[str, ...]

    def options(self) -> str:
        """The label list for the instruction: one line per label ("word" or "word: full name")."""
        if self.kind == "names":
            return "\n".join(f"- {w}" for w in self.words)
        return "\n".join(f"- {w}: {n}" for w, n in zip(self.words, self.names))

    def answer(self, label_ids) -> str:
        """The response for one label id, or for a list of ids (multi-label: fixed class order, SEPARATOR)."""
        if isinstance(label_ids, (int, np.integer)):
            return self.words[int(label_ids)]
        ids = sorted(set(int(i) for i in label_ids))
        return SEPARATOR.join(self.words[i] for i in ids) if ids else NONE_ANSWER


def short_codes(names: list[str] | tuple[str, ...]) -> list[str]:
    """A one-word code per label: its first word, or its first two words where the first is shared (chapter 04)."""
    words = [n.split() for n in names]
    first = [w[0] for w in words]
    return [w[0] if first.count(w[0]) == 1 else "-".join(w[:2]) for w in words]


def make_verbalizer(names: list[str] | tuple[str, ...], kind: str = "names",
                    words: list[str] | None = None) -> Verbalizer:
    """A verbalizer of a kind: "names" (the label names), "codes" (one word) or "letters" (A, B, ...) (chapter 04)."""
    if kind not in VERBALIZERS:
        raise ValueError(f"Unknown verbalizer kind {kind!r}; choose one of {VERBALIZERS}.")
    if words is None:
        if kind == "names":
            words = list(names)
        elif kind == "codes":
            words = short_codes(names)
        else:
            if len(names) > 26:
                raise ValueError(f"Letters cover at most 26 labels, got {len(names)}. Fix: use codes or names.")
            words = list(string.ascii_uppercase[:len(names)])
    keys = [normalize(w) for w in words]
    if len(words) != len(names) or len(set(keys)) != len(keys) or not all(keys):
        raise ValueError(f"A verbalizer needs one distinct, non-empty word per label; got {words!r} for {len(names)} "
                         "labels. Fix: pass distinct words (they are compared case- and punctuation-insensitively).")
    return Verbalizer(kind, tuple(names), tuple(words))


def token_counts(tokenizer, verbalizer: Verbalizer, eos: bool = True) -> list[int]:
    """How many tokens each label's answer costs (with the EOS token that ends the answer) (chapter 04)."""
    return [len(answer_ids(tokenizer, w, eos)) for w in verbalizer.words]


# ---- Prompts and SFT data ------------------------------------------------------------------------------

def instruction(verbalizer: Verbalizer, multi_label: bool = False, subject: str = "text") -> str:
    """The instruction that lists the labels and says what the answer must look like (chapter 04)."""
    if multi_label:
        return (f"Tag the {subject} with every label that applies. Labels:\n{verbalizer.options()}\n"
                f"Answer with the labels only, in the order listed, separated by '{SEPARATOR.strip()}'.")
    return (f"Classify the {subject} into exactly one of these labels:\n{verbalizer.options()}\n"
            "Answer with the label only.")


def truncate(tokenizer, text: str, max_tokens: int | None) -> str:
    """The text cut to its first ``max_tokens`` tokens, so that truncation never cuts the answer (chapter 04)."""
    if max_tokens is None:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def build_prompt(tokenizer, text: str, verbalizer: Verbalizer, multi_label: bool = False, subject: str = "text",
                 max_text_tokens: int | None = None) -> str:
    """The full prompt string: the instruction as system message, the text as user message, via the chat template.

    A model without a chat template gets a plain "instruction / Text: ... / Answer:" prompt instead.
    """
    task, body = instruction(verbalizer, multi_label, subject), truncate(tokenizer, text, max_text_tokens)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": task}, {"role": "user", "content": body}]
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates (e.g. Gemma's) reject a system role: merge it into the user turn
            merged = [{"role": "user", "content": f"{task}\n\n{body}"}]
            return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
    return f"{task}\n\nText: {body}\nAnswer: "


def prompt_completion(dataset, tokenizer, verbalizer: Verbalizer, multi_label: bool = False, subject: str = "text",
                      max_text_tokens: int | None = None):
    """A prompt-completion Dataset (columns ``prompt``, ``completion``) for TRL's SFTTrainer (chapter 04)."""
    from datasets import Dataset

    column = "labels" if multi_label else "label"
    return Dataset.from_dict({
        "prompt": [build_prompt(tokenizer, t, verbalizer, multi_label, subject, max_text_tokens)
                   for t in dataset["text"]],
        "completion": [verbalizer.answer(y) for y in dataset[column]]})


def prefix_mismatch(tokenizer, prompt: str, completion: str) -> str | None:
    """None if the tokenized prompt is a prefix of the tokenized prompt+completion, else the tokens that merged."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    pc = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    if pc[:len(p)] == p:
        return None
    n = next(i for i, (a, b) in enumerate(zip(p, pc)) if a != b) if any(a != b for a, b in zip(p, pc)) else len(pc)
    return f"prompt ends {tokenizer.convert_ids_to_tokens(p[n:])}, prompt+completion has {tokenizer.convert_ids_to_tokens(pc[n:n + 3])}"


def sft_config(profile: Profile, settings: TrainSettings | None = None, run_name: str = "instruct",
               **overrides: object):
    """TRL SFTConfig from the profile: loss on the completion only, mixed precision that suits the device (chapter 04)."""
    from trl import SFTConfig

    from .assets import cache_dir
    from .models import device

    s, dtype = settings or profile.train, compute_dtype()
    kwargs = dict(
        output_dir=str(cache_dir() / "trainer" / profile.name / run_name), num_train_epochs=s.epochs,
        learning_rate=s.learning_rate, weight_decay=s.weight_decay, per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum, warmup_steps=s.warmup_ratio, lr_scheduler_type="linear",
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=device().type == "cpu",
        max_length=None, completion_only_loss=True, train_sampling_strategy="group_by_length",
        save_strategy="no", eval_strategy="no", logging_steps=5, report_to=[], seed=profile.seed,
        data_seed=profile.seed, dataloader_num_workers=0, dataset_num_proc=None,
        disable_tqdm=__import__("os").environ.get("COURSE_HIDE_PROGRESS") == "1")
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


def make_sft_trainer(model, tokenizer, train_dataset, profile: Profile, settings: TrainSettings | None = None,
                     run_name: str = "instruct", **overrides: object):
    """TRL's SFTTrainer on a prompt-completion dataset: it masks the prompt tokens out of the loss (chapter 04)."""
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=sft_config(profile, settings, run_name, **overrides),
                         train_dataset=train_dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    return trainer


# ---- Scoring every label string from one cached prompt -----------------------------------------------

def answer_ids(tokenizer, answer: str, eos: bool = True) -> list[int]:
    """The token ids of an answer as the model writes it after the prompt, ending with EOS (chapter 04)."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if eos and tokenizer.eos_token_id is not None else ids


def _on(model) -> torch.device:
    """The device of the model's first parameter (inputs must go there: GPU, CPU)."""
    return next(model.parameters()).device


def _autocast(on: torch.device):
    """bf16/fp16 autocast as the rest of the course computes (a no-op in fp32)."""
    dtype = compute_dtype(on)
    return torch.autocast(on.type, dtype=dtype, enabled=dtype != torch.float32)


@torch.no_grad()
def score_labels(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 8,
                 eos: bool = True) -> np.ndarray:
    """Log-likelihood of every full answer string after every prompt: an (n_prompts, n_answers) array (chapter 04).

    Each batch of prompts runs once (left-padded); its key/value cache is then repeated for every
    answer and all answers are scored in one forward pass from that cached prefix. The score is the
    sum of the answer's token log-probabilities, EOS included (so that "physics" cannot win by being a
    prefix of "physics and chemistry").
    """
    model.eval()
    on = _on(model)
    cands = [answer_ids(tokenizer, a, eos) for a in answers]
    k, width = len(cands), max(len(c) for c in cands)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cand = torch.tensor([c + [pad] * (width - len(c)) for c in cands], device=on)
    cand_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in cands], device=on)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out = []
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(on)
            b, mask = enc["input_ids"].shape[0], enc["attention_mask"]
            with _autocast(on):
                first = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=_positions(mask),
                              use_cache=True, logits_to_keep=1)
            logp0 = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # (b, vocab): the first answer token
            scores = logp0[:, cand[:, 0]].clone()  # (b, k)
            if width > 1:
                cache = first.past_key_values
                cache.batch_repeat_interleave(k)  # row i*k + j: prompt i, answer j
                ids = cand[:, :-1].repeat(b, 1)
                full_mask = torch.cat([mask.repeat_interleave(k, 0), cand_mask[:, :-1].repeat(b, 1)], dim=1)
                pos = mask.sum(1, keepdim=True).repeat_interleave(k, 0) + torch.arange(width - 1, device=on)
                with _autocast(on):
                    rest = model(input_ids=ids, attention_mask=full_mask, position_ids=pos, past_key_values=cache,
                                 use_cache=False).logits.float()
                logp = torch.log_softmax(rest, dim=-1).gather(-1, cand[:, 1:].repeat(b, 1).unsqueeze(-1)).squeeze(-1)
                scores += (logp * cand_mask[:, 1:].repeat(b, 1)).sum(-1).view(b, k)
            out.append(scores.cpu().numpy())
    finally:
        tokenizer.padding_side = side
    return np.concatenate(out)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


@torch.no_grad()
def score_labels_one_by_one(model, tokenizer, prompts: list[str], answers: list[str], eos: bool = True) -> np.ndarray:
    """The reference for ``score_labels``: one forward pass per (prompt, answer) sequence, no cache (chapter 04)."""
    model.eval()
    on = _on(model)
    out = np.zeros((len(prompts), len(answers)))
    for i, prompt in enumerate(prompts):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for j, answer in enumerate(answers):
            a = answer_ids(tokenizer, answer, eos)
            with _autocast(on):
                logits = model(input_ids=torch.tensor([p + a], device=on)).logits[0].float()
            logp = torch.log_softmax(logits[len(p) - 1:-1], dim=-1)
            out[i, j] = float(logp.gather(-1, torch.tensor(a, device=on)[:, None]).sum())
    return out


def contextual_calibration(scores: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Label log-probabilities corrected by a content-free input's (Zhao et al., 2021): subtract its bias (chapter 04)."""
    from scipy.special import log_softmax

    return log_softmax(np.asarray(scores, dtype=float), axis=-1) - log_softmax(np.asarray(content_free, float), axis=-1)


# ---- Free generation and parsing --------------------------------------------------------------------

@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 8,
             batch_size: int = 16) -> tuple[list[str], np.ndarray]:
    """Greedy answers to prompts, and each answer's log-probability under the model (chapter 04)."""
    model.eval()
    on = _on(model)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts, logprobs = [], []
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(on)
            with _autocast(on):
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
            new = gen.sequences[:, enc["input_ids"].shape[1]:]
            logp = torch.stack([torch.log_softmax(s.float(), -1) for s in gen.scores], 1)
            token_logp = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            ended = (new == tokenizer.eos_token_id).long().cumsum(1)
            keep = (ended == 0) | ((ended == 1) & (new == tokenizer.eos_token_id))  # up to and with the first EOS
            logprobs.append((token_logp * keep).sum(1).cpu().numpy())
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return texts, np.concatenate(logprobs) if logprobs else np.zeros(0)


def normalize(text: str) -> str:
    """Case-folded, punctuation replaced by spaces, whitespace collapsed: how answers are compared."""
    return " ".join(_PUNCT.sub(" ", str(text).casefold()).split())


def _lookup(verbalizer: Verbalizer) -> dict[str, int]:
    """Normalized verbalizer words, and full label names, mapped to label ids."""
    table = {normalize(n): i for i, n in enumerate(verbalizer.names)}
    table.update({normalize(w): i for i, w in enumerate(verbalizer.words)})
    if verbalizer.kind != "names":  # "A: human necessities" or "A human necessities" is A
        table.update({normalize(f"{w} {n}"): i for i, (w, n) in enumerate(zip(verbalizer.words, verbalizer.names))})
    return table


def parse_label(output: str, verbalizer: Verbalizer) -> int:
    """The label id a generated answer names, or -1 when it names none or several (chapter 04).

    Tolerates case, punctuation, surrounding spaces, a leading "Label:" and text after the first line.
    """
    table = _lookup(verbalizer)
    lines = [ln for ln in str(output).strip().splitlines() if ln.strip()]
    if not lines:
        return -1
    first = normalize(_PREFIX.sub("", lines[0].strip()))
    if first in table:
        return table[first]
    hits = {i for key, i in table.items() if re.match(rf"{re.escape(key)}(\s|$)", first)}  # "physics because ..."
    return hits.pop() if len(hits) == 1 else -1


@dataclass(frozen=True)
class ParsedLabels:
    """A parsed multi-label answer: the label ids, what could not be mapped, and whether parsing failed."""

    ids: tuple[int, ...]
    unknown: tuple[str, ...] = ()
    duplicates: int = 0
    empty: bool = False

    @property
    def failed(self) -> bool:
        """True when the answer was empty or held a piece that is no label."""
        return self.empty or bool(self.unknown)


def parse_labels(output: str, verbalizer: Verbalizer) -> ParsedLabels:
    """The label ids of a multi-label answer, split on , ; | / newlines and "and"; unknown and repeated pieces counted (chapter 05)."""
    table = _lookup(verbalizer)
    text = _PREFIX.sub("", str(output).strip())
    pieces = [normalize(p) for p in _SPLIT.split(text)]
    pieces = [p for p in pieces if p]
    if not pieces:
        return ParsedLabels((), empty=True)
    ids, unknown, dup = [], [], 0
    for piece in pieces:
        if piece == NONE_ANSWER:
            continue
        if piece not in table:
            unknown.append(piece)
        elif table[piece] in ids:
            dup += 1
        else:
            ids.append(table[piece])
    return ParsedLabels(tuple(sorted(ids)), tuple(unknown), dup)


def parse_many(outputs: list[str], verbalizer: Verbalizer, n_labels: int | None = None) -> tuple[np.ndarray, dict]:
    """Parse multi-label answers into a 0/1 matrix, and count failures, unknown pieces, duplicates, empties (chapter 05)."""
    parsed = [parse_labels(o, verbalizer) for o in outputs]
    Y = np.zeros((len(outputs), n_labels or len(verbalizer.words)), dtype=int)
    for row, p in enumerate(parsed):
        Y[row, list(p.ids)] = 1
    n = max(len(parsed), 1)
    report = {"answers": len(parsed), "failed": sum(p.failed for p in parsed),
              "with unknown label": sum(bool(p.unknown) for p in parsed),
              "with duplicate": sum(p.duplicates > 0 for p in parsed), "empty": sum(p.empty for p in parsed),
              "no label at all": int((Y.sum(1) == 0).sum())}
    report["failed rate"] = report["failed"] / n
    return Y, report


def generation_probs(y_pred: np.ndarray, confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """An (n, classes + 1) probability matrix whose top entry is the generated answer's probability (chapter 04).

    The last column stands for "unparsable": an answer that names no label puts its confidence there,
    so it counts as a confident wrong answer in a reliability diagram. The rest is spread evenly.
    """
    y = np.asarray(y_pred)
    conf = np.clip(np.asarray(confidence, float), 1.0 / (n_classes + 1) + 1e-9, 1.0)
    probs = np.repeat(((1 - conf) / n_classes)[:, None], n_classes + 1, axis=1)
    probs[np.arange(len(y)), np.where(y < 0, n_classes, y)] = conf
    return probs


def timed(fn, *args, **kwargs):
    """Call ``fn`` and return (its result, seconds it took)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
