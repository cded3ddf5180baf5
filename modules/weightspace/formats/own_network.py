"""The user's network and inputs, named once at conversion and kept in the zoo.

``--task NAME`` records a built-in task (its name and input shape) in ``zoo.json``; ``--inputs FILE``
keeps the user's unlabelled example inputs in the zoo (`weightspace.zoo.example_inputs`). ``--model
MODULE:CALLABLE`` (with ``--model-kwargs JSON``) names the code that builds the user's ``nn.Module``:
it is imported here, at conversion only; the first checkpoint must load into the module (strict) and
the module must run on the inputs; then it is stored as a ``torch.export`` program
(`weightspace.zoo.program`), checked to give the module's outputs, so that every later read runs the
network without importing anything. Each refusal is one line naming the option, file or row.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from weightspace.errors import InputError
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.example_inputs import INPUTS_FILE, inputs_bytes, read_inputs_file
from weightspace.zoo.functional import ProbeUnavailable, task_inputs
from weightspace.zoo.program import PROGRAM_FILE, export_program, load_program
from weightspace.zoo.store import digest
from weightspace.zoo.tasks import list_tasks, synthetic_options

CHECKED_INPUTS = 8  # inputs the user's module and its exported program are compared on
TOLERANCE = 1e-4  # largest difference between their outputs, relative to the outputs' scale


def load_callable(spec: str, *, search: Sequence[str | os.PathLike] = ()) -> Callable[..., Any]:
    """The callable ``MODULE:CALLABLE`` names, importing MODULE from `search` (the command line passes the
    current directory) or ``sys.path``.

    Raises:
        InputError: not MODULE:CALLABLE, MODULE cannot be imported, or it has no such callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not (sep and module_name and attr):
        raise InputError(f"--model {spec!r} is not MODULE:CALLABLE; name the function that returns your nn.Module, "
                         "e.g. --model my_models:make_cnn")
    added = [str(Path(p).resolve()) for p in search if str(Path(p).resolve()) not in sys.path]
    sys.path[:0] = added
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(f"--model {spec!r}: {module_name!r} cannot be imported ({err}); run from the folder that "
                         f"holds {module_name.replace('.', '/')}.py, or add its folder to PYTHONPATH") from None
    except Exception as err:  # the user's module failed while it was imported
        raise InputError(f"--model {spec!r}: importing {module_name!r} failed ({type(err).__name__}: "
                         f"{_first_line(err)})") from None
    finally:
        for path in added:
            sys.path.remove(path)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InputError(f"--model {spec!r}: {module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise InputError(f"--model {spec!r}: {attr!r} is a {type(target).__name__}, not a function or class")
    return target


def example_inputs(task: str | None, inputs: str | os.PathLike | None, *,
                   data_root: str | None = None) -> tuple[np.ndarray | None, tuple[int, ...] | None, dict]:
    """The inputs the network is checked on, their shape ``(C, H, W)`` and zoo.json's ``task`` entry (without
    the inputs' digest), from ``--task`` or ``--inputs``; (None, None, {}) when neither is given.

    A file-based task whose files are not here gives no inputs, only its shape.

    Raises:
        InputError: both options, an unknown task, or an inputs file `read_inputs_file` refuses.
    """
    if task is not None and inputs is not None:
        raise InputError("--task and --inputs both give the networks' inputs; give one: --task NAME for a built-in "
                         "task, --inputs FILE for your own")
    if inputs is not None:
        x = read_inputs_file(inputs)
        return x, tuple(x.shape[1:]), {"name": None, "input_shape": list(x.shape[1:]),
                                       "inputs": {"file": INPUTS_FILE, "source": str(Path(inputs).resolve()),
                                                  "count": len(x)}}
    if task is None:
        return None, None, {}
    if task not in list_tasks():
        raise InputError(f"--task {task!r} is not a built-in task ({', '.join(list_tasks())}); give your own "
                         "inputs with --inputs FILE instead")
    try:
        found = task_inputs({"task": {"name": task}}, root=data_root)
    except ProbeUnavailable:  # a file-based task whose files are elsewhere: its known shape, no inputs
        shape = tuple(synthetic_options(task, n_train=1, n_test=1)["shape"])
        return None, shape, {"name": task, "input_shape": list(shape)}
    shape = tuple(int(s) for s in found.shape[1:])
    return found, shape, {"name": task, "input_shape": list(shape)}


def check_inputs_fit(layout: WeightLayout, shape: tuple[int, ...], where: str) -> None:
    """Refuse inputs whose shape the first layer of `layout` cannot take (channels of a conv, width of a linear).

    Raises:
        InputError: naming `where` (the option and file).
    """
    first = layout.layers[0]
    if first.kind == "conv2d":
        fits, need = len(shape) == 3 and shape[0] == first.weight_shape[1], f"(C={first.weight_shape[1]}, H, W)"
    else:
        fits, need = int(np.prod(shape)) == first.weight_shape[1], f"{first.weight_shape[1]} values"
    if not fits:
        raise InputError(f"{where} holds inputs of shape {tuple(shape)}, but the networks' first layer "
                         f"{first.name!r} takes {need} per input; give inputs of the shape the networks were "
                         "trained on")


def check_architecture_runs(architecture: str, kwargs: Mapping, shape: tuple[int, ...], where: str) -> None:
    """Refuse inputs a registered architecture cannot run on (checked on the meta device, at no cost)."""
    try:
        with torch.device("meta"), torch.no_grad():
            create_zoo_model(architecture, **kwargs)(torch.empty(1, *shape))
    except (RuntimeError, ValueError) as err:
        raise InputError(f"{where}: architecture {architecture!r} cannot run on inputs of shape {tuple(shape)} "
                         f"({_first_line(err)})") from None


def export_user_network(factory: Callable[..., Any], kwargs: Mapping, spec: str, state: Mapping[str, torch.Tensor],
                        reference: str, inputs: np.ndarray | None, shape: tuple[int, ...]) -> tuple[bytes, int]:
    """Build the user's module, load the first checkpoint into it (strict), run it on the inputs and export it.

    Returns:
        (the program's bytes, the number of outputs per input).

    Raises:
        InputError: naming --model: the callable fails or returns no nn.Module, the checkpoint `reference`
            does not load into it, it does not run on the inputs or gives no (batch, classes) outputs, or its
            export does not give the same outputs.
    """
    where = f"--model {spec!r}" + (f" with --model-kwargs {dict(kwargs)}" if kwargs else "")
    try:
        module = factory(**kwargs)
    except Exception as err:  # the user's code
        raise InputError(f"{where}: calling it failed ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(module, nn.Module):
        raise InputError(f"{where} returned a {type(module).__name__}, not an nn.Module")
    try:
        module.load_state_dict(dict(state), strict=True)
    except (RuntimeError, KeyError, ValueError) as err:
        raise InputError(f"{where}: the checkpoint {reference} does not load into its module (strict): "
                         f"{' '.join(str(err).split())[:300]}") from None
    module.eval()
    if inputs is not None:
        x = torch.from_numpy(inputs[:CHECKED_INPUTS]).float()
    else:  # a task whose files are not here: uniform draws of its shape
        x = torch.rand((CHECKED_INPUTS, *shape), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            expected = module(x)
    except Exception as err:  # the user's code
        raise InputError(f"{where}: its module does not run on inputs of shape {tuple(shape)} "
                         f"({type(err).__name__}: {_first_line(err)})") from None
    if not (isinstance(expected, torch.Tensor) and expected.dim() == 2 and len(expected) == len(x)):
        found = tuple(expected.shape) if isinstance(expected, torch.Tensor) else type(expected).__name__
        raise InputError(f"{where}: its module gives {found} for {len(x)} inputs, not (batch, classes) logits")
    try:
        data = export_program(module, x)
        with torch.no_grad():
            got = load_program(data, "the exported network")(x)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    scale = float(expected.abs().max()) + 1.0
    if got.shape != expected.shape or float((got - expected).abs().max()) > TOLERANCE * scale:
        raise InputError(f"{where}: the exported program does not give the module's outputs (largest difference "
                         f"{float((got - expected).abs().max()):.3g}); does forward depend on state other than "
                         "the parameters?")
    return data, int(expected.shape[1])


def network_files(program: bytes | None, inputs: np.ndarray | None, task: dict, *, spec: str | None,
                  kwargs: Mapping, outputs: int | None) -> tuple[dict | None, dict, dict[str, bytes]]:
    """zoo.json's ``architecture.program`` entry (None without a program), its ``task`` entry, and the files the
    zoo keeps, each recorded with its SHA-256."""
    files: dict[str, bytes] = {}
    entry = None
    if program is not None:
        files[PROGRAM_FILE] = program
        entry = {"file": PROGRAM_FILE, "sha256": digest(program), "model": spec, "model_kwargs": dict(kwargs),
                 "input_shape": task.get("input_shape"), "outputs": outputs, "torch": torch.__version__}
    task = dict(task)
    if "inputs" in task and inputs is not None:
        files[INPUTS_FILE] = inputs_bytes(inputs)
        task["inputs"] = {**task["inputs"], "sha256": digest(files[INPUTS_FILE])}
    return entry, task, files


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]
