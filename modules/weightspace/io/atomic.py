"""Atomic writes: a file or directory appears complete under its name, or not at all.

Everything is first written under a hidden temporary name beside the target
and renamed into place with `os.replace` when complete, so a reader (or a run
resumed after a crash) never mistakes half a file for a finished one. Files are
synced to disk before the rename and the folder after it, so a finished write
survives a power cut. A folder is replaced only when `weightspace.io.outputs`
recognises it as ours, under its output lock.

Every folder weightspace writes whole carries a manifest of its top-level
entries (`weightspace.io.outputs.MANIFEST`), and a file or folder written into
a folder with a manifest is added to it: `--overwrite` then replaces such a
folder only while it holds nothing else.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from weightspace.io.outputs import (
    MANIFEST,
    MANIFEST_FORMAT,
    OWNED_KINDS,
    check_replaceable,
    clean_stale,
    output_errors,
    output_lock,
    read_manifest,
)


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}"


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path`, else it is removed.

    The temporary name keeps the suffix, so writers that choose a format by it (matplotlib) still work.
    """
    path = Path(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path)
        try:
            yield tmp
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        if path.name != MANIFEST:
            record_written(path)


@contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False,
                     accept: tuple[str, ...] = ("zoo",)) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; when the block succeeds it replaces `path`.

    The block runs under the output lock of `path`; leftovers of an interrupted
    write of `path` are cleaned first.

    Args:
        accept: the kinds of `weightspace.io.outputs.KINDS` that `path` may be when replaced
            (an empty folder always may).

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False (a `FileExistsError`).
        OutputError: `path` is not ours to replace, another run holds its lock, or the disk refuses the write.
    """
    path = Path(path)
    with output_errors(path), output_lock(path):
        clean_stale(path)
        check_replaceable(path, accept=accept, overwrite=overwrite)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            fsync_tree(tmp)
            replace_dir(tmp, path, accept=accept)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def replace_dir(src: Path, dst: Path, *, accept: tuple[str, ...] = ("zoo",)) -> None:
    """Move the finished directory `src` to `dst`, replacing `dst` if it exists and is one of the `accept`ed kinds.

    `src` gets a manifest of its entries first (when `accept` names a kind users add files to); `dst` is
    recorded in its parent's manifest, if that has one.
    """
    if any(kind in OWNED_KINDS for kind in accept):
        write_manifest(src, [p.name for p in src.iterdir()])
    if os.path.lexists(dst):
        check_replaceable(dst, accept=accept)
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        os.replace(src, dst)
        fsync_path(dst.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
        fsync_path(dst.parent)
    record_written(dst)


def write_manifest(folder: str | os.PathLike, entries) -> None:
    """Write `folder`'s manifest: the top-level `entries` weightspace wrote there (`outputs.foreign_entries`)."""
    names = sorted(set(entries) | {MANIFEST})
    write_json(Path(folder) / MANIFEST, {"format": MANIFEST_FORMAT, "entries": names})


def record_written(path: str | os.PathLike) -> None:
    """Add `path` to the manifest of its folder, when that folder has one (a folder weightspace wrote)."""
    path = Path(path)
    listed = read_manifest(path.parent)
    if listed is not None and path.name not in listed:
        write_manifest(path.parent, listed | {path.name})


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):  # folders cannot be synced everywhere
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """`fsync_path` every file and folder under `root` (bottom-up), `root` included."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(folder)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data, *, allow_nan: bool = True) -> Path:
    """Write `data` as indented JSON to `path` atomically; values JSON cannot hold are written with str()."""
    return write_text(path, json.dumps(data, indent=1, allow_nan=allow_nan, default=str) + "\n")


def write_csv(table, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame to `path` as CSV without its index, atomically."""
    with atomic_file(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def append_text(path: str | os.PathLike, text: str) -> Path:
    """Append `text` to `path` by rewriting the whole file atomically: it never holds half an append."""
    path = Path(path)
    try:
        before = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        before = ""
    return write_text(path, before + text)
