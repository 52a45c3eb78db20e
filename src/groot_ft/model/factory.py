"""Create, save and reload a model together with its tokenizer.

``create_model`` accepts a preset name, a directory written by :func:`save_model` (or a trainer checkpoint), or a local
copy of an upstream N1.6 checkpoint (e.g. ``nvidia/GR00T-N1.6-3B``: ``config.json`` with ``model_type`` ``Gr00tN1d6``
and no sub-configs, ``model*.safetensors`` with upstream's tensor names). See ``docs/model.md``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from transformers import AutoTokenizer

from groot_ft.io import share_like_umask

from .modeling import Gr00tN1d6
from .presets import PRESETS, preset
from .tokenizer import IMG_CONTEXT_TOKEN, build_tokenizer

DEFAULT_SEED = 0

EMBED_KEY = "backbone.model.language_model.model.embed_tokens.weight"
LM_HEAD_KEY = "backbone.model.language_model.lm_head.weight"


def _checkpoint_keys(path: Path) -> set[str] | None:
    """Tensor names of a safetensors checkpoint directory (single file or sharded index), or None if not found."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    single = path / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(os.fspath(single), framework="pt") as fh:
            return set(fh.keys())
    return None


def _resolve_bf16(bf16_weights: bool | None, config) -> bool:
    if bf16_weights is None:  # upstream semantics where it matters: CUDA training with the config's load_bf16
        return bool(config.load_bf16) and torch.cuda.is_available()
    return bool(bf16_weights)


def create_model(
    base_model_path: str | os.PathLike,
    seed: int = DEFAULT_SEED,
    *,
    bf16_weights: bool | None = None,
    tokenizer=None,
    **config_overrides,
):
    """Return ``(model, tokenizer)``.

    ``base_model_path`` is a preset name (``"tiny"``, ``"mid"``, ``"n1.6-3b"``): a fresh model initialised under
    ``seed``; or a checkpoint directory (ours or upstream's): loaded in fp32 with ``from_pretrained``. Missing weights
    raise (except a ``mask_token`` created for ``state_dropout_prob > 0``). ``config_overrides`` (e.g.
    ``tune_llm=True``, ``state_dropout_prob=0.5``) replace config fields in both cases; architecture fields only make
    sense for presets.

    ``bf16_weights``: apply upstream's ``load_bf16`` + ``backbone_trainable_params_fp32``
    (:meth:`Gr00tN1d6.apply_bf16_weights`); ``None`` = do it when the config's ``load_bf16`` is set and CUDA is
    available. ``tokenizer``: a tokenizer or a directory to load one from; by default the checkpoint's own
    (``tokenizer_config.json`` beside the weights) or, failing that, this project's byte tokenizer.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))

    if isinstance(base_model_path, str) and base_model_path in PRESETS:
        tokenizer = tokenizer or build_tokenizer()
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
        if _resolve_bf16(bf16_weights, model.config):
            model.apply_bf16_weights()
        return model, tokenizer

    path = Path(base_model_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{base_model_path!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a model directory with "
            "config.json"
        )
    keys = _checkpoint_keys(path)
    load_kwargs = {}
    if keys is not None and EMBED_KEY not in keys and LM_HEAD_KEY in keys:
        # A checkpoint that kept only the tied lm_head copy of the LLM embeddings.
        load_kwargs["key_mapping"] = {
            r"^backbone\.model\.language_model\.lm_head\.": "backbone.model.language_model.model.embed_tokens."
        }
    # dtype: an upstream config.json records torch_dtype bfloat16, which "auto" would apply to the whole model
    # (action head included); load fp32 and let bf16_weights decide.
    model, info = Gr00tN1d6.from_pretrained(
        os.fspath(path), dtype=torch.float32, output_loading_info=True, **load_kwargs, **config_overrides
    )
    missing = sorted(k for k in info["missing_keys"] if not k.endswith("action_head.mask_token"))
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise ValueError(f"{path}: checkpoint lacks weights for {shown}")

    if tokenizer is None and (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(path))
    if tokenizer is None:
        # e.g. a trainer checkpoint saved without the tokenizer: the byte tokenizer is deterministic, so rebuild it.
        tokenizer = build_tokenizer()
        image_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        if image_id != model.config.image_token_index:
            # An upstream checkpoint ships no tokenizer (upstream vendors Eagle's in its source tree). Image tokens
            # only mark where image features go, so re-pointing image_token_index keeps the model consistent, but the
            # byte tokens are not the ids the pretrained LLM embeddings were trained on.
            warnings.warn(
                f"{path}: no tokenizer files; using the byte tokenizer and setting image_token_index "
                f"{model.config.image_token_index} -> {image_id}. Text token ids will not match the pretrained "
                "LLM embeddings: copy the backbone's tokenizer files (tokenizer_config.json, ...) into the directory "
                "or pass tokenizer=... to keep them.",
                stacklevel=2,
            )
            model.config.image_token_index = image_id
            model.backbone.model.image_token_index = image_id
    image_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
    if image_id != model.config.image_token_index:
        raise ValueError(
            f"{path}: tokenizer {IMG_CONTEXT_TOKEN} id {image_id} != config {model.config.image_token_index}"
        )
    if len(tokenizer) > model.config.text_config.vocab_size:
        vocab = model.config.text_config.vocab_size
        raise ValueError(f"{path}: tokenizer has {len(tokenizer)} tokens > vocab_size {vocab}")
    if _resolve_bf16(bf16_weights, model.config):
        model.apply_bf16_weights()
    return model, tokenizer


def save_model(model: Gr00tN1d6, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors and the tokenizer files into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(os.fspath(out))
    tokenizer.save_pretrained(os.fspath(out))
    share_like_umask(*out.glob("*.safetensors"))
    return out
