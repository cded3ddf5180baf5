"""Running a zoo's networks functionally: the registered architecture (or the zoo's stored program) on the
meta device, mapped onto a zoo's layout, and the fixed query inputs its models are run on.

Shared by the B_probe baseline (`weightspace.downstream.model_outputs`) and the function-space
reconstruction target (`weightspace.representation.function_target`), which both run every model of a zoo
on the same queries with ``torch.func.functional_call`` over a meta-device template.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import torch

from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model, list_zoo_models
from weightspace.zoo.example_inputs import inputs_entry, load_inputs
from weightspace.zoo.program import PROGRAM_FILE, StoredNetwork, program_template
from weightspace.zoo.store import read_attachment
from weightspace.zoo.tasks import list_tasks, load_task, missing_task_files, task_options

DATA_FREE = ("uniform", "normal")  # uniform on [0, 1) (the images' value range) or standard normal
HOW_NETWORK = "convert the zoo with --model MODULE:CALLABLE (and --task NAME or --inputs FILE)"
HOW_INPUTS = "convert the zoo with --task NAME (a built-in task) or --inputs FILE (example inputs)"


class ProbeUnavailable(ValueError):
    """The zoo's models cannot be run (no registered architecture, no task inputs); the message says why."""


def build_template(layout: WeightLayout, architecture: str | None, arch_kwargs: dict
                   ) -> tuple[torch.nn.Module, dict[str, str]]:
    """The architecture on the meta device, in eval mode, and layout key -> template parameter name.

    Parameters are matched in order by shape, so a layout whose layers are named
    differently from the registered network (a converted zoo) still maps.

    Raises:
        ProbeUnavailable: no or an unknown architecture, bad arguments, or parameters that differ from `layout`.
    """
    if architecture is None:
        raise ProbeUnavailable(f"zoo.json records no network for the weights (no registered architecture, no "
                               f"stored program); {HOW_NETWORK}")
    if architecture not in list_zoo_models():
        raise ProbeUnavailable(f"architecture {architecture!r} is not registered (registered: {list_zoo_models()})")
    try:
        with torch.device("meta"):
            template = create_zoo_model(architecture, **{**arch_kwargs, "dropout": 0.0})
    except (TypeError, ValueError) as err:
        raise ProbeUnavailable(f"architecture {architecture!r} cannot be built with {arch_kwargs}: {err}") from None
    template.eval()
    theirs = [(name, tuple(p.shape)) for name, p in template.named_parameters()]
    flat = torch.empty(layout.num_params, device="meta")
    ours = [(key, tuple(p.shape)) for key, p in layout.devectorize(flat).items()]
    if [s for _, s in theirs] != [s for _, s in ours]:
        raise ProbeUnavailable(f"architecture {architecture!r} with {arch_kwargs} has parameters "
                               f"{[s for _, s in theirs]}, but the zoo's layout describes {[s for _, s in ours]}")
    return template, {key: name for (key, _), (name, _) in zip(ours, theirs)}


def stored_template(layout: WeightLayout, entry: Mapping, folder: str | os.PathLike | None
                    ) -> tuple[StoredNetwork, dict[str, str]]:
    """The zoo's stored program (zoo.json ``architecture.program``, in the zoo `folder`) on the meta device, and
    layout key -> its parameter name; the file is checked against its digest and contents before it is loaded.

    Raises:
        ZooFormatError: the file is missing, changed, or holds anything but a program of tensors and operators.
    """
    data = read_attachment(entry, folder)
    return program_template(layout, data, f"'{folder}/{PROGRAM_FILE}'" if folder else "the zoo's program")


def draw_queries(queries: str | np.ndarray, n: int, input_shape: tuple[int, ...] | None,
                 random_state: int | None) -> torch.Tensor:
    """K query inputs ``(n, C, H, W)`` float32: data-free draws, or n distinct rows of a task's inputs
    (all of them, in a drawn order, where the task has fewer than n).

    Raises:
        ValueError: an unknown distribution, a data-free draw without `input_shape`, or task inputs that
            are not a batch.
    """
    gen = torch.Generator()
    gen.manual_seed(0 if random_state is None else int(random_state))
    if isinstance(queries, str):
        if queries not in DATA_FREE:
            raise ValueError(f"queries must be one of {DATA_FREE} or an array of task inputs, got {queries!r}")
        if input_shape is None:
            raise ValueError(f"{queries!r} queries are drawn in the shape of one input; pass input_shape=(C, H, W)")
        draw = torch.rand if queries == "uniform" else torch.randn
        return draw((n, *input_shape), generator=gen)
    pool = torch.as_tensor(np.asarray(queries), dtype=torch.float32)
    if pool.dim() < 2 or len(pool) < 1:
        raise ValueError(f"task inputs must be a non-empty (N, C, H, W) array, got {tuple(pool.shape)}")
    return pool[torch.randperm(len(pool), generator=gen)[:n]].contiguous()


def task_inputs(info: Mapping, *, root: str | None = None, folder: str | os.PathLike | None = None) -> np.ndarray:
    """The training inputs ``(N, C, H, W)`` of the task a zoo was trained on (``info["task"]``), no labels, or the
    zoo's own example inputs (``task.inputs``, read from the zoo `folder` after their digest is checked).

    Raises:
        ProbeUnavailable: no or an unknown task, a file-based task whose files are not here, or own inputs of a
            zoo that is not in a folder.
        ZooFormatError: own inputs that are missing or changed.
    """
    entry = inputs_entry(info)
    if entry is not None:
        if folder is None:
            raise ProbeUnavailable("the zoo's own inputs are read from its folder; save the zoo first")
        return load_inputs(read_attachment(entry, folder), f"'{folder}/{entry.get('file')}'")
    task = info.get("task")
    name = task.get("name") if isinstance(task, dict) else task
    if name is None:
        raise ProbeUnavailable(f"zoo.json records no task, so there are no task inputs; {HOW_INPUTS}")
    if name not in list_tasks():
        raise ProbeUnavailable(f"zoo.json names task {name!r}, which is not one of {list_tasks()}, so its "
                               f"inputs cannot be loaded; {HOW_INPUTS}")
    options = {k: v for k, v in (task if isinstance(task, dict) else {}).items() if k in task_options(name)}
    try:
        missing = missing_task_files(name, root)
        if missing:
            raise ProbeUnavailable(f"task {name!r} reads files that are not here ({len(missing)} missing, e.g. "
                                   f"'{missing[0]}'); put them there (or point $WEIGHTSPACE_DATA at their folder) "
                                   "to probe with its inputs")
        return load_task(name, root=root, **options).x_train.numpy()
    except ProbeUnavailable:
        raise
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        raise ProbeUnavailable(f"the inputs of task {name!r} cannot be loaded offline: "
                               f"{str(err).splitlines()[0]}") from None
