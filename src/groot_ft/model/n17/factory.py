"""Create or load an N1.7 model with its tokenizer; :func:`model_family` tells N1.6 from N1.7.

``groot_ft.model.create_model`` hands over here when the base is an N1.7 preset (``n1.7-tiny``, ``n1.7-3b``) or a
directory whose ``config.json`` says ``model_type`` ``Gr00tN1d7`` (a released ``nvidia/GR00T-N1.7-3B`` snapshot, or a
directory this project wrote). The tokenizer is never guessed: the caller's (``tokenizer_path``), or the files beside
the checkpoint's config.json, or, for a model built on it, the tiny byte tokenizer; otherwise an error that names
Cosmos-Reason2-2B. ``tokenizer.source`` says which.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from groot_ft.errors import UserError
from groot_ft.hub import N17_BACKBONE_REPO, BaseModelError, has_tokenizer, resolve_n17_backbone

from .configuration import Gr00tN1d7Config
from .modeling import Gr00tN1d7
from .presets import N17_PRESETS, n17_preset
from .tokenizer import (
    COSMOS_TOKENIZER_HINT,
    TINY_IMAGE_TOKEN_ID,
    N17TokenizerError,
    build_tiny_tokenizer,
    check_tokenizer,
    load_qwen3vl_tokenizer,
)

N16_MODEL_TYPE = "Gr00tN1d6"
N17_MODEL_TYPE = "Gr00tN1d7"
# LeRobot's policy wrapper prefixes every tensor with this; its policy directories are refused with what to do.
LEROBOT_PREFIX = "_groot_model."


class N17ModelError(UserError, ValueError):
    """An N1.7 base that cannot be used as asked (an N1.6-only option, missing weights, an unknown model_type)."""


def model_family(base_model_path: str | os.PathLike[str]) -> str:
    """``"n1.7"`` for an N1.7 preset or a directory whose config.json has ``model_type`` ``Gr00tN1d7``; ``"n1.6"``
    otherwise (N1.6 presets, N1.6 directories, and anything the N1.6 path reports on by itself)."""
    if isinstance(base_model_path, str) and base_model_path in N17_PRESETS:
        return "n1.7"
    path = Path(base_model_path) / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            model_type = data.get("model_type")
        except (OSError, ValueError, AttributeError):
            return "n1.6"  # the N1.6 loader reports the file's syntax error with its line and column
        if model_type == N17_MODEL_TYPE:
            return "n1.7"
        if model_type is None and data.get("type") == "groot":
            raise N17ModelError(lerobot_policy_message(path.parent, data.get("base_model_path")))
    return "n1.6"


def lerobot_policy_message(directory: Path, base_model_path: str | None) -> str:
    """What to do with a directory LeRobot's ``GrootPolicy`` saved (its own config and ``_groot_model.`` weights)."""
    base = f" ({base_model_path})" if base_model_path else ""
    return (f"{directory}: a policy saved by LeRobot's GrootPolicy, not a GR00T checkpoint directory (its config.json "
            f"is LeRobot's policy config, its weights are prefixed {LEROBOT_PREFIX!r}, its statistics live in "
            f"LeRobot's processor files); serve it with LeRobot, or fine-tune here from the base model it started "
            f"from{base}")


def load_n17_config(directory: str | os.PathLike[str]) -> Gr00tN1d7Config:
    try:
        return Gr00tN1d7Config.from_pretrained(os.fspath(directory))
    except (OSError, ValueError, TypeError) as exc:
        raise N17ModelError(f"{Path(directory) / 'config.json'}: not a GR00T N1.7 model config ({exc})") from exc


def _check_overrides(overrides: dict) -> None:
    known = {f.name for f in dataclasses.fields(Gr00tN1d7Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise N17ModelError(f"{', '.join(unknown)}: not GR00T N1.7 settings (N1.6-only options?); an N1.7 base "
                            f"model takes {', '.join(sorted(k for k in known if k.startswith('tune_')))} and its other "
                            "config fields")


def n17_tokenizer(config: Gr00tN1d7Config, directory: Path | None, tokenizer=None):
    """The tokenizer for an N1.7 model (``directory``: its checkpoint directory, None for a preset), checked against
    the config's control-token ids."""
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_qwen3vl_tokenizer(tokenizer, f"{os.fspath(tokenizer)} (tokenizer_path)")
    elif tokenizer is not None:
        tokenizer.source = getattr(tokenizer, "source", None) or "given by the caller"
    elif directory is not None and has_tokenizer(directory):
        tokenizer = load_qwen3vl_tokenizer(directory, f"{directory} (tokenizer files beside config.json)")
    elif config.vlm_config.image_token_id == TINY_IMAGE_TOKEN_ID and config.vlm_config.text_config.vocab_size < 1000:
        # A model built on the tiny byte tokenizer (deterministic, so this rebuilds exactly the one it trained with).
        tokenizer = build_tiny_tokenizer()
        where = "preset n1.7-tiny" if directory is None else f"rebuilt: {directory} holds an n1.7-tiny-vocabulary model"
        tokenizer.source = f"N1.7 tiny byte tokenizer ({where})"
    else:
        # Last: the backbone repo in the hub cache, where `groot-ft fetch-base-model` puts it for an N1.7 base
        # (offline look-up only; compute jobs run with HF_HUB_OFFLINE=1).
        try:
            cached = resolve_n17_backbone(download=False)
        except BaseModelError as exc:
            where = ("the n1.7-3b preset" if directory is None
                     else f"{directory} has no tokenizer files beside config.json")
            raise N17TokenizerError(f"{where}; {exc}. {COSMOS_TOKENIZER_HINT}") from None
        tokenizer = load_qwen3vl_tokenizer(cached, f"{N17_BACKBONE_REPO} from the hub cache ({cached})")
    check_tokenizer(tokenizer, config.vlm_config)
    return tokenizer


def create_n17_model(base_model_path, seed: int, *, bf16_weights: bool | None, tokenizer, **config_overrides):
    """``create_model`` for N1.7 bases: ``(model, tokenizer)``, fp32 weights."""
    _check_overrides(config_overrides)
    if bf16_weights:
        raise N17ModelError("bf16_weights applies N1.6's load_bf16 recipe; N1.7 loads its backbone in fp32 "
                            "(load_bf16 false upstream); cast the model as a whole for bf16")
    if isinstance(base_model_path, str) and base_model_path in N17_PRESETS:
        config = n17_preset(base_model_path, **config_overrides)
        tokenizer = n17_tokenizer(config, None, tokenizer)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # every process of a distributed run builds identical initial weights
            model = Gr00tN1d7(config)
        return model, tokenizer

    path = Path(base_model_path)
    config = load_n17_config(path)
    tokenizer = n17_tokenizer(config, path, tokenizer)  # before any weights are read
    # dtype explicit: a released config.json records bfloat16, which "auto" would apply to the whole model
    model, info = Gr00tN1d7.from_pretrained(os.fspath(path), dtype=torch.float32, output_loading_info=True,
                                            **config_overrides)
    if any(k.startswith(LEROBOT_PREFIX) for k in info["unexpected_keys"]):
        raise N17ModelError(lerobot_policy_message(path, None))
    missing = sorted(info["missing_keys"])
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise N17ModelError(f"{path}: checkpoint lacks weights for {shown}")
    return model, tokenizer
