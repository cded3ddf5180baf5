"""Fetch the public external zoos and convert them into ``<root>/<name>``.

- 2021 datasets: Zenodo record 5645138, files ``dataset_<XX>_<name>.pt``
  (whether the Unterthiner-based 41-44 files are on the record is unverified;
  the 2021 download script lists none of them).
- Small CNN Zoo: ``https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/<name>.tar.xz``
  (documented alternative: ``https://storage.cloud.google.com/gresearch/smallcnnzoo-dataset/<name>.tar.xz``).

No publisher gives checksums for these files, so none are checked; the SHA-256
of every download is printed next to it (``<file>.sha256``) and recorded in the
zoo's provenance. Files are written under a temporary name and renamed when
complete, and a finished download is not fetched again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import urllib.error
import uuid
from pathlib import Path

from weightspace.zoo.downloads import DownloadError, fetch_url, safe_extract_tar
from weightspace.zoo.store import Zoo

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


def fetch(url: str, path: Path, *, sha256: str | None = None, alternative: str | None = None,
          timeout: float = 60.0) -> str:
    """Download `url` to `path` (temporary name, then rename); returns the file's SHA-256.

    Raises:
        DownloadError: network unreachable, HTTP error, or a checksum mismatch.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{uuid.uuid4().hex[:8]}")
    hint = (f"Check the network connection (and any proxy settings), or fetch the file by hand"
            f"{f' (alternative address: {alternative})' if alternative else ''} and place it at '{path}', then rerun.")
    try:
        try:
            fetch_url(url, tmp, desc=path.name, timeout=timeout)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{url} answered HTTP {err.code} ({err.reason}); the file may have moved or not "
                                f"be published. {hint}") from err
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(f"could not reach {url} ({reason}); the network looks unreachable. {hint}") from err
        digest = _sha256(tmp)
        if sha256 is not None and digest != sha256:
            raise DownloadError(f"{url}: SHA-256 {digest} differs from the published {sha256}; the download was deleted")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def _extract(archive: Path, dest: Path) -> Path:
    """Unpack an archive safely (no absolute paths, links or devices) and find the dataset folder in it."""
    tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        safe_extract_tar(archive, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    hits = sorted({p.parent for pattern in ("weights.npy", "all_weights.npy") for p in dest.rglob(pattern)})
    if len(hits) != 1:
        raise ValueError(f"'{archive}' holds {len(hits)} folders with weights.npy/all_weights.npy, expected 1")
    return hits[0]


def download(name: str, root: str | os.PathLike = "datasets", *, overwrite: bool = False) -> Zoo:
    """Fetch dataset `name` into ``<root>/raw`` and convert it into the zoo ``<root>/<name>``.

    Raises:
        ValueError: unknown name, or a file that does not convert.
        FileExistsError: ``<root>/<name>`` exists and `overwrite` is False.
        DownloadError: the file could not be fetched.
    """
    from weightspace.formats.unterthiner import convert_unterthiner
    from weightspace.formats.zenodo_2021 import convert_zenodo_2021

    file, url, alternative = _source(name)
    root = Path(root)
    out = root / name
    if out.exists() and not overwrite:
        raise FileExistsError(f"'{out}' already exists; pass overwrite=True (--overwrite) to replace it")
    raw = root / "raw" / file
    if raw.is_file():
        sha = _sha256(raw)
    else:
        sha = fetch(url, raw, sha256=KNOWN_SHA256.get(file), alternative=alternative)
    provenance = {"url": url, "sha256": sha,
                  "checksum": "verified" if file in KNOWN_SHA256 else "none published; not verified"}
    if name in ZENODO_DATASETS:
        return convert_zenodo_2021(raw, out, overwrite=overwrite, name=name, provenance=provenance)
    folder = _extract(raw, root / "raw" / name)
    return convert_unterthiner(folder, out, overwrite=overwrite, name=name, provenance=provenance)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

