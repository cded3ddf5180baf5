"""Download, checksum and archive helpers for the file-based zoo tasks.

Files are fetched with :mod:`urllib` in chunks (with a tqdm progress bar) to a
temporary name in the target directory, checked against the size the server
announced and a known MD5, and only then renamed into place. A file with a
wrong checksum or a short transfer is deleted and reported, never used.
Mirrors are tried in order. Archives are unpacked beside their target and
renamed into place when complete, marked as weightspace's extraction; an
existing folder is replaced only when it carries that mark (or is empty).
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tqdm.auto import tqdm

from weightspace.io.atomic import atomic_directory, fsync_tree, replace_dir, write_json
from weightspace.errors import OutputError, WeightspaceError
from weightspace.io.outputs import (EXTRACTION_FORMAT, EXTRACTION_MARKER, check_replaceable, clean_stale,
                                 output_errors, output_lock)

__all__ = [
    "ChecksumError",
    "DownloadError",
    "KNOWN_MD5",
    "RESOURCES",
    "Resource",
    "download_resource",
    "ensure_files",
    "extract_tar",
    "fetch_url",
    "manual_hint",
    "md5_file",
    "missing_files_error",
    "read_url",
    "safe_extract_tar",
    "sha256_file",
    "verify_file",
    "verify_known",
]

_CHUNK = 1 << 20


class DownloadError(WeightspaceError, RuntimeError):
    """A file could not be fetched from any of its mirrors, or what was fetched is not the published file."""

    exit_code = 3  # the environment (network, server) refused the work


class ChecksumError(DownloadError):
    """A file's MD5 does not match the published checksum."""


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    Attributes:
        filename: Name of the file on the server and on disk.
        md5: Expected hex MD5 digest of the file.
        urls: Full URLs of the file, tried in order.
    """

    filename: str
    md5: str
    urls: tuple[str, ...]


def _mirrored(mirrors: tuple[str, ...], files: dict[str, str]) -> tuple[Resource, ...]:
    return tuple(Resource(name, md5, tuple(m + name for m in mirrors)) for name, md5 in files.items())


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_SVHN_MIRRORS = ("http://ufldl.stanford.edu/housenumbers/",)

#: Files fetched by ``download=True``, per task.
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": _mirrored(_MNIST_MIRRORS, {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion_mnist": _mirrored(_FASHION_MIRRORS, {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "svhn": _mirrored(_SVHN_MIRRORS, {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    }),
    "cifar10": (Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)),),
}

#: Known MD5s of files as read from disk (``verify=True``), per task and file name.
KNOWN_MD5: dict[str, dict[str, str]] = {
    task: {r.filename: r.md5 for r in res} for task, res in RESOURCES.items()
}
KNOWN_MD5["cifar10"].update({
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
})


def md5_file(path: str | os.PathLike) -> str:
    """Return the hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike, md5: str) -> None:
    """Check a file against an expected MD5.

    Raises:
        ChecksumError: if the digest differs (the file is left in place).
    """
    actual = md5_file(path)
    if actual != md5:
        raise ChecksumError(f"checksum mismatch for {path}: expected MD5 {md5}, got {actual}; "
                            "the file is corrupt or not the published one - delete it and fetch it again")


def verify_known(task: str, paths: list[Path]) -> None:
    """Check files on disk whose MD5 is known for ``task``; warn about the others.

    Raises:
        ChecksumError: on the first mismatching file (which is left in place).
    """
    known = KNOWN_MD5[task]
    for path in paths:
        if path.name in known:
            verify_file(path, known[path.name])
        else:
            warnings.warn(f"no known checksum for {path}; not verified", stacklevel=3)


def manual_hint(task: str, directory: Path) -> str:
    """One sentence telling where to place ``task``'s files by hand."""
    names = ", ".join(r.filename for r in RESOURCES[task])
    return f"To install by hand, place {names} in {directory.resolve()}"


def fetch_url(url: str, dest: str | os.PathLike, *, desc: str | None = None, timeout: float = 60.0) -> Any:
    """Stream ``url`` into the file ``dest`` in chunks, showing a tqdm progress bar; returns the response headers.

    Raises:
        urllib.error.URLError, OSError, http.client.HTTPException: on network or HTTP failures.
        DownloadError: fewer or more bytes arrived than the server announced (``Content-Length``).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "weightspace-dataset-fetch"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as fh:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or url) as bar:
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise DownloadError(f"{url}: the transfer ended after {received} of the {total} bytes the server "
                                "announced; the partial file was deleted. Run again to retry")
        return response.headers


def read_url(url: str, *, timeout: float = 60.0, limit: int = 16 << 20) -> bytes:
    """The body of ``url`` (a small document such as a record's metadata), at most `limit` bytes.

    Raises:
        urllib.error.URLError, OSError, http.client.HTTPException: on network or HTTP failures.
        DownloadError: the body is larger than `limit`.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "weightspace-dataset-fetch",
                                                   "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read(limit + 1)
    if len(body) > limit:
        raise DownloadError(f"{url} answered with more than {limit} bytes; expected a small metadata document")
    return body


def download_resource(resource: Resource, directory: str | os.PathLike, *, hint: str = "") -> Path:
    """Download one resource into ``directory``, trying its mirrors in order.

    The data goes to a temporary file next to the target, is checked against
    ``resource.md5`` and renamed into place only when it matches; a mismatching
    download is deleted and the next mirror is tried.

    Args:
        resource: What to fetch and its checksum.
        directory: Target directory (created if missing).
        hint: Extra sentence appended to error messages (e.g. where to put files by hand).

    Returns:
        The path of the verified file.

    Raises:
        ChecksumError: if every mirror failed and at least one served wrong bytes.
        DownloadError: if no mirror could be reached.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / resource.filename
    failures: list[str] = []
    bad_checksum = False
    for url in resource.urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{resource.filename}.", suffix=".part", dir=directory)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch_url(url, tmp, desc=resource.filename)
            actual = md5_file(tmp)
            if actual != resource.md5:
                bad_checksum = True
                failures.append(f"{url}: checksum mismatch (expected MD5 {resource.md5}, got {actual}); "
                                "the download was deleted")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException, DownloadError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")  # URLError, timeouts: OSError
        finally:
            tmp.unlink(missing_ok=True)
    kind = ChecksumError if bad_checksum else DownloadError
    reason = "" if bad_checksum else " (is the network unreachable?)"
    raise kind(f"could not download {resource.filename}{reason}: " + "; ".join(failures)
               + (f". {hint}" if hint else ""))


def missing_files_error(task: str, directory: Path, needed: list[str],
                        missing: list[str]) -> FileNotFoundError:
    """The error for a task whose files are absent: what to place where, and how to fetch it."""
    return FileNotFoundError(
        f"task {task!r} needs these files in {directory.resolve()}: {', '.join(needed)} "
        f"(missing: {', '.join(missing)}). Place them there, or pass download=True to load_task "
        f"(or run `weightspace zoo download {task}`) to fetch them.")


def ensure_files(task: str, directory: Path, needed: list[str], missing: list[str], present: list[Path],
                 download: bool, verify: bool) -> None:
    """Make a task's files available in ``directory``.

    Args:
        task: Key of :data:`RESOURCES`.
        directory: The task's directory.
        needed: File names shown in the "missing files" message.
        missing: Names (as in :data:`RESOURCES`) that are not on disk.
        present: Files already on disk (checked when ``verify``).
        download: Fetch the missing files instead of raising.
        verify: Check ``present`` against :data:`KNOWN_MD5`.

    Raises:
        FileNotFoundError: files missing and ``download`` is False.
        DownloadError, ChecksumError: as :func:`download_resource` / :func:`verify_file`.
    """
    if missing and not download:
        raise missing_files_error(task, directory, needed, missing)
    for resource in RESOURCES[task]:
        if resource.filename in missing:
            download_resource(resource, directory, hint=manual_hint(task, directory))
    if verify:
        verify_known(task, present)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise DownloadError(f"refusing to extract tar member with unsafe path {name!r}")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(f"refusing to extract tar member {name!r}: not a regular file or directory")


_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python's own checks, where it has them


@contextmanager
def _reading(archive: str | os.PathLike) -> Iterator[None]:
    """Turn the errors of a corrupt or truncated `archive` raised in the block into a `DownloadError` naming it."""
    try:
        yield
    except WeightspaceError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # the disk, not the archive: a full or read-only destination
            raise
        raise DownloadError(f"cannot extract {archive}: the archive is corrupt ({exc})") from exc
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise DownloadError(f"cannot extract {archive}: the archive is corrupt or truncated "
                            f"({type(exc).__name__}: {exc})") from exc


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        _check_member(member)
    return members


def _mark(folder: Path, archive: str | os.PathLike, sha256: str | None) -> None:
    """Write `EXTRACTION_MARKER` into the complete extraction `folder`, naming its archive and the archive's SHA-256."""
    write_json(folder / EXTRACTION_MARKER, {"format": EXTRACTION_FORMAT, "archive": Path(archive).name,
                                            "sha256": sha256 or sha256_file(archive)})


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike, *, sha256: str | None = None) -> Path:
    """Extract a tar archive as the whole folder ``dest``, replacing only an earlier extraction of weightspace.

    The archive is unpacked into a temporary folder beside ``dest`` under its
    output lock, marked with `EXTRACTION_MARKER` (the archive's name and
    SHA-256) and renamed into place only when complete. ``dest`` may be missing,
    an empty folder or a folder with that marker; anything else is refused
    before the archive is read. Unsafe members are refused as by `safe_extract_tar`.

    Args:
        sha256: the archive's SHA-256 when already known (else it is computed).

    Returns:
        ``dest``.

    Raises:
        OutputError: ``dest`` holds something weightspace did not extract (a few entries are named),
            another run is writing it, or the disk refuses the write.
        DownloadError: on an unsafe member or an unreadable archive (nothing is left behind).
    """
    dest = Path(dest)
    with atomic_directory(dest, overwrite=True, accept=("extraction",)) as tmp:
        with _reading(archive), tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, members=_safe_members(tar), **_FILTER)
        _mark(tmp, archive, sha256)
    return dest


def _check_in_place(staged: Path, final: Path, archive: str | os.PathLike) -> None:
    """Refuse unless the entry `final` in the way of `staged` is missing, ours to replace, or (a file) the same bytes."""
    if staged.is_dir():
        check_replaceable(final, accept=("extraction",))
    elif os.path.lexists(final) and not (final.is_file() and not final.is_symlink()
                                         and filecmp.cmp(staged, final, shallow=False)):
        raise OutputError(f"refusing to replace '{final}' with the file of the same name in {archive}: it is not "
                          "what the archive holds, so weightspace did not extract it; move it away yourself")


def safe_extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a tar archive's top-level entries into the folder ``dest``, refusing unsafe members.

    Members with absolute paths, ``..`` components, links or device files make
    the whole extraction fail before anything is written. The archive is unpacked
    into a temporary folder inside ``dest``; each top-level folder is marked with
    `EXTRACTION_MARKER` and renamed into place under its output lock. An entry
    already there is replaced only when weightspace extracted it (its marker) or
    it is an empty folder; a file only when it holds the same bytes. Anything
    else is refused before anything is moved (a folder, before the archive is unpacked).

    Raises:
        DownloadError: on an unsafe member or an unreadable archive.
        OutputError: an entry in the way is not weightspace's to replace (it is named), or the disk refuses the write.
    """
    dest = Path(dest)
    with output_errors(dest):
        dest.mkdir(parents=True, exist_ok=True)
    with _reading(archive), tarfile.open(archive, "r:*") as tar:
        members = _safe_members(tar)
        for top in sorted({PurePosixPath(m.name.replace("\\", "/")).parts[:1] for m in members} - {()}):
            if (dest / top[0]).is_dir():  # refuse before unpacking what could not be moved into place
                check_replaceable(dest / top[0], accept=("extraction",))
        with output_errors(dest):
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        try:
            with output_errors(dest), ExitStack() as locks:
                tar.extractall(staging, members=members, **_FILTER)
                entries = sorted(staging.iterdir())
                digest = sha256_file(archive) if any(entry.is_dir() for entry in entries) else None
                for entry in entries:
                    if entry.is_dir():
                        _mark(entry, archive, digest)
                        fsync_tree(entry)
                    locks.enter_context(output_lock(dest / entry.name))
                    clean_stale(dest / entry.name)
                for entry in entries:  # every check before the first move: all of it lands, or none
                    _check_in_place(entry, dest / entry.name, archive)
                for entry in entries:
                    final = dest / entry.name
                    if entry.is_dir():
                        replace_dir(entry, final, accept=("extraction",))
                    elif not os.path.lexists(final):
                        os.replace(entry, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
