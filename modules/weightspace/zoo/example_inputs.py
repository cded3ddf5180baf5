"""A zoo's own example inputs: unlabelled inputs of its networks, kept in the zoo as ``inputs.npy``.

Given at conversion (``--inputs FILE``, a ``.npy`` array or a ``.pt`` tensor), they stand in for a
built-in task's training inputs wherever a zoo's networks are run on its task's inputs: B_probe on task
inputs and the task queries of function-space targets. The file is kept as float32 ``.npy`` (read with
``allow_pickle=False``, so it never holds objects) and ``zoo.json`` records its SHA-256 under
``task.inputs``, checked whenever the zoo is opened and before the inputs are read.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from weightspace.errors import InputError

INPUTS_FILE = "inputs.npy"
MAX_BYTES = 2**28  # 256 MiB of float32 inputs: far more than the 64 queries a zoo's networks are run on
SUFFIXES = (".npy", ".pt", ".pth")


def read_inputs_file(path: str | os.PathLike) -> np.ndarray:
    """The example inputs in a user's file, ``(N, C, H, W)`` (or ``(N, features)``) float32.

    Raises:
        FileNotFoundError: no such file.
        InputError: another suffix, an unreadable file, pickled objects (nothing in them is run), not one
            tensor of at least 2 dimensions and one input, values that are not finite, or too large.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no inputs file '{path}'; give a .npy array or a .pt tensor of example inputs")
    if path.suffix not in SUFFIXES:
        raise InputError(f"--inputs '{path}' is a {path.suffix or 'suffix-less'} file; give a .npy array or a .pt "
                         "tensor (N, C, H, W) of example inputs")
    try:
        if path.suffix == ".npy":
            value = np.load(path, allow_pickle=False)
        else:
            value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # numpy and torch raise many types for corrupt files and pickled objects
        raise InputError(f"--inputs '{path}' is not a readable array of numbers ({type(err).__name__}: "
                         f"{(str(err).strip().splitlines() or [''])[0][:160]}); nothing in it was run. Save one "
                         "tensor: np.save(path, x) or torch.save(x, path)") from None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy() if value.layout == torch.strided else None
    if not isinstance(value, np.ndarray) or value.ndim < 2 or len(value) < 1 or value.dtype.kind not in "fiub":
        found = f"an array of shape {value.shape} and dtype {value.dtype}" if isinstance(value, np.ndarray) else \
            f"a {type(value).__name__}"
        raise InputError(f"--inputs '{path}' holds {found}; give one tensor of numbers (N, C, H, W): N example "
                         "inputs of the networks")
    inputs = np.ascontiguousarray(value, dtype=np.float32)
    if inputs.nbytes > MAX_BYTES:
        raise InputError(f"--inputs '{path}' holds {inputs.nbytes / 2**20:,.0f} MiB of inputs; a few thousand "
                         f"are plenty (the networks are run on 64): keep at most {MAX_BYTES // 2**20} MiB")
    if not np.isfinite(inputs).all():
        raise InputError(f"--inputs '{path}' holds values that are not finite; give finite inputs")
    return inputs


def inputs_bytes(inputs: np.ndarray) -> bytes:
    """The ``.npy`` bytes the zoo keeps."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(inputs, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def load_inputs(data: bytes, where: str) -> np.ndarray:
    """The inputs in a zoo's ``inputs.npy`` bytes (already checked against their digest).

    Raises:
        InputError: naming `where`: not a float32 array of at least 2 dimensions.
    """
    try:
        inputs = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{where} is not a .npy array of inputs ({err}); nothing in it was run. Convert the zoo "
                         "again with --inputs") from None
    if inputs.dtype != np.float32 or inputs.ndim < 2 or len(inputs) < 1:
        raise InputError(f"{where} holds an array of shape {inputs.shape} and dtype {inputs.dtype}, not float32 "
                         "inputs (N, C, H, W); convert the zoo again with --inputs")
    return inputs


def inputs_entry(info: Mapping) -> Mapping | None:
    """zoo.json's record of the zoo's own inputs (``task.inputs``), or None."""
    task = info.get("task")
    entry = task.get("inputs") if isinstance(task, Mapping) else None
    return entry if isinstance(entry, Mapping) else None
