"""Distillation: the loss against its definition, the teacher-probability cache, a saved student reloads."""

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from torch.nn import functional as F

from tutorial_utils.setup.config import get_profile
from tutorial_utils.data import label_names, load_single_label
from tutorial_utils.storage import runs
from tutorial_utils.production import distill


def test_alpha_zero_is_plain_cross_entropy():
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    teacher = torch.softmax(torch.randn(5, 4), -1)
    loss = distill.distillation_loss(logits, teacher, labels, temperature=3.0, alpha=0.0)
    assert torch.allclose(loss, F.cross_entropy(logits, labels))


def test_kl_term_matches_its_definition_and_vanishes_when_the_student_copies_the_teacher():
    logits = torch.randn(6, 5)
    teacher = torch.softmax(torch.randn(6, 5), -1)
    t = 2.0
    soft = teacher ** (1 / t) / (teacher ** (1 / t)).sum(-1, keepdim=True)
    log_student = torch.log_softmax(logits / t, -1)
    expected = (soft * (soft.log() - log_student)).sum(-1).mean() * t ** 2
    assert torch.allclose(distill.distillation_loss(logits, teacher, None, t, alpha=1.0), expected, atol=1e-6)
    copy = torch.log(teacher)  # logits whose softmax is the teacher's distribution at every temperature's re-tempering
    assert distill.distillation_loss(copy, teacher, None, t, alpha=1.0).abs() < 1e-5


def test_unlabelled_rows_only_get_the_teacher_term():
    logits = torch.randn(4, 3)
    teacher = torch.softmax(torch.randn(4, 3), -1)
    labels = torch.tensor([1, -1, -1, 2])
    mixed = distill.distillation_loss(logits, teacher, labels, temperature=1.0, alpha=0.5)
    kd = distill.distillation_loss(logits, teacher, None, temperature=1.0, alpha=1.0)
    ce = F.cross_entropy(logits[[0, 3]], labels[[0, 3]])
    assert torch.allclose(mixed, 0.5 * kd + 0.5 * ce)
    all_unlabelled = distill.distillation_loss(logits, teacher, torch.full((4,), -1), temperature=1.0, alpha=0.5)
    assert torch.allclose(all_unlabelled, kd)


def test_teacher_probabilities_are_computed_once_per_text_list(tmp_path, monkeypatch):
    calls = []

    def fake(model, tokenizer, texts, settings):
        calls.append(len(texts))
        return np.full((len(texts), 3), 1 / 3)

    monkeypatch.setattr(distill, "teacher_probabilities", fake)
    profile = get_profile("tiny")
    first = distill.cached_teacher_probabilities(profile, None, None, ["a", "b"], tmp_path)
    again = distill.cached_teacher_probabilities(profile, None, None, ["a", "b"], tmp_path)
    other = distill.cached_teacher_probabilities(profile, None, None, ["a", "c", "d"], tmp_path)
    assert calls == [2, 3] and np.array_equal(first, again) and other.shape == (3, 3)


def test_a_saved_student_reloads_and_predicts_as_it_did(run_cache):
    profile = get_profile("tiny")
    data = load_single_label(profile)
    n = len(label_names(data))
    train = data["train"].select_columns(["text", "label"]).select(range(32))
    transfer = DatasetDict(train=train.add_column("teacher_probs", [[1 / n] * n] * 32))
    result, model, tokenizer = distill.student_run(profile, data, transfer, temperature=2.0, alpha=0.5)
    runs.save(result, profile, model, tokenizer)  # the student's weights go to disk with its predictions
    assert runs.load(profile, distill.STUDENT, needs_model=True) is not None
    model, tokenizer = distill.load_trained_student(runs.model_dir(profile, distill.STUDENT))
    again = distill.teacher_probabilities(model, tokenizer, list(data["test"]["text"]), profile.encoder_train)
    assert np.array_equal(again.argmax(1), result.y_pred)
    assert np.allclose(again, result.probs, atol=1e-5)
    # the student's folder is already a plain transformers model: it serves without the course (issue: export)
    import json
    import os
    import subprocess
    import sys

    texts, folder = list(data["test"]["text"])[:8], str(runs.model_dir(profile, distill.STUDENT))
    code = (f"import json, sys\nfrom transformers import pipeline\n"
            f"print(json.dumps([r['label'] for r in pipeline('text-classification', model={folder!r})({texts!r})]))\n"
            "assert 'tutorial_utils' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = label_names(data)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [names[i] for i in result.y_pred[:8]]


def test_base_disk_bytes_of_a_hub_model_come_from_the_hub_cache(monkeypatch, tmp_path):
    import huggingface_hub

    from tutorial_utils.setup import assets

    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    monkeypatch.setattr(assets, "model_path", lambda name: "Qwen/Qwen2.5-0.5B-Instruct")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, local_files_only: str(tmp_path))
    assert distill.base_disk_bytes(get_profile("tiny")) == 1000


def test_the_int8_student_is_a_quantised_copy_close_to_the_original():
    from tutorial_utils.modeling import models
    from tutorial_utils.methods.train import predict_logits

    profile = get_profile("tiny")
    student, tokenizer = models.load_encoder_classifier(profile, ["a", "b", "c"])
    student = student.float().eval()
    small = distill.int8_student(student)
    assert any("quantized" in type(m).__module__ for m in small.modules())
    assert not any("quantized" in type(m).__module__ for m in student.modules())  # the original is left as it was
    texts = ["a first text", "a second, somewhat longer text", "third"]
    full = predict_logits(student, tokenizer, texts, autocast=False)
    int8 = predict_logits(small, tokenizer, texts, autocast=False)
    assert int8.shape == full.shape and np.abs(int8 - full).max() < 0.05 * max(np.abs(full).max(), 1.0)
    rows = distill.int8_comparison(student, tokenizer, texts, [0, 1, 2], 32)
    assert rows["fp32 student"]["same label as fp32"] == 1.0 and rows["fp32 student"]["largest probability change"] == 0
    assert 0 <= rows["int8 student"]["same label as fp32"] <= 1
    assert rows["int8 student"]["weights (MiB)"] < rows["fp32 student"]["weights (MiB)"]


def tiny_transfer(profile, data, rows=32):
    n = len(label_names(data))
    return DatasetDict(train=data["train"].select_columns(["text", "label"]).select(range(rows))), n


def test_the_protocol_trains_the_student_to_a_plateau_on_its_teachers_probabilities():
    """``distillation.run`` with ``until="plateau"``: the protocol's schedule, macro-F1 on validation, best weights."""
    from tutorial_utils.methods import distillation

    profile = get_profile("tiny")
    data = load_single_label(profile)
    transfer, n = tiny_transfer(profile, data)
    with pytest.raises(ValueError, match="teacher probabilities for 32 transfer texts"):
        distillation.with_teacher(transfer, np.full((31, n), 1 / n))
    taught = distillation.with_teacher(transfer, np.eye(n)[np.asarray(transfer["train"]["label"])] * 0.9 + 0.1 / n)
    fitted = distillation.run(profile, data, taught, seed=1, lr=1e-3, temperature=2.0, alpha=0.5)
    assert fitted.logits.shape == (len(data["test"]), n)
    curve = fitted.report["validation_curve"]
    assert curve and fitted.report["validation_metric"] == max(p["value"] for p in curve)
    assert fitted.report["extra"]["test_texts_per_second"] > 0 and fitted.report["trainable_params"] > 0
    with pytest.raises(ValueError, match="until="):
        distillation.run(profile, data, taught, seed=1, lr=1e-3, temperature=2.0, alpha=0.5, until="converged")
