"""Output paths: what weightspace may replace, one writer at a time, and what killed runs left behind.

- `check_replaceable`: a path may be replaced when nothing is there, when it is
  an empty folder, or when it is an output weightspace wrote, recognised by its
  own marker file (a zoo's ``zoo.json``, an experiment's ``experiment.json``,
  ...) and holding nothing but what weightspace wrote there: the entries its
  manifest (`MANIFEST`) lists. Anything else is refused with a message naming
  a few of its entries, the ones that would be lost first.
- `check_apart`: an output may neither lie inside nor contain what is being read.
- `output_lock`: ``.<name>.lock`` beside the target, held with `fcntl.flock`
  while a run writes it; a second run on the same target refuses at once. The
  kernel drops the lock when its holder dies, so a lock is never stale.
- `clean_stale`: under the lock, the temporary (``.<name>.tmp-*``) and
  replaced (``.<name>.old-*``) folders of an interrupted write are provably
  nobody's work in progress; they are removed (or restored) and reported.
- `output_errors`: "read-only", "no space left" and "not a directory" from the
  operating system become an `OutputError` naming the path.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

from weightspace.errors import OutputError, WeightspaceError
from weightspace.io.json_files import NOT_WRITTEN_BY_US, read_json

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not serialised there
    fcntl = None

ZOO_FORMAT = "weightspace-zoo"  # zoo.json "format" (weightspace.zoo.store.FORMAT)
EXPORT_FORMAT = "weightspace-raytune-export"  # weightspace.json of `zoo export --to raytune`
CHECKPOINTS_EXPORT_FORMAT = "weightspace-checkpoints-export"  # weightspace.json of `zoo export --to checkpoints`
WORK_FORMAT = "weightspace-zoo-work"  # spec.json of a generation's .<out>.partial work folder
EXPERIMENT_FORMAT = "weightspace-experiment"  # experiment.json of an experiment's output folder
EXTRACTION_FORMAT = "weightspace-extraction"  # EXTRACTION_MARKER of a folder unpacked from an archive
EXTRACTION_MARKER = ".weightspace-extracted.json"  # written last into a complete extraction: archive name, SHA-256
MANIFEST = ".weightspace-manifest.json"  # the top-level entries weightspace wrote into an output folder
MANIFEST_FORMAT = "weightspace-manifest"
# hidden names of weightspace's own transient entries: temporaries, replaced folders, work folders, locks
_TRANSIENT = re.compile(r"\.(.+)\.(tmp-[0-9a-f]{8}.*|old-[0-9a-f]{8}|partial|lock)")
_SHOWN = 5  # entries named when a folder is refused
_STALE = r"\.{name}\.(tmp|old)-[0-9a-f]{{8}}"  # names atomic.py gives temporary and replaced folders


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and replacing it was not asked for (no --overwrite)."""

    exit_code = 2


def _json_object(path: Path) -> dict:
    """The JSON object in `path`; {} when there is none, or it is unreadable (then the file is not ours)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _only_temporaries(path: Path) -> bool:
    return all(p.name.startswith(".") and ".tmp" in p.name for p in path.iterdir())


# kind -> (what it is, in a message; does the folder hold that kind's marker)
KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "zoo": ("a weightspace zoo (zoo.json with format 'weightspace-zoo')",
            lambda p: _json_object(p / "zoo.json").get("format") == ZOO_FORMAT),
    "raytune export": ("a folder written by `weightspace zoo export --to raytune` (weightspace.json)",
                       lambda p: _json_object(p / "weightspace.json").get("format") == EXPORT_FORMAT),
    "checkpoints export": ("a folder written by `weightspace zoo export --to checkpoints` (weightspace.json)",
                           lambda p: _json_object(p / "weightspace.json").get("format") == CHECKPOINTS_EXPORT_FORMAT),
    "zoo work folder": ("the work folder of `weightspace zoo generate` (spec.json)",
                        lambda p: _json_object(p / "spec.json").get("format") == WORK_FORMAT
                        or {"fingerprint", "spec"} <= set(_json_object(p / "spec.json")) or _only_temporaries(p)),
    "experiment": ("an experiment's output folder (experiment.json)",
                   lambda p: _json_object(p / "experiment.json").get("format") == EXPERIMENT_FORMAT),
    "extraction": (f"a folder weightspace extracted from an archive ({EXTRACTION_MARKER})",
                   lambda p: _json_object(p / EXTRACTION_MARKER).get("format") == EXTRACTION_FORMAT),
    "ray.tune run": ("a ray.tune run of weightspace (tuner.pkl or experiment_config.json)",
                     lambda p: (p / "tuner.pkl").is_file()
                     or {"config", "iterations"} <= set(_json_object(p / "experiment_config.json"))),
}


# the marker file of each kind, named when it cannot be read
_MARKERS = {"zoo": "zoo.json", "raytune export": "weightspace.json", "checkpoints export": "weightspace.json",
            "zoo work folder": "spec.json", "experiment": "experiment.json", "extraction": EXTRACTION_MARKER,
            "ray.tune run": "experiment_config.json"}


# what the writers of these kinds put into a folder before they kept a manifest (the names only, no
# user file among them); a folder of such a kind without a manifest may hold these and nothing else
_UNLISTED = {
    "zoo": ("zoo.json", "weights.npy", "samples.csv", "layout.json"),
    "experiment": ("experiment.json", "baselines.csv", "baseline_predictions.csv.gz", "baseline_performance.json",
                   "baselines_config.json", "tune", "zoo", "history.csv", "embeddings.npy", "embedding_samples.csv",
                   "embedding_2d.csv", "results.csv", "predictions.csv.gz", "results.json", "trials.csv",
                   "report.md", "*.png"),
}
# kinds whose folders users open and add files to: replaced only when they hold nothing else
OWNED_KINDS = ("zoo", "raytune export", "checkpoints export", "experiment")


def read_manifest(folder: str | os.PathLike) -> set[str] | None:
    """The top-level entries weightspace recorded writing into `folder`, or None without a manifest.

    Raises:
        JSONFileError: the manifest is there but is not JSON weightspace could have written (the file named).
    """
    path = Path(folder) / MANIFEST
    try:
        data = read_json(path, NOT_WRITTEN_BY_US + "; move the folder's own files out and remove the folder, or "
                                                   "choose another output path")
    except OSError:  # none there (or no folder): not a folder weightspace wrote whole
        return None
    if not isinstance(data, dict):
        return None
    entries = data.get("entries")
    if data.get("format") != MANIFEST_FORMAT or not isinstance(entries, list):
        return None
    return {e for e in entries if isinstance(e, str)} | {MANIFEST}


def foreign_entries(folder: str | os.PathLike, kind: str) -> list[str]:
    """The entries of `folder` (a `kind` of `KINDS`) that weightspace did not write there, sorted.

    An entry is weightspace's when the folder's manifest lists it, when it is one of weightspace's own
    transient names (temporaries, locks), or, in a folder without a manifest, when its kind's writers
    always produced it (`_UNLISTED`). Kinds that users do not add files to have none.
    """
    if kind not in OWNED_KINDS:
        return []
    folder = Path(folder)
    listed = read_manifest(folder)
    foreign = []
    for entry in folder.iterdir():
        name = entry.name
        if _TRANSIENT.fullmatch(name):
            continue
        if listed is not None:
            ours = name in listed
        else:
            ours = any(fnmatch.fnmatchcase(name, pattern) for pattern in _UNLISTED.get(kind, ()))
        if not ours:
            foreign.append(name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
    return sorted(foreign)


def _named(entries: list[str]) -> str:
    return ", ".join(entries[:_SHOWN]) + (f" and {len(entries) - _SHOWN} more" if len(entries) > _SHOWN else "")


def check_apart(output: str | os.PathLike, what: str, source: str | os.PathLike | None) -> None:
    """Refuse an output that is, lies inside or contains `source` (the `what` being read, e.g. "zoo").

    Raises:
        OutputError: the two paths overlap (links resolved).
    """
    if source is None:
        return
    out, src = Path(output).expanduser().resolve(), Path(source).expanduser().resolve()
    if out == src or src in out.parents:
        where = "is" if out == src else "lies inside"
        raise OutputError(f"the output '{output}' {where} the {what} '{source}' being read; writing there would "
                          f"change or delete what is read. Choose an output path outside '{source}'")
    if out in src.parents:
        raise OutputError(f"the output '{output}' contains the {what} '{source}' being read; replacing it would "
                          f"delete the {what}. Choose an output path that does not hold '{source}'")


def recognise(path: str | os.PathLike, accept: tuple[str, ...]) -> str | None:
    """Which of the `accept`ed kinds (see `KINDS`) the folder `path` is, "empty folder", or None."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return None
    if not any(path.iterdir()):
        return "empty folder"
    return next((kind for kind in accept if KINDS[kind][1](path)), None)


def check_replaceable(path: str | os.PathLike, *, accept: tuple[str, ...], overwrite: bool = True) -> str | None:
    """Refuse to replace `path` unless it is missing, an empty folder or one of the `accept`ed kinds.

    Returns:
        the kind found ("empty folder", a key of `KINDS`), or None when nothing is there.

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False.
        OutputError: `path` is something weightspace did not write (a few of its entries are named),
            a file or a link, or lies under a file.
    """
    path = Path(path)
    check_parents(path)
    if not os.path.lexists(path):
        return None
    if not overwrite:
        raise OutputExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it, "
                                "or choose another output path")
    wanted = " or ".join(KINDS[k][0] for k in accept) or "an empty folder"
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"refusing to replace '{path}': it is a {'link' if path.is_symlink() else 'file'}, not "
                          f"{wanted}; move it away or choose another output path")
    with output_errors(path):
        kind = recognise(path, accept)
        if kind is None:
            _refuse_unreadable_marker(path, accept)
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
            raise OutputError(f"refusing to replace '{path}': it holds {_named(entries)}, and is not {wanted}. "
                              "weightspace replaces only what it wrote; move the folder away yourself or choose "
                              "another output path")
        foreign = foreign_entries(path, kind)
        if foreign:
            raise OutputError(f"refusing to replace '{path}': it is {KINDS[kind][0]}, but it also holds "
                              f"{_named(foreign)}, which weightspace did not write and which would be lost. "
                              "Move them out of the folder, or choose another output path")
    return kind


def _refuse_unreadable_marker(path: Path, accept: tuple[str, ...]) -> None:
    """Name the marker file (zoo.json, experiment.json, ...) that keeps `path` from being recognised because it
    cannot be read as JSON (nested too deeply, a huge integer, not JSON), rather than only listing the folder."""
    for marker in dict.fromkeys(_MARKERS[kind] for kind in accept if kind in _MARKERS):
        if (path / marker).is_file():
            try:
                read_json(path / marker)
            except ValueError as err:  # JSONFileError
                raise OutputError(f"refusing to replace '{path}': {err}, so weightspace cannot show it wrote the "
                                  "folder; move the folder away yourself or choose another output path") from None
            except OSError:
                pass


def check_parents(path: str | os.PathLike) -> None:
    """Raise `OutputError` when a parent of `path` is a file, so `path` can never be created."""
    for parent in Path(path).parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise OutputError(f"'{parent}' is a file, so '{path}' cannot be created under it; "
                                  "choose an output path whose parents are folders")
            return


# ----------------------------------------------------------------- the lock
_held: dict[str, list] = {}  # lock path -> [file descriptor, depth]; a process may nest its own locks


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the output `path`: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextmanager
def output_lock(path: str | os.PathLike, *, what: str = "", fix: str = "choose another output path") -> Iterator[Path]:
    """Hold the lock of the output `path` for the block; the lock file is removed when released.

    Nested use in one process (a generation that saves a zoo) re-enters the lock it holds.

    Args:
        what, fix: what `path` is and what to do instead, for the message when another run holds the lock.

    Raises:
        OutputError: another run holds the lock (its pid is named), or the lock cannot be created.
    """
    path = Path(path)
    lock = lock_path(path)
    key = os.path.abspath(lock)
    if key in _held:
        _held[key][1] += 1
        try:
            yield lock
        finally:
            _held[key][1] -= 1
        return
    with output_errors(path):
        check_parents(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(lock, path, f"the {what} " if what else "", fix)
    _held[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _held[key]
        # unlink while still holding it: a run that opened the old file notices and opens the new one
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def holds_lock(path: str | os.PathLike) -> bool:
    """Whether this process holds the lock of the output `path`."""
    return os.path.abspath(lock_path(path)) in _held


def _acquire(lock: Path, path: Path, what: str, fix: str) -> int:
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"{what}'{path}' is being written by another run (pid {holder}), which holds the "
                              f"lock '{lock}'; wait for it to finish or {fix}") from None
        try:
            current = os.stat(lock)
            same = (current.st_ino, current.st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the holder released and removed it between our open and flock: try the new file
    raise OutputError(f"could not take the lock '{lock}' of '{path}'; it keeps being replaced. Is another run looping "
                      "on the same output?")


# --------------------------------------------------------------- leftovers
def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove what an interrupted write of `path` left beside it; call only while holding its lock.

    ``.<name>.tmp-*`` (a write cut short) is removed; ``.<name>.old-*`` (an
    ``--overwrite`` cut between its renames) is moved back to `path` when
    `path` is missing, else removed. Each action is printed to stderr.

    Returns:
        the leftovers found.
    """
    path = Path(path)
    assert holds_lock(path), "clean_stale needs the output lock: without it the leftovers may be live"
    if not path.parent.is_dir():
        return []
    pattern = re.compile(_STALE.format(name=re.escape(path.name)))
    found = sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    for leftover in found:
        if ".old-" in leftover.name and not os.path.lexists(path) and leftover.is_dir():
            os.replace(leftover, path)
            print(f"restored '{path}' from '{leftover.name}', left by an interrupted --overwrite", file=sys.stderr)
        else:
            remove(leftover)
            print(f"removed '{leftover}', left by an interrupted write of '{path.name}'", file=sys.stderr)
    return found


def remove(path: Path) -> None:
    """Delete a file or folder tree (one of ours)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------ errors
_FULL = re.compile(r"\d+ requested and \d+ written")  # numpy's message when a write comes up short


def describe_os_error(err: OSError, path: str | os.PathLike) -> str | None:
    """A one-line message for an output path's read-only, full-disk or not-a-folder error; None for others."""
    where = err.filename or path
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or (err.errno is None and _FULL.search(str(err))):
        return (f"no space left on device while writing '{where}'; free some space or choose an output path "
                "on another disk")
    if err.errno == errno.EROFS:
        return f"'{where}' is on a read-only file system; choose a writable output path"
    if err.errno in (errno.EACCES, errno.EPERM):
        return (f"permission denied for '{where}' (read-only for this user); change its permissions or choose "
                "another output path")
    if err.errno == errno.ENOTDIR:
        try:
            check_parents(path)
        except OutputError as refused:
            return str(refused)
        return f"a parent of '{where}' is a file, not a folder; choose an output path whose parents are folders"
    return None


@contextmanager
def output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn read-only, full-disk and not-a-folder `OSError`s raised in the block into `OutputError`."""
    try:
        yield
    except WeightspaceError:
        raise
    except OSError as err:
        message = describe_os_error(err, path)
        if message is None:
            raise
        raise OutputError(message) from err
