"""Targets: the properties a probe predicts, read from a zoo's samples table, and how they are scored.

Target names follow the 2021 result keys, so the same name appears in the
evaluation table and in ``baseline_performance.json`` / ``results.json``:

============================  ===========================================================
``test_acc``                  samples column ``test_acc`` (or ``test_accuracy``)
``train_acc``                 ``train_acc`` (or ``train_accuracy``)
``ggap``                      column ``ggap``, else ``train_acc - test_acc``
``training_iteration``        the checkpoint's ``epoch`` (the 2021 name of the epoch)
any hyperparameter            the column of the same name (e.g. ``lr``, ``activation``)
============================  ===========================================================

Numeric columns are regressed (R², Kendall τ); string, categorical and boolean
columns are classified (accuracy).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from sklearn.metrics import r2_score

REGRESSION, CLASSIFICATION = "regression", "classification"
METRICS = {REGRESSION: ("r2", "kendall_tau"), CLASSIFICATION: ("accuracy",)}
PRIMARY_METRIC = {REGRESSION: "r2", CLASSIFICATION: "accuracy"}  # the value written to the 2021 JSON files
DEFAULT_TARGETS = ("test_acc", "train_acc", "ggap", "training_iteration")
# target name -> the samples columns it is read from, first present wins
SOURCES = {
    "test_acc": ("test_acc", "test_accuracy"),
    "train_acc": ("train_acc", "train_accuracy"),
    "training_iteration": ("epoch",),
    "epoch": ("epoch",),
}


@dataclass
class Target:
    """One property to predict, aligned with the rows of the samples table."""

    name: str  # result key, e.g. "test_acc"
    task: str  # "regression" or "classification"
    values: np.ndarray  # (S,) float64 for regression, object (str or None) for classification
    columns: tuple[str, ...] = ()  # samples columns it was computed from
    note: str = ""  # why it cannot be probed; "" when it can

    @property
    def valid(self) -> np.ndarray:
        """(S,) bool: rows whose value is present."""
        if self.task == REGRESSION:
            return np.isfinite(self.values)
        return np.array([v is not None for v in self.values], dtype=bool)


def task_of(column: pd.Series) -> str:
    """"regression" for numeric columns, "classification" for strings, categories and booleans."""
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return CLASSIFICATION
    return REGRESSION


def derive_targets(samples: pd.DataFrame, names: Sequence[str] | None = None,
                   hyperparameters: Sequence[str] = ()) -> list[Target]:
    """The targets to probe, with a `note` on each one that cannot be probed.

    Args:
        samples: one row per checkpoint.
        names: target names (see the module table); None means `DEFAULT_TARGETS`
            that the table provides (the epoch only if it varies) plus every
            hyperparameter that varies.
        hyperparameters: the hyperparameter columns of the zoo.

    Returns:
        One `Target` per name. A requested target that is missing, or that has a
        single value, comes back with a `note` saying so instead of raising.
    """
    if names is None:
        names = [n for n in DEFAULT_TARGETS if not _make(samples, n).note]
        names += [h for h in hyperparameters if h in samples and samples[h].nunique(dropna=True) > 1]
    return [_make(samples, name) for name in dict.fromkeys(names)]


def _make(samples: pd.DataFrame, name: str) -> Target:
    nan = np.full(len(samples), np.nan)
    if name == "ggap" and "ggap" not in samples:
        train, test = _column(samples, "train_acc"), _column(samples, "test_acc")
        if train is None or test is None:
            return Target(name, REGRESSION, nan, note="target 'ggap' needs the columns train_acc and test_acc, "
                          f"which the samples table lacks (it has {list(samples.columns)})")
        values = pd.to_numeric(samples[train], errors="coerce") - pd.to_numeric(samples[test], errors="coerce")
        return _checked(Target(name, REGRESSION, values.to_numpy(np.float64), (train, test)))
    column = _column(samples, name)
    if column is None:
        return Target(name, REGRESSION, nan, note=f"target {name!r} is not in the samples table; its columns are "
                      f"{list(samples.columns)}")
    series = samples[column]
    task = task_of(series)
    if task == REGRESSION:
        values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    else:
        values = np.array([None if pd.isna(v) else str(v) for v in series], dtype=object)
    return _checked(Target(name, task, values, (column,)))


def _column(samples: pd.DataFrame, name: str) -> str | None:
    return next((c for c in SOURCES.get(name, (name,)) if c in samples), None)


def _checked(target: Target) -> Target:
    present = target.values[target.valid]
    distinct = len(np.unique(present.astype(str) if target.task == CLASSIFICATION else present))
    if distinct < 2:
        what = "class" if target.task == CLASSIFICATION else "value"
        target.note = (f"target {target.name!r} has {'no' if distinct == 0 else 'a single'} {what} in this zoo; "
                       "there is nothing to predict")
    return target


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R² and Kendall τ (regression) or accuracy (classification); NaN where undefined.

    R² uses the mean of the rows scored (sklearn's `r2_score`); it is NaN for
    fewer than two rows, a constant truth or a non-finite prediction, and so is τ
    (where sklearn would give 0 or 1 for a constant truth, or raise).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if task == CLASSIFICATION:
        return {"accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else np.nan}
    if len(y_true) < 2 or np.all(y_true == y_true[0]) or not np.isfinite(y_pred).all():
        return {"r2": np.nan, "kendall_tau": np.nan}
    r2 = r2_score(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant predictions: tau is NaN, which is the answer
        tau = kendalltau(y_true, y_pred).statistic
    return {"r2": float(r2), "kendall_tau": float(tau)}
