"""The classification head by hand: pick (or pool) a token's hidden state, then one linear layer.

transformers' ``AutoModelForSequenceClassification`` for Llama-like models does the same with
last-token pooling; ``PooledClassifier`` makes the pooling a choice for the ablation, and
``init_from_label_tokens`` starts the head where the language model already is (chapter 08's bridge
between the two approaches), and ``tag_encoder`` readies a BERT-class encoder for multi-label tags.
Taught in chapter 02.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

__all__ = ["POOLINGS", "last_token_index", "naive_last_index", "pool", "PooledClassifier", "hand_written_head",
           "init_from_label_tokens", "tag_encoder"]

POOLINGS = ("last", "mean", "max")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last real (mask = 1) token in each row: right for left *and* right padding."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(dim=1)


def naive_last_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``mask.sum() - 1``: the last real token only under right padding (the trap chapter 02 shows)."""
    return attention_mask.sum(dim=1) - 1


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str = "last") -> torch.Tensor:
    """Turn (batch, seq, hidden) states into one vector per text: last real token, mean or max over real tokens."""
    if how == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if how == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    if how == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    raise ValueError(f"Unknown pooling {how!r}; choose one of {POOLINGS}.")


class PooledClassifier(nn.Module):
    """backbone -> hidden states -> pooling -> linear head, with the loss transformers would use."""

    def __init__(self, backbone: nn.Module, score: nn.Module, pooling: str = "last", multi_label: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; choose one of {POOLINGS}.")
        self.backbone, self.score, self.pooling, self.multi_label = backbone, score, pooling, multi_label

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                **_: object) -> SequenceClassifierOutput:
        """Logits (and the loss when labels are given) for a batch of token ids."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.score(pool(hidden, attention_mask, self.pooling).to(self.score_dtype()))
        loss = None
        if labels is not None:
            loss = (nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float()) if self.multi_label
                    else nn.functional.cross_entropy(logits.float(), labels))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def score_dtype(self) -> torch.dtype:
        """The dtype of the head's weights (fp32 after k-bit preparation, bf16 before)."""
        return next(self.score.parameters()).dtype


def hand_written_head(model: nn.Module, pooling: str = "last") -> PooledClassifier:
    """A PooledClassifier that shares the backbone and head weights of a transformers (or peft) sequence classifier."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    if backbone is None or not hasattr(inner, "score"):
        raise ValueError("Expected a decoder sequence classifier with a `.score` head and a base model "
                         f"(e.g. LlamaForSequenceClassification); got {type(inner).__name__}.")
    multi = getattr(inner.config, "problem_type", None) == "multi_label_classification"
    return PooledClassifier(backbone, inner.score, pooling=pooling, multi_label=multi)


@torch.no_grad()
def init_from_label_tokens(model: nn.Module, tokenizer, label_names: list[str]) -> list[int]:
    """Start a sequence classifier's head from the language model's output rows of each label's first token.

    With tied embeddings (SmolLM2, Llama-3.2, Qwen2.5) the LM head's row of a token is its input embedding,
    and the classifier sees the same final-normed state the LM head sees, so before any training the head
    scores each class as the LM scores the first token of the class name next: instruction tuning's prior,
    inside the embedding head (chapter 08). Returns the token ids used, one per label.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    score = getattr(inner, "score", None)
    if score is None or score.weight.shape[0] != len(label_names):
        raise ValueError(f"Expected a sequence classifier with a `.score` head of {len(label_names)} rows; got "
                         f"{type(inner).__name__}. Fix: call this on models.load_sequence_classifier's model.")
    ids = [tokenizer(name, add_special_tokens=False)["input_ids"][0] for name in label_names]
    rows = inner.get_input_embeddings().weight[ids]
    score.weight.copy_(rows.to(score.weight.dtype))
    return ids


@torch.no_grad()
def tag_encoder(model: nn.Module, Y_train: np.ndarray) -> PooledClassifier:
    """A BERT-class sequence classifier readied for multi-label tags (chapter 08): each tag's output bias started at
    the log-odds of its training frequency, and mean pooling over the text.

    With the biases at 0 every tag starts at probability 0.5, while a tag is on for a few percent of texts.
    Adam moves a bias by about the learning rate per step, far too slowly, so BCE reaches the tag frequencies
    the other way: it drives the encoder to one constant output for every text within a few dozen steps
    (the loss then equals that of predicting the frequencies), and the run never recovers: the stored MiniLM
    runs predicted the same 5 tags for every description at every learning rate. Started at the priors, the
    gradient goes into telling texts apart from the first step. Mean pooling, how this sentence-transformers
    checkpoint was trained, adds a little on top (a diagnosis on 400 texts: 0.19 before, 0.52-0.53 with the
    bias start alone, 0.58-0.60 with both, micro-F1).
    """
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    score = getattr(model, "classifier", None)
    if backbone is None or score is None or score.out_features != Y_train.shape[1]:
        raise ValueError(f"Expected a BERT-class sequence classifier with a `.classifier` of {Y_train.shape[1]} outputs; "
                         f"got {type(model).__name__}. Fix: call this on models.load_encoder_classifier's model.")
    prior = np.clip(np.asarray(Y_train, dtype=np.float64).mean(axis=0), 1e-3, 1 - 1e-3)
    score.bias.copy_(torch.as_tensor(np.log(prior / (1 - prior)), dtype=score.bias.dtype))
    return PooledClassifier(backbone, score, pooling="mean", multi_label=True)
