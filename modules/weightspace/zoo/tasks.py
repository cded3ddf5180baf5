"""Image classification tasks that zoo models are trained on.

Every task returns a :class:`TaskData` holding float32 NCHW images scaled to
``[0, 1]`` and int64 labels. ``tetris``, ``digits`` and ``synthetic`` need no files
(and no root); ``mnist``, ``fashion_mnist``, ``svhn`` and ``cifar10`` read the standard
distribution files from ``<root>/<task>/`` and can fetch them with ``download=True``
(`weightspace.zoo.task_sources`); `root` is the caller's folder, else ``$WEIGHTSPACE_DATA``.
``synthetic`` exists for offline smoke tests: it stands in for a file-based task
whose files are absent (see :func:`missing_task_files`, :func:`synthetic_options`).

Example:
    >>> data = load_task("tetris", placement="fixed", seed=3)
    >>> data.input_shape
    (1, 4, 4)
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from weightspace.io.data_root import data_root
from weightspace.io.resources import check_memory
from weightspace.zoo import task_files, task_sources

__all__ = ["TaskData", "list_tasks", "load_task", "missing_task_files", "synthetic_options", "task_options"]


@dataclass(frozen=True)
class TaskData:
    """Train and test tensors of one classification task.

    Attributes:
        name: Task name as passed to :func:`load_task`.
        x_train: float32 images, shape (N, C, H, W), values in [0, 1].
        y_train: int64 labels, shape (N,), values in ``range(num_classes)``.
        x_test: float32 test images, same C, H, W as ``x_train``.
        y_test: int64 test labels.
        num_classes: Number of classes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != torch.float32 or x.ndim != 4:
                raise ValueError(f"x_{split} must be a float32 (N, C, H, W) tensor, "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"y_{split} must be int64 of shape ({x.shape[0]},), "
                                 f"got {y.dtype} {tuple(y.shape)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train/test image shapes differ: {tuple(self.x_train.shape[1:])} "
                             f"vs {tuple(self.x_test.shape[1:])}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))


# --------------------------------------------------------------------------- tetris
# Canonical tetromino cells (row, col). Classes: 0=I, 1=O, 2=T, 3=L (S/Z/J are not used).
_TETROMINOES: dict[str, tuple[tuple[int, int], ...]] = {
    "I": ((0, 0), (0, 1), (0, 2), (0, 3)),
    "O": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "T": ((0, 0), (0, 1), (0, 2), (1, 1)),
    "L": ((0, 0), (1, 0), (2, 0), (2, 1)),
}
# Offset of each canonical shape for placement="fixed" (roughly centred in the 4x4 grid).
_IMAGE_COPIES = 3  # float32 copies of a generated image set alive at once while it is drawn
_FIXED_OFFSETS = {"I": (1, 0), "O": (1, 1), "T": (1, 0), "L": (0, 1)}


def _cells_image(cells: frozenset[tuple[int, int]]) -> torch.Tensor:
    img = torch.zeros(4, 4)
    for r, c in cells:
        img[r, c] = 1.0
    return img


def _normalise(cells: frozenset[tuple[int, int]]) -> frozenset[tuple[int, int]]:
    r0, c0 = min(r for r, _ in cells), min(c for _, c in cells)
    return frozenset((r - r0, c - c0) for r, c in cells)


def _tetris_templates(placement: str) -> list[torch.Tensor]:
    """Return one (P_k, 4, 4) stack of distinct images per class."""
    out = []
    for name, cells in _TETROMINOES.items():
        if placement == "fixed":
            dr, dc = _FIXED_OFFSETS[name]
            shapes = [frozenset((r + dr, c + dc) for r, c in cells)]
        else:  # every rotation (no reflections) at every translation that fits
            rotations, current = set(), frozenset(cells)
            for _ in range(4):
                rotations.add(_normalise(current))
                current = frozenset((c, -r) for r, c in current)  # rotate by 90 degrees
            shapes = []
            for shape in sorted(rotations, key=sorted):
                height, width = 1 + max(r for r, _ in shape), 1 + max(c for _, c in shape)
                shapes += [frozenset((r + dr, c + dc) for r, c in shape)
                           for dr in range(5 - height) for dc in range(5 - width)]
        out.append(torch.stack([_cells_image(s) for s in shapes]))
    return out


def _check_size(task: str, images: int, pixels: int) -> None:
    """Refuse a generated task too large for this machine, before any image is drawn."""
    check_memory(_IMAGE_COPIES * 4 * images * pixels, f"task {task} ({images:,} images of {pixels:,} pixels)",
                 "lower n_train and n_test (or the image shape) in task_options")


def _split_generator(seed: int, stream: int) -> torch.Generator:
    """An independent generator for one data split, derived from ``seed``."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def _sample_tetris(templates: list[torch.Tensor], n: int, flip_prob: float, gen: torch.Generator):
    counts = torch.tensor([len(t) for t in templates])
    starts = torch.cumsum(counts, 0) - counts
    images = torch.cat(templates)
    y = torch.randint(len(templates), (n,), generator=gen)
    pick = (torch.rand(n, generator=gen) * counts[y]).long().clamp_max(counts[y] - 1)
    x = images[starts[y] + pick]
    flips = torch.rand(x.shape, generator=gen) < flip_prob
    x = torch.where(flips, 1.0 - x, x)
    return x.unsqueeze(1).contiguous(), y


def _load_tetris(*, placement: str = "fixed", n_train: int = 200, n_test: int = 1000,
                 flip_prob: float = 0.02, seed: int = 0) -> TaskData:
    """4x4 binary tetromino images, 4 classes: 0=I, 1=O, 2=T, 3=L.

    Labels are uniform over the classes; with ``placement="all"`` the position is
    uniform over all rotations/translations of the class's shape (I: 8, O: 9,
    T: 24, L: 24 distinct images). Each pixel is then flipped with probability
    ``flip_prob``. Train and test come from independent generator streams
    derived from ``seed`` (the test set does not depend on ``n_train``).
    """
    if placement not in ("fixed", "all"):
        raise ValueError(f"tetris: placement must be 'fixed' or 'all', got {placement!r}")
    for key, value in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"tetris: {key} must be a non-negative int, got {value!r}")
    if not 0.0 <= float(flip_prob) <= 1.0:
        raise ValueError(f"tetris: flip_prob must be in [0, 1], got {flip_prob!r}")
    _check_size("tetris", n_train + n_test, 16)
    templates = _tetris_templates(placement)
    x_tr, y_tr = _sample_tetris(templates, n_train, float(flip_prob), _split_generator(seed, 0))
    x_te, y_te = _sample_tetris(templates, n_test, float(flip_prob), _split_generator(seed, 1))
    return TaskData("tetris", x_tr, y_tr, x_te, y_te, num_classes=4)


# --------------------------------------------------------------------------- digits
def _load_digits(*, test_fraction: float = 0.25, seed: int = 0, size: int = 8) -> TaskData:
    """scikit-learn's bundled 8x8 digits, scaled by 1/16, stratified split.

    ``size`` > 8 resizes the images bilinearly (corners aligned) to ``size x size``, so that a network
    built for MNIST's geometry sees it (28: the Small CNN Zoo's 28 -> 13 -> 6 -> 2)."""
    # lazy: scikit-learn takes about 0.5 s to import, and only the digits task needs it here
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"digits: test_fraction must be in (0, 1), got {test_fraction!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"digits: size must be an integer >= 8 (the images are 8x8), got {size!r}")
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=True).clamp_(0.0, 1.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=float(test_fraction),
                                      random_state=seed, stratify=bunch.target)
    idx_tr, idx_te = torch.from_numpy(idx_tr), torch.from_numpy(idx_te)
    return TaskData("digits", x[idx_tr], y[idx_tr], x[idx_te], y[idx_te], num_classes=10)


# --------------------------------------------------------------------------- synthetic
def _load_synthetic(*, shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, n_train: int = 1000,
                    n_test: int = 500, seed: int = 0) -> TaskData:
    """Smooth random images labelled by a fixed random linear teacher; for offline smoke tests.

    Each image is a Gaussian field on a coarse grid (a quarter of the resolution,
    but at least 4x4 where the image is that large), upsampled bilinearly to
    ``shape`` and squashed by ``sigmoid(4 z)``: pixels in (0, 1), high contrast,
    neighbours correlated as in natural images. The label is the argmax of
    ``num_classes`` unit-norm random projections of the centred image, so a linear
    model reaches high accuracy (about 0.8 at 8x8) and models learn something
    (cnn_s: test accuracy 0.29 after 6 epochs on 2000 images at lr 1e-3, chance 0.1).
    Teacher, train and test images come from independent generator streams
    derived from ``seed``.
    """
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise ValueError(f"synthetic: shape must be three positive ints (C, H, W), got {shape!r}")
    for key, value, low in (("num_classes", num_classes, 2), ("n_train", n_train, 0), ("n_test", n_test, 0),
                            ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"synthetic: {key} must be an int >= {low}, got {value!r}")
    c, h, w = (int(s) for s in shape)
    _check_size("synthetic", n_train + n_test + num_classes, c * h * w)  # the teacher: num_classes images
    coarse = (max(min(h, 4), -(-h // 4)), max(min(w, 4), -(-w // 4)))
    teacher = torch.randn(num_classes, c * h * w, generator=_split_generator(seed, 2))
    teacher /= teacher.norm(dim=1, keepdim=True)

    def sample(n: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        low_res = torch.randn(n, c, *coarse, generator=_split_generator(seed, stream))
        field = torch.nn.functional.interpolate(low_res, size=(h, w), mode="bilinear", align_corners=False)
        x = torch.sigmoid(4.0 * field)
        y = ((x.reshape(n, -1) - 0.5) @ teacher.T).argmax(dim=1)  # (n, num_classes) -> (n,)
        return x.contiguous(), y

    return TaskData("synthetic", *sample(n_train, 0), *sample(n_test, 1), num_classes=num_classes)


# --------------------------------------------------------------------------- IDX (MNIST)
def _load_idx_task(task: str, root: Path, download: bool, *, verify: bool = False) -> TaskData:
    """MNIST-style task from the four IDX files in ``<root>/<task>/`` (gz or plain)."""
    directory = root / task
    found = {stem: task_files.find_idx(directory, stem) for stem in task_files.IDX_STEMS}
    missing = [stem + ".gz" for stem, p in found.items() if p is None]
    present = [p for p in found.values() if p is not None]
    task_sources.ensure_files(task, directory, [s + "[.gz]" for s in task_files.IDX_STEMS], missing, present,
                              download, verify)
    found = {stem: task_files.find_idx(directory, stem) for stem in task_files.IDX_STEMS}
    paths = {stem: p for stem, p in found.items() if p is not None}  # all of them, ensure_files saw to it

    def split(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        img_path, lbl_path = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]
        images, labels = task_files.read_idx(img_path), task_files.read_idx(lbl_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{img_path}: expected uint8 images of shape (N, H, W), "
                             f"got {images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.shape != (len(images),):
            raise ValueError(f"{lbl_path}: expected {len(images)} uint8 labels, "
                             f"got {labels.dtype} {labels.shape}")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{lbl_path}: label {labels.max()} out of range 0..9")
        x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
        return x, torch.from_numpy(labels.astype(np.int64))

    return TaskData(task, *split("train"), *split("t10k"), num_classes=10)


# --------------------------------------------------------------------------- SVHN
def _load_svhn(root: Path, download: bool, *, grayscale: bool = False, verify: bool = False) -> TaskData:
    """SVHN cropped digits from ``<root>/svhn/{train,test}_32x32.mat``."""
    directory = root / "svhn"
    missing = [name for name in task_files.SVHN_FILES if not (directory / name).is_file()]
    present = [directory / name for name in task_files.SVHN_FILES if name not in missing]
    task_sources.ensure_files("svhn", directory, list(task_files.SVHN_FILES), missing, present, download, verify)
    x_tr, y_tr = task_files.read_svhn(directory / task_files.SVHN_FILES[0], grayscale)
    x_te, y_te = task_files.read_svhn(directory / task_files.SVHN_FILES[1], grayscale)
    return TaskData("svhn", x_tr, y_tr, x_te, y_te, num_classes=10)


# --------------------------------------------------------------------------- CIFAR-10
def _load_cifar10(root: Path, download: bool, *, grayscale: bool = False, verify: bool = False) -> TaskData:
    """CIFAR-10 from the python batches in ``<root>/cifar10/cifar-10-batches-py/``."""
    task_sources.ensure_cifar10(root / "cifar10", download, verify)
    batch_dir = root / "cifar10" / task_files.CIFAR_DIR
    parts = [task_files.read_cifar_batch(batch_dir / name) for name in task_files.CIFAR_FILES]
    x_tr = task_files.to_float(np.concatenate([p[0] for p in parts[:5]]), grayscale)
    y_tr = torch.from_numpy(np.concatenate([p[1] for p in parts[:5]]))
    x_te, y_te = task_files.to_float(parts[5][0], grayscale), torch.from_numpy(parts[5][1])
    return TaskData("cifar10", x_tr, y_tr, x_te, y_te, num_classes=10)


# --------------------------------------------------------------------------- registry
# name -> (loader, whether the loader reads files and takes (root, download) first)
_TASKS: dict[str, tuple[Callable[..., TaskData], bool]] = {
    "cifar10": (_load_cifar10, True),
    "digits": (_load_digits, False),
    "fashion_mnist": (partial(_load_idx_task, "fashion_mnist"), True),
    "mnist": (partial(_load_idx_task, "mnist"), True),
    "svhn": (_load_svhn, True),
    "synthetic": (_load_synthetic, False),
    "tetris": (_load_tetris, False),
}
# input shape (C, H, W) and class count of the file-based tasks; svhn/cifar10 with grayscale=True have C = 1
_FILE_TASK_SHAPES = {"cifar10": ((3, 32, 32), 10), "fashion_mnist": ((1, 28, 28), 10), "mnist": ((1, 28, 28), 10),
                     "svhn": ((3, 32, 32), 10)}


def list_tasks() -> list[str]:
    """Return the names of all available tasks, sorted."""
    return sorted(_TASKS)


def task_options(name: str) -> dict[str, Any]:
    """The options task `name` takes, with their defaults.

    Raises:
        ValueError: unknown task name (the message lists valid names).
    """
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(list_tasks())}")
    params = inspect.signature(_TASKS[name][0]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load_task(name: str, *, root: str | os.PathLike | None = None, download: bool = False,
              **options: Any) -> TaskData:
    """Load a classification task as tensors.

    Args:
        name: One of :func:`list_tasks`.
        root: Directory holding one sub-directory per file-based task
            (``<root>/mnist/``, ``<root>/svhn/``, ...); None: ``$WEIGHTSPACE_DATA``.
            Not needed by tetris/digits/synthetic.
        download: Fetch missing files (with MD5 verification) for mnist,
            fashion_mnist, svhn and cifar10. Ignored by tetris/digits/synthetic.
        **options: Task options:
            tetris: placement ("fixed" | "all"), n_train, n_test, flip_prob, seed;
            digits: test_fraction, seed, size (images resized to size x size, default 8);
            synthetic: shape (C, H, W), num_classes, n_train, n_test, seed;
            mnist, fashion_mnist: verify;
            svhn, cifar10: grayscale, verify.
            ``verify=True`` checks files already on disk against known MD5s.

    Returns:
        The task's train/test tensors.

    Raises:
        ValueError: unknown task name (the message lists valid names), bad option value, or a
            file-based task without `root` or ``$WEIGHTSPACE_DATA``.
        TypeError: unknown option for the task (the message lists valid options).
        FileNotFoundError: files missing and ``download=False``; says which files go where.
        weightspace.io.download.DownloadError: download failed (ChecksumError on MD5 mismatch).
    """
    valid = task_options(name)
    loader, reads_files = _TASKS[name]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for task {name!r}; "
                        f"valid options: {', '.join(f'{k}={v!r}' for k, v in valid.items())}")
    if reads_files:
        return loader(data_root(root, needed_by=f"task {name!r}"), bool(download), **options)
    return loader(**options)


def missing_task_files(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Files that ``load_task(name, root=root)`` needs and does not find; empty for tasks that need none.

    Raises:
        ValueError: unknown task, or a file-based task without `root` or ``$WEIGHTSPACE_DATA``.
    """
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(list_tasks())}")
    if not _TASKS[name][1]:
        return []
    directory = data_root(root, needed_by=f"task {name!r}") / name
    if name in ("mnist", "fashion_mnist"):
        return [directory / (stem + ".gz") for stem in task_files.IDX_STEMS if task_files.find_idx(directory, stem) is None]
    if name == "svhn":
        return [directory / f for f in task_files.SVHN_FILES if not (directory / f).is_file()]
    if name == "cifar10":
        return [directory / task_files.CIFAR_DIR / f for f in task_files.CIFAR_FILES if not (directory / task_files.CIFAR_DIR / f).is_file()]
    return []


def synthetic_options(name: str, *, n_train: int, n_test: int, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Options of a ``synthetic`` task with the input shape and class count of file-based task `name`.

    Args:
        options: `name`'s own options; only ``grayscale`` matters (one channel).

    Raises:
        ValueError: `name` is not a file-based task (it needs no stand-in).
    """
    if name not in _FILE_TASK_SHAPES:
        raise ValueError(f"task {name!r} reads no files and needs no synthetic stand-in; "
                         f"file-based tasks: {', '.join(sorted(_FILE_TASK_SHAPES))}")
    (c, h, w), num_classes = _FILE_TASK_SHAPES[name]
    if options.get("grayscale"):
        c = 1
    return {"shape": (c, h, w), "num_classes": num_classes, "n_train": n_train, "n_test": n_test, "seed": seed}
