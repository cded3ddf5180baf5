"""One checkpoint file's state dict, and the weight layout it gives (`weightspace.formats.checkpoints`).

`read_state` reads a ``.pt`` / ``.pth`` / ``.ckpt`` file with ``torch.load(..., weights_only=True)``
(so a file can never run code) or a ``.safetensors`` file: a flat dict of parameter name -> tensor,
or one inside ``{"state_dict": ...}`` / ``{"model": ...}`` (a PyTorch Lightning checkpoint's without
the attribute that holds the network, ``model.``). A ``.safetensors`` file keeps no order, so its
layers are taken in natural name order (``fc2`` before ``fc10``) unless the file records one
(``weightspace.order``, written by `export_checkpoints`).

`layout_from_state` reads the chain of Linear / Conv2d layers a state dict's names and shapes
describe; `_vectorize` checks a state dict against a layout and flattens it into one row of weights.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open

from weightspace.errors import InputError
from weightspace.formats.tensor_checks import check_tensors
from weightspace.layout import LayerSpec, WeightLayout

WRAPPERS = ("state_dict", "model")  # {"state_dict": {...}} and {"model": {...}} hold the state dict
ORDER_KEY = "weightspace.order"  # safetensors metadata: the parameter names in layout order (JSON list)


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

