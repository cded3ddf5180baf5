"""Probes that read a property off features: ridge, logistic regression, gradient-boosted trees (`trees.py`).

Every probe is a scikit-learn estimator with ``fit(X, y, X_val=None, y_val=None, groups=None)``:
the regularization (ridge alpha, logistic C, boosting rounds) is chosen on the
validation split when one is given. Without one, the choice falls back to
held-out rows: efficient leave-one-out (`RidgeCV`), stratified k-fold
(`LogisticRegressionCV`) or a 10 % hold-out (boosting). With `groups` (the
model id of each row) and a model with several rows, whole models are held
out instead, so no checkpoint of one model is on both sides of a fold.
Linear probes standardize their features on the training rows; intercepts are
never penalized.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.linalg.blas import dsyrk
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from weightspace.data.splits import has_repeats, model_folds
from weightspace.downstream.logistic import fit_logistic, gram
from weightspace.downstream.probe_checks import FLOATS, check_grid, check_groups, has_val
from weightspace.downstream.trees import (  # noqa: F401 (re-exported)
    THREADED_CELLS,
    BoostedTreesClassifierProbe,
    BoostedTreesRegressorProbe,
    boosting_threads,
)

# the 2021 ridge grid (reference_system.md 5.1); 2021 did not standardize, so we extend it upwards:
# with standardized features the Gram diagonal is n, and large zoos need alphas beyond 1e3
ALPHAS_2021 = (1e3, 3e2, 1e2, 3e1, 1e1, 3.0, 1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
DEFAULT_ALPHAS = (1e5, 3e4, 1e4, 3e3) + ALPHAS_2021
DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)
PROBES = ("linear", "gbt")
# scikit-learn >= 1.8 warns unless LogisticRegressionCV is told to use its simplified attributes
_CV_NEW_ATTRIBUTES = ({"use_legacy_attributes": False}
                      if "use_legacy_attributes" in LogisticRegressionCV().get_params() else {})
_PREDICT_CHUNK = 4096  # rows per chunk when predicting
# from this many features on, and on at least as many rows, the logistic probe's path runs `logistic.fit_logistic`
# (scikit-learn's objective, preconditioned): there lbfgs on the raw coefficients needs hundreds of passes per C
# (tetris_hyp's raw weights, 4296 x 100, activation: 14.7 s on scikit-learn's lbfgs, 1.8 s preconditioned; on
# its 14 statistics both take a fraction of a second). On fewer rows than features a pass is cheap and the d x d
# Cholesky factorization per C is what costs (a 90-row smoke zoo of 4970 weights: 140 s preconditioned, seconds
# without)
PRECONDITIONED_FEATURES = 64
# The ridge probe's eigendecomposition is kept for the next fit on the same rows: on a wide embedding it is most
# of a fit (digits_hyp's 3,928 learned features: tens of seconds a decomposition), and the probes of one feature
# set decompose the same rows again and again (a ridge per class target beside the one of every continuous
# target; the final fit after a cross-validation). Entries are keyed by a digest of the rows and the scaler.
CACHED_FROM = 256  # rows and features from which a decomposition is kept (below, it costs less than the digest)
CACHE_ENTRIES = 2  # decompositions kept per process (one of 3,928 features: 123 MB)
_DECOMPOSITIONS: OrderedDict = OrderedDict()
_DECOMPOSITIONS_LOCK = threading.Lock()


def _rows_key(X: np.ndarray, scaler: StandardScaler) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((X.shape, X.dtype.str)).encode())
    for array in (X, scaler.mean_, scaler.scale_):
        digest.update(np.ascontiguousarray(array).data.cast("B"))
    return digest.digest()


def _cached(key: bytes | None):
    if key is None:
        return None
    with _DECOMPOSITIONS_LOCK:
        found = _DECOMPOSITIONS.get(key)
        if found is not None:
            _DECOMPOSITIONS.move_to_end(key)
        return found


def _cache(key: bytes | None, value: tuple):
    if key is not None and CACHE_ENTRIES > 0:
        with _DECOMPOSITIONS_LOCK:
            _DECOMPOSITIONS[key] = value
            while len(_DECOMPOSITIONS) > CACHE_ENTRIES:
                _DECOMPOSITIONS.popitem(last=False)
    return value


@dataclass
class ProbeConfig:
    """Settings of the probes built by `make_probe`."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS  # ridge grid, chosen on validation R²
    Cs: tuple[float, ...] = DEFAULT_CS  # logistic inverse-regularization grid, chosen on validation accuracy
    logistic_max_iter: int = 1000  # lbfgs iterations per C
    classifier: str = "logistic"  # the linear probe of a class: "logistic" (LogisticProbe) or "ridge" (cheaper)
    gbt_max_iter: int = 1000  # boosting rounds at most
    gbt_learning_rate: float = 0.1  # shrinkage of each tree
    gbt_max_leaf_nodes: int = 31  # leaves per tree
    gbt_patience: int = 20  # rounds without validation improvement before boosting stops
    gbt_threads: int | None = None  # OpenMP threads of boosting; None: `boosting_threads` decides
    random_state: int = 0  # seeds boosting and the fallback CV folds

    def __post_init__(self) -> None:
        check_grid(self.alphas, "alphas")
        check_grid(self.Cs, "Cs")
        for name in ("logistic_max_iter", "gbt_max_iter", "gbt_max_leaf_nodes", "gbt_patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ProbeConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.classifier not in ("logistic", "ridge"):
            raise ValueError(f"ProbeConfig.classifier must be 'logistic' or 'ridge', got {self.classifier!r}")
        if not self.gbt_learning_rate > 0:
            raise ValueError(f"ProbeConfig.gbt_learning_rate must be > 0, got {self.gbt_learning_rate}")


def make_probe(name: str, task: str, config: ProbeConfig | None = None) -> BaseEstimator:
    """A fresh probe: ``name`` in `PROBES`, ``task`` "regression" or "classification"."""
    config = config or ProbeConfig()
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    if name == "linear":
        if task == "regression":
            return RidgeProbe(config.alphas)
        if config.classifier == "ridge":
            return RidgeClassifierProbe(config.alphas)
        return LogisticProbe(config.Cs, max_iter=config.logistic_max_iter, random_state=config.random_state)
    if name == "gbt":
        cls = BoostedTreesRegressorProbe if task == "regression" else BoostedTreesClassifierProbe
        return cls(max_iter=config.gbt_max_iter, learning_rate=config.gbt_learning_rate,
                   max_leaf_nodes=config.gbt_max_leaf_nodes, patience=config.gbt_patience,
                   random_state=config.random_state, n_threads=config.gbt_threads)
    raise ValueError(f"unknown probe {name!r}; choose one of {PROBES}")


class RidgeProbe(RegressorMixin, BaseEstimator):
    """Ridge regression on standardized features, alpha chosen per target on validation R².

    Written by hand around one decomposition: `RidgeCV` is fast only for leave-one-out; on a validation
    split it, like `Ridge` per alpha, would solve the system once per alpha (21 of them).

    With ``X_val, y_val`` the standardized training features are decomposed once
    (eigendecomposition of the D x D Gram matrix, accumulated in row chunks, or of
    the n x n kernel matrix when n < D) and every alpha of the grid is scored on
    the validation rows from that one decomposition. Without them (or with fewer
    than two validation rows), alpha is chosen by `RidgeCV`'s efficient
    leave-one-out, or, when `groups` gives a model several rows, by the summed
    squared error of k-fold cross-validation holding out whole models; so is the
    alpha of any target that is constant on the validation rows (the others keep
    theirs). Ties go to the larger alpha.
    Several targets (y of shape (n, k)) share the decomposition, each with its own alpha.

    Fitted attributes: ``scaler_`` (StandardScaler), ``ridge_`` (a `Ridge` whose
    coefficients equal ``Ridge(alpha_).fit(scaler_.transform(X), y)``), ``alpha_``
    (float, or an array per target), ``val_scores_`` ((n_alphas,) or (n_alphas, k)
    validation R², NaN without validation).
    """

    def __init__(self, alphas: Sequence[float] = DEFAULT_ALPHAS, *, chunk_size: int = 4096):
        self.alphas = alphas  # the grid
        self.chunk_size = chunk_size  # rows per chunk when accumulating the Gram matrix and predicting

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "RidgeProbe":
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=FLOATS)
        groups = check_groups(groups, X.shape[0])
        if X.shape[0] < 2:
            raise ValueError(f"RidgeProbe needs at least 2 samples, got n_samples = {X.shape[0]}")
        alphas = np.sort(check_grid(self.alphas, "alphas"))[::-1]
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)  # (n, k)
        self.scaler_ = StandardScaler()
        for start in range(0, X.shape[0], self.chunk_size):  # chunked: a whole-X fit makes float64 temporaries
            self.scaler_.partial_fit(X[start:start + self.chunk_size])
        scores = None
        if has_val(X_val, y_val) and len(y_val) >= 2:
            X_val = validate_data(self, X_val, reset=False, dtype=FLOATS)
            Y_val = check_array(y_val, ensure_2d=False, dtype=np.float64).reshape(len(y_val), -1)
            if Y_val.shape != (X_val.shape[0], Y.shape[1]):
                raise ValueError(f"y_val has shape {np.shape(y_val)}; expected {X_val.shape[0]} rows of "
                                 f"{Y.shape[1]} targets")
            W = self._coefs_for_grid(X, Y, alphas)  # (n_alphas, D, k) in standardized units
            scores = self._val_scores(W, Y.mean(0), X_val, Y_val)  # (n_alphas, k)
        if scores is not None and np.isfinite(scores).any(axis=0).any():
            scored = np.isfinite(scores).any(axis=0)  # targets the validation rows can score
            best = np.nanargmax(np.where(scored, scores, 0.0), axis=0)  # first = largest alpha on ties
            coef = W[best, :, np.arange(Y.shape[1])]  # (k, D)
            alpha = alphas[best]
            if not scored.all():  # e.g. a target constant on val: no validation for that target only
                coef[~scored], alpha[~scored] = self._without_val(X, Y[:, ~scored], alphas, groups)
            self._set_ridge(coef, alpha, Y, y.ndim > 1)
            self.val_scores_ = scores if y.ndim > 1 else scores[:, 0]
        elif has_repeats(groups):
            coef, alpha = self._without_val(X, Y, alphas, groups)
            self._set_ridge(coef, alpha, Y, y.ndim > 1)
            self.val_scores_ = np.full((len(alphas),) + y.shape[1:], np.nan)
        else:
            self.ridge_ = RidgeCV(alphas=tuple(alphas), alpha_per_target=y.ndim > 1).fit(self.scaler_.transform(X), y)
            alpha = np.atleast_1d(self.ridge_.alpha_)
            self.val_scores_ = np.full((len(alphas),) + y.shape[1:], np.nan)
        self.alpha_ = alpha if y.ndim > 1 else float(alpha[0])
        return self

    def _set_ridge(self, coef: np.ndarray, alpha: np.ndarray, Y: np.ndarray, multi: bool) -> None:
        """``ridge_`` from coefficients (k, D) in standardized units and alphas (k,)."""
        self.ridge_ = Ridge(alpha=alpha if multi else float(alpha[0]))
        self.ridge_.coef_ = coef if multi else coef[0]
        self.ridge_.intercept_ = Y.mean(0) if multi else float(Y.mean())
        self.ridge_.n_features_in_ = coef.shape[1]

    def _without_val(self, X: np.ndarray, Y: np.ndarray, alphas: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
        """(coef (k, D), alpha (k,)) chosen without validation rows: leave-one-out, or k-fold by model."""
        if not has_repeats(groups):
            loo = RidgeCV(alphas=tuple(alphas), alpha_per_target=True).fit(self.scaler_.transform(X), Y)
            return loo.coef_.reshape(-1, X.shape[1]), np.broadcast_to(loo.alpha_, (Y.shape[1],)).copy()
        n_models = len(np.unique(groups))
        if n_models < 2:
            raise ValueError("RidgeProbe needs rows of at least 2 models (groups) to choose alpha without "
                             "validation rows, got 1 model; pass X_val and y_val")
        sse = np.zeros((len(alphas), Y.shape[1]))
        for train, held in model_folds(groups, min(5, n_models)):
            W = self._coefs_for_grid(X[train], Y[train], alphas)
            sse += self._val_sse(W, Y[train].mean(0), X[held], Y[held])
        best = np.argmin(sse, axis=0)  # first = largest alpha on ties
        W = self._coefs_for_grid(X, Y, alphas)
        return W[best, :, np.arange(Y.shape[1])], alphas[best]

    def _standardized(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.scaler_.mean_) / self.scaler_.scale_

    def _coefs_for_grid(self, X: np.ndarray, Y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        n, d = X.shape
        Yc = Y - Y.mean(0)
        Z = None if n >= d else self._standardized(X)  # dual: standardized once, for the kernel and the coefficients
        s2, V = self._decomposition(X, Z)
        if Z is None:  # primal (n >= d): V holds the Gram matrix's eigenvectors (D, D)
            xty = np.zeros((d, Y.shape[1]))
            for start in range(0, n, self.chunk_size):
                xty += self._standardized(X[start:start + self.chunk_size]).T @ Yc[start:start + self.chunk_size]
            B = V.T @ xty  # (D, k)
            return np.stack([V @ (B / (s2 + a)[:, None]) for a in alphas])
        C = V.T @ Yc  # dual: V holds the kernel matrix's eigenvectors (n, n)
        return np.stack([Z.T @ (V @ (C / (s2 + a)[:, None])) for a in alphas])

    def _decomposition(self, X: np.ndarray, Z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (clipped at 0) and eigenvectors of the standardized Gram matrix Z'Z (D, D), or of the
        kernel matrix ZZ' (n, n) when n < D; looked up when the same rows were decomposed before (`_cached`)."""
        key = _rows_key(X, self.scaler_) if min(X.shape) >= CACHED_FROM else None
        found = _cached(key)
        if found is not None:
            return found
        n, d = X.shape
        if n >= d:  # Gram accumulated in chunks, upper triangle by syrk
            matrix = np.zeros((d, d), order="F")
            for start in range(0, n, self.chunk_size):
                Z = self._standardized(X[start:start + self.chunk_size])  # (rows, D)
                matrix = dsyrk(1.0, Z.T, beta=1.0, c=matrix, trans=0, overwrite_c=1)
        else:  # `Z`: X standardized, when the caller has it
            Z = self._standardized(X) if Z is None else Z
            matrix = Z @ Z.T
        s2, V = np.linalg.eigh(matrix, UPLO="U")
        s2 = np.clip(s2, 0.0, None)
        s2.flags.writeable = V.flags.writeable = False  # shared by the fits that find it
        return _cache(key, (s2, V))

    def _val_scores(self, W: np.ndarray, y_mean: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray) -> np.ndarray:
        """(n_alphas, k) validation scores that choose each target's alpha: R² (NaN for a constant target)."""
        sse = self._val_sse(W, y_mean, X_val, Y_val)
        sst = ((Y_val - Y_val.mean(0)) ** 2).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sst > 0, 1.0 - sse / sst, np.nan)

    def _val_sse(self, W: np.ndarray, y_mean: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray) -> np.ndarray:
        """(n_alphas, k) summed squared errors on the validation rows of the coefficients `W` (n_alphas, D, k)."""
        n_alphas, d, k = W.shape
        flat = W.transpose(1, 0, 2).reshape(d, n_alphas * k)
        sse = np.zeros((n_alphas, k))
        for start in range(0, X_val.shape[0], self.chunk_size):
            pred = (self._standardized(X_val[start:start + self.chunk_size]) @ flat).reshape(-1, n_alphas, k) + y_mean
            sse += ((pred - Y_val[start:start + self.chunk_size, None, :]) ** 2).sum(0)
        return sse

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOATS)
        # in chunks: float32 features times float64 coefficients would make a float64 copy of X
        parts = [self.ridge_.predict(self.scaler_.transform(X[i:i + self.chunk_size]))
                 for i in range(0, X.shape[0], self.chunk_size)]
        return np.concatenate(parts) if parts else self.ridge_.predict(self.scaler_.transform(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class RidgeClassifierProbe(ClassifierMixin, RidgeProbe):
    """Least squares on +-1 class indicators (scikit-learn's `RidgeClassifier`), alpha chosen on validation accuracy.

    A linear classifier whose whole alpha grid costs one decomposition, as `RidgeProbe`'s does: on a
    3,156-wide embedding of 4,296 rows it takes a few seconds where the logistic path takes ten or more.
    It serves where a probe only compares candidates (`ProbeConfig(classifier="ridge")`: the probes that pick
    an encoder's checkpoint while it trains); reported scores use `LogisticProbe`.

    The predicted class is the column of the largest score. One alpha serves every column: the one of
    best validation accuracy (ties to the larger alpha); validation rows of classes absent from
    training count as errors. Without validation rows each column's alpha is chosen as `RidgeProbe`
    chooses it. Fitted attributes: ``classes_``, ``alpha_`` (per column), ``val_scores_`` (validation
    accuracy per alpha, descending alpha; NaN without validation), and `RidgeProbe`'s.
    """

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "RidgeClassifierProbe":
        X, y = validate_data(self, X, y, dtype=FLOATS)
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"RidgeClassifierProbe needs at least 2 classes in the training data, "
                             f"got 1 class ({self.classes_[0]!r})")
        Y_val = None
        if has_val(X_val, y_val):
            y_val = np.asarray(y_val)
            Y_val = self._indicators(np.searchsorted(self.classes_, y_val), known=np.isin(y_val, self.classes_))
        super().fit(X, self._indicators(index), X_val, Y_val, groups)
        self.val_scores_ = self.val_scores_[:, 0]
        return self

    def _indicators(self, index: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
        """(n, classes) +1 at each row's class, -1 elsewhere (rows of unknown classes: -1 everywhere)."""
        Y = np.where(index[:, None] == np.arange(len(self.classes_)), 1.0, -1.0)
        if known is not None:
            Y[~known] = -1.0
        return Y

    def _val_scores(self, W: np.ndarray, y_mean: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray) -> np.ndarray:
        """Validation accuracy per alpha, the same in every column, so that every column takes one alpha."""
        truth = np.where(Y_val.max(1) > 0, Y_val.argmax(1), -1)
        n_alphas, d, k = W.shape
        flat = W.transpose(1, 0, 2).reshape(d, n_alphas * k)
        correct = np.zeros(n_alphas)
        for start in range(0, X_val.shape[0], self.chunk_size):
            scores = (self._standardized(X_val[start:start + self.chunk_size]) @ flat).reshape(-1, n_alphas, k)
            correct += (np.argmax(scores + y_mean, axis=2) == truth[start:start + self.chunk_size, None]).sum(0)
        return np.repeat((correct / len(truth))[:, None], k, axis=1)

    def decision_function(self, X) -> np.ndarray:
        """A score per class (n, classes); with two classes one column, positive for ``classes_[1]``."""
        scores = super().predict(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X) -> np.ndarray:
        scores = super().predict(X)  # first: it checks the probe is fitted
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = False
        return tags


class LogisticProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on standardized features, C chosen on validation accuracy.

    Every C of the grid is fitted on the training rows (warm-started, small to
    large) and scored on the validation rows; ties go to the smaller C. Validation
    rows of classes absent from training count as errors. Without validation
    data, C is chosen by `LogisticRegressionCV` over stratified folds (k = the
    smallest class count, at most 5), or C = 1 if a class has a single sample.
    When `groups` gives a model several rows, the folds hold out whole models
    (k = the fewest models of a class, at most 5; C = 1 if a class has one model).
    The path stops at the first C that classifies every validation row right: no larger C
    can beat it, and ties go to the smaller C (the scores of the Cs not fitted stay NaN).
    With `PRECONDITIONED_FEATURES` features or more (and as many rows), the path is solved by
    `logistic.fit_logistic`: the same objective and stopping rule as scikit-learn's lbfgs, in a
    fraction of the iterations; without validation data so is each fold's path, and the C with the
    most held-out rows right over all folds wins (`LogisticRegressionCV` averages the folds' accuracies).

    Fitted attributes: ``scaler_``, ``classifier_`` (the fitted sklearn model),
    ``C_``, ``classes_``, ``n_iter_``, ``val_scores_`` (validation accuracy per C, ascending C).
    """

    def __init__(self, Cs: Sequence[float] = DEFAULT_CS, *, max_iter: int = 1000, random_state: int | None = None):
        self.Cs = Cs  # the grid
        self.max_iter = max_iter  # lbfgs iterations per fit
        self.random_state = random_state  # seeds the fallback CV folds

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "LogisticProbe":
        X, y = validate_data(self, X, y, dtype=FLOATS)
        check_classification_targets(y)
        classes, counts = np.unique(y, return_counts=True)
        groups, folds = check_groups(groups, X.shape[0]), None
        if has_repeats(groups):  # count models, not rows, per class: folds hold out whole models
            counts = np.array([len(np.unique(groups[y == c])) for c in classes])
            if counts.min() >= 2:
                folds = model_folds(groups, min(5, int(counts.min())), y=y, random_state=self.random_state)
        elif counts.min() >= 2:
            folds = StratifiedKFold(min(5, int(counts.min())), shuffle=True, random_state=self.random_state)
        if len(classes) < 2:
            raise ValueError("LogisticProbe needs at least 2 classes in the training data, "
                             f"got 1 class ({classes[0]!r})")
        Cs = np.sort(check_grid(self.Cs, "Cs"))
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        self.val_scores_ = np.full(len(Cs), np.nan)
        if has_val(X_val, y_val):
            Zv = self.scaler_.transform(validate_data(self, X_val, reset=False, dtype=FLOATS))
            y_val = np.asarray(y_val)
            path = self._wide_path if self._wide(Z) else self._sklearn_path
            best = None
            for i, (C, model) in enumerate(zip(Cs, path(Z, y, Cs))):
                self.val_scores_[i] = np.mean(model.predict(Zv) == y_val)
                if best is None or self.val_scores_[i] > self.val_scores_[best]:
                    best, self.classifier_ = i, copy.deepcopy(model)
                if self.val_scores_[i] == 1.0:
                    break
            self.C_ = float(Cs[best])
        elif folds is not None and self._wide(Z):
            self.classifier_, self.C_ = self._wide_cv(Z, y, Cs, folds)
        elif folds is not None:
            self.classifier_ = LogisticRegressionCV(Cs=list(Cs), cv=folds, scoring="accuracy", l1_ratios=(0.0,),
                                                    max_iter=self.max_iter, **_CV_NEW_ATTRIBUTES).fit(Z, y)
            self.C_ = float(np.atleast_1d(self.classifier_.C_)[0])
        else:
            self.classifier_ = LogisticRegression(C=1.0, max_iter=self.max_iter).fit(Z, y)
            self.C_ = 1.0
        self.classes_ = self.classifier_.classes_
        self.n_iter_ = int(np.max(self.classifier_.n_iter_))
        return self

    @staticmethod
    def _wide(Z) -> bool:
        """Whether `logistic.fit_logistic` solves the path (enough features, at least as many rows)."""
        return Z.shape[1] >= PRECONDITIONED_FEATURES and Z.shape[0] >= Z.shape[1]

    def _wide_cv(self, Z, y, Cs, folds):
        """(model, C) chosen as `LogisticRegressionCV` chooses, the path of each fold solved by `_wide_path`:
        the C of most held-out rows right over the folds (ties to the smaller C), refitted on every row."""
        splits = folds.split(Z, y) if hasattr(folds, "split") else folds
        correct = np.zeros(len(Cs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the refit below warns for the chosen C
            for train, held in splits:
                for i, model in enumerate(self._wide_path(Z[train], y[train], Cs)):
                    correct[i] += np.sum(model.predict(Z[held]) == y[held])
        best = int(np.argmax(correct))
        for model in self._wide_path(Z, y, Cs[:best + 1]):  # warm-started up to the chosen C
            pass
        return model, float(Cs[best])

    def _sklearn_path(self, Z, y, Cs):
        """The fitted model at each C, ascending, each warm-started from the last (scikit-learn's lbfgs)."""
        model = LogisticRegression(max_iter=self.max_iter, warm_start=True)
        for C in Cs:
            yield model.set_params(C=C).fit(Z, y)

    def _wide_path(self, Z, y, Cs):
        """As `_sklearn_path`, solved by `logistic.fit_logistic` (the same objective and stopping rule)."""
        classes, index = np.unique(y, return_inverse=True)
        G, coef, intercept = gram(Z), None, None
        for C in Cs:
            coef, intercept, n_iter = fit_logistic(Z, index, len(classes), C, coef=coef, intercept=intercept,
                                                   gram_matrix=G, max_iter=self.max_iter)
            if n_iter >= self.max_iter:
                warnings.warn(f"logistic probe: {self.max_iter} iterations at C={C:g} did not converge",
                              ConvergenceWarning, stacklevel=4)
            model = LogisticRegression(C=C, max_iter=self.max_iter)
            model.classes_, model.coef_, model.intercept_ = classes, coef.T.copy(), intercept.copy()
            model.n_iter_, model.n_features_in_ = np.array([n_iter]), Z.shape[1]
            yield model

    def _apply(self, method: str, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOATS)
        fn = getattr(self.classifier_, method)
        # in chunks: float32 features times float64 coefficients would make a float64 copy of X
        parts = [fn(self.scaler_.transform(X[i:i + _PREDICT_CHUNK])) for i in range(0, X.shape[0], _PREDICT_CHUNK)]
        return np.concatenate(parts) if parts else fn(self.scaler_.transform(X))

    def predict(self, X) -> np.ndarray:
        return self._apply("predict", X)

    def predict_proba(self, X) -> np.ndarray:
        return self._apply("predict_proba", X)

    def decision_function(self, X) -> np.ndarray:
        return self._apply("decision_function", X)
