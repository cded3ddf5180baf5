"""Model outputs on fixed query inputs as features (B_probe): every zoo model run on the same K inputs.

A probing baseline: what a network computes on a handful of inputs says much of
what it is (accuracy, training time), and unlike the raw weights it is
invariant to every function-preserving neuron permutation, so it is a fair bar
for permutation-invariant encoders. Each weight row is devectorized through the
zoo's `WeightLayout` into the zoo's own registered architecture (or the network a converted zoo
stores as a program, `weightspace.zoo.program`) and run on K query inputs; the K x classes logits,
flattened query by query, are the features.

The queries are either data-free (uniform on [0, 1), the value range of every
task's images, or standard normal; drawn from `random_state`) or K images of
the task's training set without their labels (or of the zoo's own example inputs). No labels and no row of weights
are ever read to choose them: `ModelOutputs` learns nothing from the rows it is
fitted on, so a row's features do not depend on the other rows.

The whole population runs as one program: the stacked parameters ``(N, *shape)``
(model axis first) go through `weightspace.zoo.grouped.grouped_forward` with
the queries shared by all models, or through ``vmap(functional_call)`` on a
meta-device template for networks that layout does not know, chunk by chunk of
rows so that memory stays bounded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch.func import functional_call, vmap

from weightspace.downstream.features import _check_weights, read_chunks
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES
from weightspace.zoo.devices import resolve_device
from weightspace.zoo.functional import (  # noqa: F401
    DATA_FREE,
    HOW_NETWORK,
    ProbeUnavailable,
    build_template,
    draw_queries,
    stored_template,
    task_inputs,  # task_inputs: re-exported
)
from weightspace.zoo.grouped import grouped_forward, supports_grouped
from weightspace.zoo.population import activation_floats
from weightspace.zoo.program import StoredNetwork, program_entry
from weightspace.zoo.store import Zoo

# 64 queries: K x classes features (256 on tetris, 640 on ten classes) are as wide as the raw weights
# (100 to 4970 parameters), so B_probe meets B_W at a similar width; the cost grows linearly with K
DEFAULT_QUERIES = 64
OUTPUTS = ("logits", "probabilities")
ACTIVATION_FLOATS = 2**26  # one chunk of rows holds about this many activation floats (256 MiB)
VARIANTS = {"free": "B_probe (data-free)", "task": "B_probe (task inputs)"}  # variant -> label in notes
_GATHER_BYTES = 256 * 2**20  # rows of one activation gathered at once when a zoo's activations vary


@dataclass
class OutputsConfig:
    """Which B_probe feature sets the baselines compute, and how (`zoo_model_outputs`)."""

    variants: tuple[str, ...] = ("free", "task")  # "free": data-free queries, "task": task inputs; (): none
    n_queries: int = DEFAULT_QUERIES  # K, query inputs per model
    data_free: str = "uniform"  # distribution of the data-free queries: "uniform" on [0, 1) or "normal"
    output: str = "logits"  # "logits" or "probabilities"
    random_state: int = 0  # seeds the draw of the queries
    data_root: str | None = None  # where file-based tasks live; None: $WEIGHTSPACE_DATA
    device: str = "auto"  # where the models run; auto: cuda when available (cnn_s: ~7 ms a model on 2 CPU cores)
    trees: bool = False  # also probe with boosted trees (a minute or more per zoo on 2 CPU cores)

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown B_probe variants {bad}; choose from {sorted(VARIANTS)}")
        if int(self.n_queries) < 1:
            raise ValueError(f"n_queries must be positive, got {self.n_queries}")
        if self.data_free not in DATA_FREE:
            raise ValueError(f"data_free must be one of {DATA_FREE}, got {self.data_free!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")


class Unavailable(TransformerMixin, BaseEstimator):
    """A feature set that cannot be computed: `fit` raises `ProbeUnavailable` with `reason`, which
    `evaluate` writes into the note of the feature set's rows."""

    source = "weights"
    fit_on_rows = False

    def __init__(self, reason: str):
        self.reason = reason  # why the feature set is not available

    def fit(self, X, y=None) -> "Unavailable":
        raise ProbeUnavailable(self.reason)

    def transform(self, X):
        raise ProbeUnavailable(self.reason)


class ModelOutputs(TransformerMixin, BaseEstimator):
    """Each weight row's outputs on K fixed query inputs, flattened to ``(S, K * classes)``.

    Feature ``k * classes + c`` is class c's logit (or probability) on query k.
    Logits by default: a softmax saturates for confident models and forgets each
    query's logit offset, both of which carry how far a model has trained.

    `fit` builds the network on the meta device, checks that it matches `layout`
    and draws the queries (`queries_`, ``(K, C, H, W)``); it reads only the
    weights' shape. Every model runs in eval mode (dropout off), in float32.
    """

    source = "weights"
    fit_on_rows = False  # fit reads only the shape: evaluate passes all rows, no copy

    def __init__(self, layout: WeightLayout, architecture: str | None, arch_kwargs: Mapping | None = None, *,
                 input_shape: tuple[int, ...] | None = None, queries: str | np.ndarray = "uniform",
                 n_queries: int = DEFAULT_QUERIES, output: str = "logits", random_state: int | None = 0,
                 chunk_size: int | None = None, device: str = "cpu", program: Mapping | None = None,
                 folder: str | os.PathLike | None = None):
        self.layout = layout  # where each parameter lives in the flat vector
        self.architecture = architecture  # a name from list_zoo_models() (None: the program, else fit says none)
        self.arch_kwargs = arch_kwargs  # the architecture's arguments, activation included
        self.input_shape = input_shape  # (C, H, W) of one data-free query; None: the architecture's default
        self.queries = queries  # "uniform", "normal" or an (N, C, H, W) array of task inputs to draw from
        self.n_queries = n_queries  # K, queries per model
        self.output = output  # "logits" or "probabilities" (softmax over classes)
        self.random_state = random_state  # seeds the draw of the queries
        self.chunk_size = chunk_size  # rows per forward pass; None: about ACTIVATION_FLOATS activations
        self.device = device  # where the forward passes run: cpu, cuda[:i] or auto
        self.program = program  # zoo.json's architecture.program: the zoo's stored network, used instead
        self.folder = folder  # the zoo folder that holds the program

    def fit(self, X: np.ndarray, y=None) -> "ModelOutputs":
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if int(self.n_queries) < 1:
            raise ValueError(f"n_queries must be positive, got {self.n_queries}")
        _check_weights(X, self.layout.num_params)
        self.template_: torch.nn.Module
        if self.program is not None:
            self.template_, self.names_ = stored_template(self.layout, self.program, self.folder)
        else:
            self.template_, self.names_ = build_template(self.layout, self.architecture, dict(self.arch_kwargs or {}))
        network = "the zoo's stored network" if self.program is not None else f"architecture {self.architecture!r}"
        shape = self._input_shape() if isinstance(self.queries, str) else None
        self.queries_ = draw_queries(self.queries, int(self.n_queries), shape, self.random_state)  # (K, C, H, W)
        try:
            with torch.no_grad():
                out = self.template_(self.queries_[:1].to("meta"))  # (1, classes)
        except RuntimeError as err:
            raise ProbeUnavailable(f"{network} cannot take queries of shape {tuple(self.queries_.shape[1:])}: "
                                   f"{str(err).splitlines()[0]}") from None
        if out.dim() != 2:
            raise ProbeUnavailable(f"{network} gives outputs of shape {tuple(out.shape)}, not (batch, classes)")
        self.n_classes_ = int(out.shape[1])
        self.grouped_ = supports_grouped(self.template_)
        self.n_features_in_ = X.shape[1]
        return self

    def _input_shape(self) -> tuple[int, ...]:
        if self.input_shape is not None:
            return tuple(int(s) for s in self.input_shape)
        if isinstance(self.template_, StoredNetwork):
            return self.template_.input_shape
        if self.architecture not in DEFAULT_INPUT_SHAPES:
            raise ProbeUnavailable(f"no input shape is known for architecture {self.architecture!r}; pass input_shape")
        return DEFAULT_INPUT_SHAPES[self.architecture]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self)
        return np.array([f"query{k}.class{c}" for k in range(len(self.queries_)) for c in range(self.n_classes_)],
                        dtype=object)

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = _check_weights(X, self.n_features_in_)
        k = len(self.queries_)
        out = np.empty((X.shape[0], k * self.n_classes_), dtype=np.float32)
        floats = (self.template_.floats_per_input if isinstance(self.template_, StoredNetwork)
                  else activation_floats(self.template_, self.queries_.shape[1:]))
        rows_per_chunk = self.chunk_size or max(1, ACTIVATION_FLOATS // (k * floats))
        device = resolve_device(self.device)
        queries = self.queries_.to(device)
        self.template_.eval()
        with torch.no_grad():
            for rows, chunk in read_chunks(X, rows_per_chunk):
                flat = torch.as_tensor(chunk, dtype=torch.float32, device=device)  # (n, D)
                params = {self.names_[key]: p for key, p in self.layout.devectorize(flat).items()}
                logits = self._forward(params, queries)  # (n, K, classes)
                assert logits.shape == (flat.shape[0], k, self.n_classes_), tuple(logits.shape)
                if self.output == "probabilities":
                    logits = logits.softmax(-1)
                out[rows] = logits.reshape(flat.shape[0], -1).cpu().numpy()
        return out

    def _forward(self, params: dict[str, torch.Tensor], queries: torch.Tensor) -> torch.Tensor:
        """Outputs of the stacked models ``(N, K, classes)`` on the shared queries ``(K, C, H, W)``."""
        if self.grouped_:
            return grouped_forward(self.template_, params, queries, shared_input=True)
        one = lambda p, x: functional_call(self.template_, p, (x,))  # noqa: E731
        return vmap(one, in_dims=(0, None))(params, queries)


def zoo_model_outputs(zoo: Zoo, variant: str = "free", *, n_queries: int = DEFAULT_QUERIES,
                      data_free: str = "uniform", output: str = "logits", random_state: int | None = 0,
                      data_root: str | None = None, device: str = "auto") -> np.ndarray:
    """B_probe of every row of `zoo`: its model's outputs on K queries, ``(S, K * classes)`` float32.

    The architecture and its arguments come from ``zoo.info["architecture"]``, each
    row's activation from the samples' ``activation`` column (rows of one activation
    run together); or, where zoo.json records a stored program (a converted zoo's own
    network), that program runs every row. The queries are the same for every row.

    Args:
        variant: "free" (`data_free` draws of the task's input shape) or "task" (training
            inputs of ``zoo.info["task"]``, without their labels).
        data_root: where file-based tasks live; None: ``$WEIGHTSPACE_DATA``.
        device: where the forward passes run (`resolve_device`; auto: cuda when available).

    Raises:
        ProbeUnavailable: the zoo's models cannot be built or run, or the variant's queries cannot be had.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    arch = zoo.info.get("architecture")
    if not isinstance(arch, dict):
        raise ProbeUnavailable(f"zoo.json records no network for the weights; {HOW_NETWORK}")
    name, kwargs = arch.get("name"), dict(arch.get("kwargs") or {})
    if name is None and program_entry(zoo.info) is None:
        raise ProbeUnavailable(f"zoo.json records no network for the weights (no registered architecture, no "
                               f"stored program); {HOW_NETWORK}")
    recorded = zoo.info.get("task")
    task = recorded if isinstance(recorded, dict) else {}
    shape = tuple(task["input_shape"]) if task.get("input_shape") else None
    queries = data_free if variant == "free" else task_inputs(zoo.info, root=data_root, folder=zoo.path)
    program = program_entry(zoo.info)
    if program is not None:  # the zoo's own network: one program for every row
        extractor = ModelOutputs(zoo.layout, None, input_shape=shape, queries=queries, n_queries=n_queries,
                                 output=output, random_state=random_state, device=device, program=program,
                                 folder=zoo.path)
        return extractor.fit(zoo.weights).transform(zoo.weights)
    if "activation" in zoo.samples:
        activations = zoo.samples["activation"].astype(object).to_numpy()
    elif "activation" in kwargs:
        activations = np.full(zoo.num_samples, kwargs["activation"], dtype=object)
    else:
        raise ProbeUnavailable("the samples table has no activation column and zoo.json's architecture names "
                               f"none, so the networks' activation is unknown; {HOW_NETWORK}")
    if any(not isinstance(a, str) for a in activations):
        raise ProbeUnavailable("the activation of some samples is missing, so their networks cannot be built")
    out = None
    for act in dict.fromkeys(activations):
        extractor = ModelOutputs(zoo.layout, name, {**kwargs, "activation": act}, input_shape=shape, queries=queries,
                                 n_queries=n_queries, output=output, random_state=random_state, device=device)
        try:
            extractor.fit(zoo.weights)
        except ValueError as err:  # an unknown activation name, a network that refuses the queries
            raise ProbeUnavailable(str(err)) from None
        rows = np.flatnonzero(activations == act)
        if len(rows) == zoo.num_samples:
            return extractor.transform(zoo.weights)
        if out is None:
            out = np.empty((zoo.num_samples, len(extractor.get_feature_names_out())), dtype=np.float32)
        step = max(1, _GATHER_BYTES // (4 * zoo.layout.num_params))
        for i in range(0, len(rows), step):
            out[rows[i:i + step]] = extractor.transform(zoo.weights[rows[i:i + step]])  # (step, K * classes)
    if out is None:  # a zoo without rows
        return np.empty((0, 0), dtype=np.float32)
    return out
