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
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from pandas._libs.parsers import STR_NA_VALUES
from safetensors import safe_open
from safetensors.torch import save_file

from weightspace.errors import InputError
from weightspace.formats.checkpoint_layouts import discover_table
from weightspace.formats.own_network import (
    check_architecture_runs,
    check_inputs_fit,
    example_inputs,
    export_user_network,
    load_callable,
    network_files,
)
from weightspace.formats.tensor_checks import check_tensors
from weightspace.io.atomic import atomic_directory
from weightspace.io.json_files import read_json
from weightspace.io.outputs import CHECKPOINTS_EXPORT_FORMAT, check_replaceable
from weightspace.layout import LayerSpec, WeightLayout
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.store import EXACT_FLOATS, Zoo

CSV = "checkpoints.csv"
META = "weightspace.json"  # written by `export_checkpoints`: layout, column dtypes, hyperparameters, metrics
SUFFIXES = (".pt", ".pth", ".safetensors", ".ckpt")  # .ckpt: PyTorch Lightning
REQUIRED = ("file", "model_id", "epoch")
WRAPPERS = ("state_dict", "model")  # {"state_dict": {...}} and {"model": {...}} hold the state dict
ORDER_KEY = "weightspace.order"  # safetensors metadata: the parameter names in layout order (JSON list)
_NOT_PROPERTIES = {"model_id", "epoch", "diverged", "seed"}  # neither hyperparameters nor metrics
_SHOWN = 10  # bad files named in one message
MAX_SCANNED = 200_000  # files and folders looked at for unlisted checkpoints before the folder is refused
MAX_WHOLE = 2**53  # largest model_id and epoch: every whole number up to it reads exactly from a CSV
NUMERIC_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_accuracy", "ggap")  # must be numbers


# ------------------------------------------------------------------ reading
def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in one checkpoint file, in its parameter order.

    Raises:
        InputError: the file is unreadable, holds pickled objects besides tensors
            (nothing in it is run), is not a flat dict of tensors, or holds a tensor that
            `check_tensors` refuses (sparse, meta, expanded beyond its storage, huge).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        raise InputError(
            f"it holds pickled Python objects besides tensors{f' (the global {found[1]})' if found else ''}, which "
            "torch.load(weights_only=True) refuses; nothing in it was run. If it is a whole model saved with "
            "torch.save(model, path), save its weights instead: torch.save(model.state_dict(), path)") from err
    except Exception as err:  # torch raises many types for corrupt or truncated files
        raise InputError(f"it is not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)}); "
                         "it may be truncated or corrupt") from err
    lightning = isinstance(state, Mapping) and ("pytorch-lightning_version" in state or path.suffix == ".ckpt")
    if isinstance(state, Mapping) and not _is_flat(state):
        state = next((state[k] for k in WRAPPERS if isinstance(state.get(k), Mapping)), state)
    if lightning and isinstance(state, Mapping) and state and _is_flat(state):
        state = _without_module_prefix(state)
    if not isinstance(state, Mapping) or not state or not _is_flat(state):
        raise InputError(f"it holds {_describe(state)}; expected a flat dict of parameter name -> tensor "
                         f"(model.state_dict()), or one inside {{'state_dict': ...}} or {{'model': ...}}")
    check_tensors(state)  # before any tensor is copied: an expanded view would be materialised
    return dict(state)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(path, framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            order = (f.metadata() or {}).get(ORDER_KEY)
    except Exception as err:  # safetensors raises its own error type, and OSError
        raise InputError(f"it is not a readable safetensors file ({type(err).__name__}: {_first_line(err)}); "
                         "it may be truncated or corrupt") from err
    if not state:
        raise InputError("it holds no tensors")
    check_tensors(state)
    try:
        names = json.loads(order) if order else None  # written by `export_checkpoints`
    except (ValueError, RecursionError):  # not JSON, or nested too deeply: the file keeps no usable order
        names = None
    if not (isinstance(names, list) and sorted(map(str, names)) == sorted(state)):
        # the file keeps no order: layers in natural name order, each weight before its bias
        names = sorted(state, key=lambda k: (_natural(_layer_name(k)), not k.endswith(".weight")))
    return {k: state[k] for k in names}


def _without_module_prefix(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """A Lightning module's state dict without the attribute that holds the network (``model.0.weight`` ->
    ``0.weight``), where every name starts with the same one."""
    heads = {key.split(".", 1)[0] for key in state}
    if len(heads) != 1 or any("." not in key for key in state):
        return state
    return {key.split(".", 1)[1]: value for key, value in state.items()}


def _is_flat(state: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


def _describe(state: Any) -> str:
    if not isinstance(state, Mapping):
        return f"a {type(state).__name__}"
    if not state:
        return "an empty dict"
    odd = [f"{k!r} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    return f"a dict whose entries {', '.join(odd[:4])}{' ...' if len(odd) > 4 else ''} are not tensors"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


def _layer_name(key: str) -> str:
    return key.rpartition(".")[0]


def _natural(name: str) -> list:
    """Sort key putting ``fc2`` before ``fc10``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def layout_from_state(state: Mapping[str, torch.Tensor]) -> WeightLayout:
    """The layout of a chain of Linear / Conv2d layers, read from a state dict's names and shapes.

    Layers come in the order their names first appear; each has ``<name>.weight``
    (2 dims: Linear, 4 dims: Conv2d) and optionally ``<name>.bias``. Each layer
    must take the previous one's outputs: as many input channels (conv), as many
    inputs (linear after linear), or a multiple of them (linear after a
    flattened conv map). Unlike `WeightLayout.from_module` no network is run, so
    skip connections cannot be detected; give the architecture for that check.

    Raises:
        InputError: a tensor that is not a Linear/Conv2d weight or bias, or layers that do not chain.
    """
    params: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        layer, _, kind = key.rpartition(".")
        if not layer or kind not in ("weight", "bias"):
            raise InputError(f"tensor {key!r} is not a '<layer>.weight' or '<layer>.bias'; only Linear and Conv2d "
                             "layers are supported (no buffers such as BatchNorm statistics)")
        params.setdefault(layer, {})[kind] = tensor
    layers: list[LayerSpec] = []
    offset, prev = 0, None
    for name, pair in params.items():
        weight, bias = pair.get("weight"), pair.get("bias")
        if weight is None or weight.dim() not in (2, 4):
            found = "no weight" if weight is None else f"a weight of {weight.dim()} dims"
            raise InputError(f"layer {name!r} has {found}; only Linear (2-dim weight) and Conv2d (4-dim weight) "
                             "layers are supported, no normalization layers")
        kind = "linear" if weight.dim() == 2 else "conv2d"
        shape = tuple(weight.shape)
        if bias is not None and tuple(bias.shape) != shape[:1]:
            raise InputError(f"layer {name!r}: bias of shape {tuple(bias.shape)} for {shape[0]} outputs")
        in_block = 1
        if prev is not None:
            flattened = kind == "linear" and prev.kind == "conv2d"
            if shape[1] % prev.n_out if flattened else shape[1] != prev.n_out:
                raise InputError(f"layer {name!r} takes {shape[1]} inputs but {prev.name!r} before it has {prev.n_out} "
                                 "outputs; the layers do not form a chain in this order")
            in_block = shape[1] // prev.n_out if flattened else 1
        prev = LayerSpec(name, kind, shape, bias is not None, offset, in_block)
        layers.append(prev)
        offset += prev.size
    return WeightLayout(tuple(layers))


def _parameter_shapes(layout: WeightLayout) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for spec in layout.layers:
        shapes[f"{spec.name}.weight"] = spec.weight_shape
        if spec.has_bias:
            shapes[f"{spec.name}.bias"] = (spec.n_out,)
    return shapes


def _vectorize(layout: WeightLayout, state: Mapping[str, torch.Tensor], reference: str) -> np.ndarray:
    """`state` as a float32 row of `layout`; InputError naming each difference from `reference`."""
    want = _parameter_shapes(layout)
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        diffs = [f"no {k!r}" for k in want if k not in have]
        diffs += [f"an extra {k!r}" for k in have if k not in want]
        diffs += [f"{k!r} of shape {have[k]} instead of {want[k]}" for k in want if k in have and have[k] != want[k]]
        raise InputError(f"it does not match the layout of {reference}: it has {', '.join(diffs[:6])}"
                         f"{' ...' if len(diffs) > 6 else ''}")
    odd = [f"{k!r} ({v.dtype})" for k, v in state.items() if not v.is_floating_point()]
    if odd:
        raise InputError(f"tensors {', '.join(odd[:4])} are not floating point")
    return layout.vectorize({k: v.detach().to(torch.float32) for k, v in state.items()}).numpy()


# ---------------------------------------------------------------- the table
def read_table(path: str | os.PathLike, src: str | os.PathLike, *, dtypes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read and check the CSV that lists the checkpoints; its index is the row number (from 1).

    Args:
        path: the CSV file.
        src: the folder its ``file`` column is relative to.
        dtypes: column dtypes (those `export_checkpoints` recorded), model_id and epoch excepted.

    Raises:
        FileNotFoundError: no CSV.
        InputError: a missing column, a row without a file, a file outside `src` or not there,
            a model_id or epoch that is not a whole number (of at most 2**53), an accuracy or loss
            that is not a number, or two rows for one checkpoint or one file.
    """
    path, src = Path(path), Path(src)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV '{path}'; a checkpoint folder needs one with the columns {list(REQUIRED)} "
                                "and any properties (test_acc, lr, ...); name another with --csv (csv= in Python)")
    id_dtype = (dtypes or {}).get("model_id")
    dtypes = {k: v for k, v in (dtypes or {}).items() if k not in REQUIRED}
    try:  # model ids as text, as written (no cell of them read as NaN but an empty one); the rest as pandas reads
        header = pd.read_csv(path, nrows=0).columns
        table = pd.read_csv(path, dtype={**dtypes, "file": str, "model_id": str}, keep_default_na=False,
                            na_values={c: sorted(STR_NA_VALUES) for c in header if c != "model_id"}, **EXACT_FLOATS)
    except (ValueError, TypeError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"'{path}' could not be read as CSV ({type(err).__name__}: {_first_line(err)})") from err
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"'{path}' lacks the columns {missing}; it has {list(table.columns)[:20]}. It needs "
                         f"{list(REQUIRED)}: each checkpoint file (relative to '{src}') with its model and epoch")
    return check_table(table, f"'{path}'", src, id_dtype)


def check_table(table: pd.DataFrame, where: str, src: Path, id_dtype: str | None = None) -> pd.DataFrame:
    """Check a table of checkpoints (a CSV's, or one read from the folder) as `read_table` says; its index becomes
    the row number (from 1) and model_id and epoch their types.

    Raises:
        InputError: see `read_table`; `where` names the table.
    """
    table.index = pd.RangeIndex(1, len(table) + 1)
    _refuse_rows(table["file"].isna() | (table["file"] == ""), where, "have no file",
                 "give each row its checkpoint file")
    table["model_id"] = _model_ids(table["model_id"], where, id_dtype)
    for column in ("epoch",):
        values = pd.to_numeric(table[column], errors="coerce")
        whole = values.notna() & np.isfinite(values) & (values == values.round()) & (values.abs() <= MAX_WHOLE)
        _refuse_rows(~whole, where, f"hold {column} values that are not whole numbers "
                     f"({table.loc[~whole, column].head(3).tolist()})",
                     f"write each {column} as a whole number, at most 2**53 in size")
        table[column] = values.astype(np.int64)
    negative = table["epoch"] < 0
    _refuse_rows(negative, where, f"hold negative epochs ({table.loc[negative, 'epoch'].head(3).tolist()})",
                 "epochs count from 0, the initialisation")
    for column in [c for c in NUMERIC_METRICS if c in table]:
        values = pd.to_numeric(table[column], errors="coerce")
        number = values.notna() | table[column].isna()
        _refuse_rows(~number, where, f"hold {column} values that are not numbers "
                     f"({table.loc[~number, column].head(3).tolist()})", f"write each {column} as a number or leave "
                     "it empty")
        # a loss may be infinite (a diverged model); an accuracy, or 1e400 read as one, never is
        infinite = np.isinf(values) & ((values < 0) | (not column.endswith("_loss")))
        _refuse_rows(infinite, where, f"hold infinite {column} values ({table.loc[infinite, column].head(3).tolist()})",
                     f"write each {column} as a finite number or leave it empty")
    outside = table["file"].map(lambda f: Path(f).is_absolute() or ".." in Path(f).parts)
    _refuse_rows(outside, where, f"name files outside '{src}' ({table.loc[outside, 'file'].head(3).tolist()})",
                 "give paths relative to the folder, inside it")
    gone = ~table["file"].map(lambda f: (src / f).is_file())
    _refuse_rows(gone, where, f"name files that are not in '{src}' ({table.loc[gone, 'file'].head(3).tolist()})",
                 "fix the file column or remove those rows")
    for key in (["model_id", "epoch"], ["file"]):
        twice = table.duplicated(key, keep=False)
        first = ", ".join(f"{k} {table.loc[twice, k].iloc[0]}" for k in key) if twice.any() else ""
        _refuse_rows(twice, where, f"repeat a {' and '.join(key)} (the first: {first})",
                     "each checkpoint must appear once; remove or correct the repeated rows")
    return table


def _model_ids(ids: pd.Series, where: str, recorded: str | None) -> pd.Series:
    """The model_id column: whole numbers (int64) where every id is one written plainly (``7``, not ``007``,
    ``7.0`` or beyond 15 digits), else the ids as text, as written; `recorded` (the dtype an export wrote)
    decides where given.

    Raises:
        InputError: an empty cell, or, where the export recorded whole numbers, an id that is not one.
    """
    _refuse_rows(ids == "", where, "have no model_id", "give each row the id of its model (any text, e.g. run000)")
    if recorded is not None and not _integer_dtype(recorded):
        return ids
    whole = ids.str.fullmatch(r"-?(0|[1-9][0-9]{0,14})").astype(bool)
    if whole.all():
        return ids.astype(np.int64)
    if recorded is not None:
        _refuse_rows(~whole, where, f"hold model_id values that are not whole numbers ({ids[~whole].head(3).tolist()})",
                     "write each model_id as a whole number, as the export recorded")
    return ids


def _integer_dtype(name: str) -> bool:
    try:
        return pd.api.types.is_integer_dtype(pd.api.types.pandas_dtype(name))
    except TypeError:
        return False


def _refuse_rows(bad: pd.Series, where: str, what: str, fix: str) -> None:
    if bad.any():
        rows = list(bad.index[bad])
        raise InputError(f"{where}: rows {rows[:8]}{' ...' if len(rows) > 8 else ''} {what}; {fix}")


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


def _diverged(samples: pd.DataFrame, weights: np.ndarray, where: str) -> np.ndarray:
    """Non-finite weights, or marked diverged in the table."""
    computed = ~np.isfinite(weights).all(axis=1)
    if "diverged" not in samples:
        return computed
    given = samples["diverged"]
    odd = ~(given.isna() | given.isin([True, False]))
    if odd.any():
        raise InputError(f"{where}: column diverged must hold True or False (or nothing), got "
                         f"{given[odd].head(3).tolist()}")
    return computed | given.fillna(False).to_numpy(bool)


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


def _export_meta(src: Path) -> dict:
    """The ``weightspace.json`` of a folder `export_checkpoints` wrote; {} for any other folder."""
    try:
        meta = read_json(src / META, "delete it to import without it")  # a bad one: one line naming file and key
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise InputError(f"'{src / META}' is not readable ({err}); delete it to import without it") from err
    return meta if isinstance(meta, dict) and meta.get("format") == CHECKPOINTS_EXPORT_FORMAT else {}


def _roles(samples: pd.DataFrame, meta: dict, hyperparameters: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(hyperparameter columns, metric columns) of the samples table."""
    properties = [c for c in samples.columns if c not in _NOT_PROPERTIES]
    if hyperparameters is None and "hyperparameters" in meta:
        return [c for c in meta["hyperparameters"] if c in samples], [c for c in meta.get("metrics", []) if c in samples]
    if hyperparameters is None:
        per_model = _set_per_model(samples, properties)
        if per_model:
            warnings.warn(f"columns {per_model} vary between models but not between a model's checkpoints: taken as "
                          "hyperparameters (choose them with --hyperparameters)", stacklevel=3)
        hyperparameters = [c for c in properties if not pd.api.types.is_numeric_dtype(samples[c]) or c in per_model]
    unknown = [c for c in hyperparameters if c not in samples]
    if unknown:
        raise InputError(f"hyperparameters {unknown} are not columns of the CSV; it has {properties}")
    metrics = [c for c in properties if c not in hyperparameters and pd.api.types.is_numeric_dtype(samples[c])]
    return list(hyperparameters), metrics


def _set_per_model(samples: pd.DataFrame, properties: Sequence[str]) -> list[str]:
    """The numeric columns (no accuracy or loss) that hold one value per model and vary between models, in a zoo
    whose models have several checkpoints: settings of a model's training, not measurements of a checkpoint."""
    models = samples.groupby("model_id", sort=False)
    if len(models) < 2 or not (models.size() > 1).any():
        return []
    found = []
    for column in properties:
        values = samples[column]
        if column in NUMERIC_METRICS or not pd.api.types.is_numeric_dtype(values) or \
                pd.api.types.is_bool_dtype(values) or values.isna().any():
            continue
        if (models[column].nunique() == 1).all() and values.nunique() > 1:
            found.append(column)
    return found


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


# ------------------------------------------------------------------- export
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
