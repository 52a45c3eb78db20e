"""Create, save and reload a model together with its tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoTokenizer

from .modeling import Gr00tN1d6
from .presets import PRESETS, preset
from .tokenizer import IMG_CONTEXT_TOKEN, build_tokenizer

DEFAULT_SEED = 0


def create_model(base_model_path: str | os.PathLike, seed: int = DEFAULT_SEED, **config_overrides):
    """Return ``(model, tokenizer)``.

    ``base_model_path`` is a preset name (``"tiny"``, ``"n1.6-3b"``): a fresh model initialised under ``seed``; or a
    directory written by :func:`save_model` / ``save_pretrained``: loaded with ``from_pretrained`` and
    ``AutoTokenizer``. ``config_overrides`` (e.g. ``tune_llm=True``, ``state_dropout_prob=0.5``) replace config fields
    in both cases; architecture fields only make sense for presets.
    """
    if isinstance(base_model_path, str) and base_model_path in PRESETS:
        tokenizer = build_tokenizer()
        config = preset(base_model_path, **config_overrides)
        # Presets with upstream's 151680-token vocabulary keep their embedding size (for faithful sizes) but use this
        # project's tokenizer, so the image token id must be the tokenizer's.
        config.image_token_index = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        if len(tokenizer) > config.text_config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens > vocab_size {config.text_config.vocab_size}")
        # Fixed seed: every process of a distributed run builds identical initial weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Gr00tN1d6(config)
        return model, tokenizer

    path = Path(base_model_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{base_model_path!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a model directory with "
            "config.json"
        )
    model = Gr00tN1d6.from_pretrained(os.fspath(path), **config_overrides)
    if (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(path))
    else:
        # e.g. a trainer checkpoint saved without the tokenizer: the byte tokenizer is deterministic, so rebuild it.
        tokenizer = build_tokenizer()
    image_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
    if image_id != model.config.image_token_index:
        raise ValueError(f"{path}: tokenizer {IMG_CONTEXT_TOKEN} id {image_id} != config {model.config.image_token_index}")
    return model, tokenizer


def save_model(model: Gr00tN1d6, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors and the tokenizer files into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(os.fspath(out))
    tokenizer.save_pretrained(os.fspath(out))
    return out
