"""Export: a trained embedding head (4-bit + LoRA + head) as one folder that plain transformers serves."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tutorial_utils.setup.config import get_profile
from tutorial_utils.modeling import models
from tutorial_utils.evaluation.metrics import softmax
from tutorial_utils.methods.train import predict_logits
from tutorial_utils.production import export

TEXTS = ["a patent about batteries", "hello world", "a method for drying hair with a helmet", "x"]
PROB_ATOL = 0.02  # bf16 weights and a bf16/fp32 compute difference; the labels must agree exactly


@pytest.fixture(scope="module")
def trained():
    """A 4-bit embedding head with LoRA and head weights set away from their initial values (as training does)."""
    profile = get_profile("tiny")
    model, tokenizer = models.load_sequence_classifier(profile, ["alpha", "beta", "gamma"])
    model = models.add_lora(model, profile.lora)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name or "modules_to_save" in name:
            param.data.normal_(0, 0.5)
    return profile, model, tokenizer


def served_in_a_fresh_process(folder) -> np.ndarray:
    """Probabilities (alpha, beta, gamma) for TEXTS from ``pipeline`` in a process that never imports tutorial_utils."""
    code = (f"import json\nfrom transformers import pipeline\n"
            f"clf = pipeline('text-classification', model={str(folder)!r}, top_k=None)\n"
            f"print(json.dumps(clf({TEXTS!r})))\n"
            "import sys\nassert 'tutorial_utils' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    return np.array([[next(s["score"] for s in row if s["label"] == n) for n in ("alpha", "beta", "gamma")]
                     for row in served])


def test_the_exported_folder_serves_the_same_predictions_without_the_course(trained, tmp_path):
    profile, model, tokenizer = trained
    expected = softmax(predict_logits(model, tokenizer, TEXTS))
    folder = export.export_classifier(model, tokenizer, profile, ["alpha", "beta", "gamma"], tmp_path / "model")
    probs = served_in_a_fresh_process(folder)
    assert (probs.argmax(1) == expected.argmax(1)).all()
    np.testing.assert_allclose(probs, expected, atol=PROB_ATOL)


def test_the_student_exports_to_a_folder_that_serves_the_same_predictions(tmp_path):
    """Chapter 07's student (the profile's encoder), saved by export_plain: same labels and probabilities, fresh process."""
    profile = get_profile("tiny")
    student, tokenizer = models.load_encoder_classifier(profile, ["alpha", "beta", "gamma"])
    torch.manual_seed(0)
    for param in student.classifier.parameters():
        param.data.normal_(0, 2.0)  # a head away from its initial values, as distillation leaves it
    student = student.float()
    expected = softmax(predict_logits(student, tokenizer, TEXTS, max_length=profile.encoder_train.max_length))
    folder = export.export_plain(student, tokenizer, ["alpha", "beta", "gamma"], tmp_path / "student",
                                 max_length=profile.encoder_train.max_length)
    probs = served_in_a_fresh_process(folder)
    assert (probs.argmax(1) == expected.argmax(1)).all()
    np.testing.assert_allclose(probs, expected, atol=PROB_ATOL)


def test_the_merged_weights_reproduce_the_trained_model(trained):
    """Dequantised base + each adapter's update + the head, loaded into a plain model: the trained model's outputs."""
    profile, model, tokenizer = trained
    plain, _ = models.load_sequence_classifier(profile, ["alpha", "beta", "gamma"], quantize=False)
    missing, unexpected = plain.load_state_dict(export._merged_state_dict(model), strict=False)
    assert not unexpected and all(k.endswith("lm_head.weight") for k in missing)
    gap = np.abs(softmax(predict_logits(plain, tokenizer, TEXTS)) - softmax(predict_logits(model, tokenizer, TEXTS)))
    assert gap.max() < PROB_ATOL


def test_export_refuses_a_folder_that_holds_files(trained, tmp_path):
    profile, model, tokenizer = trained
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*nothing was overwritten"):
        export.export_classifier(model, tokenizer, profile, ["alpha", "beta", "gamma"], tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
