"""Where a zoo's training progress shows in the weights: a few tail features against B_s.

Prints the test R² of linear probes (the experiments' ridge probe and split by model) for
accuracy and epoch on these feature sets of the same checkpoints:

- B_s: the 2021 layer statistics (mean, variance, 1/25/50/75/99th percentiles per layer);
- B_s Unterthiner: their statistics, which include each layer's minimum and maximum;
- largest |w| per layer: one number per layer;
- per-neuron tails: for each layer, the mean / max / min over its neurons of each neuron's
  largest |w|, largest w, smallest w, mean square and mean (what a permutation-invariant
  encoder with per-neuron nonlinearities and pooling could compute).

On the Tetris seed zoo the single largest |w| of each layer predicts accuracy and epoch better than
the 14 B_s statistics: training grows a few weights while the bulk of the distribution stays put.

    python research/probe_weight_tails.py                       # datasets/tetris_seed, epochs 0, 5, ..., 25
    python research/probe_weight_tails.py datasets/digits_seed --epochs 0 4 8 12 16 20
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from weightspace.downstream import LayerStatistics, evaluate
from weightspace.downstream.evaluate import ProbeWarning
from weightspace.pipeline.experiment import select_epochs
from weightspace.zoo.store import Zoo

ROOT = Path(__file__).resolve().parent.parent


def largest_abs_per_layer(weights: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """``(S, n_layers)``: the largest |w| of each layer (weights and bias)."""
    return np.stack([np.abs(weights[:, g.reshape(-1)]).max(axis=1) for g in groups], axis=1)


def neuron_tails(weights: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """``(S, n_layers * 15)``: per layer, mean / max / min over neurons of five per-neuron statistics."""
    out = []
    for g in groups:
        tokens = weights[:, g]  # (S, neurons, fan_in [+ bias])
        per_neuron = np.stack([np.abs(tokens).max(-1), tokens.max(-1), tokens.min(-1),
                               np.square(tokens).mean(-1), tokens.mean(-1)], axis=-1)  # (S, neurons, 5)
        out += [per_neuron.mean(1), per_neuron.max(1), per_neuron.min(1)]
    return np.concatenate(out, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", nargs="?", type=Path, default=ROOT / "datasets" / "tetris_seed")
    parser.add_argument("--epochs", type=int, nargs="*", default=[0, 5, 10, 15, 20, 25],
                        help="checkpoints to use (default: those of 11_tetris_seed); none: all")
    args = parser.parse_args()
    if not (args.zoo / "zoo.json").exists():
        raise SystemExit(f"no zoo at '{args.zoo}'; generate it with "
                         f"`weightspace zoo generate --preset {args.zoo.name} --out {args.zoo}`")
    zoo = Zoo.load(args.zoo)
    if args.epochs:
        zoo = select_epochs(zoo, tuple(args.epochs))
    weights = np.asarray(zoo.weights, dtype=np.float64)
    groups = [g.numpy() for g in zoo.layout.token_indices()]  # per layer: (neurons, fan_in [+ bias]) positions
    features = {
        "B_s (2021)": LayerStatistics(zoo.layout),
        "B_s Unterthiner (+ min, max)": LayerStatistics(zoo.layout, preset="unterthiner"),
        "largest |w| per layer": largest_abs_per_layer(weights, groups),
        "per-neuron tails, pooled": neuron_tails(weights, groups),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        table = evaluate(zoo, feature_sets=features, targets=["test_acc", "training_iteration"])
    table = table[(table.split == "test") & (table.metric == "r2")]
    scores = table.pivot_table(index="feature_set", columns="target", values="value", sort=False)
    print(f"{zoo.name}: {zoo.num_models} models, epochs {args.epochs or zoo.epochs}, "
          f"test split {int(table.n.iloc[0])} checkpoints; linear probe, test R²")
    print(f"{'features':32} {'n':>4} {'accuracy':>9} {'epoch':>7}")
    for name, row in scores.iterrows():
        n = features[name].shape[1] if isinstance(features[name], np.ndarray) else len(features[name].get_feature_names_out())
        print(f"{name:32} {n:4d} {row['test_acc']:9.3f} {row['training_iteration']:7.3f}")


if __name__ == "__main__":
    main()
