"""The classification head: last-token index under both paddings, pooling, equality with transformers, save/reload."""

import pytest
import torch

from tutorial_utils.setup.config import get_profile
from tutorial_utils.modeling import heads, models
from tutorial_utils.data import SECTION_NAMES

TEXTS = ["Hand tools: with teeth", "Compounds of calcium, strontium, or barium: by thermal decomposition"]


@pytest.fixture(scope="module")
def tiny_classifier():
    return models.load_sequence_classifier(get_profile("tiny"), SECTION_NAMES)


def test_last_token_index_handles_both_padding_sides():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert heads.last_token_index(right).tolist() == [2, 4]
    assert heads.last_token_index(left).tolist() == [4, 4]
    assert heads.naive_last_index(right).tolist() == [2, 4]
    assert heads.naive_last_index(left).tolist() == [2, 4]  # the trap: row 0's last real token is at 4, not 2


def test_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert heads.pool(hidden, mask, "last").squeeze(-1).tolist() == [3.0, 6.0]
    assert heads.pool(hidden, mask, "mean").squeeze(-1).tolist() == [2.0, 4.0]
    assert heads.pool(hidden, mask, "max").squeeze(-1).tolist() == [3.0, 6.0]
    with pytest.raises(ValueError, match="Unknown pooling 'cls'"):
        heads.pool(hidden, mask, "cls")


def test_hand_written_head_equals_transformers(tiny_classifier):
    model, tokenizer = tiny_classifier
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, heads.hand_written_head(model)(**batch).logits)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_logits_match_unpadded(tiny_classifier, side):
    model, tokenizer = tiny_classifier
    tokenizer.padding_side = side
    try:
        batch = tokenizer(TEXTS, padding=True, return_tensors="pt").to(model.device)
        with torch.no_grad():
            padded = model(**batch).logits.float()
            alone = torch.cat([model(**tokenizer([t], return_tensors="pt").to(model.device)).logits.float() for t in TEXTS])
    finally:
        tokenizer.padding_side = "right"
    assert torch.allclose(padded, alone, atol=0.1), "bf16 rounding stays well below 0.1 on the tiny model"


def test_hand_written_head_rejects_a_model_without_a_score_head():
    with pytest.raises(ValueError, match="Expected a decoder sequence classifier"):
        heads.hand_written_head(torch.nn.Linear(2, 2))


def test_save_and_reload_keeps_the_trained_head(tmp_path):
    profile = get_profile("tiny")
    model, tokenizer = models.load_sequence_classifier(profile, SECTION_NAMES)
    model = models.add_lora(model, profile.lora)
    with torch.no_grad():  # make the head differ from any fresh initialisation
        model.base_model.model.score.modules_to_save["default"].weight.add_(0.5)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt").to(model.device)
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path)
    reloaded, _ = models.load_trained_classifier(profile, SECTION_NAMES, str(tmp_path))
    reloaded.eval()
    fresh, _ = models.load_sequence_classifier(profile, SECTION_NAMES)
    with torch.no_grad():
        after = reloaded(**batch).logits.float()
        untrained = fresh(**batch).logits.float()
    # the reloaded head is bf16 (it was fp32 after k-bit preparation): logits agree to bf16 rounding
    assert torch.allclose(before.float(), after, atol=0.1)
    top2 = before.float().topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.1  # a near-tie can flip under bf16 rounding; a clear winner cannot
    assert torch.equal(before.argmax(-1)[clear], after.argmax(-1)[clear])
    assert (untrained - after).abs().max() > 1.0, "a fresh head would also have passed: the test proves nothing"


def test_a_tag_encoder_starts_at_the_tag_priors_and_pools_the_mean():
    import numpy as np

    profile = get_profile("tiny")
    names = ["a", "b", "c"]
    encoder, tokenizer = models.load_encoder_classifier(profile, names, multi_label=True)
    Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    tagger = heads.tag_encoder(encoder, Y)
    assert tagger.pooling == "mean" and tagger.multi_label
    prior = np.clip(Y.mean(0), 1e-3, 1 - 1e-3)
    assert torch.allclose(tagger.score.bias, torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32))
    batch = tokenizer(["one text", "another, longer text"], padding=True, return_tensors="pt")
    out = tagger(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 labels=torch.tensor(Y[:2], dtype=torch.float32))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="4 outputs"):
        heads.tag_encoder(models.load_encoder_classifier(profile, names, multi_label=True)[0], np.zeros((2, 4)))


def test_label_token_init_makes_the_head_score_each_class_as_the_lm_scores_its_first_token():
    profile = get_profile("tiny")
    names = ["alpha", "beta"]
    model, tokenizer = models.load_sequence_classifier(profile, names, quantize=False)
    ids = heads.init_from_label_tokens(model, tokenizer, names)
    assert ids == [tokenizer(n, add_special_tokens=False)["input_ids"][0] for n in names]
    assert torch.equal(model.score.weight, model.get_input_embeddings().weight[ids].to(model.score.weight.dtype))
