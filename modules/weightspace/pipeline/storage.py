"""Where a ray.tune run lives: a local folder, or a URI that ``pyarrow.fs`` understands.

On one machine a run sits in ``<output folder>/tune``. On a cluster whose nodes share no disk, ray
writes every trial's results and checkpoints straight to storage that all nodes reach (``--storage``:
``s3://bucket/prefix``, ``gs://...``, ``file:///shared/mount``), and the run sits at
``<storage>/<output folder name>``. A URI is handed to ray unchanged, query included (for example
``s3://bucket/runs?endpoint_override=http://127.0.0.1:9000`` for an S3-compatible server); a plain
path is made absolute. The helpers here read, write and delete the run's small files at either kind
of location, so the command line can refuse, replace and resume a run wherever it lives.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# a file every weightspace run folder holds (written by `weightspace.pipeline.tune.run_tuner`)
CONFIG_FILE = "experiment_config.json"
TUNER_FILE = "tuner.pkl"  # ray's own marker of a run it can restore


def is_uri(location: str | os.PathLike) -> bool:
    """Whether `location` is a URI (``scheme://...``) rather than a local path."""
    return "://" in str(location)


def normalize(location: str | os.PathLike) -> str:
    """A URI unchanged; a local path made absolute (``~`` expanded)."""
    if is_uri(location):
        return str(location)
    return str(Path(location).expanduser().resolve())


def join(location: str | os.PathLike, name: str) -> str:
    """``<location>/<name>``, keeping a URI's query (``?endpoint_override=...``) at its end."""
    location = normalize(location)
    if not is_uri(location):
        return str(Path(location) / name)
    base, mark, query = location.partition("?")
    return f"{base.rstrip('/')}/{name}{mark}{query}"


def _filesystem(location: str):
    """(pyarrow filesystem, path on it) of a normalized location."""
    import pyarrow.fs

    if not is_uri(location):
        return pyarrow.fs.LocalFileSystem(), location
    try:
        return pyarrow.fs.FileSystem.from_uri(location)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, OSError) as err:
        raise ValueError(f"cannot open the storage '{location}' ({err}); give a local folder or a URI that "
                         "pyarrow understands: file:///abs/path, s3://bucket/prefix, gs://bucket/prefix") from None


def exists(location: str | os.PathLike) -> bool:
    """Whether anything is at `location` (a folder with entries, for object stores)."""
    import pyarrow.fs

    fs, path = _filesystem(normalize(location))
    info = fs.get_file_info(path)
    if info.type == pyarrow.fs.FileType.NotFound:
        return False
    if info.type == pyarrow.fs.FileType.Directory and is_uri(location):
        # object stores show a prefix as a folder once anything is under it
        return bool(fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True)))
    return True


def is_tune_run(location: str | os.PathLike) -> bool:
    """Whether `location` holds a ray.tune run of weightspace (``tuner.pkl`` or its config file)."""
    import pyarrow.fs

    fs, path = _filesystem(normalize(location))
    names = [f"{path.rstrip('/')}/{name}" for name in (TUNER_FILE, CONFIG_FILE)]
    return any(info.type == pyarrow.fs.FileType.File for info in fs.get_file_info(names))


@contextmanager
def lock(location: str | os.PathLike) -> Iterator[bool]:
    """Hold the lock of a run location for the block, so that a second run there refuses at once; yields whether
    a lock was taken.

    A local folder or ``file://`` location is locked like an output folder (``.<name>.lock`` beside it,
    `weightspace.io.outputs.output_lock`). An object store (``s3://``, ``gs://``) offers no lock: there the
    output folder's run record is all that keeps two runs apart (`weightspace.pipeline.run_record.owns`).

    Raises:
        OutputError: another run holds the lock (its pid named).
    """
    from weightspace.io.outputs import output_lock

    location = normalize(location)
    if is_uri(location) and not location.startswith("file://"):
        yield False
        return
    path = location.removeprefix("file://").partition("?")[0]
    with output_lock(path, what="run location", fix="choose another --storage or output folder name"):
        yield True


def read_json(location: str | os.PathLike, fix: str = "") -> Any:
    """The JSON value in the file at `location`.

    Raises:
        JSONFileError: not UTF-8 JSON, nested too deeply or holding a huge integer (the file named, and
            `fix` appended; see `weightspace.io.json_files`).
    """
    from weightspace.io.json_files import JSONFileError, loads

    fs, path = _filesystem(normalize(location))
    with fs.open_input_stream(path) as stream:
        data = stream.read()
    try:
        text = data.decode()
    except UnicodeDecodeError as err:
        raise JSONFileError(f"'{location}' is not UTF-8 text ({err.reason} at byte {err.start}), so it is not JSON"
                            f"{'; ' + fix if fix else ''}") from None
    return loads(text, str(location), fix)


def write_json(location: str | os.PathLike, data: dict) -> None:
    """Write `data` as JSON to the file at `location`: complete or not at all.

    A local file goes through `weightspace.io.atomic.write_json` (a temporary name, renamed); an object
    store's object appears only when its upload completes.
    """
    location = normalize(location)
    if not is_uri(location) or location.startswith("file://"):
        from weightspace.io.atomic import write_json as write_local

        write_local(location.removeprefix("file://").partition("?")[0], data)
        return
    fs, path = _filesystem(location)
    fs.create_dir(path.rpartition("/")[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(json.dumps(data, indent=2).encode())


def delete(location: str | os.PathLike) -> None:
    """Delete the folder at `location` and everything under it (nothing there: nothing to do)."""
    import pyarrow.fs

    fs, path = _filesystem(normalize(location))
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)


def list_files(location: str | os.PathLike) -> list[str]:
    """The paths of every file under the folder at `location`, relative to it, '/'-separated and sorted."""
    import pyarrow.fs

    fs, path = _filesystem(normalize(location))
    root = path.rstrip("/")
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(info.path[len(root) + 1:] for info in infos if info.type == pyarrow.fs.FileType.File)


def read_bytes(location: str | os.PathLike) -> bytes:
    """The content of the file at `location`."""
    fs, path = _filesystem(normalize(location))
    with fs.open_input_stream(path) as stream:
        return stream.read()
