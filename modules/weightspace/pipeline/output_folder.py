"""An experiment's output folder: claiming it, where its ray.tune run lives, and the record of what ran.

`mark_output_dir` claims the folder before anything is written (its manifest and experiment.json's
format marker), `tune_run` says where the ray.tune run lives (``<out>/tune`` or under ``--storage``),
and `write_experiment_json` records the resolved experiment beside its results.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from weightspace.io.atomic import write_json, write_manifest
from weightspace.io.json_files import NOT_WRITTEN_BY_US, read_json
from weightspace.io.outputs import EXPERIMENT_FORMAT, read_manifest
from weightspace.pipeline import storage as storage_
from weightspace.zoo.store import Zoo


def tune_run(out_dir: str | os.PathLike, storage: str | None = None) -> tuple[str, str]:
    """(storage path, run name) of an experiment's ray.tune run: ``<out_dir>/tune`` by default, else
    ``<storage>/<out_dir's name>`` (`storage`: a folder or a URI, see `weightspace.pipeline.storage`).
    ``storage.join(*tune_run(...))`` is the run's location."""
    out = Path(out_dir).resolve()
    return (str(out), "tune") if storage is None else (storage_.normalize(storage), out.name)


def write_experiment_json(record: Mapping, out_dir: str | os.PathLike, *, zoo: Zoo, source: str,
                          timings: Mapping[str, float], epochs: tuple[int, ...] | None = None,
                          tune: str | None = None) -> Path:
    """Record the resolved experiment (`Experiment.record`: name, learner, config, notes), the zoo it read
    (`epochs`: the checkpoints used; None: all), timings and where its ray.tune run lives, beside its results."""
    out = Path(out_dir)
    path = out / "experiment.json"
    previous = read_json(path, NOT_WRITTEN_BY_US + "; pass --overwrite to start over or choose another output "
                                                   "folder") if path.exists() else {}
    if not isinstance(previous, dict):
        previous = {}
    data = {
        "format": EXPERIMENT_FORMAT,  # marks the folder as an experiment's output (`weightspace.io.outputs`)
        "name": record["name"],
        "learner": record["learner"],
        "zoo": {"path": str(zoo.path), "source": source, "models": zoo.num_models, "samples": zoo.num_samples,
                "epochs_used": list(epochs) if epochs else zoo.epochs},
        "config": record["config"],
        "timings": {**previous.get("timings", {}), **dict(timings)},
        "notes": record["notes"],
    }
    if tune or "tune" in previous:
        data["tune"] = tune or previous["tune"]  # the ray.tune run: results, checkpoints, what --resume reads
    return write_json(path, data)


def mark_output_dir(out: str | os.PathLike, name: str, *, run_inside: bool = False) -> None:
    """Claim the output folder `out` before writing results: its manifest and experiment.json's format marker.

    Call it after `weightspace.io.outputs.check_replaceable` let `out` through (it then holds only what
    weightspace wrote), so that an interrupted run's folder is known as ours. `run_inside`: the ray.tune
    run will live in ``<out>/tune``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    if manifest is None:
        write_manifest(out, [p.name for p in out.iterdir()] + (["tune"] if run_inside else []))
    elif run_inside:
        write_manifest(out, manifest | {"tune"})
    if not (out / "experiment.json").exists():
        write_json(out / "experiment.json", {"format": EXPERIMENT_FORMAT, "name": name})
