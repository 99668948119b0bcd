"""A frozen LLM as a text encoder: cached hidden-state features + a scikit-learn head (the "probe").

No LLM weight trains; only a logistic regression on top of fixed features. The features (last token
or mean of the real tokens, from the last or a middle layer) are computed once per profile and cached
on disk, keyed by model, layer, pooling, profile and the exact texts. Taught in chapter 03b.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data import multi_hot
from ..evaluation.metrics import classification_metrics
from ..evaluation.thresholds import apply_thresholds, tune_per_class_thresholds
from ..modeling.heads import pool
from ..modeling.models import load_causal_lm
from ..setup.config import Profile
from ..storage import runs
from ..storage.records import RunRecord
from ..storage.runs import runs_dir
from . import FROZEN_PROBE, MULTILABEL_PROBE  # noqa: F401 (the names live in the registry)

__all__ = ["LAYERS", "FEATURE_POOLINGS", "cached_features", "fit_probe", "fit_multilabel_probe", "probe_parameters",
           "probe_run", "multilabel_probe_run"]

LAYERS = ("last", "middle")
FEATURE_POOLINGS = ("last", "mean")  # the two of heads.POOLINGS the probe computes features for


def _layer_index(num_layers: int, layer: str) -> int:
    """Index into ``hidden_states`` (0 = embeddings): the last block's output, or the middle block's."""
    if layer == "last":
        return num_layers
    if layer == "middle":
        return num_layers // 2
    raise ValueError(f"Unknown layer {layer!r}; choose one of {LAYERS}.")


def _feature_path(profile: Profile, name: str, layer: str, pooling: str, texts: list[str], max_length: int) -> Path:
    """Cache file of one feature matrix; its name holds everything the features depend on."""
    digest = hashlib.sha1(json.dumps([profile.causal_lm, profile.load_in_4bit, max_length, texts]).encode()).hexdigest()[:12]
    model = profile.causal_lm.replace("/", "--")
    return runs_dir() / "features" / profile.name / model / f"{name}-{layer}-{pooling}-{digest}.npy"


@torch.no_grad()
def _compute_features(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> dict[tuple[str, str], np.ndarray]:
    """One pass over the texts: every (layer, pooling) feature matrix, float32, one row per text."""
    model.eval()
    backbone = getattr(model, "model", model)  # skip the LM head: its vocabulary-sized logits are not needed
    on = next(model.parameters()).device
    num_layers = model.config.num_hidden_layers
    out: dict[tuple[str, str], list[np.ndarray]] = {(l, p): [] for l in LAYERS for p in FEATURE_POOLINGS}
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(on)
        hidden = backbone(**batch, output_hidden_states=True).hidden_states
        for layer in LAYERS:
            states = hidden[_layer_index(num_layers, layer)].float()
            for pooling in FEATURE_POOLINGS:
                out[(layer, pooling)].append(pool(states, batch["attention_mask"], pooling).cpu().numpy())
    return {key: np.concatenate(parts) for key, parts in out.items()}


def cached_features(profile: Profile, name: str, texts: list[str], max_length: int, model=None, tokenizer=None,
                    verbose: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """Features from the disk cache, or computed (loading the frozen model if none is given) and cached."""
    paths = {(l, p): _feature_path(profile, name, l, p, texts, max_length) for l in LAYERS for p in FEATURE_POOLINGS}
    if all(path.exists() for path in paths.values()):
        return {key: np.load(path) for key, path in paths.items()}
    if model is None:
        model, tokenizer = load_causal_lm(profile, padding_side="right")
    if verbose:
        print(f"computing frozen-LLM features for {len(texts)} {name} texts (cached for next time) ...")
    features = _compute_features(model, tokenizer, texts, max_length)
    for key, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, features[key])
    return features


def fit_probe(X_train: np.ndarray, y_train: np.ndarray, C: float = 1.0, seed: int = 42):
    """Standardised features + multinomial logistic regression: the single-label probe."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed)).fit(X_train, y_train)


def fit_multilabel_probe(X_train: np.ndarray, Y_train: np.ndarray, C: float = 1.0, seed: int = 42):
    """Standardised features + one logistic regression per label (one-vs-rest): the multi-label probe."""
    head = OneVsRestClassifier(LogisticRegression(C=C, max_iter=3000, random_state=seed))
    return make_pipeline(StandardScaler(), head).fit(X_train, Y_train)


def probe_parameters(probe) -> int:
    """Trainable parameters of a probe: the logistic regressions' weights and intercepts (the scaler is fitted, not trained)."""
    head = probe[-1]
    estimators = getattr(head, "estimators_", [head])
    # a label with no positive training example gets a constant predictor: nothing trained, nothing counted
    return int(sum(e.coef_.size + np.size(e.intercept_) for e in estimators if hasattr(e, "coef_")))




def _frozen_llm(profile: Profile, model, tokenizer):
    """The given frozen model, or the profile's causal LM loaded in its inference form."""
    if model is not None:
        return model, tokenizer
    return load_causal_lm(profile, padding_side="right")


def probe_run(profile: Profile, data, model=None, tokenizer=None, method: str = FROZEN_PROBE) -> RunRecord:
    """The single-label probe as a chapter's run (chapter 03b): layer and pooling chosen on validation, scored on test."""
    model, tokenizer = _frozen_llm(profile, model, tokenizer)
    feats = {s: cached_features(profile, f"{profile.single_label_data}-{s}", list(data[s]["text"]),
                                profile.train.max_length, model, tokenizer) for s in ("train", "validation", "test")}
    y = {s: np.asarray(data[s]["label"]) for s in feats}
    heads = {key: fit_probe(feats["train"][key], y["train"], seed=profile.seed) for key in feats["train"]}
    best = max(heads, key=lambda k: classification_metrics(y["validation"], heads[k].predict(feats["validation"][k]))["macro_f1"])
    probs = heads[best].predict_proba(feats["test"][best])
    return runs.record(method, profile, data, {"y_true": y["test"], "y_pred": probs.argmax(1), "probs": probs,
                                               "trainable_params": probe_parameters(heads[best]),
                                               "extra": {"layer": best[0], "pooling": best[1]}})


def multilabel_probe_run(profile: Profile, data, model=None, tokenizer=None, key: tuple[str, str] = ("middle", "mean"),
                         method: str = MULTILABEL_PROBE) -> RunRecord:
    """The multi-label probe (one-vs-rest, per-label thresholds tuned on validation) as a chapter's run (chapter 03b)."""
    model, tokenizer = _frozen_llm(profile, model, tokenizer)
    texts = {s: list(data[s]["text"]) for s in ("train", "validation", "test")}
    feats = {s: cached_features(profile, f"{profile.multi_label_data}-{s}", texts[s], profile.multilabel_train.max_length,
                                model, tokenizer)[key] for s in texts}
    Y = {s: multi_hot(data[s]).astype(int) for s in texts}
    head = fit_multilabel_probe(feats["train"], Y["train"], seed=profile.seed)
    cuts = tune_per_class_thresholds(head.predict_proba(feats["validation"]), Y["validation"])
    probs = head.predict_proba(feats["test"])
    pred = apply_thresholds(probs, cuts)
    return runs.record(method, profile, data, {"y_true": Y["test"], "y_pred": pred, "probs": probs,
                                               "trainable_params": probe_parameters(head),
                                               "extra": {"layer": key[0], "pooling": key[1]}})
