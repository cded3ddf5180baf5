"""Which rows of a zoo the probes and the encoders may use: the one usable-rows rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

CHUNK = 4096  # rows checked for finite weights at once (a memory-mapped zoo is read chunk by chunk)


def usable_rows(samples: pd.DataFrame, weights=None) -> np.ndarray:
    """``(S,)`` bool: rows not flagged ``diverged`` and, when `weights` is given, whose weights are all finite."""
    keep = np.ones(len(samples), dtype=bool)
    if "diverged" in samples:
        keep &= ~samples["diverged"].fillna(False).astype(bool).to_numpy()
    if weights is not None:
        for i in range(0, len(samples), CHUNK):
            keep[i:i + CHUNK] &= np.isfinite(np.asarray(weights[i:i + CHUNK])).all(axis=1)
    return keep
