"""A function-space reconstruction target: each network's logits on K fixed query inputs.

A weight decoder can only be asked to rebuild what the weights say; this target asks for what the
network *does*. Every weight row is devectorized into the zoo's registered architecture (or the network a
converted zoo stores as a program, `weightspace.zoo.program`) and run on
the same K queries (by default uniform on [0, 1) in the task's input shape, drawn from a seed: no task
data; or K of the task's training inputs, without their labels);
the ``(K, classes)`` logits, flattened query by query, are the target. A network's outputs do not
change under function-preserving neuron permutations, so an invariant encoder can learn them.

What the target may read: the weights and the architecture, never a model property. The architecture
is what ``zoo.json`` records (`zoo_architecture`), and the activation only where the whole zoo shares
one, so that it is part of the architecture. In a zoo whose activation varies between models it is a
hyperparameter, and so a probing target (tetris_hyp, digits_hyp predict it): running each model with
its recorded activation would let training read a label. There the networks run with one fixed
activation for all models (tanh by default): a "pseudo-function" of the weights that is still exactly
permutation-invariant, though not the function the model computed.

The target is computed on the fly from each batch of (permuted, un-erased) views: permutations leave
it unchanged, so it never has to be looked up by zoo row, and the learner sees weights only. Running every
network on the queries costs twice the encoder's step on a CNN zoo (bench/bench_function_target.py), and
a view that is not permuted is the zoo row itself, every epoch: so each row's outputs are kept under a
digest of its bytes (up to `CACHE_BYTES`), and a row met again is looked up, not run. A permuted view has other bytes and runs; the outputs are the same either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from weightspace.layout import WeightLayout
from weightspace.zoo.example_inputs import inputs_entry
from weightspace.zoo.functional import (
    HOW_INPUTS,
    HOW_NETWORK,
    ProbeUnavailable,
    build_template,
    draw_queries,
    stored_template,
    task_inputs,
)
from weightspace.zoo.grouped import grouped_forward, supports_grouped
from weightspace.zoo.program import program_entry
from weightspace.zoo.store import Zoo

PSEUDO_ACTIVATION = "tanh"  # what networks run with where the zoo's activation is a hyperparameter
CACHE_BYTES = 2 ** 30  # outputs kept per FunctionTarget, by the digest of the row's bytes (digits_hyp: 21 MB)


def zoo_architecture(zoo: Zoo) -> dict:
    """What a function-space target may know of `zoo`'s networks, from ``zoo.json`` alone.

    Returns:
        ``{"name", "kwargs", "input_shape", "activation", "task"}``: the registered architecture, its
        arguments (no activation, no dropout), the task's input shape ``(C, H, W)``, the activation
        every model of the zoo shares, or None where it varies between models (a hyperparameter), and
        the task as zoo.json records it (its inputs, never their labels, can be queries). A zoo that
        stores its network as a program adds ``"program"`` (zoo.json's entry) and ``"zoo"`` (its folder).

    Raises:
        ValueError: the zoo records no architecture or program, or no input shape.
    """
    arch = zoo.info.get("architecture")
    program = program_entry(zoo.info)
    if not isinstance(arch, dict) or not (arch.get("name") or program):
        raise ValueError(f"zoo {zoo.name!r} records no network in zoo.json, so its weights cannot be run on query "
                         f"inputs; use target='statistics' for it, or {HOW_NETWORK}")
    recorded = zoo.info.get("task")
    task = recorded if isinstance(recorded, dict) else {}
    if not task.get("input_shape"):
        raise ValueError(f"zoo {zoo.name!r} records no task input_shape in zoo.json, so no query inputs can be "
                         f"drawn; use target='statistics' for it, or {HOW_INPUTS}")
    files: dict[str, Any] = {}  # a zoo's own network and inputs: zoo.json's entries, and the folder holding them
    if program is not None or inputs_entry(zoo.info) is not None:
        if zoo.path is None:
            raise ValueError(f"zoo {zoo.name!r} keeps its network or inputs in files; save it first (Zoo.save)")
        files["zoo"] = str(Path(zoo.path).resolve())
    if program is not None:  # the program fixes the activation, and takes no arguments
        return {"name": None, "kwargs": {}, "input_shape": [int(s) for s in task["input_shape"]],
                "activation": None, "task": task, "program": dict(program), **files}
    kwargs = {k: v for k, v in dict(arch.get("kwargs") or {}).items() if k not in ("activation", "dropout")}
    activation = (arch.get("kwargs") or {}).get("activation")
    varied = "activation" in zoo.info.get("hyperparameters", [])
    if activation is None and not varied and "activation" in zoo.samples:
        shared = zoo.samples["activation"].dropna().unique()  # one value: the zoo declares it fixed
        activation = str(shared[0]) if len(shared) == 1 else None
    return {"name": arch["name"], "kwargs": kwargs, "input_shape": [int(s) for s in task["input_shape"]],
            "activation": None if varied else activation, "task": task, **files}


def with_zoo_architecture(config: Any, zoo: Zoo) -> Any:
    """An encoder config whose target runs the networks (``needs_architecture``) with its ``architecture``
    filled from `zoo` (`zoo_architecture`); any other config, or one already filled, is returned as it is."""
    if not getattr(config, "needs_architecture", False) or config.architecture is not None:
        return config
    return dataclasses.replace(config, architecture=zoo_architecture(zoo))


class FunctionTarget(nn.Module):
    """``(B, D)`` weights -> ``(B, K * classes)``: each network's logits on the K shared queries.

    Args:
        layout: the layout of the weight vectors.
        architecture: `zoo_architecture`'s dict (the registered name, its arguments, the input shape and
            the zoo's shared activation or None).
        n_queries: K.
        seed: draws the queries.
        activation: overrides the architecture's activation; None uses it, or `PSEUDO_ACTIVATION` where
            the zoo has none.
        queries: "uniform" or "normal" draws in the task's input shape (data-free), or "task": K of the
            task's training inputs, without their labels (files of a file-based task under
            ``$WEIGHTSPACE_DATA`` or `data_root`).

    Raises:
        ValueError: the architecture cannot be built, or its parameters differ from `layout`, or the
            task's inputs cannot be had.
    """

    template: nn.Module  # the zoo's network on the meta device, held in __dict__ (see __init__)
    queries: torch.Tensor  # buffer (K, C, H, W)

    def __init__(self, layout: WeightLayout, architecture: Mapping, *, n_queries: int = 64, seed: int = 0,
                 activation: str | None = None, queries: str = "uniform", data_root: str | None = None):
        super().__init__()
        program = architecture.get("program")
        if program is not None and activation is not None:
            raise ValueError(f"activation={activation!r}: the zoo's stored network runs with its own activation; "
                             "pass activation=None (target_activation='zoo')")
        self.activation = activation or architecture.get("activation") or PSEUDO_ACTIVATION
        kwargs = {**dict(architecture.get("kwargs") or {}), "activation": self.activation}
        template: nn.Module
        try:
            if program is not None:
                template, names = stored_template(layout, program, architecture.get("zoo"))
            else:
                template, names = build_template(layout, architecture.get("name"), kwargs)
        except ProbeUnavailable as err:
            raise ValueError(f"the function-space target cannot run this zoo's networks: {err}") from None
        self.__dict__["template"] = template  # on the meta device; kept out of parameters, buffers and .to()
        self.names = names  # layout key -> the template's parameter name
        self.layout = layout
        self.grouped = supports_grouped(template)
        source: str | np.ndarray = queries
        if queries == "task":
            if not architecture.get("task"):
                raise ValueError("the architecture records no task, so no task inputs can be queries; fill it "
                                 "again from the zoo (with_zoo_architecture) or use queries='uniform'")
            try:
                source = task_inputs({"task": architecture["task"]}, root=data_root, folder=architecture.get("zoo"))
            except ProbeUnavailable as err:
                raise ValueError(f"queries='task': {err}") from None
            if tuple(source.shape[1:]) != tuple(architecture["input_shape"]):
                raise ValueError(f"queries='task': the task's inputs are {tuple(source.shape[1:])}, but the networks "
                                 f"take {tuple(architecture['input_shape'])}; check zoo.json's task")
        drawn = draw_queries(source, int(n_queries), tuple(architecture["input_shape"]), seed)  # (K, C, H, W)
        self.register_buffer("queries", drawn, persistent=False)  # rebuilt from the seed (and task), not saved
        with torch.no_grad():
            self.n_outputs = int(template(drawn[:1].to("meta")).shape[1]) * int(n_queries)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        cache = self.__dict__.setdefault("_cache", {})  # digest -> (K * classes,) on the CPU; not a buffer
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x.cpu().numpy()]
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        found = {}
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a row once, however often it repeats
            rows = torch.as_tensor(np.array([first[k] for k in missing]), device=x.device)
            found = dict(zip(missing, self._run(x[rows]).cpu()))
            room = max(0, CACHE_BYTES // (4 * self.n_outputs) - len(cache))
            cache.update(list(found.items())[:room])  # a full cache keeps what fits; the rest is returned only
        return torch.stack([found[k] if k in found else cache[k] for k in keys]).to(x.device)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` float weights -> ``(B, K * classes)``: every network run on the queries."""
        params = {self.names[k]: p for k, p in self.layout.devectorize(x).items()}  # (B, *shape) each
        if self.grouped:
            out = grouped_forward(self.template, params, self.queries, shared_input=True)
        else:
            one = lambda p, q: functional_call(self.template, p, (q,))  # noqa: E731
            out = vmap(one, in_dims=(0, None))(params, self.queries)
        return out.reshape(x.shape[0], -1)  # (B, K * classes), query by query
