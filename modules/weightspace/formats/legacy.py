"""The 2021 code's naming conventions, translated to weightspace's.

- layouts: the experiment ``index_dict.json`` (with the B4 fix) or the
  registered architecture with the same parameter count;
- parameter keys: ``module_list.<idx>.weight`` <-> layout layer names;
- config keys: ``model::nlin`` -> sample column ``activation`` and so on;
- labels: ``"<path>#_#epoch_<N>#_#..."`` (SimCLRDataset) and
  ``"model_id-<k>_step-<step>_path-<modeldir>"`` (GoogleDatasetSimCLR).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from weightspace.errors import InputError
from weightspace.io.json_files import read_json
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model

# parameter count -> registered architecture of the 2021 / Unterthiner zoos
ARCHITECTURE_BY_PARAMS = {100: "tetris_mlp", 2464: "cnn_s", 4970: "cnn_unterthiner"}

# 2021 config keys (after the last "::") that get the conventional column name
_RENAMES = {"nlin": "activation", "init_type": "init"}


def column_names(keys: Iterable[str]) -> dict[str, str]:
    """Map 2021/ray config keys to sample column names: drop the ``group::`` prefix, then rename.

    ``model::nlin`` -> ``activation``, ``model::init_type`` -> ``init``,
    ``optim::lr`` -> ``lr``, ``model::dropout`` -> ``dropout``. Keys that would
    collide keep their prefix with ``::`` replaced by ``_``.
    """
    keys = list(dict.fromkeys(keys))
    short = {k: _RENAMES.get(k.rsplit("::", 1)[-1], k.rsplit("::", 1)[-1]) for k in keys}
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    return {k: (short[k] if counts[short[k]] == 1 else k.replace("::", "_")) for k in keys}


# ------------------------------------------------------------------ layouts
def registered_layout(num_params: int) -> tuple[str, WeightLayout]:
    """The registered architecture for a 2021 / Unterthiner vector length, and its layout.

    Raises:
        ValueError: no zoo architecture has `num_params` parameters.
    """
    if num_params not in ARCHITECTURE_BY_PARAMS:
        raise ValueError(
            f"no registered zoo architecture has {num_params} parameters (known: {ARCHITECTURE_BY_PARAMS}); "
            "pass the experiment's index_dict.json (--index-dict) to describe the layout"
        )
    name = ARCHITECTURE_BY_PARAMS[num_params]
    return name, WeightLayout.from_module(create_zoo_model(name))


def read_index_dict(index_dict: Mapping | str | os.PathLike) -> WeightLayout:
    """A WeightLayout from a 2021 ``index_dict`` (dict or path), repairing non-tiling starts.

    The 41-44 experiments' index_dict has ``idx_start[2] = 2320`` where the
    blocks before it end at 2480 (bug B4). Starts that do not follow from the
    lengths are recomputed, with a warning.
    """
    given: Mapping
    if isinstance(index_dict, Mapping):
        given = index_dict
    else:
        given = read_json(index_dict)
        if not isinstance(given, Mapping):
            raise InputError(f"'{index_dict}' holds a JSON {type(given).__name__}, not a 2021 index_dict object")
    index_dict = {k: list(v) for k, v in given.items()}
    lengths = index_dict.get("idx_length", [])
    starts = [int(s) for s in np.concatenate([[0], np.cumsum(lengths)[:-1]])] if lengths else []
    if "idx_start" in index_dict and list(index_dict["idx_start"]) != starts:
        bad = [i for i, (a, b) in enumerate(zip(index_dict["idx_start"], starts)) if a != b]
        warnings.warn(
            f"index_dict idx_start {index_dict['idx_start']} does not follow from idx_length {lengths} at "
            f"layers {bad} (the 2021 41-44 index_dict bug B4 has idx_start[2] = 2320 instead of 2480); "
            f"using the cumulative starts {starts}",
            stacklevel=2,
        )
        index_dict["idx_start"] = starts
    return WeightLayout.from_index_dict(index_dict)


def _vector_key(layout: WeightLayout) -> list:
    return [(s.weight_shape, s.has_bias, s.offset) for s in layout.layers]


def resolve_layout(num_params: int, index_dict: Mapping | str | os.PathLike | None = None) -> tuple[dict, WeightLayout]:
    """The layout of legacy vectors of length `num_params` and an ``{name, kwargs}`` architecture.

    With an `index_dict` its layout wins; it takes the registered architecture's
    layer names when both describe the same vector.

    Raises:
        ValueError: the index_dict disagrees with `num_params`, or nothing is known for it.
    """
    if index_dict is None:
        name, layout = registered_layout(num_params)
        return {"name": name, "kwargs": {}}, layout
    layout = read_index_dict(index_dict)
    if layout.num_params != num_params:
        raise ValueError(f"the index_dict describes {layout.num_params} parameters but the vectors have {num_params}")
    if num_params in ARCHITECTURE_BY_PARAMS:
        name, registered = registered_layout(num_params)
        if _vector_key(registered) == _vector_key(layout):
            return {"name": name, "kwargs": {}}, registered
    return {"name": None, "kwargs": {}}, layout


# ------------------------------------------------------------ parameter keys
def legacy_key_map(layout: WeightLayout, keys: Iterable[str]) -> dict[str, str]:
    """Map a checkpoint's keys to layout parameter names.

    Keys may be the layout's own names (``conv1.weight``) or the 2021
    ``module_list.<idx>.weight`` names, matched through each layer's
    ``legacy_index``.

    Raises:
        KeyError: keys are missing or left over; both are named.
    """
    keys = set(keys)
    own = {f"{s.name}.{p}" for s in layout.layers for p in ("weight", "bias") if p == "weight" or s.has_bias}
    if keys == own:
        return {k: k for k in keys}
    mapping = {}
    for s in layout.layers:
        if s.legacy_index is None:
            raise KeyError(f"layer {s.name!r} has no 2021 module index, so 'module_list.*' keys cannot be matched")
        mapping[f"module_list.{s.legacy_index}.weight"] = f"{s.name}.weight"
        if s.has_bias:
            mapping[f"module_list.{s.legacy_index}.bias"] = f"{s.name}.bias"
    missing, extra = sorted(set(mapping) - keys), sorted(keys - set(mapping))
    if missing or extra:
        raise KeyError(f"checkpoint keys do not match the layout: missing {missing}, unexpected {extra} "
                       f"(expected {sorted(mapping)} or {sorted(own)})")
    return mapping


def legacy_keys(layout: WeightLayout) -> dict[str, str]:
    """Layout parameter name -> 2021 ``module_list.<idx>`` key (own names where an index is unknown)."""
    if any(s.legacy_index is None for s in layout.layers):
        return {k: k for s in layout.layers for k in (f"{s.name}.weight", f"{s.name}.bias")
                if k.endswith("weight") or s.has_bias}
    out = {}
    for s in layout.layers:
        out[f"{s.name}.weight"] = f"module_list.{s.legacy_index}.weight"
        if s.has_bias:
            out[f"{s.name}.bias"] = f"module_list.{s.legacy_index}.bias"
    return out


# -------------------------------------------------------------------- labels
_EPOCH = re.compile(r"^epoch_(-?\d+)$")
_GOOGLE = re.compile(r"^model_id-(\d+)_step-(-?\d+)_path-(.*)$", re.S)


def parse_simclr_label(label: str) -> tuple[str, int]:
    """``"<path>#_#epoch_<N>#_#layer_..."`` -> (model path, epoch)."""
    parts = str(label).split("#_#")
    epochs = [int(m.group(1)) for p in parts[1:] if (m := _EPOCH.match(p))]
    if len(epochs) != 1:
        raise ValueError(f"label {str(label)[:120]!r} has no single 'epoch_<N>' field; expected '<path>#_#epoch_<N>#_#...'")
    return parts[0], epochs[0]


def parse_google_label(label: str) -> tuple[int, int, str]:
    """``"model_id-<k>_step-<step>_path-<modeldir>"`` -> (k, step, modeldir)."""
    m = _GOOGLE.match(str(label))
    if m is None:
        raise ValueError(f"label {str(label)[:120]!r} is not 'model_id-<k>_step-<step>_path-<modeldir>'")
    return int(m.group(1)), int(m.group(2)), m.group(3)


def model_ids(paths: list[str]) -> list[str]:
    """Trial directory names as model ids; full paths where two directories share a name."""
    names = {p: Path(p).name or p for p in dict.fromkeys(paths)}
    by_name: dict[str, set] = {}
    for p, n in names.items():
        by_name.setdefault(n, set()).add(p)
    return [names[p] if len(by_name[names[p]]) == 1 else p for p in paths]
