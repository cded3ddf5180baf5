"""A folder of PyTorch checkpoints, one file per model and epoch, listed in a CSV.

The folder holds ``.pt`` / ``.pth`` / ``.ckpt`` files (read with ``torch.load(...,
weights_only=True)``, so a file can never run code) and ``.safetensors``
files, each a model's ``state_dict``: a flat dict of parameter name -> tensor,
or one inside ``{"state_dict": ...}`` / ``{"model": ...}`` (a PyTorch Lightning
checkpoint's without the attribute that holds the network, ``model.``). A CSV
(default ``checkpoints.csv``) maps each file (column ``file``, relative to the
folder) to its ``model_id`` (any text, kept as written; whole numbers where every
id is one) and ``epoch`` (a whole number) and any further properties (``test_acc``,
``lr``, ``activation``...). CSV rows are counted from 1 after the header. Without
a CSV, the folder's own layout gives the table (one folder per model, a file-name
pattern, metrics in a JSON beside each file: `weightspace.formats.checkpoint_layouts`).
Numeric columns that hold one value per model and vary between models are taken as
hyperparameters, with a note. The user's network and inputs (``--model``, ``--task``,
``--inputs``) are checked and kept by `weightspace.formats.own_network`.

The weight layout is, first found: a registered architecture given by name;
the layout recorded by `export_checkpoints` (``weightspace.json``); else the
chain of Linear / Conv2d layers that the first checkpoint's names and shapes
describe (``<layer>.weight`` then ``<layer>.bias``, layers in state-dict
order; a ``.safetensors`` file keeps no order, so its layers are taken in
natural name order, ``fc2`` before ``fc10``, unless the file records one).
Every file is checked against that layout.

`export_checkpoints` writes a zoo back as one ``.safetensors`` file per
checkpoint plus ``checkpoints.csv`` and ``weightspace.json``, so that
converting the export gives the zoo back bitwise (rows sorted by model_id,
then epoch).

The code lives in modules named after what they hold; this module reads the folder into a zoo
(`import_checkpoints`, `convert_checkpoints`) and keeps every public name importable from here:

- `weightspace.formats.checkpoint_states`: one file's state dict (`read_state`) and the layout it
  gives (`layout_from_state`);
- `weightspace.formats.checkpoint_tables`: the table of checkpoints (`read_table`, `check_table`),
  diverged rows, and which columns are hyperparameters or metrics;
- `weightspace.formats.checkpoint_layouts`: the table read from a folder without a CSV;
- `weightspace.formats.checkpoint_export`: `export_checkpoints`, `checkpoint_name` and the
  ``weightspace.json`` it writes.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from weightspace.errors import InputError
from weightspace.formats.checkpoint_export import META, _export_meta, checkpoint_name, export_checkpoints
from weightspace.formats.checkpoint_layouts import discover_table
from weightspace.formats.checkpoint_states import (
    ORDER_KEY,
    WRAPPERS,
    _vectorize,
    layout_from_state,
    read_state,
)
from weightspace.formats.checkpoint_tables import (
    CSV,
    MAX_WHOLE,
    NUMERIC_METRICS,
    REQUIRED,
    _diverged,
    _roles,
    check_table,
    read_table,
)
from weightspace.formats.own_network import (
    check_architecture_runs,
    check_inputs_fit,
    example_inputs,
    export_user_network,
    load_callable,
    network_files,
)
from weightspace.io.outputs import check_replaceable
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.store import Zoo

SUFFIXES = (".pt", ".pth", ".safetensors", ".ckpt")  # .ckpt: PyTorch Lightning
_SHOWN = 10  # bad files named in one message
MAX_SCANNED = 200_000  # files and folders looked at for unlisted checkpoints before the folder is refused


def _unlisted(src: Path, table: pd.DataFrame) -> list[str]:
    """Checkpoint files under `src` that no row of `table` names.

    Raises:
        InputError: more than `MAX_SCANNED` files and folders under `src` (it is not a checkpoint folder).
    """
    listed = {(src / f).resolve() for f in table["file"]}
    found, visited = [], 0
    for folder, dirs, files in os.walk(src):
        visited += len(dirs) + len(files)
        if visited > MAX_SCANNED:
            raise InputError(f"'{src}' holds more than {MAX_SCANNED:,} files and folders, far more than a checkpoint "
                             "folder; give the folder that holds the checkpoints and their CSV")
        found += [Path(folder, f) for f in files if Path(f).suffix in SUFFIXES]
    return sorted(p.relative_to(src).as_posix() for p in found if p.resolve() not in listed)


def _refuse_broad_source(src: Path) -> None:
    """Refuse the file system's root or the home folder as a checkpoint folder: both would be scanned whole."""
    resolved = src.resolve()
    broad = {Path(resolved.anchor): "the root of the file system", Path.home().resolve(): "your home folder"}
    if resolved in broad:
        raise InputError(f"'{src}' is {broad[resolved]}, not a checkpoint folder; give the folder that holds the "
                         f"checkpoint files and their CSV (e.g. {Path.home() / 'my_zoo'})")



# -------------------------------------------------------------- conversion
def import_checkpoints(src: str | os.PathLike, *, csv: str | os.PathLike | None = None, pattern: str | None = None,
                       architecture: str | None = None,
                       arch_kwargs: Mapping[str, Any] | None = None, skip_bad: bool = False, name: str | None = None,
                       hyperparameters: Sequence[str] | None = None, task: str | None = None,
                       inputs: str | os.PathLike | None = None, model: str | Callable[..., Any] | None = None,
                       model_kwargs: Mapping[str, Any] | None = None, data_root: str | None = None) -> Zoo:
    """Read a folder of checkpoint files and its CSV into an in-memory `Zoo`.

    Rows are sorted by model_id, then epoch; ``diverged`` is True where a
    row's weights are not all finite (or the CSV says so).

    Args:
        src: the folder.
        csv: the CSV listing the checkpoints (default: ``src/checkpoints.csv``; without one, the
            checkpoints are read from the folder: one folder per model, or `pattern`; see
            `weightspace.formats.checkpoint_layouts`).
        pattern: where there is no CSV, the checkpoint files' names, e.g. ``'{model_id}_ep{epoch}.pt'``.
        architecture: a registered architecture (`list_zoo_models`) giving the layout;
            default: the export's ``weightspace.json``, else the first checkpoint.
        arch_kwargs: the architecture's arguments, e.g. ``{"hidden": [8]}``.
        skip_bad: skip (with a warning naming them) the files that cannot be
            imported and those not in the CSV, instead of refusing the folder.
        name: zoo name (default: the export's, else the folder name).
        hyperparameters: property columns that are hyperparameters; default: the
            export's, else the non-numeric ones. The other numeric columns are metrics.
        task: a built-in task (`list_tasks`) the networks were trained on: zoo.json records
            its name and input shape, and its training inputs are the networks' task inputs.
        inputs: a ``.npy`` / ``.pt`` file of unlabelled example inputs ``(N, C, H, W)``, kept
            in the zoo (``inputs.npy``, its SHA-256 in zoo.json) instead of a task's.
        model: the user's network: ``"MODULE:CALLABLE"`` (imported from ``sys.path``) or the
            callable itself, returning an ``nn.Module`` built with `model_kwargs`. The first
            checkpoint must load into it (strict) and it must run on the task's or the given
            inputs (so one of them is needed); it is kept as a ``torch.export`` program
            (``network.pt2``), so that reading the zoo imports nothing.
        data_root: where a file-based `task` lives; None: ``$WEIGHTSPACE_DATA``.

    Raises:
        FileNotFoundError: no folder or no CSV.
        InputError: a bad CSV (see `read_table`); without `skip_bad`, any file that is
            unreadable, refused by weights_only, not a flat dict of tensors or of
            another layout, or not in the CSV (all named, with their rows); no usable file.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"no checkpoint folder '{src}'")
    _refuse_broad_source(src)
    meta = _export_meta(src)
    from_csv = csv is not None or (src / CSV).is_file()
    unplaced: list[str] = []
    if from_csv and pattern is not None:
        raise InputError(f"--pattern reads the checkpoints from the file names, but '{csv or src / CSV}' lists them; "
                         "give one (move the CSV away to use the pattern)")
    csv = Path(csv) if csv is not None else src / CSV
    if from_csv:
        table = read_table(csv, src, dtypes=meta.get("column_dtypes"))
    else:  # the folder's own layout: one folder per model, or the pattern
        found, unplaced = discover_table(src, pattern)
        table = check_table(found, f"the checkpoints found in '{src}'", src)
    if model is not None and architecture is not None:
        raise InputError("--model and --architecture both name the network; give one")
    if model_kwargs and model is None:
        raise InputError("--model-kwargs needs --model MODULE:CALLABLE")
    if model is not None and task is None and inputs is None:
        raise InputError("--model needs example inputs to check and export the network: add --task NAME (a "
                         "built-in task) or --inputs FILE (a .npy or .pt tensor of inputs)")
    spec = model if isinstance(model, str) or model is None else f"{model.__module__}:{model.__qualname__}"
    factory = load_callable(model) if isinstance(model, str) else model
    examples, input_shape, task_entry = example_inputs(task, inputs, data_root=data_root)
    arch_info: dict[str, Any]  # {"name": ..., "kwargs": {...}}
    layout: WeightLayout | None
    reference: str | None
    if architecture is not None:
        kwargs = dict(arch_kwargs or {})
        arch_info = {"name": architecture, "kwargs": kwargs}
        layout = WeightLayout.from_module(create_zoo_model(architecture, **kwargs))
        reference = f"architecture {architecture!r} {kwargs or ''}".rstrip()
    elif arch_kwargs:
        raise InputError("arch_kwargs (--arch-kwargs) needs an architecture (--architecture NAME)")
    elif "layout" in meta:
        layout, reference = WeightLayout.from_dict(meta["layout"]), f"'{src / META}'"
        arch_info = meta.get("architecture") or {"name": None, "kwargs": {}}
    else:
        arch_info, layout, reference = {"name": None, "kwargs": {}}, None, None
    # rows are read in CSV order (the first file gives the layout) into their sorted place
    position = np.empty(len(table), np.int64)
    position[np.lexsort((table["epoch"], table["model_id"]))] = np.arange(len(table))
    weights, usable = None, np.zeros(len(table), bool)
    problems: list[str] = []
    dtypes: set[str] = set()
    first: tuple[dict[str, torch.Tensor], str] | None = None  # the first usable checkpoint, and where it is
    for i, (row, file) in enumerate(table["file"].items()):
        try:
            state = read_state(src / file)
            candidate = layout or layout_from_state(state)
            vector = _vectorize(candidate, state, reference or f"'{file}'")
            layout, reference = candidate, reference or f"'{file}' (the first usable checkpoint)"
        except InputError as err:
            problems.append(f"'{file}'{f' ({csv.name} row {row})' if from_csv else ''}: {err}")
            continue
        if first is None:
            first = state, f"'{file}'" + (f" ({csv.name} row {row})" if from_csv else "")
        dtypes.update(str(v.dtype).removeprefix("torch.") for v in state.values())
        if weights is None:
            weights = np.empty((len(table), layout.num_params), np.float32)
        weights[position[i]], usable[position[i]] = vector, True
    if from_csv:
        problems += [f"'{f}' is in the folder but not in {csv.name}; add a row for it or move it out"
                     for f in _unlisted(src, table)]
    else:
        problems += unplaced
    if problems:
        more = f"\n  and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        listed = "\n  - ".join(problems[:_SHOWN]) + more
        if not skip_bad:
            raise InputError(f"'{src}': {len(problems)} checkpoint files cannot be imported, nothing was written:\n  - "
                             f"{listed}\nFix or remove them, or pass --skip-bad (skip_bad=True) to import the others")
        warnings.warn(f"'{src}': skipping {len(problems)} checkpoint files:\n  - {listed}", stacklevel=2)
    if weights is None or layout is None or first is None:  # the first usable checkpoint sets them
        raise InputError(f"'{src}': none of the {len(table)} checkpoints in {csv.name} could be imported")
    program, outputs = None, None
    if input_shape is not None:
        where = f"--inputs '{inputs}'" if inputs is not None else f"--task {task!r}"
        check_inputs_fit(layout, input_shape, where)
        if architecture is not None:
            check_architecture_runs(architecture, arch_info["kwargs"], input_shape, where)
    if factory is not None and input_shape is not None:
        program, outputs = export_user_network(factory, dict(model_kwargs or {}), str(spec), first[0], first[1],
                                               examples, input_shape)
    program_info, task_entry, files = network_files(program, examples, task_entry, spec=spec,
                                                    kwargs=dict(model_kwargs or {}), outputs=outputs)
    if program_info is not None:
        arch_info = {"name": None, "kwargs": {}, "program": program_info}
    weights = weights if usable.all() else weights[usable]
    samples = table.iloc[np.argsort(position)[usable]].drop(columns="file").reset_index(drop=True)
    samples["diverged"] = _diverged(samples, weights, f"'{csv}'")
    hyper, metrics = _roles(samples, meta, hyperparameters)
    info = {
        "name": name or meta.get("name") or src.resolve().name,
        "hyperparameters": hyper,
        "metrics": metrics,
        "architecture": arch_info,
        "task": task_entry or meta.get("task") or {"name": None},
        "provenance": {
            "format": "checkpoints",
            "source": str(src.resolve()),
            "csv": str(csv.resolve()) if from_csv else None,
            "pattern": pattern,
            "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "layout_from": reference,
            "source_dtypes": sorted(dtypes),
            "skipped": problems,
        },
    }
    return Zoo(weights, samples, layout, info, files=files)


def convert_checkpoints(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                        **kwargs: Any) -> Zoo:
    """`import_checkpoints` then `Zoo.save` to `out`; nothing is written when the import refuses.

    Raises:
        FileExistsError: `out` exists and `overwrite` is False.
        OutputError: `out` is not a zoo (nor an empty folder), or is locked, read-only or full.
        InputError, FileNotFoundError: see `import_checkpoints`.
    """
    check_replaceable(out, accept=("zoo",), overwrite=overwrite)  # refuse early, before reading the source
    zoo = import_checkpoints(src, **kwargs)
    zoo.save(out, overwrite=overwrite)
    return zoo


__all__ = [
    "CSV", "MAX_SCANNED", "MAX_WHOLE", "META", "NUMERIC_METRICS", "ORDER_KEY", "REQUIRED", "SUFFIXES", "WRAPPERS",
    "check_table", "checkpoint_name", "convert_checkpoints", "export_checkpoints", "import_checkpoints",
    "layout_from_state", "read_state", "read_table",
]
