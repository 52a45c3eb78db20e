"""Crash-safe file writing: every output is written to a temporary sibling and renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Buffer  # bytes, memoryview, pyarrow.Buffer: anything with the buffer protocol


_temporary_names = itertools.count()


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, exclusively created temporary sibling of ``path``: (open descriptor, name).

    Named after the process, thread and a counter rather than by ``tempfile.mkstemp``'s random retries, and created
    with the usual 0666-minus-umask permissions (mkstemp's 0600 would make every output private to its writer on
    a shared cluster).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_temporary_names)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # left by a crashed process that had the same pid
            continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)


def _write_temporary(path: Path, data: Buffer, *, sync: bool) -> str:
    """Write ``data`` to a new temporary sibling of ``path`` (fsynced if ``sync``) and return its name."""
    fd, tmp = _create_temporary(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def atomic_write_bytes(path: str | Path, data: Buffer) -> None:
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

    def write(self, path: str | Path, data: Buffer) -> None:
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


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2, *, allow_nan: bool = True) -> None:
    """``json.dumps(obj, indent=indent, allow_nan=allow_nan)`` plus a newline, written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n")


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


def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it (setting it is process-wide)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_like_umask(*paths: str | Path) -> None:
    """Give files the mode a plain ``open()`` would have given them.

    safetensors writes its files 0600, so weights would be private to whoever trained them on a shared cluster,
    while every other output of a run follows the umask.
    """
    mode = 0o666 & ~_umask()
    for path in paths:
        os.chmod(path, mode)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
