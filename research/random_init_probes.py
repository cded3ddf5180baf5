"""Shared scaffolding of the research probes that judge `neuron_set` variants at random initialisation
(`pooling_probe.py`, `code_probe.py`): the zoo's probed rows, the folder's encoder per seed, the inputs of its
fixed code, validation scores per variant, the summary table. Nothing here reads the test split's scores.

A helper module, not a probe of its own: run `pooling_probe.py` or `code_probe.py`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from weightspace.pipeline.experiment import Experiment, resolved_config
from weightspace.pipeline.quality import Rows, embedding_scores, learner_experiment, load_preset_zoo
from weightspace.representation import Learner
from weightspace.zoo.store import Zoo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the quality benchmark's helpers
from representation_quality import folder_experiment  # noqa: E402


def zoo_rows(zoo: str, datasets: Path) -> tuple[Experiment, Zoo, Rows]:
    """The zoo's folder experiment, the zoo (generated from its preset when missing) and the rows the quality
    table probes (the folder's checkpoints, usable rows, each with its split)."""
    experiment = folder_experiment(zoo)
    loaded = load_preset_zoo(zoo, datasets)
    return experiment, loaded, Rows.of(loaded, experiment)


def row_weights(rows: Rows) -> torch.Tensor:
    """``(S, D)`` float32 weights of `rows`, in their order."""
    return torch.from_numpy(np.ascontiguousarray(rows.zoo.weights, dtype=np.float32))


def random_init_encoders(experiment: Experiment, zoo: Zoo, rows: Rows, seeds: int) -> Iterator[tuple[int, object]]:
    """(seed, the folder's `neuron_set` at that seed's random initialisation, input scale fitted on the
    training rows), in eval mode."""
    train = row_weights(rows)[torch.from_numpy(rows.splits == "train")]
    for seed in range(seeds):
        config = resolved_config(learner_experiment(experiment, "neuron_set", seed=seed), zoo, device="cpu")
        model = Learner(config, zoo.layout).model.eval()
        model.fit_input_scale(train)
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


def score_variant(name: str, z: np.ndarray, seed: int, probed: Rows, targets, rows: list[dict]) -> None:
    """The linear probes' validation scores of embedding `z` ``(S, F)`` of the rows `probed`: appended to `rows`
    and printed."""
    table = embedding_scores(name, z, probed, targets)
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


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print("a helper module: run research/pooling_probe.py or research/code_probe.py")
