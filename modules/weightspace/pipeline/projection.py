"""2-D projections of an embedding for the report: PCA always, UMAP when asked for and possible.

`train_representation` saves them as ``embedding_2d.csv`` (columns `COLUMNS`, one row
per projected sample and method), so that the report draws them without fitting
anything. umap-learn is imported only when UMAP is asked for.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

COLUMNS = ["row", "method", "x", "y"]  # row: the sample's row in embeddings.npy and embedding_samples.csv
MAX_PROJECTED = 5000  # rows projected; beyond, a fixed random subsample
MAX_UMAP_ROWS = 2000  # rows UMAP is fitted on (a subsample of the projected ones): its time grows faster than linearly
UMAP_INPUT_DIM = 50  # UMAP runs on this many principal components of a wider embedding (its neighbour search)
MIN_UMAP_ROWS = 5  # UMAP needs a few neighbours per point
SEED = 0  # seeds the subsample, PCA and UMAP


def project_embedding(Z: np.ndarray, *, umap: bool = True, max_rows: int = MAX_PROJECTED,
                      seed: int = SEED) -> tuple[pd.DataFrame, str]:
    """PCA and (if `umap`) UMAP coordinates of the finite rows of the embedding `Z`.

    Args:
        Z: the embeddings, ``(S, latent)``.
        umap: add a UMAP projection (needs umap-learn and at least `MIN_UMAP_ROWS` rows), fitted on at most
            `MAX_UMAP_ROWS` of the projected rows and on the first `UMAP_INPUT_DIM` principal components.
        max_rows: project at most this many rows, a random subsample drawn with `seed`.

    Returns:
        The table (columns `COLUMNS`, methods "PCA" and "UMAP"; empty with fewer than 3
        finite rows), and why it holds no UMAP projection, or nothing ("" when it has UMAP).
    """
    rows = np.flatnonzero(np.isfinite(Z).all(axis=1))
    if len(rows) < 3:
        return pd.DataFrame(columns=COLUMNS), f"only {len(rows)} embeddings are finite"
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    X = np.asarray(Z[rows], dtype=np.float64)
    parts = [_table(rows, "PCA", _pca(X, seed))]
    why = "UMAP was not asked for"
    if umap and len(rows) < MIN_UMAP_ROWS:
        why = f"UMAP needs at least {MIN_UMAP_ROWS} samples, there are {len(rows)}"
    elif umap:
        try:
            from umap import UMAP
        except ImportError:
            why = "umap-learn is not installed"
        else:
            keep = np.arange(len(rows))
            if len(keep) > MAX_UMAP_ROWS:
                keep = np.sort(np.random.default_rng(seed + 1).choice(keep, MAX_UMAP_ROWS, replace=False))
            U = X[keep]
            if U.shape[1] > UMAP_INPUT_DIM:
                U = PCA(n_components=min(UMAP_INPUT_DIM, len(U)), random_state=seed).fit_transform(U)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numba and n_jobs chatter
                reducer = UMAP(n_components=2, n_neighbors=min(15, len(U) - 1), random_state=seed, n_jobs=1)
                parts.append(_table(rows[keep], "UMAP", reducer.fit_transform(U)))
            why = ""
    return pd.concat(parts, ignore_index=True), why


def _pca(X: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) PCA coordinates; a zero second column when the embedding has a single dimension."""
    xy = PCA(n_components=min(2, *X.shape), random_state=seed).fit_transform(X)
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))


def _table(rows: np.ndarray, method: str, xy: np.ndarray) -> pd.DataFrame:
    xy = np.asarray(xy, dtype=np.float32)  # (n, 2); float32 is ample for a scatter plot
    return pd.DataFrame({"row": rows, "method": method, "x": xy[:, 0], "y": xy[:, 1]})
