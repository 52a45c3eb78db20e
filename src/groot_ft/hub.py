"""The base model and its tokenizer: a preset, a local directory, or a Hugging Face hub repo id.

A hub repo id (``nvidia/GR00T-N1.6-3B``) is resolved through huggingface_hub's own cache, exactly as upstream's
``from_pretrained`` would download it: ``HF_HOME`` / ``HF_HUB_CACHE`` say where the cache is, ``HF_TOKEN`` (or
``hf auth login``) authenticates for gated repos, and ``HF_HUB_OFFLINE=1`` forbids network access. Only
:func:`fetch` (the ``groot-ft fetch-base-model`` command, run on a machine with network) downloads; every other
caller resolves offline from the cache, so compute nodes never need the network.

Nothing here reads, prints or stores a token.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from groot_ft.errors import UserError

# The files a tokenizer directory may hold (Qwen3 / Eagle: BPE vocab + merges, added tokens, chat template; for
# N1.7's Cosmos-Reason2-2B also the image processor's settings, which its collator checks).
TOKENIZER_FILES = (
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "tokenizer.model",
)
# A directory counts as holding a tokenizer when one of these is there (AutoTokenizer needs one of them).
_TOKENIZER_MARKERS = ("tokenizer_config.json", "tokenizer.json")
# Hub repo ids: "org/name" (the namespace is required, so that a typo in a preset name is not sent to the hub).
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a true environment variable
# N1.7 presets built on Cosmos-Reason2-2B's vocabulary (n1.7-tiny has its own byte tokenizer).
_N17_BACKBONE_PRESETS = ("n1.7-3b",)


# GR00T N1.7's vision-language backbone. Its tokenizer, config and image-processor settings are read from the hub cache
# (the GR00T checkpoint holds the backbone's weights, which this project's loader takes from there, so the backbone's
# own ~4 GB of weights are not fetched). The repository is gated: its licence must be accepted on its page first.
N17_BACKBONE_REPO = "nvidia/Cosmos-Reason2-2B"
N17_BACKBONE_FILES = ("config.json", *TOKENIZER_FILES)


def hub_page(repo_id: str) -> str:
    return f"https://huggingface.co/{repo_id}"


class BaseModelError(UserError, ValueError):
    """The base model (or tokenizer) cannot be found; the message says what to do."""


@functools.cache
def preset_names() -> tuple[str, ...]:
    """The model presets (``groot_ft.model.presets.PRESETS`` and N1.7's ``N17_PRESETS``), read without importing
    torch."""
    return _preset_dict_keys("presets.py", "PRESETS") + _preset_dict_keys("n17/presets.py", "N17_PRESETS")


def _preset_dict_keys(relative: str, name: str) -> tuple[str, ...]:
    source = Path(__file__).parent / "model" / relative
    try:
        for node in ast.parse(source.read_text()).body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets)
                    and isinstance(node.value, ast.Dict)):
                return tuple(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    except (OSError, SyntaxError):
        pass
    import importlib  # imports torch; only if the source could not be read

    module = importlib.import_module("groot_ft.model." + relative.removesuffix(".py").replace("/", "."))
    return tuple(getattr(module, name))


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses, read from the environment now (HF_HUB_CACHE, else HF_HOME/hub, else
    ~/.cache/huggingface/hub), the way ``huggingface_hub.constants`` reads it when first imported."""
    env = os.environ
    home = env.get("HF_HOME", os.path.join(env.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface"))
    default = os.path.join(os.path.expandvars(os.path.expanduser(home)), "hub")
    cache = env.get("HF_HUB_CACHE", env.get("HUGGINGFACE_HUB_CACHE", default))
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in _TRUE


def _looks_local(text: str) -> bool:
    return text.startswith(("/", ".", "~"))


def _fetch_hint(repo_id: str, revision: str | None, what: str, key: str) -> str:
    rev = f" --revision {revision}" if revision else ""
    if what == "base model":
        command = f"groot-ft fetch-base-model {repo_id}{rev}"
    elif what == "N1.7 backbone":  # fetched along with any N1.7 base model
        command = "groot-ft fetch-base-model BASE_MODEL"
    else:
        command = f"groot-ft fetch-base-model BASE_MODEL --tokenizer {repo_id}"
    return (f"run `{command}` on a machine with network (with the same HF_HOME / HF_HUB_CACHE), or point {key} "
            f"at a local copy; cache: {hub_cache_dir()}")


def _snapshot(repo_id: str, *, revision: str | None, download: bool, what: str, key: str,
              allow_patterns: list[str] | None = None) -> Path:
    """The snapshot directory of ``repo_id`` in the hub cache; downloaded first when ``download`` (and online)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = not download or hub_offline()
    at = f" at revision {revision!r}" if revision else ""
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=str(hub_cache_dir()),
                                 local_files_only=offline, allow_patterns=allow_patterns)
    except HFValidationError as exc:
        raise BaseModelError(f"{key} {repo_id!r}: not a valid hub repo id ({exc})") from None
    except LocalEntryNotFoundError as exc:
        if "incomplete" in str(exc):
            state = "only partly in the local hub cache (an interrupted download?)"
        elif offline:
            state = "not in the local hub cache" + (" and HF_HUB_OFFLINE is set" if download else "")
        else:  # online, but the hub could not be reached
            state = f"not in the local hub cache and the hub could not be reached ({str(exc).splitlines()[0]})"
        raise BaseModelError(
            f"{key} {repo_id!r}{at}: no such local directory, and as a hub repo id the {what} is {state}; "
            f"{_fetch_hint(repo_id, revision, what, key)}"
        ) from None
    except GatedRepoError:
        raise BaseModelError(_gated_message(repo_id, key)) from None
    except RevisionNotFoundError:
        raise BaseModelError(f"{key} {repo_id!r}: revision {revision!r} does not exist on the hub") from None
    except RepositoryNotFoundError:
        raise BaseModelError(
            f"{key} {repo_id!r}: no such local directory, and no such repo on the hub (or it is private: log in "
            f"with `hf auth login` or set HF_TOKEN)"
        ) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        if status in (401, 403):  # no token, or a token without access to a gated / private repo
            raise BaseModelError(f"{_gated_message(repo_id, key)} (the hub answered HTTP {status})") from None
        raise BaseModelError(f"{key} {repo_id!r}: the hub answered HTTP {status}; try again later") from None
    except OSError as exc:  # a network or file system error while downloading
        raise BaseModelError(f"{key} {repo_id!r}: download failed ({exc.__class__.__name__}: {exc})") from None
    return Path(os.path.realpath(path))


def _gated_message(repo_id: str, key: str) -> str:
    return (f"{key} {repo_id!r}: a gated repo this machine may not read; open {hub_page(repo_id)} while logged in, "
            f"accept its licence, then log in here with `hf auth login` (or set HF_TOKEN in the environment, never in "
            f"a config file) and run `groot-ft fetch-base-model` again")


def _local_dir(text: str, key: str, marker: tuple[str, ...], what: str) -> Path | None:
    """``text`` as an existing local directory (its realpath); None when it names no local path."""
    path = Path(os.path.expanduser(text))
    real = Path(os.path.realpath(path))
    if path.is_dir():
        if not any((real / name).is_file() for name in marker):
            raise BaseModelError(f"{key} {text!r}: the directory {real} has no {' or '.join(marker)}; point {key} at "
                                 f"the directory that holds the {what}'s {marker[0]}")
        return real
    if path.exists():
        raise BaseModelError(f"{key} {text!r}: {real} is not a directory")
    if _looks_local(text):
        raise BaseModelError(f"{key} {text!r}: no such directory ({real})")
    return None


def resolve_base_model(path_or_id: str, *, revision: str | None = None, download: bool = False) -> Path | None:
    """Where the base model's files are: None for a preset name (a fresh model, nothing to read); the directory itself
    (realpath) for a local directory with config.json; the snapshot directory in the hub cache for a hub repo id
    ``org/name`` (found offline unless ``download``). Raises :class:`BaseModelError` with what to do otherwise."""
    text = str(path_or_id).strip()
    key = "base_model_path"
    if not text:
        raise BaseModelError(f"{key} is empty: name a preset ({', '.join(preset_names())}), a local directory or a "
                             f"hub repo id such as nvidia/GR00T-N1.6-3B")
    if text in preset_names():
        return None
    local = _local_dir(text, key, ("config.json",), "checkpoint")
    if local is not None:
        return local
    if not _REPO_ID.match(text):
        raise BaseModelError(
            f"{key} {text!r} is not a preset ({', '.join(preset_names())}), not an existing directory, and not a "
            f"hub repo id of the form org/name (e.g. nvidia/GR00T-N1.6-3B)"
        )
    snapshot = _snapshot(text, revision=revision, download=download, what="base model", key=key)
    if not (snapshot / "config.json").is_file():
        raise BaseModelError(f"{key} {text!r}: the hub snapshot {snapshot} has no config.json; is it a GR00T "
                             f"checkpoint? {_fetch_hint(text, revision, 'base model', key)}")
    return snapshot


def resolve_tokenizer_dir(path_or_id: str | None, *, download: bool = False) -> Path | None:
    """Where the tokenizer files are: None for None; a local directory with tokenizer_config.json (or
    tokenizer.json), as its realpath; or the snapshot of a hub repo id holding only its tokenizer files
    (:data:`TOKENIZER_FILES`), found offline unless ``download``."""
    if path_or_id is None:
        return None
    text = str(path_or_id).strip()
    key = "tokenizer_path"
    local = _local_dir(text, key, _TOKENIZER_MARKERS, "tokenizer") if text else None
    if local is not None:
        return local
    if not _REPO_ID.match(text):
        raise BaseModelError(f"{key} {text!r} is neither an existing directory with tokenizer files nor a hub repo id "
                             f"of the form org/name")
    snapshot = _snapshot(text, revision=None, download=download, what="tokenizer", key=key,
                         allow_patterns=list(TOKENIZER_FILES))
    if not any((snapshot / name).is_file() for name in _TOKENIZER_MARKERS):
        raise BaseModelError(f"{key} {text!r}: the hub snapshot {snapshot} has no {' or '.join(_TOKENIZER_MARKERS)}")
    return snapshot


def resolve_n17_backbone(*, download: bool = False) -> Path:
    """The hub cache snapshot of N1.7's backbone repo (:data:`N17_BACKBONE_REPO`) holding its config.json, tokenizer
    and image-processor files (:data:`N17_BACKBONE_FILES`), found offline unless ``download``."""
    repo = N17_BACKBONE_REPO
    snapshot = _snapshot(repo, revision=None, download=download, what="N1.7 backbone", key="N1.7 backbone",
                         allow_patterns=list(N17_BACKBONE_FILES))
    if not has_tokenizer(snapshot):
        raise BaseModelError(f"N1.7 backbone {repo!r}: the hub snapshot {snapshot} has no tokenizer files; "
                             f"{_fetch_hint(repo, None, 'N1.7 backbone', 'tokenizer_path')}")
    return snapshot


def needs_n17_backbone(base_model_path: str, model_dir: Path | None) -> bool:
    """Whether the base is a GR00T N1.7 model built on Cosmos-Reason2-2B: the ``n1.7-3b`` preset, or a directory
    whose config.json says ``model_type`` ``Gr00tN1d7`` and either has no ``vlm_config`` (a released checkpoint) or
    one with a vocabulary of Qwen3-VL's size (``n1.7-tiny`` and models built on it carry their own byte tokenizer).
    Read without importing torch."""
    if model_dir is None:
        return str(base_model_path).strip() in _N17_BACKBONE_PRESETS
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False  # the model loader reports an unreadable config.json
    if not isinstance(config, dict) or config.get("model_type") != "Gr00tN1d7":
        return False
    if not config.get("vlm_config"):
        return True  # a released config.json: the backbone is the one model_name names (Cosmos-Reason2-2B)
    text = config["vlm_config"].get("text_config") or {}
    return int(text.get("vocab_size") or 0) >= 1000


def snapshot_commit(directory: Path | None) -> str | None:
    """The commit of a hub cache snapshot directory (``.../snapshots/<commit>``); None for any other directory."""
    if directory is None or directory.parent.name != "snapshots" or not _COMMIT.match(directory.name):
        return None
    return directory.name


def has_tokenizer(directory: Path | None) -> bool:
    """Whether ``directory`` holds a tokenizer ``create_model`` can load: tokenizer_config.json plus tokenizer.json,
    or vocab.json + merges.txt (the one rule for the fetch step and the model factory)."""
    if directory is None:
        return False
    root = Path(directory)
    return (root / "tokenizer_config.json").is_file() and (
        (root / "tokenizer.json").is_file() or ((root / "vocab.json").is_file() and (root / "merges.txt").is_file())
    )


def fetch(base_model_path: str, tokenizer_path: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """Download (or, offline, find in the cache) everything a run needs from the hub: the base model's snapshot and
    the tokenizer files. Returns where they are as local paths; a preset needs nothing (``kind: preset``)."""
    model_dir = resolve_base_model(base_model_path, revision=revision, download=True)
    tokenizer_dir = resolve_tokenizer_dir(tokenizer_path, download=True)
    # An N1.7 base also needs its backbone's tokenizer / config / image-processor files in the cache (gated repo):
    # fetched here, with the user's hub login, so that the offline jobs find them.
    backbone_dir = resolve_n17_backbone(download=True) if needs_n17_backbone(base_model_path, model_dir) else None
    if tokenizer_dir is not None:
        tokenizer_source = "tokenizer_path"
    elif model_dir is not None and has_tokenizer(model_dir):
        tokenizer_source = "base_model"
    elif backbone_dir is not None:
        tokenizer_source = "n17_backbone"  # the N1.7 loader falls back to the cached backbone repo
    elif model_dir is None:
        tokenizer_source = "preset"  # presets build this project's tokenizer
    else:
        tokenizer_source = None  # a checkpoint without tokenizer files (upstream N1.6 ships none)
    return {
        "base_model_path": base_model_path,
        "kind": _kind(base_model_path, model_dir),
        "base_model_dir": None if model_dir is None else str(model_dir),
        "revision": revision,
        "commit": snapshot_commit(model_dir) if _kind(base_model_path, model_dir) == "hub" else None,
        "tokenizer_path": tokenizer_path,
        "tokenizer_dir": None if tokenizer_dir is None else str(tokenizer_dir),
        "tokenizer_kind": None if tokenizer_path is None else _kind(tokenizer_path, tokenizer_dir),
        "tokenizer_commit": snapshot_commit(tokenizer_dir) if tokenizer_path is not None
        and _kind(tokenizer_path, tokenizer_dir) == "hub" else None,
        "tokenizer_source": tokenizer_source,
        "n17_backbone": None if backbone_dir is None else N17_BACKBONE_REPO,
        "n17_backbone_dir": None if backbone_dir is None else str(backbone_dir),
        "n17_backbone_commit": snapshot_commit(backbone_dir),
        "hub_cache": str(hub_cache_dir()),
    }


def _kind(path_or_id: str, resolved: Path | None) -> str:
    """How a key was resolved: preset, local (an existing directory) or hub (a repo id through the cache)."""
    if resolved is None:
        return "preset"
    return "local" if Path(os.path.expanduser(str(path_or_id).strip())).is_dir() else "hub"
