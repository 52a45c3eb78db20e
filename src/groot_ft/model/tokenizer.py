"""A small byte-level tokenizer built locally (no hub, no training data).

Every UTF-8 byte is one token, so any instruction can be encoded without a learned vocabulary; instructions of a few
words give ~20 tokens, which keeps the tiny model cheap. The four special tokens come first so their ids are fixed:

    <pad> = 0, <img> = 1, </img> = 2, <IMG_CONTEXT> = 3, then bytes 0..255 as ids 4..259.

It is wrapped as a transformers fast tokenizer (left padding, like upstream's Eagle processor), saved beside the model
and reloaded with ``AutoTokenizer.from_pretrained(model_dir)``.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from groot_ft.hub import has_tokenizer

PAD_TOKEN = "<pad>"
IMG_START_TOKEN = "<img>"
IMG_END_TOKEN = "</img>"
IMG_CONTEXT_TOKEN = "<IMG_CONTEXT>"
SPECIAL_TOKENS = (PAD_TOKEN, IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN)

IMG_CONTEXT_ID = SPECIAL_TOKENS.index(IMG_CONTEXT_TOKEN)  # 3
VOCAB_SIZE = len(SPECIAL_TOKENS) + 256  # 260; the tiny preset's text_config.vocab_size


def _byte_to_unicode() -> dict[int, str]:
    """Map each byte to a printable character (the usual byte-level BPE trick), in byte order.

    Printable Latin-1 bytes map to themselves; the others (control chars, space, ...) are shifted above 255 so that
    no token is whitespace or invisible, which the ByteLevel pre-tokenizer/decoder expect.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


def build_tokenizer(model_max_length: int = 4096) -> PreTrainedTokenizerFast:
    """Build the byte-level tokenizer. Deterministic: the same call always gives the same ids."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in _byte_to_unicode().values():
        vocab[char] = len(vocab)
    # BPE with no merges over a complete byte alphabet = one token per byte, never <unk>.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN],
        padding_side="left",
        model_max_length=model_max_length,
    )
    assert len(tokenizer) == VOCAB_SIZE and tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN) == IMG_CONTEXT_ID
    return tokenizer


def special_token_ids(tokenizer) -> dict[str, int]:
    """Ids of the image-wrapping tokens in any tokenizer that has them (raises if one is missing)."""
    ids = {}
    for token in (IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token} token")
        ids[token] = int(token_id)
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token")
    return ids


# --- upstream's Eagle tokenizer (Qwen3 BPE + Eagle's added tokens) ------------------------------------------------
CHAT_START = "<|im_start|>"
CHAT_END = "<|im_end|>"
# What upstream's Eagle chat template renders before the user's content when the conversation has no system turn.
CHAT_SYSTEM_PREAMBLE = f"{CHAT_START}system\nYou are a helpful assistant.{CHAT_END}\n"


def load_tokenizer(directory):
    """A tokenizer from local files, without running any code shipped beside them.

    Upstream's vendored Eagle directory names class ``Qwen2Tokenizer`` and carries ``auto_map`` entries for its remote
    processor classes; the class is loaded directly (``trust_remote_code=False``), so nothing waits on a prompt and
    no foreign code runs. Padding is on the left, as upstream's Eagle processor sets it.
    """
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    root = Path(directory)
    if not has_tokenizer(root):
        raise FileNotFoundError(
            f"{root}: no tokenizer files (need tokenizer_config.json plus tokenizer.json or vocab.json + merges.txt)"
        )
    declared = json.loads((root / "tokenizer_config.json").read_text()).get("tokenizer_class")
    if declared in ("Qwen2Tokenizer", "Qwen2TokenizerFast"):
        from transformers import Qwen2TokenizerFast

        tokenizer = Qwen2TokenizerFast.from_pretrained(str(root))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(root), trust_remote_code=False)
    tokenizer.padding_side = "left"
    return tokenizer


def uses_chat_prompt(tokenizer) -> bool:
    """True for upstream's Eagle/Qwen3 tokenizer (it has the chat-turn tokens); the byte tokenizer has none."""
    token_id = tokenizer.convert_tokens_to_ids(CHAT_START)
    return token_id is not None and token_id != tokenizer.unk_token_id
