"""Probe scores of a representation while it trains: an ``evaluate_fn`` for `representation.fit`.

`fit` and the ray.tune trainable call ``evaluate_fn(model, datasets)`` after
each evaluation; `probe_scores` builds one that embeds every split with the
model, fits the downstream probes on the training rows and reports their
scores, keyed as in 2021: ``<target>_<split>`` for the primary metric (R² or
accuracy), ``<target>_<metric>_<split>`` for the others (Kendall τ).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from weightspace.data.dataset import ZooDataset
from weightspace.downstream.evaluate import ProbeWarning, evaluate
from weightspace.downstream.features import Embedding
from weightspace.downstream.probes import ProbeConfig
from weightspace.downstream.targets import PRIMARY_METRIC
from weightspace.representation.learner import EvaluateFn

# the mean over targets of the linear probes' validation scores (R² or accuracy)
SELECT_METRIC = "probe_mean_val"
# Probes while training only pick a checkpoint; the experiment refits the full probes on the one it picks.
# Logistic probes of categorical targets on a wide embedding made most of a hyperparameter zoo's training time
# (tetris_hyp, neuron_set at width 1024: 3156 features x 4296 rows, 25 s of each evaluation's 29 s for
# activation and init on a short grid), so classes are scored by least squares on class indicators
# (`RidgeClassifierProbe`), whose alpha grid costs one decomposition.
SELECTION_PROBES: dict[str, Any] = dict(classifier="ridge")  # `ProbeConfig` fields


def probe_scores(targets: Sequence[str] | None = None, probes: Sequence[str] = ("linear",), *,
                 batch_size: int = 1000, config=None) -> EvaluateFn:
    """An ``evaluate_fn`` scoring downstream probes on the embedding.

    Args:
        targets: target names (see ``weightspace.downstream.targets``); None: the defaults.
        probes: probe names (``weightspace.downstream.probes``); keys of probes other than
            "linear" are prefixed with the probe name.
        batch_size: rows per forward pass of the encoder.
        config: the probes' `ProbeConfig`; None: the default one with `SELECTION_PROBES`' ridge classifier
            for categorical targets (a selection signal, not the reported score).

    Returns:
        ``evaluate_fn(model, datasets) -> dict``.
    """
    def evaluate_fn(model: nn.Module, datasets: Mapping[str, ZooDataset]) -> dict[str, float]:
        parts = [d for d in datasets.values() if len(d)]
        if not parts:
            return {}
        weights = np.concatenate([d.weights.numpy() for d in parts])
        embedding = Embedding(model, batch_size=batch_size, device=str(next(model.parameters()).device))
        return _scores(weights, embedding, parts, targets, probes, config)

    return evaluate_fn


def embedding_scores(z: np.ndarray, datasets: Mapping[str, ZooDataset], targets: Sequence[str] | None = None,
                     probes: Sequence[str] = ("linear",), *, config=None) -> dict[str, float]:
    """What `probe_scores`' ``evaluate_fn`` returns, from an embedding already made: `z` holds a row per
    sample of the non-empty `datasets`, in their order (as ``embed`` of their concatenated weights gives it)."""
    parts = [d for d in datasets.values() if len(d)]
    if len(z) != sum(len(d) for d in parts):
        raise ValueError(f"the embedding has {len(z)} rows for {sum(len(d) for d in parts)} samples")
    return _scores(z, np.asarray(z), parts, targets, probes, config) if parts else {}


def _scores(X, features, parts: list[ZooDataset], targets, probes, config) -> dict[str, float]:
    """Probe `features` (an array, or a transformer of `X`) of the rows of `parts` (their splits)."""
    samples = pd.concat([d.properties for d in parts], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)  # e.g. a target missing from this zoo: noted in the table
        table = evaluate(X, samples, feature_sets={"embedding": features}, probes=list(probes),
                         targets=targets, splits=samples["split"].to_numpy(),
                         hyperparameters=parts[0].hyperparameters,
                         config=config if config is not None else ProbeConfig(**SELECTION_PROBES))
    out, val_scores = {}, []
    for r in table.itertuples():
        prefix = "" if r.probe == "linear" else f"{r.probe}_"
        metric = "" if r.metric == PRIMARY_METRIC[r.task] else f"{r.metric}_"
        out[f"{prefix}{r.target}_{metric}{r.split}"] = float(r.value)
        if r.probe == "linear" and r.split == "val" and not metric and np.isfinite(r.value):
            val_scores.append(float(r.value))
    if val_scores:  # one number to pick a checkpoint by (Experiment.select): validation only, never test
        out[SELECT_METRIC] = float(np.mean(val_scores))
    return out
