"""Readers of the standard task distribution files: MNIST-style IDX, SVHN .mat, CIFAR-10 python batches.

Each reader checks what it reads and raises a ValueError naming the file and
what is wrong with it; `weightspace.zoo.tasks` turns their arrays into `TaskData`.
CIFAR batches are pickles: `ArrayOnlyUnpickler` rebuilds numpy arrays (checked,
and bounded by the file's size) and refuses every other global, so a crafted
file cannot run code, crash numpy or change numpy's dtypes for later files.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weightspace.errors import InputError
from weightspace.io.restricted_pickle import RestrictedUnpickler

# --------------------------------------------------------------------------- IDX (MNIST)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or plain, detected from its content).

    Raises:
        ValueError: naming the file, on corrupt gzip data, a bad magic number,
            an unknown dtype code, or a size that does not match the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header (needs {header} bytes, file has {len(raw)})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    actual = len(raw) - header
    if actual < expected:
        raise ValueError(f"{path}: truncated IDX data: header {dims} needs {expected} bytes, found {actual}")
    if actual > expected:
        raise ValueError(f"{path}: {actual - expected} unexpected trailing bytes after IDX data {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


# --------------------------------------------------------------------------- colour helpers
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601, as tf.image.rgb_to_grayscale


def to_float(images: np.ndarray, grayscale: bool) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1], optionally luma-weighted to 1 channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    if grayscale:
        x = (x * LUMA.view(1, 3, 1, 1)).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)
    return x


# --------------------------------------------------------------------------- SVHN
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def read_svhn(path: Path, grayscale: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat  # lazy: scipy.io (about 0.1 s) serves only SVHN's .mat files

    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises assorted errors on corrupt files
        raise ValueError(f"{path}: cannot read MATLAB file ({exc})") from exc
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: expected variables 'X' and 'y', found {found}")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise ValueError(f"{path}: X must be uint8 of shape (H, W, 3, N), got {x.dtype} {x.shape}")
    y = np.asarray(y).reshape(-1)
    if y.shape != (x.shape[3],):
        raise ValueError(f"{path}: y has {y.size} labels for {x.shape[3]} images")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise ValueError(f"{path}: labels must be in 0..10, got range {y.min()}..{y.max()}")
    labels = torch.from_numpy((y.astype(np.int64) % 10))  # label 10 means digit 0
    return to_float(x.transpose(3, 2, 0, 1), grayscale), labels


# --------------------------------------------------------------------------- CIFAR-10
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


class ArrayOnlyUnpickler(RestrictedUnpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays.

    Allowed: ``numpy.core.multiarray._reconstruct`` (also spelled
    ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and
    ``numpy.dtype``, all checked stand-ins (see `RestrictedUnpickler`). Every
    other global is refused with an `InputError`, so no code can run.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, source=str(path), allowed={}, budget=os.path.getsize(path), encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed and name != "scalar":
            return self._allowed[(module, name)]
        raise InputError(f"{self.source}: refusing to load the global {module}.{name}; only numpy array "
                         "reconstruction is allowed in dataset pickles, and nothing from the file was run. "
                         "Replace the file with the published CIFAR-10 batch")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 3, 32, 32) uint8 images and (N,) labels of a CIFAR-10 python batch.

    Raises:
        InputError: a refused global, an array that does not fit the file, or a damaged pickle.
        ValueError: a batch without the expected 'data' and 'labels'.
    """
    with open(path, "rb") as fh:
        try:
            batch = ArrayOnlyUnpickler(fh, path).load()
        except InputError:
            raise
        except Exception as exc:  # truncated / garbage files raise many error types
            raise InputError(f"{path}: cannot unpickle CIFAR batch ({type(exc).__name__}: {exc}); "
                             "replace it with the published file") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        labels = None
    bad_range = labels is not None and labels.size and not 0 <= labels.min() <= labels.max() <= 9
    if labels is None or labels.shape != (len(data),) or bad_range:
        raise ValueError(f"{path}: 'labels' must be {len(data)} integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels
