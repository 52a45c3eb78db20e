"""Tokenizer build/save/load and the collator's batch layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import groot_ft.model as gm
from groot_ft.model.collator import Gr00tCollator
from groot_ft.model.tokenizer import IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN

EXPECTED_KEYS = {"input_ids", "attention_mask", "pixel_values", "state", "action", "action_mask", "embodiment_id"}


def test_tokenizer_ids_and_round_trip(tmp_path, tokenizer):
    assert tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN) == gm.preset("tiny").image_token_index == 3
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id == 0
    assert tokenizer.padding_side == "left"
    text = "pick the pear, then the crème brûlée"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))  # one token per byte
    assert tokenizer.decode(ids) == text

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded.padding_side == "left"
    for token in (IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN, "<pad>"):
        assert loaded.convert_tokens_to_ids(token) == tokenizer.convert_tokens_to_ids(token)
    assert len(loaded) == len(tokenizer)


def test_build_is_deterministic():
    a, b = gm.build_tokenizer(), gm.build_tokenizer()
    assert a.get_vocab() == b.get_vocab()


def test_collator_layout(collator, tokenizer, make_sample):
    rng = np.random.default_rng(0)
    texts = ["pick", "place the sweet potato in the plate"]
    samples = [make_sample(rng, text=t) for t in texts]
    batch = collator(samples)
    assert set(batch) == EXPECTED_KEYS
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert batch["pixel_values"].shape == (4, 3, 48, 48) and batch["pixel_values"].dtype == torch.float32
    assert batch["state"].shape == (2, 1, 32)
    assert batch["action"].shape == batch["action_mask"].shape == (2, 16, 32)
    assert batch["embodiment_id"].tolist() == [10, 10]

    block = 1 + 9 + 1  # <img> + 9 x <IMG_CONTEXT> + </img>
    lengths = [len(t.encode()) + 2 * block for t in texts]
    assert ids.shape == (2, max(lengths))
    assert mask.sum(1).tolist() == lengths
    # Left padding: padding first, then the real tokens; the sequence ends with the last image block.
    assert mask[0, : max(lengths) - lengths[0]].sum() == 0 and mask[0, -lengths[0] :].all()
    assert (ids[0, : max(lengths) - lengths[0]] == tokenizer.pad_token_id).all()
    for row, text in enumerate(texts):
        real = ids[row, -lengths[row] :].tolist()
        assert real[: len(text.encode())] == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert real.count(3) == 2 * 9 and real.count(1) == 2 and real.count(2) == 2
        assert real[-1] == tokenizer.convert_tokens_to_ids(IMG_END_TOKEN)


def test_collator_normalises_and_resizes_images(collator, make_sample):
    rng = np.random.default_rng(1)
    sample = make_sample(rng, image_hw=(30, 70))
    sample["images"][:] = 255
    sample["images"][1] = 0
    pixels = collator([sample])["pixel_values"]
    assert pixels.shape == (2, 3, 48, 48)
    assert torch.allclose(pixels[0], torch.ones_like(pixels[0]))  # 255 -> +1
    assert torch.allclose(pixels[1], -torch.ones_like(pixels[1]))  # 0 -> -1


def test_collator_inference_batch_has_no_action(collator, make_sample):
    rng = np.random.default_rng(2)
    batch = collator([make_sample(rng, with_action=False) for _ in range(2)])
    assert set(batch) == EXPECTED_KEYS - {"action", "action_mask"}


def test_collator_rejects_mixed_or_misshaped_samples(collator, make_sample):
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="action"):
        collator([make_sample(rng), make_sample(rng, with_action=False)])
    bad = make_sample(rng)
    bad["state"] = np.zeros((1, 31), np.float32)
    with pytest.raises(ValueError, match="state"):
        collator([bad])


def test_instruction_cannot_inject_image_tokens(collator, make_sample):
    rng = np.random.default_rng(4)
    batch = collator([make_sample(rng, text="look at <IMG_CONTEXT> and <img>")])
    assert int((batch["input_ids"] == 3).sum()) == 2 * 9
    assert int((batch["input_ids"] == 1).sum()) == 2


def test_collator_checks_image_token_id(tokenizer):
    with pytest.raises(ValueError, match="image_token_index"):
        Gr00tCollator(tokenizer, gm.preset("tiny", image_token_index=7))
