"""A zoo written back as a checkpoint folder (`export_checkpoints`), and the record that export keeps.

`export_checkpoints` writes one ``.safetensors`` file per checkpoint (named by `checkpoint_name`,
its parameter order in the file's metadata) plus ``checkpoints.csv`` and ``weightspace.json`` (the
layout, column dtypes, hyperparameters and metrics), so that converting the export gives the zoo back
bitwise (rows sorted by model_id, then epoch). `_export_meta` reads that ``weightspace.json`` back.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from weightspace.errors import InputError
from weightspace.formats.checkpoint_states import ORDER_KEY
from weightspace.formats.checkpoint_tables import CSV
from weightspace.io.atomic import atomic_directory
from weightspace.io.json_files import read_json
from weightspace.io.outputs import CHECKPOINTS_EXPORT_FORMAT
from weightspace.zoo.store import Zoo

META = "weightspace.json"  # written by `export_checkpoints`: layout, column dtypes, hyperparameters, metrics


def checkpoint_name(model_id: int | str, epoch: int) -> str:
    """The file name `export_checkpoints` gives a checkpoint (a text id with its odd characters as ``_``)."""
    if isinstance(model_id, str):
        return f"{re.sub(r'[^A-Za-z0-9._-]', '_', model_id).lstrip('.') or 'model'}_epoch{epoch:03d}.safetensors"
    return f"model{model_id:05d}_epoch{epoch:03d}.safetensors"


def export_checkpoints(zoo: Zoo | str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a zoo as a checkpoint folder: one ``.safetensors`` file per row, ``checkpoints.csv``, ``weightspace.json``.

    Each file holds the row's tensors under the layout's parameter names and
    shapes (float32); the CSV gives its file, model_id, epoch and the samples
    table's other columns. `import_checkpoints` reads the folder back into the
    same zoo, bitwise, with rows sorted by model_id, then epoch.

    Raises:
        InputError: a model_id or epoch that is not a whole number, a repeated
            (model_id, epoch), or a samples column named ``file``.
        FileExistsError: `dst` exists and `overwrite` is False.
        OutputError: `dst` is not such an export (nor an empty folder), another run holds its lock, or it cannot be written.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.load(zoo)
    samples = zoo.samples.reset_index(drop=True)
    text_ids = samples["model_id"].map(lambda m: isinstance(m, str)).all()
    bad = [c for c in ("model_id", "epoch") if not (pd.api.types.is_integer_dtype(samples[c]) or c == "model_id"
                                                     and text_ids)]
    if bad:
        raise InputError(f"zoo {zoo.name!r}: {bad} must be whole numbers (model_id: or text) to name checkpoint "
                         f"files, but are {[str(samples[c].dtype) for c in bad]}; number them first, e.g. "
                         "samples['model_id'] = pd.factorize(samples['model_id'])[0], keeping the old ids in another "
                         "column")
    if "file" in samples:
        raise InputError(f"zoo {zoo.name!r} has a samples column 'file', which the CSV uses for the file names; "
                         "rename that column first")
    order = np.lexsort((samples["epoch"], samples["model_id"]))
    table = samples.iloc[order]
    if table.duplicated(["model_id", "epoch"]).any():
        raise InputError(f"zoo {zoo.name!r} has repeated (model_id, epoch) rows; each checkpoint must appear once")
    names = _unique([checkpoint_name(m, int(e)) for m, e in zip(table["model_id"], table["epoch"])])
    # a stored program and own inputs are files of the zoo, not of the export: convert with --model / --inputs again
    architecture, task = zoo.info.get("architecture"), zoo.info.get("task")
    architecture = {k: v for k, v in architecture.items() if k != "program"} if isinstance(architecture, dict) else None
    task = {k: v for k, v in task.items() if k != "inputs"} if isinstance(task, dict) else task
    meta = {"format": CHECKPOINTS_EXPORT_FORMAT, "name": zoo.name, "layout": zoo.layout.to_dict(),
            "architecture": architecture, "task": task,
            "hyperparameters": zoo.hyperparameters, "metrics": zoo.metrics,
            "column_dtypes": {c: str(t) for c, t in samples.dtypes.items()}}
    dst = Path(dst)
    with atomic_directory(dst, overwrite=overwrite, accept=("checkpoints export",)) as tmp:
        for row, file in zip(order, names):
            state = zoo.layout.devectorize(torch.from_numpy(np.array(zoo.weights[row], dtype=np.float32)))
            # devectorize gives views of one vector; safetensors stores each tensor on its own
            save_file({k: v.clone() for k, v in state.items()}, tmp / file, metadata={ORDER_KEY: json.dumps(list(state))})
        table.insert(0, "file", names)
        table.to_csv(tmp / CSV, index=False)
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return dst


def _unique(names: list[str]) -> list[str]:
    """`names`, one met before (text ids alike but for odd characters) with ``-2``, ``-3``... before its suffix."""
    used: set[str] = set()
    out = []
    for name in names:
        stem, k, unique = name.removesuffix(".safetensors"), 1, name
        while unique in used:
            k += 1
            unique = f"{stem}-{k}.safetensors"
        used.add(unique)
        out.append(unique)
    return out


def _export_meta(src: Path) -> dict:
    """The ``weightspace.json`` of a folder `export_checkpoints` wrote; {} for any other folder."""
    try:
        meta = read_json(src / META, "delete it to import without it")  # a bad one: one line naming file and key
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise InputError(f"'{src / META}' is not readable ({err}); delete it to import without it") from err
    return meta if isinstance(meta, dict) and meta.get("format") == CHECKPOINTS_EXPORT_FORMAT else {}
