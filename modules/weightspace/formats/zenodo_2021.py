"""The 2021 Zenodo datasets (record 5645138): ``dataset_<XX>_<name>.pt``.

Each file pickles ``{"trainset", "valset", "testset"}`` of ``SimCLRDataset``
(own zoos: vectors in ``data_in``, labels ``"<path>#_#epoch_<N>#_#..."``,
``properties`` dict) or ``GoogleDatasetSimCLR`` (Unterthiner zoos: ``data``
``[N, 4970]``, labels ``"model_id-<k>_step-<step>_path-<modeldir>"``, a pandas
``metrics`` table). They are read by `load_legacy_pickle` (no code from the file
runs) and written as one zoo with a ``split`` column.

The Google data were only block-reordered by the 2021 code (bias moved behind a
still TF-ordered kernel, bug B5); they are converted to the true torch layout
of ``cnn_unterthiner`` here. The 41-44 experiments' index_dict (bug B4) is
repaired by `read_index_dict` when passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from weightspace.formats import legacy, unterthiner
from weightspace.formats.legacy_pickle import (
    LegacyFrame,
    LegacyObject,
    LegacyPickleError,
    LegacySeries,
    frame_to_pandas,
    load_legacy_pickle,
    series_values,
)
from weightspace.io.outputs import check_replaceable
from weightspace.zoo.store import Zoo, ZooWriter

SPLITS = {"trainset": "train", "valset": "val", "testset": "test"}
_SIMCLR = "SimCLRDataset"
_GOOGLE = "GoogleDatasetSimCLR"
# GoogleDatasetSimCLR.properties keys -> the Unterthiner column names used for metrics.csv
_GOOGLE_PROPERTIES = {"acc": "test_acc", "epochs": "epoch", "lr": "learning_rate", "init_method": "w_init"}
_RESULT_KEYS = {"test_acc", "train_acc", "test_loss", "train_loss", "val_acc", "val_loss", "ggap", "acc"}


@dataclass
class _Part:
    """One split of a 2021 file: its samples and a reader of its rows (legacy order)."""

    samples: pd.DataFrame
    rows: Callable[[int, int], np.ndarray]  # (start, stop) -> rows in the legacy vector order
    num_rows: int
    num_params: int
    google: bool
    hyper: list[str]  # columns holding hyperparameters
    metrics: list[str]  # columns holding measured properties


_SCALARS = (str, bytes, int, float, type(None), np.generic, PurePath)
_MAX_ITEMS = 1024  # entries of a list-valued property


def _plain(value: Any) -> bool:
    """A number, string or None, or a short flat list of them: nothing whose printing could recurse or explode."""
    if isinstance(value, (list, tuple)):
        return len(value) <= _MAX_ITEMS and all(isinstance(v, _SCALARS) for v in value)
    return isinstance(value, _SCALARS)


def _as_list(value: Any, n: int, what: str, *, kind: type | tuple[type, ...] | None = None) -> list:
    if isinstance(value, LegacySeries):
        value = series_values(value)
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise LegacyPickleError(f"{what} has {len(value) if hasattr(value, '__len__') else '?'} entries, expected {n}")
    bad = next((i for i, v in enumerate(value) if not (isinstance(v, kind) if kind else _plain(v))), None)
    if bad is not None:
        raise LegacyPickleError(f"{what}[{bad}] is a {type(value[bad]).__name__}, expected "
                                f"{'a string' if kind is str else 'a number, a string or a short flat list of them'}")
    return [v.item() if isinstance(v, np.generic) else v for v in value]


def _simclr_part(ds: LegacyObject, split: str) -> _Part:
    vectors = ds.__dict__.get("data_in")
    if not isinstance(vectors, list) or not vectors or not all(isinstance(v, np.ndarray) for v in vectors):
        raise LegacyPickleError(f"{split}: SimCLRDataset.data_in is not a list of vectors; only datasets pickled in "
                                "mode='vector' are supported")
    if len({v.size for v in vectors}) != 1:
        raise LegacyPickleError(f"{split}: data_in vectors differ in length ({sorted({v.size for v in vectors})[:5]})")
    n = len(vectors)
    labels = _as_list(ds.__dict__.get("labels_in"), n, f"{split}: labels_in", kind=str)
    paths, epochs = zip(*(legacy.parse_simclr_label(lab) for lab in labels))
    stored = ds.__dict__.get("epochs")
    if stored is not None and [int(e) for e in _as_list(stored, n, f"{split}: epochs")] != list(epochs):
        raise LegacyPickleError(f"{split}: the epochs attribute disagrees with the epochs in the labels")
    samples = pd.DataFrame({"model_path": [str(p) for p in paths], "epoch": np.array(epochs, np.int64)})
    properties = ds.__dict__.get("properties") or {}
    keys = ds.__dict__.get("property_keys") or {}
    config_keys = set(keys.get("config_keys") or []) if isinstance(keys, dict) else set()
    names = legacy.column_names(properties)
    hyper: list[str] = []
    metrics: list[str] = []
    for key, values in properties.items():
        column = names[key] if names[key] not in samples else f"property_{names[key]}"
        samples[column] = _as_list(values, n, f"{split}: properties[{key!r}]")
        is_hyper = key in config_keys if config_keys else column not in _RESULT_KEYS
        (hyper if is_hyper else metrics).append(column)
    stacked = np.stack([v.reshape(-1) for v in vectors])  # (n, D)
    return _Part(samples, lambda a, b: stacked[a:b], n, stacked.shape[1], False, hyper, metrics)


def _google_part(ds: LegacyObject, split: str) -> _Part:
    data = ds.__dict__.get("data")
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise LegacyPickleError(f"{split}: GoogleDatasetSimCLR.data is not a (N, D) tensor")
    n = data.shape[0]
    labels = _as_list(ds.__dict__.get("labels"), n, f"{split}: labels", kind=str)
    parsed = [legacy.parse_google_label(lab) for lab in labels]
    metrics = ds.__dict__.get("metrics")
    if isinstance(metrics, LegacyFrame):
        samples, hyper, metric_cols, _ = unterthiner.metrics_to_samples(frame_to_pandas(metrics))
        if len(samples) != n:
            raise LegacyPickleError(f"{split}: metrics has {len(samples)} rows but data has {n}")
        mismatch = [i for i, (_, step, path) in enumerate(parsed)
                    if step != samples["epoch"].iat[i] or path != samples["model_id"].iat[i]]
        if mismatch:
            raise LegacyPickleError(f"{split}: metrics rows {mismatch[:5]} disagree with the labels' step/modeldir")
    else:
        samples = pd.DataFrame({"model_id": [p for _, _, p in parsed], "epoch": [s for _, s, _ in parsed]})
        hyper, metric_cols = [], []
        for key, values in (ds.__dict__.get("properties") or {}).items():
            column = _GOOGLE_PROPERTIES.get(key, key)
            values = _as_list(values, n, f"{split}: properties[{key!r}]")
            if column == "epoch" and values != samples["epoch"].tolist():
                raise LegacyPickleError(f"{split}: properties['epochs'] disagrees with the labels' steps")
            samples[column] = values
            if column != "epoch":
                (metric_cols if column in unterthiner.METRICS else hyper).append(column)
        if "ggap" not in samples and {"train_acc", "test_acc"} <= set(samples):
            samples["ggap"] = samples["train_acc"] - samples["test_acc"]
            metric_cols.append("ggap")
    samples.insert(1, "legacy_index", np.array([k for k, _, _ in parsed], np.int64))
    return _Part(samples, lambda a, b: data[a:b], n, data.shape[1], True, hyper, metric_cols)


def _read_parts(path: Path) -> list[tuple[str, _Part]]:
    try:
        return _parts_of(path, load_legacy_pickle(path))
    except (RecursionError, MemoryError) as err:  # a crafted file's nesting or sizes, or a file too large for here
        need = "memory" if isinstance(err, MemoryError) else "nesting"
        raise LegacyPickleError(f"'{path}': its content needs more {need} than this machine allows; the file is "
                                "corrupt, crafted or too large") from None


def _parts_of(path: Path, obj: Any) -> list[tuple[str, _Part]]:
    if not isinstance(obj, dict) or not any(k in obj for k in SPLITS):
        raise LegacyPickleError(f"'{path}' holds {type(obj).__name__}, not a dict with {list(SPLITS)}")
    parts = []
    for key, split in SPLITS.items():
        ds = obj.get(key)
        if ds is None:
            continue
        kind = type(ds).__name__
        if kind == _SIMCLR:
            parts.append((split, _simclr_part(ds, split)))
        elif kind == _GOOGLE:
            parts.append((split, _google_part(ds, split)))
        else:
            raise LegacyPickleError(f"'{path}': {key} is a {kind}, not a SimCLRDataset or GoogleDatasetSimCLR")
    if len({(p.num_params, p.google) for _, p in parts}) != 1:
        raise LegacyPickleError(f"'{path}': the splits hold different kinds or lengths of vectors")
    return parts


def _finish_samples(parts: list[tuple[str, _Part]]) -> tuple[pd.DataFrame, list[str], list[str]]:
    frames = []
    for split, part in parts:
        frame = part.samples.copy()
        frame["split"] = split
        frames.append(frame)
    samples = pd.concat(frames, ignore_index=True)
    if "model_id" not in samples:
        samples.insert(0, "model_id", legacy.model_ids(samples["model_path"].tolist()))
    splits_per_model = samples.groupby("model_id")["split"].nunique()
    if (splits_per_model > 1).any():
        raise LegacyPickleError(f"models {list(splits_per_model.index[splits_per_model > 1][:5])} appear in more than one split")
    hyper = list(dict.fromkeys(c for _, p in parts for c in p.hyper))
    metrics = list(dict.fromkeys(c for _, p in parts for c in p.metrics))
    if "ggap" not in samples and {"train_acc", "test_acc"} <= set(samples):
        samples["ggap"] = samples["train_acc"] - samples["test_acc"]
        metrics.append("ggap")
    return samples, hyper, metrics


def _plan(path: str | os.PathLike, index_dict: Mapping | str | os.PathLike | None):
    path = Path(path)
    parts = _read_parts(path)
    num_params, google = parts[0][1].num_params, parts[0][1].google
    if google:
        layout = unterthiner.unterthiner_layout()
        if num_params != layout.num_params:
            raise LegacyPickleError(f"'{path}': Google vectors have {num_params} entries, expected {layout.num_params}")
        if index_dict is not None:
            legacy.read_index_dict(index_dict)  # checked (and B4 reported) only; the Google layout is fixed
        architecture = {"name": unterthiner.ARCHITECTURE, "kwargs": {}}
        index = unterthiner.gather_index(unterthiner.tf_variables(bias_first=False), layout)
    else:
        architecture, layout = legacy.resolve_layout(num_params, index_dict)
        index = None
    samples, hyper, metrics = _finish_samples(parts)
    info = {
        "name": path.stem.removeprefix("dataset_"),
        "hyperparameters": hyper,
        "metrics": metrics,
        "architecture": architecture,
        "task": {"name": path.stem.removeprefix("dataset_")},
        "provenance": {
            "format": "zenodo2021",
            "source": str(path.resolve()),
            "dataset_class": _GOOGLE if google else _SIMCLR,
            "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "layout": ("GoogleDatasetSimCLR block order (kernel TF-ordered, then bias; bug B5) -> torch layout"
                       if google else "2021 vector order = weightspace order"),
            "splits": {split: part.num_rows for split, part in parts},
        },
    }
    return parts, layout, index, samples, info


def _rows(parts: list[tuple[str, _Part]], index: np.ndarray | None, chunk: int):
    """Yield float32 rows in the torch layout, split after split, `chunk` rows at a time."""
    for _, part in parts:
        for a in range(0, part.num_rows, chunk):
            rows = np.asarray(part.rows(a, min(a + chunk, part.num_rows)), dtype=np.float32)
            yield rows if index is None else rows[:, index]


def read_zenodo_2021(path: str | os.PathLike, *, index_dict: Mapping | str | os.PathLike | None = None) -> Zoo:
    """Read a 2021 dataset file into an in-memory `Zoo` (weights in the torch layout).

    Args:
        path: a ``dataset_<XX>_<name>.pt`` file.
        index_dict: the experiment's ``index_dict.json`` (dict or path); without
            it the registered architecture with the vectors' length is used
            (100: tetris_mlp, 2464: cnn_s, 4970: cnn_unterthiner).

    Raises:
        LegacyPickleError: a refused global, a corrupt file, or inconsistent content.
    """
    parts, layout, index, samples, info = _plan(path, index_dict)
    weights = np.concatenate(list(_rows(parts, index, 1 << 16)))
    samples.insert(2, "diverged", ~np.isfinite(weights).all(axis=1))
    return Zoo(weights, samples, layout, info)


def convert_zenodo_2021(path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                        index_dict: Mapping | str | os.PathLike | None = None, name: str | None = None,
                        provenance: dict | None = None) -> Zoo:
    """Convert a 2021 dataset file into a zoo directory at `out`, streaming the weights.

    Raises:
        LegacyPickleError, ValueError, FileExistsError: see `read_zenodo_2021`;
            `out` exists and `overwrite` is False.
        OutputError: `out` is not a zoo (nor an empty folder), or cannot be written.
    """
    check_replaceable(out, accept=("zoo",), overwrite=overwrite)  # refuse early, before reading the source
    parts, layout, index, samples, info = _plan(path, index_dict)
    if name:
        info["name"] = name
    info["provenance"].update(provenance or {})
    diverged = []
    with ZooWriter(out, len(samples), layout, overwrite=overwrite) as writer:
        for rows in _rows(parts, index, 8192):
            diverged.append(~np.isfinite(rows).all(axis=1))
            writer.write(rows)
        samples.insert(2, "diverged", np.concatenate(diverged))
        info["provenance"]["diverged_rows"] = int(samples["diverged"].sum())
        return writer.finish(samples, info)

