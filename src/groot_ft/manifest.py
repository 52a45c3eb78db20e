"""manifest.json of a packaged run: what was trained on what, with which code, and the sha256 of every artifact.

``verify_output`` recomputes every listed digest and reports every problem at once (``groot-ft verify``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from groot_ft.errors import UserError, read_json_file
from groot_ft.io import sha256_file

FORMAT = "groot-ft-manifest/2"
RELEASE_DIR = "release"
# the tree's own bookkeeping, rebuilt on every run (logs, shards) or written by package itself (release/ has its own
# manifest); training_state/ is resume data (optimizer + RNG states), never an artifact
SKIPPED_TOP_LEVEL = {"logs", "shards", RELEASE_DIR}
VERSIONED_PACKAGES = ("groot-ft", "torch", "transformers", "accelerate", "deepspeed", "numpy", "pyarrow", "av",
                      "snakemake")
# the files of a dataset that decide what was trained on: metadata (v3.0's meta/episodes/ parquet too), data, videos
DATASET_PATTERNS = ("meta/**/*", "data/**/*.parquet", "videos/**/*.mp4")
# DeepSpeed/torch resume files: a release must not contain them
OPTIMIZER_MARKERS = ("training_state", "optim_states", "optimizer.pt", "optimizer.bin", "scheduler.pt", "rng_state")


class ManifestError(UserError, RuntimeError):
    """A manifest input is missing or unreadable; the message names the file and what to do."""


def _is_hidden(rel: Path) -> bool:
    # caches, temporaries of atomic writes (.cache/, .checkpoint-N.tmp/, .x.json.123.tmp) and the marker Snakemake
    # leaves in directory() outputs (.snakemake_timestamp)
    return any(part.startswith(".") for part in rel.parts)


def _is_skipped(rel: Path) -> bool:
    if rel.parts[0] in SKIPPED_TOP_LEVEL or rel.as_posix() == "manifest.json":
        return True
    return _is_hidden(rel) or "training_state" in rel.parts


def artifact_paths(root: Path, *, release: bool = False) -> list[str]:
    """Relative POSIX paths of the files a manifest lists: every file of a release dir but its manifest and dot
    entries; in a run dir, everything except logs, shards, release/, dot entries and training_state/."""
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        if release:
            if rel.as_posix() != "manifest.json" and not _is_hidden(rel):
                out.append(rel.as_posix())
        elif not _is_skipped(rel):
            out.append(rel.as_posix())
    return out


class Hasher:
    """sha256 of many files on a few threads; a file reached twice by hard link (run dir and release/) is hashed
    once. hashlib releases the GIL on large updates, so threads overlap reading and hashing."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._done: dict[tuple[int, int, int, int], str] = {}

    @staticmethod
    def _key(path: Path) -> tuple[int, int, int, int]:
        st = path.stat()
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def many(self, paths: Iterable[Path]) -> dict[Path, str]:
        paths = list(paths)
        keys = {p: self._key(p) for p in paths}
        todo = {}
        for p in paths:
            if keys[p] not in self._done:
                todo.setdefault(keys[p], p)
        with ThreadPoolExecutor(self.workers) as pool:
            for key, digest in zip(todo, pool.map(sha256_file, todo.values())):
                self._done[key] = digest
        return {p: self._done[keys[p]] for p in paths}


def hash_artifacts(root: Path, rels: list[str], hasher: Hasher) -> dict[str, dict[str, Any]]:
    digests = hasher.many(root / r for r in rels)
    return {r: {"sha256": digests[root / r], "bytes": (root / r).stat().st_size} for r in rels}


# --- provenance ---------------------------------------------------------------------------------------------------
def dataset_files(root: Path) -> list[Path]:
    files = {p for pattern in DATASET_PATTERNS for p in root.glob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def dataset_fingerprint(root: str | Path, hasher: Hasher | None = None,
                        modality_json: str | Path | None = None) -> dict[str, Any]:
    """Content hash of one LeRobot dataset: sha256 over (path, size, sha256) of its meta files, data parquet and
    videos. Only bytes count, so a copy elsewhere or with new mtimes keeps the fingerprint, and any edited episode
    changes it. Streaming (1 MiB blocks), so memory stays flat for any dataset size.

    ``modality_json``: the modality mapping the run read instead of the dataset's meta/modality.json
    (modality_json_path). It decides what was trained on, so its bytes join the hash, under a name no dataset file
    can have; without one the fingerprint is what it always was."""
    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise ManifestError(f"{root}: no meta/info.json, so this is not a LeRobot dataset root; pass the dataset "
                            f"the run trained on with --dataset")
    files = dataset_files(root)
    digests = (hasher or Hasher()).many(files)
    h = hashlib.sha256(b"groot-ft-dataset-fingerprint/1\n")
    total = 0
    for p in files:
        size = p.stat().st_size
        total += size
        h.update(f"{p.relative_to(root).as_posix()}\t{size}\t{digests[p]}\n".encode())
    mapping = None
    if modality_json is not None:
        path = Path(modality_json)
        if not path.is_file():
            raise ManifestError(f"{path}: the modality mapping the run read for {root} (modality_json_path) is not "
                                f"there, so it cannot be fingerprinted; pass its current location with --modality-json")
        digest = (hasher or Hasher()).many([path])[path]
        size = path.stat().st_size
        h.update(f"<modality_json_path>\t{size}\t{digest}\n".encode())
        mapping = {"path": str(path.resolve()), "sha256": digest, "bytes": size}
    info = read_json_file(root / "meta" / "info.json", "the dataset's info.json")
    return {
        "path": str(root.resolve()),
        "modality_json": mapping,
        "fingerprint": h.hexdigest(),
        "files": len(files),
        "bytes": total,
        "codebase_version": info.get("codebase_version"),
        "total_episodes": info.get("total_episodes"),
        "total_frames": info.get("total_frames"),
        "fps": info.get("fps"),
    }


def combined_fingerprint(datasets: list[dict[str, Any]]) -> str:
    """One dataset: its fingerprint. A mixture: sha256 over its members' fingerprints, in training order."""
    if len(datasets) == 1:
        return datasets[0]["fingerprint"]
    joined = "".join(f"{d['fingerprint']}\n" for d in datasets)
    return hashlib.sha256(f"groot-ft-dataset-mixture/1\n{joined}".encode()).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_hash(config_yaml: str | Path) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of the run config: independent of YAML layout."""
    path = Path(config_yaml)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot read the run config ({exc}); re-run the run_config rule") from None
    return hashlib.sha256(canonical_json(cfg)).hexdigest()


def git_info(source: Path | None = None) -> dict[str, Any]:
    """The commit of the groot-ft source tree when it is a git checkout: {commit, dirty, reason}.

    The checkout must be groot-ft's own (``<top>/src/groot_ft``); an installed copy inside some other repository
    (a venv in a project) would otherwise report that project's commit.
    """
    pkg = (source or Path(__file__).resolve().parent).resolve()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "reason": "git is not installed"}
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = ((getattr(exc, "stderr", None) or str(exc)).strip().splitlines() or [""])[-1]
        return {"commit": None, "dirty": None,
                "reason": f"{pkg} is not in a usable git checkout (an installed package?): {detail}"}
    if pkg != top / "src" / "groot_ft":
        return {"commit": None, "dirty": None, "reason": f"{pkg} is not the src/groot_ft of the checkout at {top}"}
    try:
        commit = git("rev-parse", "HEAD")
        # tracked files only: untracked scratch files do not change what the code does
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return {"commit": None, "dirty": None, "reason": f"git failed in {top}: {exc}"}
    return {"commit": commit, "dirty": dirty, "reason": None}


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def model_family(model_dir: str | Path) -> dict[str, str | None]:
    """Which GR00T network a run trained, from its config.json's ``model_type``: ``Gr00tN1d6`` -> GR00T N1.6,
    ``Gr00tN1d7`` -> GR00T N1.7 (the two do not load each other's checkpoints). ``family`` is None for a model_type
    not spelt that way."""
    path = Path(model_dir) / "config.json"
    config = read_json_file(path, "the model config")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise ManifestError(f"{path}: no model_type; is it a GR00T model config?")
    match = re.fullmatch(r"Gr00tN(\d+)d(\d+)", model_type)
    return {"model_type": model_type, "family": f"GR00T N{match[1]}.{match[2]}" if match else None}


def created_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# --- verification -------------------------------------------------------------------------------------------------
@dataclass
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifyResult:
    root: Path
    checked: int  # artifacts whose digest matched
    bytes: int
    problems: list[Problem]
    release_checked: int | None  # None: no release copy

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        size = f"{self.bytes / 2**20:.1f} MiB"
        release = "" if self.release_checked is None else f" and {self.release_checked} in {RELEASE_DIR}/"
        if self.ok:
            return f"OK: {self.checked} artifacts ({size}){release} of {self.root} match their manifest sha256"
        lines = [f"FAILED: {len(self.problems)} problem(s) in {self.root} "
                 f"({self.checked} artifacts{release} matched):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _load_manifest(path: Path, problems: list[Problem], package_cmd: str) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(Problem(str(path), f"missing; run `{package_cmd}` to write it"))
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(Problem(str(path), f"unreadable ({exc}); run `{package_cmd}` to rewrite it"))
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        problems.append(Problem(str(path), f"has no `artifacts` table; run `{package_cmd}` to rewrite it"))
        return None
    return manifest


def _check_artifacts(root: Path, manifest: dict[str, Any], release: bool, where: str, hasher: Hasher,
                     problems: list[Problem], package_cmd: str) -> tuple[int, int]:
    """Check one directory against its manifest; ``where`` prefixes the paths in messages."""
    listed: dict[str, dict[str, Any]] = manifest["artifacts"]
    present = []
    for rel, entry in listed.items():
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts or not isinstance(entry, dict) or "sha256" not in entry:
            problems.append(Problem(where + rel, "malformed manifest entry (absolute path, `..` or no sha256); "
                                    f"run `{package_cmd}` to rewrite the manifest"))
        elif not (root / rel).is_file():
            problems.append(Problem(where + rel, f"missing (listed with {entry.get('bytes', '?')} bytes); restore it "
                                    f"from a backup, or run `{package_cmd}` if removing it was intended"))
        else:
            present.append(rel)
    digests = hasher.many(root / r for r in present)
    matched = nbytes = 0
    for rel in present:
        size = (root / rel).stat().st_size
        if "bytes" in listed[rel] and size != listed[rel]["bytes"]:
            problems.append(Problem(where + rel, f"changed: {size} bytes on disk, {listed[rel]['bytes']} in the "
                                    f"manifest; restore it, or run `{package_cmd}` if the change was intended"))
        elif digests[root / rel] != listed[rel]["sha256"]:
            problems.append(Problem(where + rel, f"changed: sha256 {digests[root / rel][:16]}... on disk, "
                                    f"{listed[rel]['sha256'][:16]}... in the manifest (corrupted or edited); "
                                    f"restore it, or run `{package_cmd}` if the change was intended"))
        else:
            matched += 1
            nbytes += size
    for rel in artifact_paths(root, release=release):
        if rel not in listed:
            problems.append(Problem(where + rel, f"not listed in the manifest (written after packaging?); delete "
                                    f"it, or run `{package_cmd}` to list it"))
    if release:
        for rel in artifact_paths(root, release=True):
            if any(marker in rel for marker in OPTIMIZER_MARKERS) or rel.startswith("checkpoint-"):
                problems.append(Problem(where + rel, "optimizer/resume state in the release copy; delete it (the "
                                        "release holds only the final model)"))
    return matched, nbytes


def verify_output(output_dir: str | Path, workers: int | None = None) -> VerifyResult:
    """Check a packaged run directory against its manifest.json, and its release/ copy against release/manifest.json."""
    root = Path(output_dir)
    package_cmd = f"groot-ft package {root}"
    problems: list[Problem] = []
    if not root.is_dir():
        return VerifyResult(root, 0, 0, [Problem(str(root), "not a directory; pass a packaged output_dir")], None)
    hasher = Hasher(workers)
    matched = nbytes = 0
    manifest = _load_manifest(root / "manifest.json", problems, package_cmd)
    if manifest is not None:
        # a release copy shipped on its own verifies against its own manifest, with the release rules
        standalone_release = manifest.get("kind") == "release"
        matched, nbytes = _check_artifacts(root, manifest, standalone_release, "", hasher, problems, package_cmd)
    release_dir = root / RELEASE_DIR
    recorded = (manifest or {}).get("release")
    release_checked = None
    if recorded and not release_dir.is_dir():
        problems.append(Problem(f"{RELEASE_DIR}/", f"missing (the manifest records a release copy); run "
                                f"`{package_cmd}` to rebuild it"))
    elif release_dir.is_dir():
        release_manifest = _load_manifest(release_dir / "manifest.json", problems, package_cmd)
        if release_manifest is not None:
            if recorded and sha256_file(release_dir / "manifest.json") != recorded.get("manifest_sha256"):
                problems.append(Problem(f"{RELEASE_DIR}/manifest.json", f"differs from the one the run manifest "
                                        f"records; run `{package_cmd}` to rebuild the release copy"))
            release_checked, release_bytes = _check_artifacts(release_dir, release_manifest, True, f"{RELEASE_DIR}/",
                                                              hasher, problems, package_cmd)
            nbytes += release_bytes
    return VerifyResult(root, matched, nbytes, problems, release_checked)
