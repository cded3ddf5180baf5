"""Research probe: other poolings in `neuron_set`'s readout, judged at random initialisation.

Training adds little to `neuron_set` (see the quality table): its readout carries the result. So a
readout can be judged without training: the folder's `neuron_set` encoder is built at random
initialisation (its input standardisation fitted on the training split, as in training), and its
embedding is recomputed with other poolings over each hidden layer's neurons, beside the default
mean / max / min:

- ``median``, ``quartiles``, ``deciles`` (0.1 and 0.9): quantiles of the per-neuron features and of
  the standardised tokens;
- ``log``: the default, plus mean / max / min of log(|entry| + 1e-4) of the raw (unstandardised)
  token entries, where the tails of the weights sit on a scale a linear probe can use.

Prints the linear probes' validation R² per target and its mean, averaged over `--seeds` random
initialisations; nothing is chosen on the test split, which it does not print.

    python research/pooling_probe.py --zoo tetris_seed --datasets DIR     # about 4 min on 2 cores
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from random_init_probes import (
    ROOT,
    fixed_code,
    print_summary,
    random_init_encoders,
    row_weights,
    score_variant,
    zoo_rows,
)

from weightspace.downstream.evaluate import ProbeWarning

VARIANTS = {"mean/max/min": (), "median": (0.5,), "quartiles": (0.25, 0.5, 0.75), "deciles": (0.1, 0.9),
            "log": "log"}


def pool(x: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Mean, max, min (and `quantiles`) over the neurons (dim 1) of ``(B, n, F)``."""
    parts = [x.mean(1), x.amax(1), x.amin(1)]
    if quantiles:
        parts += list(torch.quantile(x.float(), torch.tensor(quantiles), dim=1))
    return torch.cat(parts, dim=-1)


@torch.no_grad()
def embed_with(model, x: torch.Tensor, variant) -> torch.Tensor:
    """`NeuronSetEncoder.encode` (project_dim 0) with the pooling of `variant` (its fixed code unchanged)."""
    quantiles = () if variant == "log" else variant
    feats = []
    for i, (tokens, phi) in enumerate(zip(model.tokens, model.phi)):
        raw = tokens(x)
        tok = (raw - getattr(model, f"shift_{i}")) / getattr(model, f"scale_{i}")
        feats.append(pool(phi(tok), quantiles))
        if model.skip:
            feats.append(pool(tok, quantiles))
        if variant == "log":
            feats.append(pool(torch.log(raw.abs() + 1e-4), ()))
    feats.append(x[:, model.out_bias])
    feats.append(fixed_code(model, x))
    return torch.cat(feats, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True, help="an offline zoo of the quality table (tetris_seed, ...)")
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets", help="where the zoos are (or go)")
    parser.add_argument("--seeds", type=int, default=2, help="random initialisations to average")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    warnings.simplefilter("ignore", ProbeWarning)

    experiment, zoo, probed = zoo_rows(args.zoo, args.datasets)
    every = row_weights(probed)
    rows = []
    for seed, model in random_init_encoders(experiment, zoo, probed, args.seeds):
        for name in args.variants:
            z = torch.cat([embed_with(model, every[i:i + 500], VARIANTS[name]) for i in range(0, len(every), 500)])
            score_variant(name, z.numpy(), seed, probed, experiment.targets, rows)
    print_summary(rows, args.variants, f"{args.zoo}: validation R² (accuracy for classes), mean over "
                                       f"{args.seeds} random initialisations")


if __name__ == "__main__":
    main()
