"""A function-space reconstruction target: each network's logits on K fixed query inputs.

A weight decoder can only be asked to rebuild what the weights say; this target asks for what the
network *does*. Every weight row is devectorized into the zoo's registered architecture (or the network a
converted zoo stores as a program, `weightspace.zoo.program`) and run on
the same K queries (by default uniform on [0, 1) in the task's input shape, drawn from a seed: no task
data; or K of the task's training inputs, without their labels);
the ``(K, classes)`` logits, flattened query by query, are the target. A network's outputs do not
change under function-preserving neuron permutations, so an invariant encoder can learn them.

What the target may read: the weights and how each network is built, never a model property. The
architecture is what ``zoo.json`` records (`zoo_architecture`). Networks run as they were built: where the
zoo's models share one activation it is part of the architecture; where it varies (tetris_hyp, digits_hyp),
each row runs with its own, read from the samples' ``activation`` column (`row_networks`), as B_probe runs
them. Whoever holds a checkpoint holds the code that runs it. ``activation`` is the one column of the
samples a loss may read (`NETWORK_COLUMNS`); any other is refused. A learner whose loss read it has seen the
activation, so probes show the ``activation`` target as read, not predicted, for its embedding
(`Autoencoder.reads`).

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
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
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

PSEUDO_ACTIVATION = "tanh"  # what networks run with where an architecture (made before `per_row`) names none
NETWORK_COLUMNS = ("activation",)  # samples' columns that say how a network is built: the only ones a loss reads
CACHE_BYTES = 2 ** 30  # outputs kept per FunctionTarget, by the digest of the row's bytes (digits_hyp: 21 MB)


def zoo_architecture(zoo: Zoo) -> dict:
    """What a function-space target may know of `zoo`'s networks, from ``zoo.json`` alone.

    Returns:
        ``{"name", "kwargs", "input_shape", "activation", "task"}``: the registered architecture, its
        arguments (no activation, no dropout), the task's input shape ``(C, H, W)``, the activation
        every model of the zoo shares, or None where it varies between models, and the task as zoo.json
        records it (its inputs, never their labels, can be queries). Where the activation varies,
        ``"per_row": {"activation": [names]}`` lists the zoo's activations: each row runs with its own
        (`row_networks`). A zoo that stores its network as a program adds ``"program"`` (zoo.json's entry)
        and ``"zoo"`` (its folder).

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
    present = sorted(map(str, zoo.samples["activation"].dropna().unique())) if "activation" in zoo.samples else []
    if activation is None and not varied and len(present) == 1:
        activation = present[0]  # one value: the zoo declares it fixed
    per_row = {}
    if varied or (activation is None and len(present) > 1):
        if "activation" not in zoo.samples or zoo.samples["activation"].isna().any():
            raise ValueError(f"zoo {zoo.name!r}: the activation varies between models, but the samples table lacks "
                             "it for some rows, so their networks cannot be run as they were built; fill the "
                             "samples' activation column")
        per_row, activation = {"per_row": {"activation": present}}, None
    return {"name": arch["name"], "kwargs": kwargs, "input_shape": [int(s) for s in task["input_shape"]],
            "activation": activation, "task": task, **per_row, **files}


def network_variants(architecture: Mapping) -> tuple[str, ...]:
    """The activations a zoo's networks run with, one per code of `row_networks`; () where they share one.

    Raises:
        ValueError: ``architecture["per_row"]`` names a column other than `NETWORK_COLUMNS`: a model
            property (its accuracy, its epoch, a training hyperparameter) may not reach a training loss.
    """
    per_row = dict(architecture.get("per_row") or {})
    planted = sorted(set(per_row) - set(NETWORK_COLUMNS))
    if planted:
        raise ValueError(f"the architecture's per_row names {planted}: that is a property of each model, not how "
                         f"its network is built, and no model property may reach a training loss; only "
                         f"{list(NETWORK_COLUMNS)} may differ between rows")
    return tuple(str(a) for a in per_row.get("activation") or ())


def row_networks(variants: Sequence[str], properties: pd.DataFrame) -> torch.Tensor | None:
    """``(N,)`` int64: the index in `variants` of each row's activation, read from the samples' ``activation``
    column (the only column read); None where `variants` is empty (every network is built alike).

    Raises:
        ValueError: the column is missing, or holds an activation `variants` lacks.
    """
    if not variants:
        return None
    if "activation" not in properties:
        raise ValueError("the zoo's networks differ in activation, but these rows carry no activation column, so "
                         "they cannot be run as they were built")
    names = properties["activation"].astype(object).to_numpy()
    index = {v: i for i, v in enumerate(variants)}
    unknown = sorted({str(a) for a in names if a not in index})
    if unknown:
        raise ValueError(f"rows with activation {unknown}, which the encoder was not built for (it runs "
                         f"{list(variants)}); fill its architecture from this zoo")
    return torch.as_tensor(np.array([index[a] for a in names], dtype=np.int64))


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
        activation: overrides the architecture's activation (every row runs with it); None: each network runs
            as it was built (the zoo's shared activation, or each row's own where ``architecture["per_row"]``
            lists them; `PSEUDO_ACTIVATION` for an architecture that names neither).
        queries: "uniform" or "normal" draws in the task's input shape (data-free), or "task": K of the
            task's training inputs, without their labels (files of a file-based task under
            ``$WEIGHTSPACE_DATA`` or `data_root`).

    Where the networks differ (`variants`), every call passes each row's code (`row_networks`).

    Raises:
        ValueError: the architecture cannot be built, or its parameters differ from `layout`, or the
            task's inputs cannot be had, or its ``per_row`` names a model property (`network_variants`).
    """

    templates: list[nn.Module]  # the zoo's network per variant, on the meta device, held in __dict__ (see __init__)
    queries: torch.Tensor  # buffer (K, C, H, W)

    def __init__(self, layout: WeightLayout, architecture: Mapping, *, n_queries: int = 64, seed: int = 0,
                 activation: str | None = None, queries: str = "uniform", data_root: str | None = None):
        super().__init__()
        program = architecture.get("program")
        if program is not None and activation is not None:
            raise ValueError(f"activation={activation!r}: the zoo's stored network runs with its own activation; "
                             "pass activation=None (target_activation='zoo')")
        varied = network_variants(architecture)
        self.variants = () if activation is not None or program is not None else varied
        shared = activation or architecture.get("activation") or PSEUDO_ACTIVATION
        templates: list[nn.Module] = []
        try:
            if program is not None:
                stored, names = stored_template(layout, program, architecture.get("zoo"))
                templates.append(stored)
            for act in self.variants or ((shared,) if program is None else ()):
                kwargs = {**dict(architecture.get("kwargs") or {}), "activation": act}
                built, names = build_template(layout, architecture.get("name"), kwargs)
                templates.append(built)
        except ProbeUnavailable as err:
            raise ValueError(f"the function-space target cannot run this zoo's networks: {err}") from None
        self.__dict__["templates"] = templates  # on the meta device; kept out of parameters, buffers and .to()
        self.names = names  # layout key -> the templates' parameter name (one architecture, so the same in each)
        self.layout = layout
        self.grouped = supports_grouped(templates[0])
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
            self.n_outputs = int(templates[0](drawn[:1].to("meta")).shape[1]) * int(n_queries)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """`_run` without gradients, each row's outputs kept under the digest of its bytes (and its code)."""
        codes = self._codes(x, networks)
        x = x.float()
        cache = self.__dict__.setdefault("_cache", {})  # digest -> (K * classes,) on the CPU; not a buffer
        keys = [hashlib.blake2b(row.tobytes() + bytes([c]), digest_size=16).digest()
                for row, c in zip(x.cpu().numpy(), codes.tolist())]
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        found = {}
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a row once, however often it repeats
            rows = torch.as_tensor(np.array([first[k] for k in missing]), device=x.device)
            found = dict(zip(missing, self._run(x[rows], None if networks is None else networks[rows]).cpu()))
            room = max(0, CACHE_BYTES // (4 * self.n_outputs) - len(cache))
            cache.update(list(found.items())[:room])  # a full cache keeps what fits; the rest is returned only
        return torch.stack([found[k] if k in found else cache[k] for k in keys]).to(x.device)

    def _codes(self, x: torch.Tensor, networks: torch.Tensor | None) -> torch.Tensor:
        """``(B,)`` the variant of each row (0 where all networks are built alike)."""
        if not self.variants:
            return torch.zeros(x.shape[0], dtype=torch.long)
        if networks is None:
            raise ValueError(f"this zoo's networks differ in activation ({', '.join(self.variants)}): pass each "
                             "row's code (row_networks), so that every network runs as it was built")
        if networks.shape != (x.shape[0],):
            raise ValueError(f"networks must hold one code per row ({x.shape[0]}), got shape {tuple(networks.shape)}")
        return networks.long().cpu()

    def _run(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` float weights -> ``(B, K * classes)``: every network run on the queries, each with its
        variant (`networks`: ``(B,)`` codes, where the networks differ)."""
        codes = self._codes(x, networks)
        if not self.variants:
            return self._run_one(self.templates[0], x)
        order = torch.argsort(codes, stable=True)
        parts = [self._run_one(self.templates[int(c)], x[order[codes[order] == c].to(x.device)])
                 for c in torch.unique(codes)]  # rows of one variant at a time, in `order`
        return torch.cat(parts)[torch.argsort(order).to(x.device)]

    def _run_one(self, template: nn.Module, x: torch.Tensor) -> torch.Tensor:
        params = {self.names[k]: p for k, p in self.layout.devectorize(x).items()}  # (B, *shape) each
        if self.grouped:
            out = grouped_forward(template, params, self.queries, shared_input=True)
        else:
            one = lambda p, q: functional_call(template, p, (q,))  # noqa: E731
            out = vmap(one, in_dims=(0, None))(params, self.queries)
        return out.reshape(x.shape[0], -1)  # (B, K * classes), query by query
