"""Crash-safe file writing: every output is written to a temporary sibling and renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _write_temporary(path: Path, data: bytes, *, sync: bool) -> str:
    """Write ``data`` to a new temporary sibling of ``path`` (fsynced if ``sync``) and return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = _write_temporary(path, data, sync=True)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class GroupCommit:
    """Atomic writes of many files whose fsyncs are made in groups.

    :meth:`write` puts each file in a temporary sibling without syncing it. Every ``group`` files, and on
    :meth:`commit`, the pending files are fsynced one after another, renamed into place and their directories
    fsynced. So a file is visible under its final name only once its bytes are on disk, and a crash loses at most
    the uncommitted group. One fsync between every two files of a long stream costs far more than the same fsyncs
    made back to back: each one also slows the reads that follow it. Used as a context manager, it commits on
    success and deletes the pending temporaries on an exception. Thread-safe.
    """

    def __init__(self, group: int = 32):
        self.group = group
        self._pending: list[tuple[str, Path]] = []
        self._lock = threading.Lock()

    def write(self, path: str | Path, data: bytes) -> None:
        path = Path(path)
        tmp = _write_temporary(path, data, sync=False)
        with self._lock:
            self._pending.append((tmp, path))
            if len(self._pending) >= self.group:
                self._commit_locked()

    def commit(self) -> None:
        with self._lock:
            self._commit_locked()

    def discard(self) -> None:
        with self._lock:
            for tmp, _ in self._pending:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            self._pending.clear()

    def _commit_locked(self) -> None:
        for tmp, _ in self._pending:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for tmp, path in self._pending:
            os.replace(tmp, path)
        for directory in sorted({path.parent for _, path in self._pending}):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)  # the renames themselves
            finally:
                os.close(fd)
        self._pending.clear()

    def __enter__(self) -> GroupCommit:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.discard()  # after a commit nothing is pending; otherwise no temporary is left behind


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``path`` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} already exists")
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
