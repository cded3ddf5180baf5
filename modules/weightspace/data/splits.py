"""Train/val/test splits by model: every checkpoint of a model lands in one split."""

from __future__ import annotations

from typing import Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def split_models(model_ids: Sequence, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict:
    """Assign each distinct model id to a split.

    The distinct ids are sorted first (so the result does not depend on row or
    file-system order), then shuffled with ``numpy.random.default_rng(seed)``.
    The first ``floor(f_train * n)`` models go to train, the next
    ``floor(f_val * n)`` to val, the rest to test.

    Args:
        model_ids: one id per sample (repeats allowed) or per model.
        fractions: (train, val, test) or (train, test); must sum to 1.
        seed: seed of the shuffle.

    Returns:
        dict model id -> "train" | "val" | "test".

    Raises:
        ValueError: fractions that are negative or do not sum to 1.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) == 2:
        fractions = (fractions[0], 0.0, fractions[1])
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be (train, val, test) >= 0 summing to 1, got {fractions}")
    models = np.array(sorted(set(model_ids)))
    order = np.random.default_rng(seed).permutation(len(models))
    n_train = int(np.floor(fractions[0] * len(models) + 1e-9))
    n_val = int(np.floor(fractions[1] * len(models) + 1e-9))
    names = np.array(["test"] * len(models), dtype=object)
    names[order[:n_train]] = "train"
    names[order[n_train:n_train + n_val]] = "val"
    return {m.item() if hasattr(m, "item") else m: str(s) for m, s in zip(models, names)}


def split_column(model_ids: Sequence, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Per-sample split names (an array of "train"/"val"/"test"), split by model as in `split_models`."""
    assignment = split_models(model_ids, fractions, seed)
    return np.array([assignment[m.item() if hasattr(m, "item") else m] for m in np.asarray(model_ids)], dtype=object)
