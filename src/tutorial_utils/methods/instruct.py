"""Classification as prompt -> response: verbalizers, chat prompts, label scoring and parsing.

An instruction-tuned classifier answers a prompt (an instruction listing the labels, then the text) with a
label's words. Its prediction is read by **generating** and parsing the answer, or by **scoring** every
label string. Taught in chapter 04; reused in chapter 05 (multi-label) and for zero-/few-shot prompting.
"""

from __future__ import annotations

import copy
import string

import numpy as np
import torch
from scipy.special import log_softmax, softmax

from ..modeling.models import compute_dtype
from ..setup.checks import check_fits_model, check_label_names, check_texts
from .answers import normalize, parse_label, parse_labels  # noqa: F401 (parse_*: re-exported for chapters 03b, 04, 05)
from .verbalizer import NONE_ANSWER, Verbalizer  # noqa: F401 (NONE_ANSWER: re-exported)

__all__ = ["VERBALIZERS", "make_verbalizer", "token_counts", "answer_budget", "instruction", "truncate",
           "build_prompt", "prompt_completion", "prefix_mismatch", "answer_ids", "shared_prefix", "PromptBatches",
           "score_labels", "score_labels_one_by_one", "content_free_scores", "contextual_calibration", "generate",
           "subject_of"]

VERBALIZERS = ("names", "codes", "letters")


# ---- Verbalizers: what the model writes for each label ----------------------------------------------

def _short_codes(names: list[str] | tuple[str, ...]) -> list[str]:
    """A one-word code per label: its first word, or its first two words where the first is shared (chapter 04)."""
    words = [n.split() for n in names]
    first = [w[0] for w in words]
    return [w[0] if first.count(w[0]) == 1 else "-".join(w[:2]) for w in words]


def make_verbalizer(names: list[str] | tuple[str, ...], kind: str = "names",
                    words: list[str] | None = None) -> Verbalizer:
    """A verbalizer of a kind: "names" (the label names), "codes" (one word) or "letters" (A, B, ...) (chapter 04)."""
    if kind not in VERBALIZERS:
        raise ValueError(f"Unknown verbalizer kind {kind!r}; choose one of {VERBALIZERS}.")
    names = check_label_names(names)
    if words is None:
        if kind == "names":
            words = list(names)
        elif kind == "codes":
            words = _short_codes(names)
        else:
            if len(names) > 26:
                raise ValueError(f"Letters cover at most 26 labels, got {len(names)}. Fix: use codes or names.")
            words = list(string.ascii_uppercase[:len(names)])
    keys = [normalize(w) for w in words]
    if len(words) != len(names) or len(set(keys)) != len(keys) or not all(keys):
        raise ValueError(f"A verbalizer needs one distinct, non-empty word per label; got {words!r} for {len(names)} "
                         "labels. Fix: pass distinct words (they are compared case- and punctuation-insensitively).")
    return Verbalizer(kind, tuple(names), tuple(words))


def _context_length(model) -> int | None:
    """How many tokens the model reads at most (its position embeddings), or None if its config does not say."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def token_counts(tokenizer, verbalizer: Verbalizer, eos: bool = True) -> list[int]:
    """How many tokens each label's answer costs (with the EOS token that ends the answer) (chapter 04)."""
    return [len(answer_ids(tokenizer, w, eos)) for w in verbalizer.words]


def answer_budget(tokenizer, verbalizer: Verbalizer, extra: int = 2) -> int:
    """New tokens to let a single-label answer run: the longest label's tokens (with EOS) + ``extra`` (chapter 04).

    A fixed cap would cut long label names short in some tokenizers, and they would then never parse.
    """
    return max(token_counts(tokenizer, verbalizer)) + extra


# ---- Prompts and prompt -> answer data ------------------------------------------------------------------------------

_SUBJECTS = {"ipc-sections": "patent title", "ccdv/patent-classification": "patent abstract",
             "debian-tags": "software package description"}


def subject_of(dataset_name: str) -> str:
    """What the instruction calls one text of a dataset ("patent title", ...; "text" when unknown) (chapter 04)."""
    return _SUBJECTS.get(dataset_name, "text")


def instruction(verbalizer: Verbalizer, multi_label: bool = False, subject: str = "text") -> str:
    """The instruction that lists the labels and says what the answer must look like (chapter 04)."""
    if multi_label:
        return (f"Tag the {subject} with every label that applies. Labels: {verbalizer.options()}. "
                f"Answer with the labels only, in this order, separated by '{verbalizer.answer_separator.strip()}'.")
    return (f"Classify the {subject} into one of these labels: {verbalizer.options()}. "
            "Answer with the label only.")


def truncate(tokenizer, text: str, max_tokens: int | None) -> str:
    """The text cut to its first ``max_tokens`` tokens, so that truncation never cuts the answer (chapter 04)."""
    if max_tokens is None:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def build_prompt(tokenizer, text: str, verbalizer: Verbalizer, multi_label: bool = False, subject: str = "text",
                 max_text_tokens: int | None = None, allow_empty: bool = False) -> str:
    """The prompt: instruction as system message, text as user message, via the chat template (chapter 04).

    A model without a chat template gets a plain "instruction / Text: ... / Answer:" prompt instead.
    An empty text is refused unless ``allow_empty`` (the content-free inputs of contextual calibration).
    """
    if not (allow_empty and isinstance(text, str)):
        (text,) = check_texts([text])
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
                      max_text_tokens: int | None = None) -> "datasets.Dataset":  # noqa: F821 (imported below)
    """A prompt-completion Dataset (columns ``prompt``, ``completion``) for TRL's SFTTrainer (chapter 04)."""
    from datasets import Dataset  # lazy: datasets adds ~0.5 s; only training data needs it

    column = "labels" if multi_label else "label"
    return Dataset.from_dict({
        "prompt": [build_prompt(tokenizer, t, verbalizer, multi_label, subject, max_text_tokens)
                   for t in dataset["text"]],
        "completion": [verbalizer.answer(y) for y in dataset[column]]})


def prefix_mismatch(tokenizer, prompt: str, completion: str) -> str | None:
    """None if the tokenized prompt is a prefix of tokenized prompt + completion, else where they part (chapter 04)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    pc = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    if pc[:len(p)] == p:
        return None
    n = next((i for i, (a, b) in enumerate(zip(p, pc)) if a != b), min(len(p), len(pc)))
    return (f"the prompt alone ends in {tokenizer.convert_ids_to_tokens(p[n:])}, but prompt + completion has "
            f"{tokenizer.convert_ids_to_tokens(pc[n:n + 2])} there")


# ---- Scoring every label string from one cached prompt -----------------------------------------------

def answer_ids(tokenizer, answer: str, eos: bool = True) -> list[int]:
    """The token ids of an answer as the model writes it after the prompt, ending with EOS (chapter 04)."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if eos and tokenizer.eos_token_id is not None else ids


def _device_of(model) -> torch.device:
    """The device of the model's first parameter (inputs must go there: GPU, CPU)."""
    return next(model.parameters()).device


def _autocast(on: torch.device) -> torch.autocast:
    """bf16/fp16 autocast as the rest of the course computes (a no-op in fp32)."""
    return torch.autocast(on.type, dtype=compute_dtype(on), enabled=compute_dtype(on) != torch.float32)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (mask = 1): padding, left or in the middle, is skipped (chapter 04)."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def shared_prefix(token_lists: list[list[int]]) -> int:
    """How many leading tokens all prompts share (the instruction), leaving at least one token of each (chapter 04)."""
    n = min(len(t) for t in token_lists) - 1
    first = token_lists[0]
    for ids in token_lists[1:]:
        n = next((i for i in range(n) if ids[i] != first[i]), n)
    return max(n, 0)


class PromptBatches:
    """Prompts as a shared prefix, run once and cached, plus left-padded per-batch suffixes (chapter 04)."""

    def __init__(self, model, tokenizer, prompts: list[str], batch_size: int, reuse_prefix: bool = True):
        self.on, self.batch_size = _device_of(model), batch_size
        self.ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        self.order = np.argsort([len(i) for i in self.ids], kind="stable")  # similar lengths batched: less padding
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.n_prefix = shared_prefix(self.ids) if reuse_prefix and len(self.ids) > 1 else 0
        self.prefix = torch.tensor([self.ids[0][:self.n_prefix] if self.ids else []], device=self.on, dtype=torch.long)
        self.cache = None
        if self.n_prefix:
            with _autocast(self.on):
                self.cache = model(input_ids=self.prefix, use_cache=True, logits_to_keep=1).past_key_values

    def __iter__(self):
        """Per batch, in ``order``: (suffix ids, mask over prefix + suffix, a copy of the prefix cache or None)."""
        for start in range(0, len(self.ids), self.batch_size):
            rows = [self.ids[i][self.n_prefix:] for i in self.order[start:start + self.batch_size]]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[self.pad] * (width - len(r)) + r for r in rows], device=self.on)
            mask = torch.tensor([[1] * self.n_prefix + [0] * (width - len(r)) + [1] * len(r) for r in rows],
                                device=self.on)
            cache = None
            if self.cache is not None:
                cache = copy.deepcopy(self.cache)
                cache.batch_repeat_interleave(len(rows))
            yield ids, mask, cache


def _candidate_mask(prompt_mask: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """The 4-D attention mask (batch, 1, answer tokens, prompt + answer tokens) for scoring packed answers.

    All answers sit side by side after the prompt: each answer token sees the prompt's real tokens and
    the earlier tokens of its own answer, never another answer's (chapter 04).
    """
    total = sum(lengths)
    owner = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(prompt_mask.device)
    step = torch.arange(total, device=prompt_mask.device)
    own = (owner[:, None] == owner[None, :]) & (step[:, None] >= step[None, :])
    seen = prompt_mask.bool()[:, None, :].expand(-1, total, -1)
    return torch.cat([seen, own.expand(prompt_mask.shape[0], -1, -1)], dim=2)[:, None]


@torch.no_grad()
def score_labels(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 16,
                 eos: bool = True, reuse_prefix: bool = True) -> np.ndarray:
    """Log-likelihood of every full answer string after every prompt: an (n_prompts, n_answers) array (chapter 04).

    The instruction all prompts share runs once and is cached. Each batch of texts runs once from that
    cache; then every answer is scored in one forward pass from the texts' cache: the answers are packed
    side by side, and a 4-D attention mask keeps each one from seeing the others. An answer's score is
    the sum of its tokens' log-probabilities, EOS included (so "physics" cannot win as a prefix of
    "physics and chemistry").
    """
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError(f"score_labels needs at least one non-empty answer to score, got {answers!r}. Fix: pass the "
                         "verbalizer's words, e.g. list(verbalizer.words).")
    if not prompts:
        return np.zeros((0, len(answers)))
    prompts = check_texts(prompts, "prompts")
    check_fits_model([len(tokenizer(p, add_special_tokens=False)["input_ids"]) + max(map(len, (
        answer_ids(tokenizer, a, eos) for a in answers))) for p in prompts], _context_length(model))
    model.eval()
    on = _device_of(model)
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    if implementation not in {"sdpa", "eager"}:
        raise ValueError(f"score_labels needs 'sdpa' or 'eager' attention for its 4-D mask, the model uses "
                         f"{implementation!r}. Fix: load the model with attn_implementation='sdpa'.")
    cands = [answer_ids(tokenizer, a, eos) for a in answers]
    fed = [c[:-1] for c in cands]  # an answer's last token is predicted, never fed
    lengths = [len(f) for f in fed]
    packed = torch.tensor([t for f in fed for t in f], device=on, dtype=torch.long)
    targets = torch.tensor([t for c in cands for t in c[1:]], device=on, dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(cands)), torch.tensor(lengths)).to(on)
    step = torch.cat([torch.arange(n) for n in lengths]).to(on) if packed.numel() else packed
    firsts = torch.tensor([c[0] for c in cands], device=on)
    out, batches = [], PromptBatches(model, tokenizer, prompts, batch_size, reuse_prefix)
    for ids, mask, cache in batches:
        b, n_cached = ids.shape[0], mask.shape[1] - ids.shape[1]
        with _autocast(on):
            first = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask)[:, n_cached:],
                          past_key_values=cache, use_cache=True, logits_to_keep=1)
        scores = torch.log_softmax(first.logits[:, -1].float(), dim=-1)[:, firsts]  # each answer's first token
        if packed.numel():
            mask4d = _candidate_mask(mask, lengths)
            if implementation == "eager":  # eager attention adds its mask: 0 where seen, -inf-like elsewhere
                mask4d = torch.zeros(mask4d.shape, device=on).masked_fill(~mask4d, torch.finfo(torch.float32).min)
            with _autocast(on):
                rest = model(input_ids=packed.repeat(b, 1), attention_mask=mask4d, use_cache=False,
                             past_key_values=first.past_key_values,
                             position_ids=mask.sum(1, keepdim=True) + step).logits.float()
            logp = torch.log_softmax(rest, dim=-1).gather(-1, targets.repeat(b, 1).unsqueeze(-1)).squeeze(-1)
            scores = scores.index_add(1, owner, logp)  # add each answer's later tokens to its score
        out.append(scores.cpu().numpy())
    return np.concatenate(out)[np.argsort(batches.order)]


@torch.no_grad()
def score_labels_one_by_one(model, tokenizer, prompts: list[str], answers: list[str],
                            eos: bool = True) -> np.ndarray:
    """The reference for ``score_labels``: one forward pass per (prompt, answer) sequence, no cache (chapter 04)."""
    model.eval()
    on = _device_of(model)
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


_CONTENT_FREE = ("N/A", "[MASK]", "")  # texts with no content: what the model answers them shows its bias


def content_free_scores(model, tokenizer, verbalizer: Verbalizer, subject: str = "text",
                        inputs: tuple[str, ...] = _CONTENT_FREE) -> np.ndarray:
    """Log of the mean label probabilities for content-free texts: the model's bias before reading (chapter 04)."""
    prompts = [build_prompt(tokenizer, x, verbalizer, subject=subject, allow_empty=True) for x in inputs]
    probs = softmax(score_labels(model, tokenizer, prompts, list(verbalizer.words)), axis=-1)
    return np.log(probs.mean(axis=0))


def contextual_calibration(scores: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Label log-probabilities minus a content-free input's (contextual calibration, Zhao et al. 2021) (chapter 04)."""
    return log_softmax(np.asarray(scores, float), axis=-1) - log_softmax(np.asarray(content_free, float), axis=-1)


# ---- Free generation (parsing the answers: answers.py) --------------------------------------------------------------------

def _decoding_settings(tokenizer, max_new_tokens: int) -> dict:
    """Greedy decoding for classification, whatever the model's own ``generation_config.json`` says (chapter 04).

    A model's file may set sampling or a repetition penalty (Qwen2.5's sets ``repetition_penalty=1.1``),
    which would penalise every label word the prompt already lists, even greedily. These arguments to
    ``generate`` override every such setting.
    """
    return dict(do_sample=False, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0,
                max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, output_scores=True, return_dict_in_generate=True)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 16,
             reuse_prefix: bool = True) -> tuple[list[str], np.ndarray]:
    """Greedy answers to prompts (from the cached shared instruction) and their log-probabilities (chapter 04)."""
    if not prompts:
        return [], np.zeros(0)
    prompts = check_texts(prompts, "prompts")
    check_fits_model([len(tokenizer(p, add_special_tokens=False)["input_ids"]) + max_new_tokens for p in prompts],
                     _context_length(model))
    model.eval()
    texts, logprobs = [], []
    batches = PromptBatches(model, tokenizer, prompts, batch_size, reuse_prefix)
    for ids, mask, cache in batches:
        full = torch.cat([batches.prefix.repeat(ids.shape[0], 1), ids], dim=1)
        with _autocast(batches.on):
            gen = model.generate(input_ids=full, attention_mask=mask, past_key_values=cache,
                                 **_decoding_settings(tokenizer, max_new_tokens))
        new = gen.sequences[:, full.shape[1]:]
        logp = torch.stack([torch.log_softmax(s.float(), -1) for s in gen.scores], 1)
        token_logp = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        is_eos = (new == tokenizer.eos_token_id).long()
        keep = (is_eos.cumsum(1) - is_eos) == 0  # tokens up to and with the first EOS
        logprobs.append((token_logp * keep).sum(1).cpu().numpy())
        texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    back = np.argsort(batches.order)
    return [texts[i] for i in back], np.concatenate(logprobs)[back]
