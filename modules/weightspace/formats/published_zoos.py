"""The published zoos (2021 Zenodo files, Small CNN Zoo archives): fetch them and convert them into ``<root>/<name>``.

- 2021 datasets: Zenodo record 5645138, files ``dataset_<XX>_<name>.pt``
  (whether the Unterthiner-based 41-44 files are on the record is unverified;
  the 2021 download script lists none of them).
- Small CNN Zoo: ``https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/<name>.tar.xz``
  (documented alternative: ``https://storage.cloud.google.com/gresearch/smallcnnzoo-dataset/<name>.tar.xz``).

Every download is verified before it is renamed into place, and deleted when
it does not match: a Zenodo file against the MD5 and size in the record's
metadata (read from the records API at download time), a Small CNN Zoo
archive (no checksum is published) against the size the server announces and
the MD5 it sends (``x-goog-hash``) where it sends one. Its SHA-256 is kept
beside it (``<file>.sha256``) and in the zoo's provenance. A file already on
disk is checked again before it is reused (against that SHA-256 and, for
Zenodo, the record); a download of ours that fails is deleted and fetched
again, a file placed by hand is refused and left in place.

A Small CNN Zoo archive is unpacked into ``<root>/raw/<name>`` beside its
target and renamed into place when complete, with a marker naming the archive
and its SHA-256; a folder there is replaced only when it carries that marker
(or is empty), anything else is refused before the download. ``<root>`` is the
caller's folder, else ``$WEIGHTSPACE_DATA`` (`weightspace.io.data_root`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import os
import socket
import urllib.error
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from weightspace.formats.unterthiner import convert_unterthiner
from weightspace.formats.zenodo_2021 import convert_zenodo_2021
from weightspace.io.atomic import write_text
from weightspace.io.data_root import data_root
from weightspace.io.download import ChecksumError, DownloadError, extract_tar, fetch_url, read_url
from weightspace.io.json_files import loads
from weightspace.io.outputs import check_replaceable
from weightspace.zoo.store import Zoo

ZENODO_RECORD = "5645138"
ZENODO_RECORD_URL = f"https://zenodo.org/api/records/{ZENODO_RECORD}"  # JSON metadata: files[].checksum "md5:..."
ZENODO_URL = "https://zenodo.org/record/5645138/files/{file}?download=1"
SMALLCNNZOO_URL = "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/{file}"
SMALLCNNZOO_ALT_URL = "https://storage.cloud.google.com/gresearch/smallcnnzoo-dataset/{file}"

ZENODO_DATASETS = ("01_ablations", "11_tetris_seed", "12_tetris_hyp", "21_mnist_seed", "22_mnist_hyp_1_fix_seed",
                   "23_mnist_hyp_1_rand_seed", "24_mnist_hyp_5_fix_seeds", "25_mnist_hyp_5_rand_seeds",
                   "31_f-mnist_seed", "41_mnist_hyp", "42_f-mnist_hyp", "43_svhn_hyp", "44_cifar_hyp")
SMALLCNNZOO_DATASETS = {"unterthiner_mnist": "mnist", "unterthiner_fashion_mnist": "fashion_mnist",
                        "unterthiner_cifar10": "cifar10", "unterthiner_svhn": "svhn_cropped"}
# SHA-256 of the published files; none are published, so none are known
KNOWN_SHA256: dict[str, str] = {}


@dataclass(frozen=True)
class Published:
    """What a publisher says a file is (MD5 and size, either may be unknown) and where it says so."""

    md5: str | None
    size: int | None
    source: str


def list_downloads() -> list[str]:
    """Names accepted by `download`."""
    return [*ZENODO_DATASETS, *SMALLCNNZOO_DATASETS]


def _source(name: str) -> tuple[str, str, str | None]:
    """(file name, url, alternative url) of a dataset name."""
    if name in ZENODO_DATASETS:
        file = f"dataset_{name}.pt"
        return file, ZENODO_URL.format(file=file), None
    if name in SMALLCNNZOO_DATASETS:
        file = f"{SMALLCNNZOO_DATASETS[name]}.tar.xz"
        return file, SMALLCNNZOO_URL.format(file=file), SMALLCNNZOO_ALT_URL.format(file=file)
    raise ValueError(f"unknown dataset {name!r}; choose one of {list_downloads()}")


@contextmanager
def _network_errors(url: str, hint: str) -> Iterator[None]:
    """Turn urllib's and http.client's failures into a `DownloadError` that names `url` and says what to do."""
    try:
        yield
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url} answered HTTP {err.code} ({err.reason}); the file may have moved or not "
                            f"be published. {hint}") from err
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"could not reach {url} ({reason}); the network looks unreachable. {hint}") from err


def zenodo_files(*, timeout: float = 60.0) -> dict[str, Published]:
    """The files of Zenodo record 5645138, each with the MD5 and size its metadata gives, read now.

    Raises:
        DownloadError: the record cannot be reached, or its answer is not the record's metadata.
    """
    with _network_errors(ZENODO_RECORD_URL, "The record's metadata carries the checksums the downloads are "
                                            "verified against; check the network connection, then rerun."):
        body = read_url(ZENODO_RECORD_URL, timeout=timeout)
    source = f"Zenodo record {ZENODO_RECORD}"
    try:
        out = {}
        for entry in loads(body.decode(), ZENODO_RECORD_URL)["files"]:
            algorithm, _, digest = str(entry.get("checksum") or "").partition(":")
            size = entry.get("size")
            out[str(entry.get("key") or entry["filename"])] = Published(
                digest.lower() if algorithm == "md5" and digest else None,
                size if isinstance(size, int) and not isinstance(size, bool) else None, source)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DownloadError(f"{ZENODO_RECORD_URL} did not answer with the record's metadata ({type(err).__name__}: "
                            f"{err}); the records API may have changed. Nothing was downloaded") from None
    return out


def _server_md5(headers: Any) -> str | None:
    """The MD5 a server sends with a file (Google Cloud Storage: ``x-goog-hash: crc32c=...,md5=<base64>``)."""
    if headers is None:
        return None
    values = headers.get_all("x-goog-hash") if hasattr(headers, "get_all") else [headers.get("x-goog-hash")]
    for part in ",".join(str(v) for v in values or [] if v).split(","):
        key, _, value = part.strip().partition("=")
        if key == "md5" and value:
            try:
                return base64.b64decode(value, validate=True).hex()
            except (binascii.Error, ValueError):
                return None
    return None


def _digests(path: Path) -> tuple[int, str, str]:
    """(size, MD5, SHA-256) of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha.hexdigest()


def _verify(path: Path, what: str, published: Published | None, *, sha256: str | None = None,
            server_md5: str | None = None) -> str:
    """Check `path` against what is known of it; returns its SHA-256.

    Raises:
        ChecksumError: naming every difference found.
    """
    size, md5, digest = _digests(path)
    wrong = []
    if published is not None and published.size is not None and size != published.size:
        wrong.append(f"{size} bytes where {published.source} says {published.size}")
    if published is not None and published.md5 is not None and md5 != published.md5:
        wrong.append(f"MD5 {md5} where {published.source} says {published.md5}")
    if server_md5 is not None and md5 != server_md5:
        wrong.append(f"MD5 {md5} where the server's x-goog-hash says {server_md5}")
    if sha256 is not None and digest != sha256:
        wrong.append(f"SHA-256 {digest} where {sha256} was expected")
    if wrong:
        raise ChecksumError(f"{what} is not the published file: {'; '.join(wrong)}")
    return digest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_sha256(path: Path) -> str | None:
    """The SHA-256 kept beside `path` when weightspace downloaded it; None when there is none."""
    try:
        text = _sidecar(path).read_text(encoding="utf-8").split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


# not pooch: it checks one known hash and renames at once, where these files are checked against the record's MD5
# and size and the x-goog-hash only the response carries, and get their SHA-256 file before the rename
def fetch(url: str, path: Path, *, published: Published | None = None, sha256: str | None = None,
          alternative: str | None = None, timeout: float = 60.0) -> str:
    """Download `url` to `path` (temporary name, verified, then renamed); returns the file's SHA-256.

    The download must match `published` (MD5, size), the size and MD5 the server
    announces, and `sha256`; otherwise it is deleted. Its SHA-256 is written to
    ``<path>.sha256`` before the rename, so a file in place always has its record.

    Raises:
        DownloadError: network unreachable, HTTP error, or a short transfer.
        ChecksumError: the download is not the published file (it was deleted).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{uuid.uuid4().hex[:8]}")
    hint = (f"Check the network connection (and any proxy settings), or fetch the file by hand"
            f"{f' (alternative address: {alternative})' if alternative else ''} and place it at '{path}', then rerun.")
    try:
        with _network_errors(url, hint):
            headers = fetch_url(url, tmp, desc=path.name, timeout=timeout)
        try:
            digest = _verify(tmp, f"the download of {url}", published, sha256=sha256, server_md5=_server_md5(headers))
        except ChecksumError as err:
            raise ChecksumError(f"{err}; the download was deleted. Run again to retry; if it keeps failing, the "
                                "published file has changed or the connection alters it") from None
        write_text(_sidecar(path), f"{digest}  {path.name}\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _verified_raw(name: str, url: str, alternative: str | None, raw: Path) -> tuple[str, str, bool]:
    """The raw file of `name` at `raw`: reused if it still matches, else fetched and verified.

    A file on disk is checked against the SHA-256 kept beside it at download and,
    for Zenodo, against the record's MD5 and size (when the record can be reached;
    a file without a SHA-256 of ours beside it always needs the record). One that
    fails is deleted and fetched again when weightspace downloaded it, and left in
    place (refused) when it was placed by hand.

    Returns:
        (SHA-256, how it was verified, whether weightspace downloaded it).
    """
    zenodo = name in ZENODO_DATASETS
    record = f"MD5 and size checked against Zenodo record {ZENODO_RECORD}"
    if raw.is_file():
        recorded = _recorded_sha256(raw)
        published = _zenodo_published(raw.name, offline_ok=recorded is not None) if zenodo else None
        try:
            digest = _verify(raw, f"'{raw}'", published, sha256=recorded)
        except ChecksumError as err:
            if recorded is None:
                raise ChecksumError(f"{err}. It was not downloaded by weightspace, so it is left in place: delete "
                                    "it to download the published file") from None
            warnings.warn(f"{err}; it was deleted and is fetched again", stacklevel=3)
            raw.unlink()
            _sidecar(raw).unlink(missing_ok=True)
        else:
            checks = ([record] if published else []) + (["SHA-256 kept at download checked"] if recorded else [])
            if zenodo and published is None:
                checks.append(f"Zenodo record {ZENODO_RECORD} unreachable")
            if not checks:
                checks = ["no checksum is published to check it against"]
            return digest, ("reused: " if recorded else "placed by hand: ") + "; ".join(checks), recorded is not None
    published = _zenodo_published(raw.name) if zenodo else None
    how = (f"{record} at download" if zenodo else "no checksum is published: size (and MD5, where the server "
           "sends one) checked against the server's answer at download")
    sha = fetch(url, raw, published=published, sha256=KNOWN_SHA256.get(raw.name), alternative=alternative)
    return sha, how + "; SHA-256 kept beside the file and checked before every reuse", True


def _zenodo_published(file: str, *, offline_ok: bool = False) -> Published | None:
    """The record's MD5 and size of `file`, read now; None only when the record is unreachable and `offline_ok`.

    Raises:
        DownloadError: the record is unreachable (and not `offline_ok`), or lists no MD5 for `file`.
    """
    try:
        files = zenodo_files()
    except DownloadError:
        if offline_ok:
            return None
        raise
    published = files.get(file)
    if published is None or published.md5 is None:
        raise DownloadError(f"Zenodo record {ZENODO_RECORD} ({ZENODO_RECORD_URL}) lists no MD5 for '{file}'; the "
                            "file may have been renamed or removed, so it cannot be verified. Nothing was downloaded")
    return published


def _extract(archive: Path, dest: Path, sha256: str) -> Path:
    """Unpack an archive safely (no absolute paths, links or devices) as the folder `dest` and find the dataset in it.

    `dest` is replaced only when it is missing, empty or an earlier extraction of weightspace (its marker);
    anything else raises `OutputError` naming what it holds.
    """
    extract_tar(archive, dest, sha256=sha256)
    hits = sorted({p.parent for pattern in ("weights.npy", "all_weights.npy") for p in dest.rglob(pattern)})
    if len(hits) != 1:
        raise ValueError(f"'{archive}' holds {len(hits)} folders with weights.npy/all_weights.npy, expected 1")
    return hits[0]


def download(name: str, root: str | os.PathLike | None = None, *, overwrite: bool = False) -> Zoo:
    """Fetch dataset `name` into ``<root>/raw`` and convert it into the zoo ``<root>/<name>``.

    Args:
        root: The data folder; None: ``$WEIGHTSPACE_DATA``.

    Raises:
        ValueError: unknown name, a file that does not convert, or no `root` nor ``$WEIGHTSPACE_DATA``.
        FileExistsError: ``<root>/<name>`` exists and `overwrite` is False.
        OutputError: ``<root>/<name>`` is not a zoo (nor an empty folder), ``<root>/raw/<name>`` (where an
            archive is unpacked) holds something weightspace did not extract, or either cannot be written.
        DownloadError: the file could not be fetched, or its archive is corrupt.
        ChecksumError: the file (downloaded now, or on disk) is not the published one; a download is deleted.
    """
    file, url, alternative = _source(name)
    root = data_root(root, needed_by=f"zoo {name!r}")
    out = root / name
    check_replaceable(out, accept=("zoo",), overwrite=overwrite)  # refuse before downloading
    unpacked = root / "raw" / name
    if name in SMALLCNNZOO_DATASETS:
        check_replaceable(unpacked, accept=("extraction",))
    raw = root / "raw" / file
    sha, how, ours = _verified_raw(name, url, alternative, raw)
    provenance = {"url": url, "sha256": sha, "checksum": how}
    if name in ZENODO_DATASETS:
        return convert_zenodo_2021(raw, out, overwrite=overwrite, name=name, provenance=provenance)
    try:
        folder = _extract(raw, unpacked, sha)
    except DownloadError as err:  # a corrupt archive: unusable, so a download of ours goes
        if not ours:
            raise
        raw.unlink(missing_ok=True)
        _sidecar(raw).unlink(missing_ok=True)
        raise DownloadError(f"{err}. The archive was deleted; run again to download it anew") from None
    return convert_unterthiner(folder, out, overwrite=overwrite, name=name, provenance=provenance)

