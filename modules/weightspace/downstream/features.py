"""Feature extractors for probes, in scikit-learn style: ``fit`` returns self, ``transform`` maps rows.

Weight-based extractors take ``(S, D)`` weights, usually a read-only memory map,
and read them in chunks of rows, so a zoo larger than memory can be featurized.
`Hyperparameters` takes the samples table instead (``source = "samples"``).

- `RawWeights` (2021 B_W): the flat weights.
- `LayerStatistics` (2021 B_s): per-layer summary statistics.
- `Hyperparameters`: the training configuration, one-hot for categorical columns.
- `Embedding`: the latent of a trained representation model.
- `KernelPCAFeatures`, `UMAPFeatures`: the 2021 Tetris extras, projections of the
  raw weights fitted on (a subsample of) the training rows only.
"""

from __future__ import annotations

import mmap
import warnings
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import KernelPCA
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted

from weightspace.layout import WeightLayout
from weightspace.representation.encoders.neuron_set import NeuronSetEncoder

CHUNK_BYTES = 32 * 2**20  # rows are read in chunks of about this many float32 bytes

# statistic name -> percentile (None: not a percentile)
PRESETS: dict[str, tuple[str, ...]] = {
    # Schürholt et al. 2021 `LayerQuintiles`: over each layer's kernel (and bias if asked)
    "schuerholt2021": ("mean", "var", "p1", "p25", "p50", "p75", "p99"),
    # Unterthiner et al. 2020 `extract_summary_features`: per tensor, bias and kernel separately
    "unterthiner": ("p0", "p25", "p50", "p75", "p100", "std", "mean"),
}
_DEFAULT_BIASES = {"schuerholt2021": False, "unterthiner": True}


def iter_chunks(n_rows: int, chunk_rows: int) -> Iterator[slice]:
    """Consecutive row slices of at most `chunk_rows` rows covering ``range(n_rows)``."""
    for start in range(0, n_rows, chunk_rows):
        yield slice(start, min(start + chunk_rows, n_rows))


def read_chunks(X: np.ndarray, chunk_rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, X[rows])`` chunk by chunk, each chunk an in-memory array.

    Pages of a memory map stay mapped into the process after they are read and
    count towards its resident set, so reading a 5 GB memory-mapped zoo once
    would show 5 GB RSS. After each chunk the mapping's pages are released
    (`release_pages`); the data stays in the OS page cache.
    """
    for rows in iter_chunks(X.shape[0], chunk_rows):
        chunk = np.array(X[rows])  # (rows, D), copied out of the map
        release_pages(X)
        yield rows, chunk


def release_pages(X: np.ndarray) -> None:
    """Unmap the resident pages of a read-only memory-mapped `X` (Linux ``MADV_DONTNEED``); else nothing."""
    m = getattr(X, "_mmap", None)
    if isinstance(m, mmap.mmap) and getattr(X, "mode", None) in ("r", "c") and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


def _chunk_rows(n_cols: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        return int(chunk_size)
    return max(1, CHUNK_BYTES // (4 * max(n_cols, 1)))


def _check_weights(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(f"expected weights of shape (S, D), got {getattr(X, 'shape', type(X).__name__)}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"weights have {X.shape[1]} columns but this extractor was fitted on {n_features}")
    return X


class RawWeights(TransformerMixin, BaseEstimator):
    """The flat weight vectors themselves (2021 baseline B_W), copied into memory chunk by chunk."""

    source = "weights"
    fit_on_rows = False  # fit reads only the shape: evaluate passes all rows, no copy

    def __init__(self, *, dtype: str = "float32", chunk_size: int | None = None):
        self.dtype = dtype  # dtype of the returned array
        self.chunk_size = chunk_size  # rows per chunk; None: about 32 MB per chunk

    def fit(self, X: np.ndarray, y=None) -> "RawWeights":
        self.n_features_in_ = _check_weights(X).shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = _check_weights(X, self.n_features_in_)
        out = np.empty(X.shape, dtype=self.dtype)
        for rows, chunk in read_chunks(X, _chunk_rows(X.shape[1], self.chunk_size)):
            out[rows] = chunk
        return out


class LayerStatistics(TransformerMixin, BaseEstimator):
    """Per-layer summary statistics of the weights (2021 baseline B_s).

    ``preset="schuerholt2021"`` gives the 2021 `LayerQuintiles`: per layer, over the
    kernel, mean, population variance and the 1/25/50/75/99th percentiles
    (``np.percentile``, linear interpolation); ``biases=True`` adds the same seven
    over the bias (the 2021 baselines used ``biases=False``).
    ``preset="unterthiner"`` gives Unterthiner et al. 2020: per tensor, the
    0/25/50/75/100th percentiles, std and mean, for the kernel and (by default)
    the bias separately. Features are ordered layer by layer, kernel before bias;
    `get_feature_names_out` names them. Statistics are computed in float64.
    """

    source = "weights"
    fit_on_rows = False  # fit reads only the shape: evaluate passes all rows, no copy

    def __init__(self, layout: WeightLayout, *, preset: str = "schuerholt2021", biases: bool | None = None,
                 chunk_size: int | None = None):
        self.layout = layout  # where each layer lives in the flat vector
        self.preset = preset  # "schuerholt2021" or "unterthiner"
        self.biases = biases  # also summarize biases; None: the preset's default (2021: no, Unterthiner: yes)
        self.chunk_size = chunk_size  # rows per chunk; None: about 32 MB per chunk

    def fit(self, X: np.ndarray, y=None) -> "LayerStatistics":
        if self.preset not in PRESETS:
            raise ValueError(f"unknown statistics preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        _check_weights(X, self.layout.num_params)
        biases = _DEFAULT_BIASES[self.preset] if self.biases is None else bool(self.biases)
        tensors = []
        for spec in self.layout.layers:
            tensors.append((f"{spec.name}.weight", spec.weight_slice))
            bias = spec.bias_slice  # None without a bias
            if biases and bias is not None:
                tensors.append((f"{spec.name}.bias", bias))
        self.tensors_ = tensors  # (name, slice) of every summarized tensor
        self.statistics_ = PRESETS[self.preset]
        self.n_features_in_ = X.shape[1]
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self)
        return np.array([f"{name}.{stat}" for name, _ in self.tensors_ for stat in self.statistics_], dtype=object)

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = _check_weights(X, self.n_features_in_)
        stats = self.statistics_
        qs = [float(s[1:]) for s in stats if s.startswith("p")]
        n_stats = len(stats)
        out = np.empty((X.shape[0], len(self.tensors_) * n_stats), dtype=np.float64)
        for rows, chunk in read_chunks(X, _chunk_rows(X.shape[1], self.chunk_size)):  # chunk: (rows, D)
            for t, (_, cols) in enumerate(self.tensors_):
                block = chunk[:, cols].astype(np.float64)  # (rows, tensor size)
                pct = iter(np.percentile(block, qs, axis=1)) if qs else iter(())  # (n_q, rows)
                for j, stat in enumerate(stats):
                    col = t * n_stats + j
                    if stat == "mean":
                        out[rows, col] = block.mean(axis=1)
                    elif stat == "var":
                        out[rows, col] = block.var(axis=1)
                    elif stat == "std":
                        out[rows, col] = block.std(axis=1)
                    else:
                        out[rows, col] = next(pct)
        return out


class Hyperparameters(TransformerMixin, BaseEstimator):
    """The training configuration as features: categorical columns one-hot, numeric ones as they are.

    String, categorical and boolean columns are categorical; categories unseen
    during `fit` encode as all zeros. Missing numeric values stay NaN (the probe
    evaluation drops such rows and says how many).
    """

    source = "samples"
    fit_on_rows = True  # categories are learned from the training rows

    def __init__(self, columns: Sequence[str] | None = None):
        self.columns = columns  # columns of the samples table to use; None: all of them

    def fit(self, X: pd.DataFrame, y=None) -> "Hyperparameters":
        if not isinstance(X, pd.DataFrame):
            raise ValueError(f"Hyperparameters takes the samples DataFrame, got {type(X).__name__}")
        columns = list(X.columns if self.columns is None else self.columns)
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"hyperparameter columns {missing} are not in the samples table; it has {list(X.columns)}")
        if not columns:
            raise ValueError("Hyperparameters needs at least one column; the zoo may vary no hyperparameter")
        self.categorical_ = [c for c in columns if not _is_numeric(X[c])]
        self.numeric_ = [c for c in columns if _is_numeric(X[c])]
        self.encoder_ = ColumnTransformer(
            [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), self.categorical_),
             ("numeric", "passthrough", self.numeric_)],
            verbose_feature_names_out=False,
        ).fit(_as_inputs(X, self.categorical_, self.numeric_))
        self.n_features_in_ = len(columns)
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self)
        return self.encoder_.get_feature_names_out()

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self)
        return np.asarray(self.encoder_.transform(_as_inputs(X, self.categorical_, self.numeric_)), dtype=np.float64)


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _as_inputs(X: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
    # categories as str (bools, ints-as-labels, pandas str dtype alike); missing stays a category of its own
    out = {c: X[c].astype(object).where(X[c].notna(), "<missing>").astype(str).to_numpy(dtype=object)
           for c in categorical}
    out.update({c: pd.to_numeric(X[c], errors="coerce").astype(np.float64).to_numpy() for c in numeric})
    return pd.DataFrame(out, index=X.index, columns=categorical + numeric)


class Precomputed:
    """Features made before probing (an embedding), with the samples' columns they were made from: targets
    among `columns` are shown as read, not predicted, for them (as for the hyperparameters' feature set)."""

    def __init__(self, X: np.ndarray, columns: Sequence[str] = ()):
        self.X = X  # (S, F)
        self.columns = tuple(columns)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.X, dtype=dtype)


class Embedding(TransformerMixin, BaseEstimator):
    """The latent of a trained representation model: ``model.encode(x: (B, D)) -> (B, L)``.

    Runs in batches under ``torch.no_grad`` with the model in eval mode; the
    model's train/eval mode is restored afterwards.
    """

    source = "weights"
    fit_on_rows = False  # fit reads only the shape: evaluate passes all rows, no copy

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 1024, device: str = "cpu"):
        self.model = model  # any module with .encode(x: (B, D)) -> (B, L)
        self.batch_size = batch_size  # rows per forward pass
        self.device = device  # where the forward passes run

    @property
    def columns(self) -> tuple[str, ...]:
        """The samples' columns the model's training read (`Autoencoder.reads`): targets shown as read."""
        return tuple(getattr(self.model, "reads", ()))

    def fit(self, X: np.ndarray, y=None) -> "Embedding":
        if not callable(getattr(self.model, "encode", None)):
            raise ValueError(f"{type(self.model).__name__} has no .encode(x) method; Embedding needs a "
                             "representation model whose encode maps (B, D) weights to (B, L) latents")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        self.n_features_in_ = _check_weights(X).shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = _check_weights(X, self.n_features_in_)
        encode: Callable[[torch.Tensor], torch.Tensor] = getattr(self.model, "encode")  # checked by fit
        was_training = self.model.training
        self.model.eval()
        parts = []
        try:
            with torch.no_grad():
                for _, chunk in read_chunks(X, self.batch_size):
                    x = torch.as_tensor(chunk, dtype=torch.float32, device=self.device)
                    z = encode(x)  # (B, L)
                    if z.dim() != 2 or z.shape[0] != x.shape[0]:
                        raise ValueError(f"model.encode returned shape {tuple(z.shape)} for a batch of "
                                         f"{x.shape[0]}; expected (B, L)")
                    parts.append(z.float().cpu().numpy())
        finally:
            self.model.train(was_training)
        return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)


class InvariantCode(TransformerMixin, BaseEstimator):
    """The invariant statistics code: an untrained, permutation-invariant description of the weights.

    Per layer, quantiles of w and |w| (minimum and maximum included); per hidden layer, the mean, max
    and min over neurons of each neuron's summaries and of its standardised token; all of them
    standardised, then hinged, ``relu(v - knot)`` at `knots` knots per entry placed at quantiles of
    the training rows. A linear probe on it acts as an additive spline model of the statistics.
    It is exactly the fixed code the ``neuron_set`` encoder can append to its embedding (``code=True``),
    computed by that encoder's own code at the same fit, so it is the baseline that code is measured by.
    Fitted on training weights only (shifts, scales and knots); reads no model property.

    ``hinged=False`` gives the entries before hinging (the standardised statistics and pooled tokens),
    five times fewer columns that tell a tree the same: a split on ``relu(v - knot)`` is a split on `v`.
    """

    source = "weights"
    fit_on_rows = True  # evaluate passes only the training rows to fit

    def __init__(self, layout: WeightLayout, *, knots: int = 5, hinged: bool = True, chunk_size: int = 1000):
        self.layout = layout  # the zoo's layout; it needs a hidden layer
        self.knots = knots  # hinge knots per entry (0: the standardised statistics alone)
        self.hinged = hinged  # False: the entries the code hinges, for boosted trees
        self.chunk_size = chunk_size  # rows per chunk

    def fit(self, X: np.ndarray, y=None) -> "InvariantCode":
        _check_weights(X, self.layout.num_params)
        if int(self.knots) < 0:
            raise ValueError(f"InvariantCode.knots must be 0 or more, got {self.knots}")
        encoder = NeuronSetEncoder(self.layout, width=1, code=True, code_knots=int(self.knots),
                                   generator=torch.Generator().manual_seed(0))  # the learned part is not read
        with torch.no_grad():
            encoder.fit_input_scale(torch.as_tensor(np.asarray(X, dtype=np.float32)), batch_size=self.chunk_size)
        self.encoder_ = encoder.eval()
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = _check_weights(X, self.n_features_in_)
        parts = []
        with torch.no_grad():
            for _, chunk in read_chunks(X, self.chunk_size):
                x = torch.as_tensor(np.asarray(chunk, dtype=np.float32))
                parts.append(self.encoder_.fixed_code(x, hinged=bool(self.hinged)).numpy())
        return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)


class _Projection(TransformerMixin, BaseEstimator):
    """Shared fit/transform of the raw-weight projections: fit on every `fit_stride`-th row."""

    source = "weights"
    fit_on_rows = True  # evaluate passes only the training rows to fit

    def _fit_rows(self, X: np.ndarray) -> np.ndarray:
        X = _check_weights(X)
        if self.fit_stride < 1 or self.max_fit_samples < 1:
            raise ValueError(f"fit_stride and max_fit_samples must be positive, got {self.fit_stride} and "
                             f"{self.max_fit_samples}")
        stride = max(self.fit_stride, -(-X.shape[0] // self.max_fit_samples))
        rows = np.asarray(X[::stride], dtype=np.float64)
        release_pages(X)
        if rows.shape[0] <= self.n_components:
            raise ValueError(f"{type(self).__name__}: {rows.shape[0]} fitting rows (stride {stride}) are too few "
                             f"for {self.n_components} components; lower n_components or fit_stride")
        self.n_features_in_ = X.shape[1]
        self.n_fit_samples_ = rows.shape[0]
        return rows

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = _check_weights(X, self.n_features_in_)
        out = np.empty((X.shape[0], self.n_components), dtype=np.float64)
        for rows, chunk in read_chunks(X, _chunk_rows(X.shape[1], None)):
            out[rows] = self.model_.transform(chunk.astype(np.float64))
        return out


class KernelPCAFeatures(_Projection):
    """Kernel PCA of the raw weights (2021 Tetris extra; kernels linear, poly, rbf, sigmoid, cosine).

    The 2021 code fitted on every 2nd training sample; a kernel PCA holds an
    (n, n) kernel matrix, so fitting is also capped at `max_fit_samples` rows.
    """

    def __init__(self, n_components: int = 50, *, kernel: str = "rbf", fit_stride: int = 2,
                 max_fit_samples: int = 4000, random_state: int | None = 0):
        self.n_components = n_components  # output dimension
        self.kernel = kernel  # sklearn KernelPCA kernel
        self.fit_stride = fit_stride  # fit on every k-th row passed to fit
        self.max_fit_samples = max_fit_samples  # raise the stride until at most this many rows are fitted
        self.random_state = random_state  # seeds the eigensolver where it is randomized

    def fit(self, X: np.ndarray, y=None) -> "KernelPCAFeatures":
        rows = self._fit_rows(X)
        self.model_ = KernelPCA(self.n_components, kernel=self.kernel, random_state=self.random_state).fit(rows)
        return self


class UMAPFeatures(_Projection):
    """UMAP of the raw weights with the 2021 settings (umap-learn, 25 neighbours, min_dist 0.001).

    The 2021 code fitted on every 3rd training sample. umap-learn is imported
    on `fit` (it takes seconds to import).
    """

    def __init__(self, n_components: int = 50, *, n_neighbors: int = 25, min_dist: float = 0.001,
                 metric: str = "euclidean", fit_stride: int = 3, max_fit_samples: int = 20000,
                 random_state: int | None = 42):
        self.n_components = n_components  # output dimension
        self.n_neighbors = n_neighbors  # UMAP neighbourhood size
        self.min_dist = min_dist  # UMAP minimum distance in the embedding
        self.metric = metric  # distance between weight vectors
        self.fit_stride = fit_stride  # fit on every k-th row passed to fit
        self.max_fit_samples = max_fit_samples  # raise the stride until at most this many rows are fitted
        self.random_state = random_state  # seeds fit and transform (the 2021 transform_seed was 42)

    def fit(self, X: np.ndarray, y=None) -> "UMAPFeatures":
        import umap  # lazy: umap-learn takes seconds to import, and `import weightspace` must not load it

        rows = self._fit_rows(X)
        seed = self.random_state
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value")  # a seed makes umap single-threaded: intended
            self.model_ = umap.UMAP(n_neighbors=self.n_neighbors, n_components=self.n_components,
                                    min_dist=self.min_dist, metric=self.metric, random_state=seed,
                                    transform_seed=42 if seed is None else seed).fit(rows)
        return self
