"""Probe evaluation: feature sets x probes x targets x splits -> one tidy table.

The table has one row per (feature_set, probe, target, split, metric) with the
columns `COLUMNS`: ``value`` is the score, ``param`` the regularization the
probe chose, ``n`` the rows scored, ``note`` what went wrong or was dropped.
On request the predictions of every fitted probe are written too, one row per
(feature set, probe, target, sample) with the columns `PREDICTION_COLUMNS`.
Bad input never stops the evaluation: a missing or constant target, a class
seen only outside training, non-finite features or targets, an empty split
each give a `ProbeWarning` and a note (and NaN values where nothing could be
scored), and the rest of the table is still computed.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import get_tags

from weightspace.data.rows import usable_rows
from weightspace.data.splits import DEFAULT_FRACTIONS, SPLITS, ModelSplit, has_repeats
from weightspace.downstream.features import release_pages
from weightspace.downstream.probes import ProbeConfig, make_probe
from weightspace.downstream.targets import CLASSIFICATION, METRICS, REGRESSION, Target, derive_targets, score
from weightspace.io.atomic import write_csv, write_json
from weightspace.zoo.store import Zoo

COLUMNS = ["feature_set", "probe", "target", "task", "split", "metric", "value", "param", "n", "note"]
# ``row``: the sample's row in the samples table evaluated; ``epoch`` only where that table has one
PREDICTION_COLUMNS = ["feature_set", "probe", "target", "split", "row", "model_id", "epoch", "truth", "prediction"]
_GATHER_BYTES = 256 * 2**20  # rows of a memory map gathered at once when some rows are excluded


class ProbeWarning(UserWarning):
    """A target, split or feature set could not be fully probed; the table's `note` says why."""


def evaluate(source: Zoo | np.ndarray, samples: pd.DataFrame | None = None, *,
             feature_sets: Mapping[str, object], probes: Sequence[str] | Mapping[str, Callable] = ("linear",),
             targets: Sequence[str] | None = None, pairs: Sequence[tuple[str, str]] | None = None,
             splits: Sequence[str] | np.ndarray | ModelSplit | None = None, split_seed: int = 42,
             fractions: Sequence[float] = DEFAULT_FRACTIONS, hyperparameters: Sequence[str] = (),
             config: ProbeConfig | None = None, out_csv: str | os.PathLike | None = None,
             out_predictions: str | os.PathLike | None = None) -> pd.DataFrame:
    """Fit every probe on every feature set for every target and score it on train, val and test.

    Args:
        source: a `Zoo`, or weights ``(S, D)`` (then pass `samples`).
        samples: the samples table when `source` is an array (needs ``model_id``).
        feature_sets: name -> feature extractor (`features.py`; fitted in place, on
            the training rows where fitting learns from data) or a precomputed
            ``(S, F)`` array aligned with the samples.
        probes: names in `probes.PROBES`, or name -> ``factory(task) -> estimator``.
        targets: target names (`targets.py`); None: test/train accuracy, ggap,
            epoch and every varied hyperparameter.
        pairs: (feature_set, probe) pairs to run; None: all combinations.
        splits: the zoo's `ModelSplit` (pass it whenever `source` is a selection of a zoo's rows, so
            that each model keeps the split it has everywhere else), or a split name per sample;
            None: drawn by model over these samples with `fractions` and `split_seed`.
        hyperparameters: hyperparameter columns when `source` is an array.
        config: settings of the named probes.
        out_csv: where to write the table (atomically), if given.
        out_predictions: where to write the predictions of every fitted probe on every usable
            sample of every split (columns `PREDICTION_COLUMNS`; atomically, gzip-compressed when
            the name ends in ``.gz``), if given. Classification predictions are class labels.

    Returns:
        The tidy table (columns `COLUMNS`). Rows of ``diverged`` samples are
        excluded; ``table.attrs`` records how many.
    """
    if isinstance(source, Zoo):
        weights, samples, hyperparameters = source.weights, source.samples, source.hyperparameters
    elif samples is None:
        raise ValueError("evaluate(weights, samples): pass the samples table along with a weights array, or pass a Zoo")
    else:
        weights = source
    if len(samples) != weights.shape[0] or "model_id" not in samples:
        raise ValueError(f"samples must have one row per weight row ({weights.shape[0]}) and a model_id column; "
                         f"got {len(samples)} rows with columns {list(samples.columns)}")
    split = _splits(samples, splits, fractions, split_seed)
    keep = usable_rows(samples)
    kept = samples.loc[keep].reset_index(drop=True)
    split = split[keep]
    groups = kept["model_id"].to_numpy()  # fallbacks without a validation split hold out whole models
    if not isinstance(probes, Mapping):
        probes = {name: (lambda task, name=name: make_probe(name, task, config)) for name in probes}
    target_list = derive_targets(kept, targets, hyperparameters)
    for t in target_list:
        if t.note:
            warnings.warn(t.note, ProbeWarning, stacklevel=2)
    rows: list[dict] = []
    predictions: list[pd.DataFrame] | None = [] if out_predictions is not None else None
    for fs_name, extractor in feature_sets.items():
        todo = [p for p in probes if pairs is None or (fs_name, p) in pairs]
        if not todo:
            continue
        try:
            X = _features(extractor, weights, samples, keep, split)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
            note = f"feature set {fs_name!r} failed: {err}"
            warnings.warn(note, ProbeWarning, stacklevel=2)
            rows += [r for p in todo for t in target_list for r in _nan_rows(fs_name, p, t, note)]
            continue
        finite = np.isfinite(X).all(axis=1)
        inputs = set(getattr(extractor, "columns", None) or ())
        for probe_name in todo:
            rows += _probe_targets(fs_name, probe_name, probes[probe_name], X, finite, split, groups, target_list,
                                   inputs, predictions)
    table = _ordered(pd.DataFrame(rows, columns=COLUMNS), target_list)
    table.attrs.update(samples=int(len(samples)), excluded_diverged=int((~keep).sum()))
    if out_csv is not None:
        write_csv(table, out_csv)
    if out_predictions is not None:
        assert predictions is not None  # collected whenever out_predictions is given
        write_csv(_prediction_table(predictions, kept, np.flatnonzero(keep), target_list), out_predictions)
    return table


def _ordered(table: pd.DataFrame, targets: list[Target]) -> pd.DataFrame:
    """Rows by (feature set, probe) as run, then targets as requested, then train/val/test (stable within)."""
    keys = pd.DataFrame({"pair": table.groupby(["feature_set", "probe"], sort=False).ngroup(),
                         "target": table["target"].map({t.name: i for i, t in enumerate(targets)}),
                         "split": table["split"].map({s: i for i, s in enumerate(SPLITS)})})
    return table.iloc[np.lexsort((keys["split"], keys["target"], keys["pair"]))].reset_index(drop=True)


def _prediction_table(parts: list[pd.DataFrame], kept: pd.DataFrame, rows: np.ndarray,
                      targets: list[Target]) -> pd.DataFrame:
    """`PREDICTION_COLUMNS` from the parts of `_fit_and_score`, whose ``kept`` indexes the kept samples."""
    columns = [c for c in PREDICTION_COLUMNS if c != "epoch" or "epoch" in kept]
    if not parts:
        return pd.DataFrame(columns=columns)
    table = pd.concat(parts, ignore_index=True)
    at = table.pop("kept").to_numpy()
    table["row"] = rows[at]
    table["model_id"] = kept["model_id"].to_numpy()[at]
    if "epoch" in kept:
        table["epoch"] = kept["epoch"].to_numpy()[at]
    return _ordered(table, targets)[columns]


def _splits(samples: pd.DataFrame, splits, fractions, seed: int) -> np.ndarray:
    if splits is None:
        splits = ModelSplit.draw(samples["model_id"].to_numpy(), fractions, seed)
    if isinstance(splits, ModelSplit):
        return splits.column(samples["model_id"].to_numpy())
    split = np.asarray(splits, dtype=object)
    bad = set(split) - set(SPLITS)
    if split.shape != (len(samples),) or bad:
        raise ValueError(f"splits must hold one of {SPLITS} per sample ({len(samples)}); got shape {split.shape}"
                         + (f" and the names {sorted(map(str, bad))}" if bad else ""))
    return split


def _features(extractor, weights, samples: pd.DataFrame, keep: np.ndarray, split: np.ndarray) -> np.ndarray:
    """(kept rows, F) features; extractors are fitted on the kept training rows only."""
    if isinstance(extractor, np.ndarray) or not hasattr(extractor, "transform"):
        X = np.asarray(extractor)
        if X.ndim != 2 or X.shape[0] != len(samples):
            raise ValueError(f"a precomputed feature set must have shape ({len(samples)}, F), got {X.shape}")
        return X[keep]
    data = samples if getattr(extractor, "source", "weights") == "samples" else weights
    rows = np.flatnonzero(keep)

    def take(idx: np.ndarray):
        if isinstance(data, pd.DataFrame):
            return data.iloc[idx]
        block = data[idx]  # (len(idx), D) gathered into memory
        release_pages(data)
        return block

    if getattr(extractor, "fit_on_rows", True):
        extractor.fit(take(rows[split == "train"]))
    else:
        extractor.fit(data)
    if keep.all():
        return np.asarray(extractor.transform(data))
    step = max(1, _GATHER_BYTES // max(1, 4 * int(np.prod(data.shape[1:]))))
    parts = [np.asarray(extractor.transform(take(rows[i:i + step]))) for i in range(0, len(rows), step)]
    return np.concatenate(parts) if parts else np.asarray(extractor.transform(take(rows)))


def _probe_targets(fs_name, probe_name, factory, X, finite, split, groups, targets: list[Target],
                   inputs: set, predictions: list | None) -> list[dict]:
    rows: list[dict] = []
    joint: list[Target] = []
    multi = get_tags(factory(REGRESSION)).target_tags.multi_output
    for t in targets:
        note = t.note
        if not note and set(t.columns) & inputs:
            note = f"target {t.name!r} is an input of feature set {fs_name!r} (read, not predicted)"
        if note:
            rows += _nan_rows(fs_name, probe_name, t, note)
        elif multi and t.task == REGRESSION and t.valid[finite].all():
            joint.append(t)  # share one fit (one decomposition) with the other complete targets
        else:
            rows += _fit_and_score(fs_name, probe_name, factory, X, finite, split, groups, [t], predictions)
    if joint:
        rows += _fit_and_score(fs_name, probe_name, factory, X, finite, split, groups, joint, predictions)
    return rows


def _fit_and_score(fs_name, probe_name, factory, X, finite, split, groups, targets: list[Target],
                   predictions: list | None = None) -> list[dict]:
    """Score rows of one fit of `targets` (several: a multi-output fit); its predictions go to `predictions`."""
    task = targets[0].task
    usable = finite & np.logical_and.reduce([t.valid for t in targets])
    notes = []
    if (~finite).any():
        notes.append(f"dropped {(~finite).sum()} rows with non-finite features")
    if (finite & ~usable).any():
        notes.append(f"dropped {(finite & ~usable).sum()} rows with a missing (NaN) target")
    idx = {s: np.flatnonzero(usable & (split == s)) for s in SPLITS}
    Y = np.stack([t.values for t in targets], axis=1)  # (S, k)
    empty = [s for s in SPLITS if not len(idx[s])]
    if "train" in empty:
        return _fail(fs_name, probe_name, targets, "; ".join(notes + ["split 'train' is empty; nothing to fit on"]))
    y_train = Y[idx["train"]]
    if task == CLASSIFICATION:
        classes = set(y_train[:, 0])
        if len(classes) < 2:
            return _fail(fs_name, probe_name, targets, "; ".join(notes + [
                f"target {targets[0].name!r} has a single class ({next(iter(classes))!r}) in the training split"]))
        for s in ("val", "test"):
            unseen = sorted(set(Y[idx[s], 0]) - classes)
            if unseen:
                notes.append(f"classes {unseen} occur in {s} but not in train; they count as errors")
    else:
        flat = [t.name for t, col in zip(targets, y_train.T) if np.all(col == col[0])]
        if flat:
            ok = [t for t in targets if t.name not in flat]
            out = _fail(fs_name, probe_name, [t for t in targets if t.name in flat],
                        "; ".join(notes + ["the target is constant in the training split"]))
            return out + (_fit_and_score(fs_name, probe_name, factory, X, finite, split, groups, ok, predictions)
                          if ok else [])
    notes += [f"split {s!r} is empty" + ("; hyperparameters chosen without it on held-out models (ridge: "
                                          "leave-one-out or k-fold by model, logistic: k-fold by model, trees: "
                                          "hold-out by model)" if s == "val" else "") for s in empty]
    y_fit = y_train[:, 0] if len(targets) == 1 else y_train
    val = {}
    if "val" not in empty:
        val = {"X_val": X[idx["val"]], "y_val": Y[idx["val"], 0] if len(targets) == 1 else Y[idx["val"]]}
    estimator = factory(task)
    if "groups" in inspect.signature(estimator.fit).parameters:
        val["groups"] = groups[idx["train"]]
    elif "val" in empty and has_repeats(groups[idx["train"]]):
        notes.append("the probe's fit takes no groups: its hyperparameters may have been chosen on folds that "
                     "split a model's checkpoints")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            estimator.fit(X[idx["train"]], y_fit.astype(np.float64) if task == REGRESSION else y_fit, **val)
        except ValueError as err:
            return _fail(fs_name, probe_name, targets, "; ".join(notes + [f"the probe failed: {err}"]))
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            notes.append("the probe did not converge (ConvergenceWarning)")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    note = "; ".join(dict.fromkeys(notes))
    if note:
        names = ", ".join(t.name for t in targets)
        warnings.warn(f"{fs_name}/{probe_name}/{names}: {note}", ProbeWarning, stacklevel=3)
    rows = []
    for s in SPLITS:
        pred = estimator.predict(X[idx[s]]).reshape(len(idx[s]), -1) if len(idx[s]) else np.empty((0, len(targets)))
        for j, t in enumerate(targets):
            for metric, value in score(task, Y[idx[s], j], pred[:, j]).items():
                rows.append(_row(fs_name, probe_name, t, s, metric, value, _param(estimator, j), len(idx[s]), note))
            if predictions is not None and len(idx[s]):
                predictions.append(pd.DataFrame({"feature_set": fs_name, "probe": probe_name, "target": t.name,
                                                 "split": s, "kept": idx[s], "truth": Y[idx[s], j],
                                                 "prediction": pred[:, j]}))
    return rows


def _param(estimator, j: int) -> str:
    for attr in ("alpha_", "C_", "n_iter_"):
        if hasattr(estimator, attr):
            value = np.atleast_1d(getattr(estimator, attr))
            return f"{attr[:-1]}={value[min(j, len(value) - 1)]:g}"
    return ""


def _row(fs, probe, t: Target, split, metric, value, param, n, note) -> dict:
    return dict(feature_set=fs, probe=probe, target=t.name, task=t.task, split=split, metric=metric,
                value=float(value), param=param, n=int(n), note=note)


def _nan_rows(fs, probe, t: Target, note: str) -> list[dict]:
    return [_row(fs, probe, t, s, m, np.nan, "", 0, note) for s in SPLITS for m in METRICS[t.task]]


def _fail(fs, probe, targets: list[Target], note: str) -> list[dict]:
    warnings.warn(f"{fs}/{probe}/{', '.join(t.name for t in targets)}: {note}", ProbeWarning, stacklevel=4)
    return [r for t in targets for r in _nan_rows(fs, probe, t, note)]


# ------------------------------------------------------------------ JSON files
def results_dict(table: pd.DataFrame, feature_set: str, probe: str = "linear") -> dict[str, float | None]:
    """``{<target>_<split>: value}`` of one feature set and probe: R² (regression) or accuracy (classification)."""
    part = table[(table["feature_set"] == feature_set) & (table["probe"] == probe)]
    part = part[part["metric"] == part["task"].map({REGRESSION: "r2", CLASSIFICATION: "accuracy"})]
    return {f"{r.target}_{r.split}": (None if pd.isna(r.value) else float(r.value)) for r in part.itertuples()}


def write_results_json(table: pd.DataFrame, path: str | os.PathLike, *, feature_set: str = "embedding",
                       probe: str = "linear", extra: Mapping[str, float | str] | None = None) -> Path:
    """``results.json`` of a representation: the flat 2021 ``{<target>_<split>: value}`` plus `extra` keys."""
    return _write_json({**results_dict(table, feature_set, probe), **dict(extra or {})}, path)


def _write_json(data: dict, path: str | os.PathLike) -> Path:
    return write_json(path, data, allow_nan=False)
