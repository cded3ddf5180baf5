"""ray.tune experiment folders, the layout of the 2021 zoos and the Model Zoos datasets.

One folder per model (trial) holding ``params.json`` (the config),
``result.json`` (JSON lines, one per reported iteration, each with the metrics,
``training_iteration`` and the nested ``config``) and ``checkpoint_<N>`` or
``checkpoint_<N:06d>`` folders whose file ``checkpoints`` is a ``torch.save``d
state dict with the 2021 keys ``module_list.<idx>.weight/bias`` (N = epoch).

Which result line belongs to checkpoint N follows the 2021 rule (reference
§2.2 step 6), decided per model: if line N-1 of the first checkpoint N reports
``training_iteration == N`` the log starts at epoch 1 (line = N - 1); otherwise
the first line is the initialisation (line = N).

`export_raytune` writes a zoo back in this layout (plus ``index_dict.json`` and
``weightspace.json`` at the top) so that importing the export gives the zoo back,
and so that the 2021 reader labels every checkpoint with its own epoch: every
model logs iteration 0 for the initialisation (line N = epoch N), as the
authors' zoos do.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from weightspace.errors import InputError
from weightspace.formats import legacy
from weightspace.formats.tensor_checks import check_tensors
from weightspace.io.atomic import atomic_directory
from weightspace.io.json_files import JSONFileError, loads, read_json
from weightspace.io.outputs import check_replaceable
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.store import Zoo

META = "weightspace.json"
_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
# keys ray.tune adds to every result line; not properties of the model
_RAY_KEYS = {
    "training_iteration", "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore",
    "timesteps_since_restore", "iterations_since_restore", "timesteps_total", "episodes_total", "done",
    "pid", "date", "hostname", "node_ip", "trial_id", "experiment_id", "experiment_tag", "should_checkpoint",
    "checkpoint_dir_name", "warmup_time", "config", "epoch",
}
_NOT_METRICS = {"model_id", "seed", "split", "diverged", "model_path"}
# config keys naming the run's random seed (seed, model::seed, random_seed): which run, not a setting to probe
_SEED_KEY = re.compile(r"(?:.*[_:])?seeds?")
# data set names as they appear in experiment folders and data paths (tune_zoo_mnist_uniform, .../MNIST/dataset.pt)
_TASK_WORD = re.compile(r"(?<![a-z0-9])(fashion[-_]?mnist|f[-_]?mnist|mnist|svhn|cifar[-_]?100|cifar[-_]?10|stl[-_]?10|"
                        r"usps|tetris|tiny[-_]?imagenet)(?![a-z0-9])")
_TASK_ALIASES = {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist", "tinyimagenet": "tiny_imagenet"}


def _read_results(path: Path) -> list[dict]:
    lines = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = loads(line, str(path), line=number)
            except JSONFileError as err:  # not JSON, nested too deeply, or an integer Python refuses
                raise ValueError(f"{err}; fix or remove that line") from None
            if not isinstance(record, dict):
                raise ValueError(f"'{path}' line {number} holds {type(record).__name__}, expected a JSON object")
            lines.append(record)
    return lines


def _checkpoints(model_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for sub in model_dir.iterdir():
        m = _CHECKPOINT.match(sub.name)
        if not (m and sub.is_dir()):
            continue
        epoch = int(m.group(1))
        if epoch in found:
            raise ValueError(f"'{model_dir}' has two checkpoint folders for epoch {epoch}: {found[epoch].parent.name}, {sub.name}")
        if not (sub / "checkpoints").is_file():
            raise ValueError(f"'{sub}' has no file 'checkpoints'")
        found[epoch] = sub / "checkpoints"
    return dict(sorted(found.items()))


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or non-tensor files
        raise ValueError(f"'{path}' is not a readable tensor-only checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"'{path}' does not hold a state dict of tensors")
    try:
        check_tensors(state)  # before any tensor is copied: an expanded view would be materialised
    except InputError as err:
        raise InputError(f"'{path}': {err}") from None
    return dict(state)


def _line_offset(lines: list[dict], first_epoch: int) -> int:
    """The 2021 rule: 1 if the log's line N-1 is training_iteration N, else 0 (iteration 0 logged)."""
    if 1 <= first_epoch <= len(lines) and lines[first_epoch - 1].get("training_iteration") == first_epoch:
        return 1
    return 0


def _find_layout(src: Path, state: Mapping[str, torch.Tensor], meta: dict, architecture: str | None,
                 index_dict: Any) -> tuple[dict, WeightLayout]:
    if architecture is not None:
        return {"name": architecture, "kwargs": {}}, WeightLayout.from_module(create_zoo_model(architecture))
    if index_dict is None and "layout" in meta:
        return meta.get("architecture", {"name": None, "kwargs": {}}), WeightLayout.from_dict(meta["layout"])
    if index_dict is None and (src / "index_dict.json").is_file():
        index_dict = src / "index_dict.json"
    num_params = sum(v.numel() for v in state.values())
    return legacy.resolve_layout(num_params, index_dict)


def _task_from_folders(src: Path, config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The data set the runs trained on, as (name, where it was found): a config path, else the folder name."""
    data_keys = [k for k in config if "data" in k.lower() or "task" in k.lower()]
    candidates = [(f"config {k!r}", config[k]) for k in data_keys if isinstance(config[k], str)]
    for where, text in [*candidates, ("folder name", src.resolve().name)]:
        m = _TASK_WORD.search(text.lower())
        if m:
            word = re.sub(r"[-_]", "", m.group(1))
            return _TASK_ALIASES.get(word, word), where
    return None, None


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def import_raytune(src: str | os.PathLike, *, architecture: str | None = None,
                   index_dict: Mapping | str | os.PathLike | None = None, name: str | None = None) -> Zoo:
    """Read a ray.tune experiment folder into an in-memory `Zoo`.

    Args:
        src: the experiment folder; every sub-folder with a result.json is a model.
        architecture: registered architecture of the checkpoints; default: the
            export's weightspace.json, an index_dict, or the registered
            architecture with the checkpoints' parameter count.
        index_dict: the 2021 index_dict.json (path or dict) describing the layout.

    Raises:
        FileNotFoundError: no folder or no models in it.
        ValueError: a broken result.json line, a checkpoint with missing or
            extra keys or wrong shapes, a result line missing for a checkpoint.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"no ray.tune experiment folder '{src}'")
    meta = read_json(src / META) if (src / META).is_file() else {}
    meta = meta if isinstance(meta, dict) else {}
    models = sorted(d for d in src.iterdir() if d.is_dir() and (d / "result.json").is_file())
    skipped = [d.name for d in src.iterdir() if d.is_dir() and d not in models]
    if skipped:
        warnings.warn(f"'{src}': skipping folders without result.json: {skipped[:5]}", stacklevel=2)
    if not models:
        raise FileNotFoundError(f"'{src}' has no model folders (sub-folders with result.json)")
    layout, architecture_info, rows, vectors, offsets = None, None, [], [], {0: 0, 1: 0}
    for model_dir in models:
        lines = _read_results(model_dir / "result.json")
        checkpoints = _checkpoints(model_dir)
        if not checkpoints:
            warnings.warn(f"'{model_dir}' has no checkpoint_<N> folders; skipped", stacklevel=2)
            continue
        offset = _line_offset(lines, next(iter(checkpoints)))
        offsets[offset] += 1
        for epoch, path in checkpoints.items():
            state = _load_state(path)
            if layout is None:
                architecture_info, layout = _find_layout(src, state, meta, architecture, index_dict)
            keys = legacy.legacy_key_map(layout, state)
            try:
                vectors.append(layout.vectorize({new: state[old] for old, new in keys.items()}).numpy())
            except (KeyError, ValueError) as err:
                raise ValueError(f"'{path}': {err}") from err
            if not 0 <= epoch - offset < len(lines):
                raise ValueError(f"'{model_dir / 'result.json'}' has {len(lines)} lines; none belongs to checkpoint {epoch}")
            line = lines[epoch - offset]
            row = {"model_id": line.get("model_id", model_dir.name), "epoch": epoch}
            row.update({k: _scalar(v) for k, v in line.items() if k not in _RAY_KEYS and k != "model_id"})
            row.update({("config", k): _scalar(v) for k, v in (line.get("config") or {}).items()})
            rows.append(row)
    if layout is None:
        raise FileNotFoundError(f"'{src}' has no checkpoints")
    weights = np.stack(vectors).astype(np.float32)
    config_keys = list(dict.fromkeys(k[1] for r in rows for k in r if isinstance(k, tuple)))
    names = legacy.column_names(config_keys)
    result_keys = {k for r in rows for k in r if not isinstance(k, tuple)}
    names = {k: (f"config_{v}" if v in result_keys else v) for k, v in names.items()}
    samples = pd.DataFrame([{(names[k[1]] if isinstance(k, tuple) else k): v for k, v in r.items()} for r in rows])
    computed = ~np.isfinite(weights).all(axis=1)
    samples["diverged"] = computed | (samples["diverged"].fillna(False).astype(bool) if "diverged" in samples else False)
    hyper = meta.get("hyperparameters", [names[k] for k in config_keys if not _SEED_KEY.fullmatch(k.lower())])
    not_metrics = _NOT_METRICS | set(hyper) | set(names.values()) | {"epoch"}
    metrics = meta.get("metrics", [c for c in samples if c not in not_metrics and pd.api.types.is_numeric_dtype(samples[c])])
    task: dict[str, Any]
    task_from: str | None
    if isinstance(meta.get("task"), dict) and meta["task"].get("name") is not None:
        task, task_from = meta["task"], "weightspace.json"
    else:
        first_config = {k[1]: v for k, v in rows[0].items() if isinstance(k, tuple)}
        task_name, task_from = _task_from_folders(src, first_config)
        task = {"name": task_name}
    info = {
        "name": name or meta.get("name", src.resolve().name),
        "hyperparameters": [c for c in hyper if c in samples],
        "metrics": [c for c in metrics if c in samples],
        "architecture": architecture_info,
        "task": task,
        "provenance": {
            "format": "raytune",
            "source": str(src.resolve()),
            "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "columns": {k: names[k] for k in config_keys},
            "task_from": task_from,
            "result_line_offset": {"models_logging_from_epoch_1": offsets[1], "models_logging_initialisation": offsets[0]},
        },
    }
    return Zoo(weights, samples, layout, info)


def convert_raytune(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False, **kwargs: Any) -> Zoo:
    """`import_raytune` then `Zoo.save` to `out` (refuses an existing `out` unless `overwrite`, and anything but a zoo)."""
    check_replaceable(out, accept=("zoo",), overwrite=overwrite)  # refuse early, before reading the source
    zoo = import_raytune(src, **kwargs)
    zoo.save(out, overwrite=overwrite)
    return zoo


# ------------------------------------------------------------------- export
def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _folder_name(model_id: Any, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", str(model_id)) or "model"
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def export_raytune(zoo: Zoo | str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a zoo as a ray.tune experiment folder with 2021 checkpoint keys.

    Each model gets ``params.json`` (its hyperparameters), ``result.json``
    and ``checkpoint_<N:06d>/checkpoints``. ``result.json`` is written as the
    authors' Trainable logs it: line N is ``training_iteration`` N for epoch N,
    line 0 the initialisation, up to the zoo's last epoch in every model (lines
    without a checkpoint carry only bookkeeping). So the 2021 reader, which
    decides its line offset on one sample for the whole zoo, reads every
    checkpoint's own line whichever sample comes first.

    Raises:
        FileExistsError: `dst` exists and `overwrite` is False.
        OutputError: `dst` is not an export (nor an empty folder), another run holds its lock, or it cannot be written.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.load(zoo)
    dst = Path(dst)
    with atomic_directory(dst, overwrite=overwrite, accept=("raytune export",)) as tmp:
        _write_export(zoo, tmp)
    return dst


def _write_export(zoo: Zoo, root: Path) -> None:
    layout, samples = zoo.layout, zoo.samples.reset_index(drop=True)
    keys = legacy.legacy_keys(layout)
    hyper = zoo.hyperparameters
    others = [c for c in samples.columns if c not in hyper and c != "epoch"]
    meta = {"format": "weightspace-raytune-export", "name": zoo.name, "layout": layout.to_dict(),
            "architecture": zoo.info.get("architecture"), "task": zoo.info.get("task"),
            "hyperparameters": hyper, "metrics": zoo.metrics}
    (root / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    layout.save_index_dict(root / "index_dict.json")
    used: set[str] = set()
    last_epoch = int(samples["epoch"].max())
    for model_id, group in samples.groupby("model_id", sort=False):
        group = group.sort_values("epoch")
        folder = root / _folder_name(model_id, used)
        folder.mkdir()
        epochs = group["epoch"].astype(int).tolist()
        if len(set(epochs)) != len(epochs) or epochs[0] < 0:
            raise ValueError(f"model {model_id!r} has repeated or negative epochs {epochs}; ray.tune folders hold one checkpoint per epoch")
        first = {c: _json_value(group[c].iloc[0]) for c in hyper}
        (folder / "params.json").write_text(json.dumps(first, indent=1) + "\n")
        by_epoch = {int(e): i for e, i in zip(group["epoch"], group.index)}
        with open(folder / "result.json", "w") as f:
            # line N is training_iteration N = epoch N, from the initialisation to the zoo's last epoch
            for epoch in range(last_epoch + 1):
                line: dict[str, Any] = {"training_iteration": epoch, "epoch": epoch}
                i = by_epoch.get(epoch)
                if i is not None:
                    line.update({c: _json_value(samples.at[i, c]) for c in others})
                    line["config"] = {c: _json_value(samples.at[i, c]) for c in hyper}
                else:
                    line["config"] = first
                f.write(json.dumps(line) + "\n")
        for epoch, i in by_epoch.items():
            state = layout.devectorize(torch.from_numpy(np.array(zoo.weights[i])))
            ckpt = folder / f"checkpoint_{epoch:06d}"
            ckpt.mkdir()
            torch.save({keys[k]: v.clone() for k, v in state.items()}, ckpt / "checkpoints")
