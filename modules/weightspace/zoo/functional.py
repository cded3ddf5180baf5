"""Running a zoo's networks functionally: the registered architecture on the meta device, mapped onto a
zoo's layout, and the fixed query inputs its models are run on.

Shared by the B_probe baseline (`weightspace.downstream.model_outputs`) and the function-space
reconstruction target (`weightspace.representation.function_target`), which both run every model of a zoo
on the same queries with ``torch.func.functional_call`` over a meta-device template.
"""

from __future__ import annotations

import numpy as np
import torch

from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model, list_zoo_models

DATA_FREE = ("uniform", "normal")  # uniform on [0, 1) (the images' value range) or standard normal


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
        raise ProbeUnavailable("the zoo records no registered architecture (zoo.json 'architecture' has no name), "
                               "so its weights cannot be built into a network")
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


def draw_queries(queries: str | np.ndarray, n: int, input_shape: tuple[int, ...] | None,
                 random_state: int | None) -> torch.Tensor:
    """K query inputs ``(n, C, H, W)`` float32: data-free draws, or n distinct rows of a task's inputs
    (all of them, in a drawn order, where the task has fewer than n).

    Raises:
        ValueError: an unknown distribution, or task inputs that are not a batch.
    """
    gen = torch.Generator()
    gen.manual_seed(0 if random_state is None else int(random_state))
    if isinstance(queries, str):
        if queries not in DATA_FREE:
            raise ValueError(f"queries must be one of {DATA_FREE} or an array of task inputs, got {queries!r}")
        draw = torch.rand if queries == "uniform" else torch.randn
        return draw((n, *input_shape), generator=gen)
    pool = torch.as_tensor(np.asarray(queries), dtype=torch.float32)
    if pool.dim() < 2 or len(pool) < 1:
        raise ValueError(f"task inputs must be a non-empty (N, C, H, W) array, got {tuple(pool.shape)}")
    return pool[torch.randperm(len(pool), generator=gen)[:n]].contiguous()
