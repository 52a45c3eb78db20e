"""The N1.7 tokenizers: Qwen3-VL's (``nvidia/Cosmos-Reason2-2B``) from local files, and the tiny preset's.

Upstream's N1.7 processor tokenises with ``Qwen3VLProcessor.from_pretrained(model_name)``: Qwen's BPE plus the
Qwen3-VL control tokens, pad ``<|endoftext|>``, left padding. Nothing here runs code shipped beside the files: the
files are read by :func:`groot_ft.model.tokenizer.load_tokenizer` (the tokenizer class is loaded directly).

The ``n1.7-tiny`` preset uses a byte tokenizer (one token per UTF-8 byte, as N1.6's presets) that carries the same
control-token *strings* as Qwen3-VL, so the prompt is laid out exactly as for the real model. Its ids are those the
preset's ``vlm_config`` names: ``<|endoftext|>`` 0, ``<|vision_start|>`` 1, ``<|vision_end|>`` 2, ``<|image_pad|>`` 3,
bytes 4..259, ``<|video_pad|>`` 260, ``<|im_start|>`` 261, ``<|im_end|>`` 262.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from groot_ft.errors import UserError
from groot_ft.hub import has_tokenizer

from ..tokenizer import load_tokenizer

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
CONTROL_TOKENS = (PAD, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

# The tiny byte tokenizer's layout (see the module docstring); ids 0..3 stay where N1.6's byte tokenizer has its
# pad / image tokens, so the preset's vlm_config ids did not move.
TINY_HEAD = (PAD, VISION_START, VISION_END, IMAGE_PAD)
TINY_TAIL = (VIDEO_PAD, IM_START, IM_END)
TINY_VOCAB_SIZE = len(TINY_HEAD) + 256 + len(TINY_TAIL)  # 263
TINY_IMAGE_TOKEN_ID = TINY_HEAD.index(IMAGE_PAD)
TINY_VISION_START_ID = TINY_HEAD.index(VISION_START)
TINY_VISION_END_ID = TINY_HEAD.index(VISION_END)
TINY_VIDEO_TOKEN_ID = len(TINY_HEAD) + 256

COSMOS_TOKENIZER_HINT = (
    "GR00T N1.7 feeds its backbone with nvidia/Cosmos-Reason2-2B's tokenizer (Qwen3-VL; the checkpoint ships none): "
    "set `tokenizer_path` to a local copy of that repository (or its hub id, fetched by `groot-ft fetch-base-model`; "
    "the repository is gated: accept its licence on https://huggingface.co/nvidia/Cosmos-Reason2-2B first)"
)


class N17TokenizerError(UserError, ValueError):
    """A tokenizer that cannot feed an N1.7 model (missing Qwen3-VL control tokens, ids that differ from the
    config's)."""


def _printable_bytes() -> list[str]:
    """One printable character per byte, in byte order (the byte-level BPE convention the ByteLevel decoder expects:
    printable Latin-1 bytes stand for themselves, the rest are shifted above 255)."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    chars, shifted = [], 0
    for byte in range(256):
        if byte in keep:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + shifted))
            shifted += 1
    return chars


def build_tiny_tokenizer(model_max_length: int = 4096) -> PreTrainedTokenizerFast:
    """The ``n1.7-tiny`` byte tokenizer (deterministic: every call gives the same ids)."""
    vocab = {token: i for i, token in enumerate(TINY_HEAD)}
    for char in _printable_bytes():
        vocab[char] = len(vocab)
    for token in TINY_TAIL:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges over a full byte alphabet: one token per byte
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_HEAD + TINY_TAIL])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        extra_special_tokens=[t for t in CONTROL_TOKENS if t != PAD],
        padding_side="left",
        model_max_length=model_max_length,
    )
    if len(tokenizer) != TINY_VOCAB_SIZE or tokenizer.convert_tokens_to_ids(IMAGE_PAD) != TINY_IMAGE_TOKEN_ID:
        raise RuntimeError("the tiny N1.7 tokenizer's layout changed")  # a bug here, not the user's input
    return tokenizer


def control_token_ids(tokenizer) -> dict[str, int]:
    """Ids of the Qwen3-VL control tokens; raises :class:`N17TokenizerError` naming any that is missing."""
    ids, missing = {}, []
    for token in CONTROL_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            missing.append(token)
        else:
            ids[token] = int(token_id)
    if missing:
        raise N17TokenizerError(
            f"tokenizer ({getattr(tokenizer, 'source', 'unknown source')}) lacks the Qwen3-VL tokens "
            f"{', '.join(missing)}; {COSMOS_TOKENIZER_HINT}"
        )
    if tokenizer.pad_token_id is None:
        raise N17TokenizerError(f"tokenizer ({getattr(tokenizer, 'source', 'unknown source')}) has no pad token")
    return ids


def check_tokenizer(tokenizer, vlm_config) -> dict[str, int]:
    """The control-token ids, after checking that they are the ones the backbone config was trained with and that
    the vocabulary fits the embedding table."""
    ids = control_token_ids(tokenizer)
    expected = {
        IMAGE_PAD: vlm_config.image_token_id,
        VIDEO_PAD: vlm_config.video_token_id,
        VISION_START: vlm_config.vision_start_token_id,
        VISION_END: vlm_config.vision_end_token_id,
    }
    wrong = [f"{t} {ids[t]} (config {want})" for t, want in expected.items() if want is not None and ids[t] != want]
    if wrong:
        raise N17TokenizerError(
            f"tokenizer ({getattr(tokenizer, 'source', 'unknown source')}) does not fit the model: "
            f"{', '.join(wrong)}; {COSMOS_TOKENIZER_HINT}"
        )
    vocab = vlm_config.text_config.vocab_size
    if len(tokenizer) > vocab:
        raise N17TokenizerError(f"tokenizer has {len(tokenizer)} tokens > the backbone's vocab_size {vocab}")
    return ids


def load_qwen3vl_tokenizer(directory: str | os.PathLike[str], source: str):
    """Qwen3-VL's tokenizer from a local directory (e.g. a Cosmos-Reason2-2B snapshot), left padding, with
    ``.source`` set to ``source``."""
    root = Path(directory)
    if not has_tokenizer(root):
        raise N17TokenizerError(f"{root}: no tokenizer files (tokenizer_config.json + tokenizer.json or vocab.json + "
                                f"merges.txt); {COSMOS_TOKENIZER_HINT}")
    tokenizer = load_tokenizer(root)
    tokenizer.source = source
    return tokenizer
