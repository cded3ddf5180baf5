"""Research probe: what the fixed code in `neuron_set`'s embedding adds, judged at random init.

`neuron_set`'s embedding ends in a fixed code of the weights' statistics (`NeuronSetEncoder.encode`):
the standardised invariant statistics and hinges relu(v - knot) of them and of the pooled tokens, knots
at quantiles of the training split. Training does not touch it, and training adds little to the rest
(see the quality table), so codes are compared here without training: the folder's encoder at random
initialisation (input scale fitted on the training split), its learned features followed by

- ``none``: nothing (the embedding before the code);
- ``statistics``: the standardised statistics;
- ``hinges of statistics``: the statistics and their hinges;
- ``default``: the encoder's own code (statistics, hinges of statistics and pooled tokens, 5 knots);
- ``3 knots`` / ``9 knots``: the same with other knot counts;
- ``random features``: 4096 random tanh features of the standardised learned features instead of a code;
- ``random features of statistics``: the default, plus 2048 random relu features of the statistics;
- ``products of statistics``: the default, plus the pairwise products of the statistics (clipped at 5);
- ``random trees``: the default, plus the leaves of 500 random trees of depth 8 over the statistics
  (scikit-learn's RandomTreesEmbedding: unsupervised, fitted on the training rows).

Prints the linear probes' validation R² on the zoo's continuous targets and their mean, averaged over
`--seeds` initialisations; nothing is chosen on the test split, which it does not print.

    python research/code_probe.py --zoo tetris_seed --datasets DIR     # about 2 min on 2 cores
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from random_init_probes import (
    ROOT,
    code_inputs,
    print_summary,
    random_init_encoders,
    row_weights,
    score_variant,
    zoo_rows,
)
from sklearn.ensemble import RandomTreesEmbedding

from weightspace.downstream.evaluate import ProbeWarning
from weightspace.downstream.targets import REGRESSION

VARIANTS = ("none", "statistics", "hinges of statistics", "default", "3 knots", "9 knots", "random features",
            "random features of statistics", "products of statistics", "random trees")


def hinges(v: torch.Tensor, train: torch.Tensor, knots: int) -> torch.Tensor:
    """relu(v - knot) at `knots` quantiles of the training rows (`train`, a bool mask) of ``(S, F)``,
    -> ``(S, knots * F)``."""
    levels = torch.arange(1, knots + 1, dtype=torch.float64) / (knots + 1)
    at = torch.quantile(v[train].double(), levels, dim=0).float()
    return torch.relu(v.unsqueeze(1) - at).flatten(1)


def features(variant: str, learned, stats, pooled, train: torch.Tensor, seed: int) -> torch.Tensor:
    """The embedding of `variant` from the learned features, standardised statistics and pooled tokens (`train`:
    the training rows, a bool mask)."""
    default = [learned, stats, hinges(torch.cat([stats, pooled], 1), train, 5)]
    gen = torch.Generator().manual_seed(1000 + seed)
    if variant == "none":
        parts = [learned]
    elif variant == "statistics":
        parts = [learned, stats]
    elif variant == "hinges of statistics":
        parts = [learned, stats, hinges(stats, train, 5)]
    elif variant in ("3 knots", "9 knots"):
        parts = [learned, stats, hinges(torch.cat([stats, pooled], 1), train, int(variant[0]))]
    elif variant == "random features":
        standard = (learned - learned[train].mean(0)) / learned[train].std(0).clamp_min(1e-6)
        w = torch.randn(standard.shape[1], 4096, generator=gen) / standard.shape[1] ** 0.5
        parts = [learned, torch.tanh(standard @ w + 0.3 * torch.randn(4096, generator=gen))]
    elif variant == "random features of statistics":
        w = torch.randn(stats.shape[1], 2048, generator=gen) / stats.shape[1] ** 0.5
        parts = [*default, torch.relu(stats @ w)]
    elif variant == "products of statistics":
        c = stats.clamp(-5, 5)
        i, j = torch.triu_indices(c.shape[1], c.shape[1])
        parts = [*default, c[:, i] * c[:, j]]
    elif variant == "random trees":
        trees = RandomTreesEmbedding(n_estimators=500, max_depth=8, random_state=seed).fit(stats[train].numpy())
        parts = [*default, torch.as_tensor(trees.transform(stats.numpy()).toarray(), dtype=torch.float32)]
    else:
        parts = default
    return torch.cat(parts, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True, help="an offline zoo of the quality table (tetris_seed, ...)")
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets", help="where the zoos are (or go)")
    parser.add_argument("--seeds", type=int, default=1, help="random initialisations to average")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    warnings.simplefilter("ignore", ProbeWarning)

    experiment, zoo, probed = zoo_rows(args.zoo, args.datasets)
    targets = [t.name for t in probed.targets(experiment.targets) if t.task == REGRESSION]
    every = row_weights(probed)
    train = torch.from_numpy(probed.splits == "train")
    rows = []
    for seed, model in random_init_encoders(experiment, zoo, probed, args.seeds):
        with torch.no_grad():
            batches = [every[i:i + 500] for i in range(0, len(every), 500)]
            learned = torch.cat([model.learned(x) for x in batches])
            hinged = torch.cat([code_inputs(model, x) for x in batches])
        stats, pooled = hinged[:, :model.num_targets], hinged[:, model.num_targets:]
        for name in args.variants:
            score_variant(name, features(name, learned, stats, pooled, train, seed).numpy(), seed, probed, targets,
                          rows)
    print_summary(rows, args.variants, f"{args.zoo}: validation R² of the continuous targets, mean over "
                                       f"{args.seeds} random initialisation(s)")


if __name__ == "__main__":
    main()
