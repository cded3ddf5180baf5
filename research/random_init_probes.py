"""Shared scaffolding of the research probes that judge `neuron_set` variants at random initialisation
(`pooling_probe.py`, `code_probe.py`): the folder's encoder per seed, the inputs of its fixed code,
validation scores per variant, the summary table. Nothing here reads the test split's scores."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from weightspace.data.dataset import ZooDataset
from weightspace.representation import Learner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))  # the quality benchmark's helpers
from representation_quality import embedding_scores, encoders_of  # noqa: E402


def random_init_encoders(zoo: str, data: dict[str, ZooDataset], seeds: int) -> Iterator[tuple[int, object]]:
    """(seed, the zoo folder's `neuron_set` at that seed's random initialisation, input scale fitted on
    the training split), in eval mode."""
    encoder = next(e for e in encoders_of(zoo) if e.name == "neuron_set")
    for seed in range(seeds):
        config = copy.deepcopy(encoder.config)
        config.train = replace(config.train, seed=seed, device="cpu")
        model = Learner(config, data["train"].layout).model.eval()
        model.fit_input_scale(data["train"].weights)
        yield seed, model


def standard_tokens(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Each hidden layer's tokens ``(B, n, token_dim)`` of a `NeuronSetEncoder`, standardised by its fitted scale."""
    return [(t(x) - getattr(model, f"shift_{i}")) / getattr(model, f"scale_{i}") for i, t in enumerate(model.tokens)]


def code_inputs(model, x: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` -> ``(B, num_targets + pooled tokens)``: what the encoder's fixed code hinges, the standardised
    statistics (`reconstruction_target`) and then each hidden layer's tokens pooled by mean, max and min."""
    pooled = [torch.cat([t.mean(1), t.amax(1), t.amin(1)], dim=-1) for t in standard_tokens(model, x)]
    return torch.cat([model.reconstruction_target(x)] + pooled, dim=1)


def fixed_code(model, x: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` -> ``(B, code_dim)``: the untrained end of the encoder's embedding, the standardised statistics
    and the hinges relu(v - knot) of `code_inputs` at the encoder's knots."""
    inputs = code_inputs(model, x)
    return torch.cat([inputs[:, :model.num_targets], torch.relu(inputs.unsqueeze(1) - model.knots).flatten(1)], dim=1)


def score_variant(name: str, z: np.ndarray, seed: int, data: dict[str, ZooDataset], targets: list[str] | None,
                  rows: list[dict]) -> None:
    """The linear probes' validation scores of embedding `z` ``(S, F)``: appended to `rows` and printed."""
    table = embedding_scores(name, z, data, targets)
    table = table[table.split == "val"]
    rows += [{"variant": name, "width": z.shape[1], "seed": seed, "target": r.target, "val": r.value}
             for r in table.itertuples()]
    print(f"seed {seed}, {name} ({z.shape[1]} numbers): "
          + ", ".join(f"{r.target} {r.value:.3f}" for r in table.itertuples()), flush=True)


def print_summary(rows: list[dict], variants: list[str], title: str) -> None:
    """Validation score per variant and target, averaged over seeds, with the mean over targets."""
    result = pd.DataFrame(rows).pivot_table(index="variant", columns="target", values="val", aggfunc="mean")
    result["mean"] = result.mean(axis=1)
    print(f"\n{title}")
    print(result.reindex(variants).round(3).to_string())
