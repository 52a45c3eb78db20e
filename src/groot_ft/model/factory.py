"""Create, save and reload a model together with its tokenizer.

``create_model`` accepts a preset name, a directory written by :func:`save_model` (or a trainer checkpoint), or a local
copy of an upstream N1.6 checkpoint (e.g. ``nvidia/GR00T-N1.6-3B``: ``config.json`` with ``model_type`` ``Gr00tN1d6``
and no sub-configs, ``model*.safetensors`` with upstream's tensor names). See ``docs/model.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from groot_ft.errors import UserError, read_json_file
from groot_ft.hub import has_tokenizer
from groot_ft.io import share_like_umask

from .configuration import Gr00tN1d6Config
from .modeling import Gr00tN1d6
from .n17.factory import create_n17_model, load_n17_config, model_family
from .n17.configuration import Gr00tN1d7Config
from .n17.presets import N17_PRESETS
from .presets import PRESETS, preset
from .tokenizer import IMG_CONTEXT_ID, IMG_CONTEXT_TOKEN, VOCAB_SIZE, build_tokenizer, load_tokenizer

DEFAULT_SEED = 0


class TokenizerNotFoundError(UserError, FileNotFoundError):
    """A model whose vocabulary needs a tokenizer that was not found; the message says where to get it."""


class CheckpointError(UserError, ValueError):
    """A checkpoint directory that cannot be used as it is (missing weights, a tokenizer that does not fit it)."""


class ModelNotFoundError(UserError, FileNotFoundError):
    """A model path that is neither a preset nor a model directory; the message names the path and the presets."""


def load_model_config(directory: str | os.PathLike[str]) -> Gr00tN1d6Config | Gr00tN1d7Config:
    """The ``config.json`` of a model directory (an N1.7 one gives a ``Gr00tN1d7Config``). A file that is not JSON,
    or not a GR00T config, is a CheckpointError naming it (transformers' own error names neither the line nor the
    field)."""
    path = Path(directory) / "config.json"
    read_json_file(path, "the model config")  # a syntax error, with its line and column
    if model_family(directory) == "n1.7":
        return load_n17_config(directory)
    try:
        return Gr00tN1d6Config.from_pretrained(os.fspath(directory))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a GR00T N1.6 model config ({exc})") from exc

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


# Upstream's fine-tuning defaults (N1.6's FinetuneConfig: 0.0; N1.7's launch_finetune passes 0.2, over its model
# config's 0.8), for a run that does not choose.
FINETUNE_STATE_DROPOUT = {"n1.6": 0.0, "n1.7": 0.2}


def finetune_state_dropout(value: float | None, base_model_path: str | os.PathLike) -> tuple[float, str]:
    """The run's ``state_dropout_prob`` and where it came from: ``value`` when set, else upstream's fine-tuning
    default for the base model's family."""
    if value is not None:
        return float(value), "state_dropout_prob from the run config"
    family = model_family(base_model_path)
    source = f"upstream's GR00T {family.upper()} fine-tuning default (state_dropout_prob null)"
    return FINETUNE_STATE_DROPOUT[family], source


def create_model(
    base_model_path: str | os.PathLike,
    seed: int = DEFAULT_SEED,
    *,
    bf16_weights: bool | None = None,
    tokenizer=None,
    **config_overrides,
):
    """Return ``(model, tokenizer)``.

    ``base_model_path`` is a preset name (``"tiny"``, ``"mid"``, ``"n1.6-3b"``; ``"n1.7-tiny"``, ``"n1.7-3b"``): a
    fresh model initialised under ``seed``; or a checkpoint directory (ours or upstream's): loaded in fp32 with
    ``from_pretrained``. Missing weights raise (except a ``mask_token`` created for ``state_dropout_prob > 0``). ``config_overrides`` (e.g.
    ``tune_llm=True``, ``state_dropout_prob=0.5``) replace config fields in both cases; architecture fields only make
    sense for presets.

    ``bf16_weights``: apply upstream's ``load_bf16`` + ``backbone_trainable_params_fp32``
    (:meth:`Gr00tN1d6.apply_bf16_weights`); ``None`` = do it when the config's ``load_bf16`` is set and CUDA is
    available. ``tokenizer``: a tokenizer or a directory to load one from (``tokenizer_path``); by default the
    checkpoint's own files beside its config.json, the byte tokenizer for presets and for models built on it, and
    otherwise :class:`TokenizerNotFoundError` (see :func:`checkpoint_tokenizer`). ``tokenizer.source`` says which.

    GR00T N1.7 (an ``n1.7-*`` preset, or ``model_type`` ``Gr00tN1d7`` in config.json) is built or loaded by
    :func:`groot_ft.model.n17.factory.create_n17_model` with the same arguments (fp32 weights, Qwen3-VL tokenizer).
    """
    if model_family(base_model_path) == "n1.7":  # an N1.7 preset, or config.json's model_type Gr00tN1d7
        return create_n17_model(base_model_path, seed, bf16_weights=bf16_weights, tokenizer=tokenizer,
                                **config_overrides)
    if isinstance(tokenizer, (str, os.PathLike)):
        source = os.fspath(tokenizer)
        tokenizer = load_tokenizer(source)
        tokenizer.source = f"{source} (tokenizer_path)"

    if isinstance(base_model_path, str) and base_model_path in PRESETS:
        if tokenizer is None:
            tokenizer = build_tokenizer()
            tokenizer.source = f"byte tokenizer (preset {base_model_path!r})"
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
        raise ModelNotFoundError(
            f"{os.fspath(base_model_path)}: neither a preset ({', '.join(sorted([*PRESETS, *N17_PRESETS]))}) nor a "
            "model directory "
            "with config.json (an output_dir, a checkpoint-N directory or a downloaded checkpoint)"
        )
    # The tokenizer first: a checkpoint that cannot be fed correctly fails before gigabytes of weights are read.
    tokenizer = checkpoint_tokenizer(path, load_model_config(path), tokenizer)
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
        raise CheckpointError(f"{path}: checkpoint lacks weights for {shown}")

    image_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
    if image_id != model.config.image_token_index:
        raise CheckpointError(
            f"{path}: tokenizer {IMG_CONTEXT_TOKEN} id {image_id} != config {model.config.image_token_index}"
        )
    if len(tokenizer) > model.config.text_config.vocab_size:
        vocab = model.config.text_config.vocab_size
        raise CheckpointError(f"{path}: tokenizer has {len(tokenizer)} tokens > vocab_size {vocab}")
    if _resolve_bf16(bf16_weights, model.config):
        model.apply_bf16_weights()
    return model, tokenizer



def checkpoint_tokenizer(path: Path, config, tokenizer=None):
    """The tokenizer for checkpoint directory ``path`` (``config``: its config), with ``.source`` saying where it came
    from. Never falls back silently: a vocabulary no tokenizer here matches is an error saying where to get one."""
    if tokenizer is not None:
        tokenizer.source = getattr(tokenizer, "source", None) or "given by the caller"
    elif has_tokenizer(path):
        tokenizer = load_tokenizer(path)
        tokenizer.source = f"{path} (tokenizer files beside config.json)"
    elif config.text_config.vocab_size == VOCAB_SIZE and config.image_token_index == IMG_CONTEXT_ID:
        # A model built for this project's byte tokenizer (a 260-token vocabulary) whose directory lacks the files:
        # the byte tokenizer is deterministic, so this rebuilds exactly the one it was trained with.
        tokenizer = build_tokenizer()
        tokenizer.source = f"byte tokenizer, rebuilt ({path} holds a {VOCAB_SIZE}-token byte-tokenizer model)"
    else:
        # Upstream checkpoints ship no tokenizer (upstream vendors Eagle's in its source tree). Any other tokenizer
        # would feed the pretrained LLM ids it never saw, so there is no fallback.
        raise TokenizerNotFoundError(
            f"{path}: no tokenizer files (tokenizer_config.json + vocab.json/merges.txt or tokenizer.json) beside "
            f"config.json, and the model's {config.text_config.vocab_size}-token vocabulary needs its own "
            "tokenizer. Upstream GR00T N1.6 checkpoints ship none: set `tokenizer_path` to a directory holding "
            "upstream's Eagle tokenizer files (Isaac-GR00T's gr00t/model/modules/nvidia/Eagle-Block2A-2B-v2/), or copy "
            "those files next to the checkpoint's config.json"
        )
    return tokenizer


def save_model(model: Gr00tN1d6, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors and the tokenizer files into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(os.fspath(out))
    tokenizer.save_pretrained(os.fspath(out))
    share_like_umask(*out.glob("*.safetensors"))
    return out
