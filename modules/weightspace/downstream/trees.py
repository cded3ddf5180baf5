"""Gradient-boosted tree probes: scikit-learn's histogram boosting with early stopping on the validation
split, whole models held out without one, and a thread count that follows the data's size."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import ThreadpoolController, threadpool_limits

from weightspace.data.splits import has_repeats, model_holdout
from weightspace.downstream.probe_checks import FLOATS, check_groups, has_val

# boosting on fewer cells (rows x features) than this runs on one thread: thread start-up would dominate
# (measured: 8400 x 14 no faster on 2 threads, 8400 x 64 1.3x, 8400 x 3928 1.8x, bitwise the same model)
THREADED_CELLS = 2 ** 19


def boosting_threads(shape: tuple[int, int]) -> int:
    """OpenMP threads for boosting on data of this shape: 1 below `THREADED_CELLS` cells, else the current
    OpenMP limit of the process (its cores, or less under `threadpool_limits` or OMP_NUM_THREADS)."""
    if shape[0] * shape[1] < THREADED_CELLS:
        return 1
    limits = [lib["num_threads"] for lib in ThreadpoolController().select(user_api="openmp").info()]
    return max(1, min(limits, default=1))


class _BoostedTrees(BaseEstimator):
    """Histogram gradient boosting with early stopping on the validation split when given.

    Without validation data, early stopping uses an internal 10 % hold-out when
    there are at least 1000 training rows, and runs all `max_iter` rounds otherwise;
    when `groups` gives a model several rows, the hold-out is 10 % of the models
    (all rounds if that would leave a class out of training).
    Boosting runs on `n_threads` OpenMP threads; None (the default) leaves it to
    `boosting_threads`: one thread on small data, where thread start-up dominates,
    the process's OpenMP limit on large data. The fitted model does not depend on
    the thread count. On a shared, busy machine pass 1: spinning threads made fits
    5-30x slower than one thread in our measurements.
    Fitted attributes: ``model_`` (the sklearn HistGradientBoosting model), ``n_iter_``, ``threads_``.
    """

    def __init__(self, *, max_iter: int = 1000, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 20, l2_regularization: float = 0.0, patience: int = 20,
                 random_state: int | None = None, n_threads: int | None = None):
        self.max_iter = max_iter  # boosting rounds at most
        self.learning_rate = learning_rate  # shrinkage
        self.max_leaf_nodes = max_leaf_nodes  # leaves per tree
        self.min_samples_leaf = min_samples_leaf  # smallest leaf
        self.l2_regularization = l2_regularization  # L2 on leaf values
        self.patience = patience  # rounds without validation improvement before stopping
        self.random_state = random_state  # seeds binning subsamples and the internal hold-out
        self.n_threads = n_threads  # OpenMP threads while fitting and predicting; None: boosting_threads(X)

    def _fit(self, model_cls, X, y, X_val, y_val, groups=None):
        X, y = validate_data(self, X, y, dtype=FLOATS)
        groups = check_groups(groups, X.shape[0])
        val = has_val(X_val, y_val)
        early = val or X.shape[0] >= 1000
        if early and not val and has_repeats(groups) and len(np.unique(groups)) >= 2:
            train, held = model_holdout(groups, 0.1, self.random_state)  # whole models, never rows of a model
            if is_classifier(self) and len(np.unique(y[train])) < len(np.unique(y)):
                early = False  # a class only in the held-out models: boost on every row, all rounds
            else:
                X, y, X_val, y_val, val = X[train], y[train], X[held], y[held], True
        model = model_cls(max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
                          min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
                          early_stopping=early, n_iter_no_change=self.patience,
                          validation_fraction=None if val else 0.1, random_state=self.random_state)
        self.threads_ = self.n_threads or boosting_threads(X.shape)
        with threadpool_limits(self.threads_, user_api="openmp"):
            if val:
                model.fit(X, y, X_val=validate_data(self, X_val, reset=False, dtype=FLOATS), y_val=np.asarray(y_val))
            else:
                model.fit(X, y)
        self.model_ = model
        self.n_iter_ = int(model.n_iter_)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        with threadpool_limits(self.threads_, user_api="openmp"):
            return self.model_.predict(validate_data(self, X, reset=False, dtype=FLOATS))


class BoostedTreesRegressorProbe(RegressorMixin, _BoostedTrees):
    __doc__ = "Regression probe: " + (_BoostedTrees.__doc__ or "")

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "BoostedTreesRegressorProbe":
        return self._fit(HistGradientBoostingRegressor, X, y, X_val, y_val, groups)


class BoostedTreesClassifierProbe(ClassifierMixin, _BoostedTrees):
    __doc__ = "Classification probe (validation rows of classes unseen in training are ignored for stopping): " \
              + (_BoostedTrees.__doc__ or "")

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "BoostedTreesClassifierProbe":
        check_classification_targets(y)
        if has_val(X_val, y_val):
            seen = np.isin(np.asarray(y_val), np.unique(np.asarray(y)))
            X_val, y_val = np.asarray(X_val)[seen], np.asarray(y_val)[seen]
            if not len(y_val):
                X_val = y_val = None
        self._fit(HistGradientBoostingClassifier, X, y, X_val, y_val, groups)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        with threadpool_limits(self.threads_, user_api="openmp"):
            return self.model_.predict_proba(validate_data(self, X, reset=False, dtype=FLOATS))
