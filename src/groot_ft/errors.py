"""User errors, and the one way every entry point reports them.

A :class:`UserError` is a problem with what the user gave: a path, a config file or key, a modality config, a
dataset, a video, a base model or tokenizer. Its message names the file (and the key, episode or field) and says what
to do. Every error class of the package that describes such a problem derives from it (``ConfigError``,
``ModalityConfigError``, ``DatasetError``, ``VideoError``, ...); code that reads a user's file turns the library's
error (a JSON/YAML decode error, PyAV's error on a corrupt video) into one of them where it occurs.

Each entry point (``groot-ft`` and its subcommands, ``python -m groot_ft.stats``, ``python -m groot_ft.train``,
``python -m groot_ft.data.modality_init``) wraps its ``main`` in :func:`exits_on_user_error`: a ``UserError``, or an
``OSError`` in which the file system refused a named path (missing, permission denied, disk full), becomes
``error: <message>`` on stderr and exit status :data:`EXIT_USER_ERROR`. Any other exception, an ``OSError`` that
names no path included, is a bug and keeps its traceback.

Exit statuses: 0 success; :data:`EXIT_FINDINGS` (1) the command ran and found problems (``validate``, ``verify``);
:data:`EXIT_USER_ERROR` (2) the command could not run on what it was given (argparse's usage errors exit 2 as well).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

EXIT_FINDINGS = 1
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, not a bug: printed as one message, never as a traceback."""


class UserKeyError(UserError, KeyError):
    """A name the user gave (an embodiment tag, say) that is not there; still a KeyError for callers that look it up."""

    def __str__(self) -> str:  # KeyError's own str() quotes the message as if it were the missing key
        return str(self.args[0]) if self.args else ""


class OutputExistsError(UserError, FileExistsError):
    """An output path that is taken (a non-empty directory, an existing file) and that we refuse to overwrite."""


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason`` for a file-system error (Python's own text, ``[Errno 2] ...: 'PATH'``, is for programmers)."""
    if exc.filename is None or exc.strerror is None:
        return str(exc)
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
    return f"{where}: {exc.strerror}"


def describe_yaml_error(exc: Exception) -> str:
    """One line for a YAML syntax error: ``line L, column C: problem`` (PyYAML's text spans several lines with a
    copy of the offending source)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def describe_json_error(exc: json.JSONDecodeError) -> str:
    return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"


def read_json_file(path: str | Path, what: str) -> Any:
    """The JSON in a file the user pointed at; a missing, unreadable or malformed file is a UserError that names the
    file and says what it should hold (``what``, e.g. "the statistics")."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: {what} is not UTF-8 text (byte {exc.start}); is this the right file?") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({describe_json_error(exc)})") from exc


F = TypeVar("F", bound=Callable[..., int])


def exits_on_user_error(main: F) -> F:
    """Wrap an entry point's ``main``: a user error becomes ``error: <message>`` on stderr and EXIT_USER_ERROR."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            message = str(exc)
        except OSError as exc:
            if exc.filename is None:  # not the file system refusing a path the user named: keep the traceback
                raise
            # The environment refused (a missing path, permissions, a full disk): the path and reason say it all.
            message = describe_os_error(exc)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR

    return wrapper  # type: ignore[return-value]
