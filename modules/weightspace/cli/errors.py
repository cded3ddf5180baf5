"""The command line's edge: user and environment errors become one line on stderr and an exit code.

Both command lines (`weightspace.cli` and the experiment scripts' `weightspace.cli.experiment_run`)
send every exception through `report_error`. Exit codes: 2 for a wrong input or option
(``WeightspaceError``, ``ValueError``, ``KeyError``, a missing or existing file), 3 for an
environment that refuses the work (a full, read-only or unwritable disk, a path below a file,
an unreachable ray cluster; ``OutputError``, ``ClusterError``). Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import weightspace
from weightspace.errors import WeightspaceError

USAGE, ENVIRONMENT = 2, 3  # exit codes


def report_error(err: Exception) -> int:
    """Print `err` as ``weightspace: error: <one line>`` on stderr and return its exit code; re-raise a bug."""
    described = describe_error(err)
    if described is None:
        raise err
    code, message = described
    print(f"weightspace: error: {message}", file=sys.stderr)
    return code


@contextmanager
def notes_as_lines() -> Iterator[None]:
    """While the block runs, weightspace's own warnings print as one line, ``weightspace: note: <message>``, on
    stderr, without the line of source Python's default shows under each; any other warning as usual.

    It changes how warnings are formatted, not where they go, so recording them (``catch_warnings``) still works.
    """
    package = Path(weightspace.__file__).resolve().parent
    previous = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(package):
            return f"weightspace: note: {_one_line(str(message))}\n"
        return previous(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def describe_error(err: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for a user or environment error; None for anything else (a bug)."""
    if isinstance(err, WeightspaceError):
        return err.exit_code, _one_line(str(err))
    if isinstance(err, OSError):
        code, message = _describe_os_error(err)
        return code, _one_line(message)
    if isinstance(err, KeyError):
        key = err.args[0] if len(err.args) == 1 else str(err)
        return USAGE, _one_line(key if isinstance(key, str) and " " in key else f"missing key {key!r}")
    if isinstance(err, ValueError):
        return USAGE, _one_line(str(err))
    return None


def _describe_os_error(err: OSError) -> tuple[int, str]:
    path = err.filename if isinstance(err.filename, (str, os.PathLike)) else None
    at = f" '{path}'" if path is not None else ""
    if isinstance(err, ConnectionError):
        return ENVIRONMENT, f"connection failed: {err}"
    if err.errno == errno.ENOSPC:
        return ENVIRONMENT, f"no space left on device{' while writing' + at if at else ''}; free some space " \
                            "or choose another output folder"
    if err.errno == errno.EROFS:
        return ENVIRONMENT, f"cannot write{at}: read-only file system; choose an output folder on a writable disk"
    if err.errno in (errno.EACCES, errno.EPERM):
        return ENVIRONMENT, f"cannot write or read{at}: permission denied; check the owner and mode of the " \
                            "folder or choose another one"
    if err.errno == errno.ENOTDIR and path is not None:
        blocker = next((p for p in (Path(path), *Path(path).parents) if p.is_file()), None)
        if blocker == Path(path):
            return ENVIRONMENT, f"'{path}' is a file, not a folder; choose a folder"
        if blocker is not None:
            return ENVIRONMENT, f"'{blocker}' is a file, not a folder, so '{path}' cannot be used; choose " \
                                "another path"
    if err.errno is None or path is None:  # raised with a message of its own
        text = str(err)
        if "requested and" in text and "written" in text:  # numpy's short write (tofile, save): errno is lost
            return ENVIRONMENT, f"a write was cut short ({text}): the disk is probably full; free some space " \
                                "or choose another output folder"
        return (USAGE if isinstance(err, (FileNotFoundError, FileExistsError)) else ENVIRONMENT), text
    if isinstance(err, FileNotFoundError):
        return USAGE, f"no such file or folder:{at}"
    if isinstance(err, FileExistsError):
        return USAGE, f"{at.strip()} already exists"
    return ENVIRONMENT, f"{err.strerror or err}:{at}"


def _one_line(text: str) -> str:
    """Join a message's lines (with '; ' where a line has no closing punctuation) so that it stays one line."""
    joined = ""
    for line in (line.strip() for line in str(text).splitlines()):
        if line:
            joined += line if not joined else (" " if joined[-1] in ".,;:" else "; ") + line
    return joined or "(no message)"
