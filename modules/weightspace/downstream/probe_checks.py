"""Input checks the probes share (`probes.py`, `trees.py`): dtypes, grids, validation data, groups."""

from __future__ import annotations

from typing import Sequence

import numpy as np

FLOATS = [np.float64, np.float32]  # the dtypes probes accept; others are converted to the first


def check_grid(grid: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(list(grid), dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{name} must be a non-empty sequence of positive numbers, got {grid!r}")
    return values


def has_val(X_val, y_val) -> bool:
    if (X_val is None) != (y_val is None):
        raise ValueError("pass X_val and y_val together, or neither")
    return X_val is not None and len(y_val) > 0


def check_groups(groups, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups has shape {groups.shape} for {n} training rows; pass one model id per row")
    return groups
