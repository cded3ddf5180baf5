"""Downloads and archives: fetching with checksums, mirrors tried in order, and safe tar extraction.

`fetch_url` streams a URL over urllib (a timeout, a tqdm progress bar, the
transfer checked against the ``Content-Length`` the server announced);
`read_url` reads a small document, at most a given size. `download_resource`
fetches a file of known MD5 with pooch, its mirrors tried in order: pooch
writes to a temporary name beside the target, checks the MD5 and only then
renames it into place, so a wrong or short download is deleted and never used.
Archives are unpacked beside their target and renamed into place when complete,
marked as weightspace's extraction; an existing folder is replaced only when it
carries that mark (or is empty). The catalogues of what to fetch live with their
users: `weightspace.zoo.task_sources` (task data), `weightspace.formats.published_zoos`.
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import logging
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tqdm.auto import tqdm

from weightspace.errors import OutputError, WeightspaceError
from weightspace.io.atomic import atomic_directory, fsync_tree, replace_dir, write_json
from weightspace.io.outputs import (
    EXTRACTION_FORMAT,
    EXTRACTION_MARKER,
    check_replaceable,
    clean_stale,
    output_errors,
    output_lock,
)

__all__ = [
    "ChecksumError",
    "DownloadError",
    "Resource",
    "download_resource",
    "extract_tar",
    "fetch_url",
    "md5_file",
    "read_url",
    "safe_extract_tar",
    "sha256_file",
    "verify_file",
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


# pooch cannot cap what it keeps of a response (it streams to a file), so a small document is read here
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


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Hold `logger` at WARNING in the block: the progress bar already names the file pooch would announce."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _retrieve(url: str, resource: Resource, directory: Path, timeout: float) -> None:
    """Fetch `url` as ``directory/resource.filename`` with pooch: a temporary name, the MD5 checked, then renamed.

    pooch fetches through `fetch_url`, not its requests-based HTTPDownloader: every download
    keeps one HTTP stack with its timeout, progress bar and ``Content-Length`` check.

    Raises:
        ChecksumError: the bytes are not the published file (pooch deleted them).
        urllib.error.URLError, OSError, ValueError, http.client.HTTPException, DownloadError: as `fetch_url`.
    """
    import pooch  # lazy: `import weightspace` must not load pooch; only downloads need it

    transferred = False

    def downloader(url: str, output_file: str, _pooch: Any, check_only: bool = False) -> None:
        nonlocal transferred
        fetch_url(url, output_file, desc=resource.filename, timeout=timeout)
        transferred = True

    try:
        with _quiet(pooch.get_logger()):
            pooch.retrieve(url, f"md5:{resource.md5}", fname=resource.filename, path=directory,
                           downloader=downloader)
    except ValueError as exc:
        if not transferred:  # urllib refuses a malformed URL with a ValueError, before any transfer
            raise
        got = re.search(r"but got (\w+)", str(exc))  # pooch's message names the digest it found
        raise ChecksumError(f"checksum mismatch (expected MD5 {resource.md5}, got {got[1] if got else 'another'}); "
                            "the download was deleted") from None


def download_resource(resource: Resource, directory: str | os.PathLike, *, hint: str = "",
                      timeout: float = 60.0) -> Path:
    """Download one resource into ``directory``, trying its mirrors in order.

    Each mirror's bytes go to a temporary file next to the target, are checked
    against ``resource.md5`` and renamed into place only when they match; a
    mismatching download is deleted and the next mirror is tried.

    Args:
        resource: What to fetch and its checksum.
        directory: Target directory (created if missing).
        hint: Extra sentence appended to error messages (e.g. where to put files by hand).
        timeout: Seconds to wait for each server to answer.

    Returns:
        The path of the verified file.

    Raises:
        ChecksumError: if every mirror failed and at least one served wrong bytes.
        DownloadError: if no mirror could be reached.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    bad_checksum = False
    for url in resource.urls:
        try:
            _retrieve(url, resource, directory, timeout)
            return directory / resource.filename
        except ChecksumError as exc:
            bad_checksum = True
            failures.append(f"{url}: {exc}")
        except PermissionError:  # the target folder, not the network
            raise
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException, DownloadError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")  # URLError, timeouts: OSError
    kind = ChecksumError if bad_checksum else DownloadError
    reason = "" if bad_checksum else " (is the network unreachable?)"
    raise kind(f"could not download {resource.filename}{reason}: " + "; ".join(failures)
               + (f". {hint}" if hint else ""))


# pooch's Untar checks no member paths before Python 3.12 and unpacks in place, so extraction stays here
def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise DownloadError(f"refusing to extract tar member with unsafe path {name!r}")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(f"refusing to extract tar member {name!r}: not a regular file or directory")


_FILTER: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python's own checks, where it has them


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
