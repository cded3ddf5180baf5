"""Research probe: which function-space objective makes `neuron_set`'s training count, judged on validation.

`neuron_set` trained on its default objective (NT-Xent + a decoder of invariant statistics) reads what it
reads at random init (docs/research_log.md). Its decoder can instead predict the networks' logits on 64
data-free queries (`NeuronSetConfig(target="outputs")`), which B_probe shows to carry a model's accuracy.
This probe trains variants of that objective on one zoo, exactly as its experiment folder schedules the
learner, and prints for each seed the validation R² of the linear probes at random init and after training,
and how well the decoder of the state chosen on validation (the random init when no evaluation beats it)
predicts the outputs on validation (R² of the standardised logits). Variants named as a learner of the
registry (`weightspace learners`) train that learner; the others change the folder's `neuron_set`. Variants:

- ``outputs``: the learner ``outputs``, the quality table's "neuron_set, outputs target" (decoder 256 wide,
  gamma 0.5);
- ``linear decoder``: the outputs predicted by one Linear layer of the learned features, so that what the
  decoder reads of them is what a linear probe can read;
- ``linear decoder, no contrast``: the same with gamma 0 (the reconstruction alone);
- ``linear decoder, no contrast, 3x epochs``: three times the folder's epochs, at lr 3e-3 (the learner
  ``function``);
- ``linear decoder, no contrast, 8x epochs``: eight times the folder's epochs, at lr 3e-3;
- ``statistics + outputs, linear decoder, no contrast, 3x epochs``: the same, decoding the invariant statistics
  beside the outputs (what the default objective decodes, which carry the weights' growth over training);
- ``two-layer phi, linear decoder, no contrast, 3x epochs``: a second layer in the per-neuron MLP, so that a
  neuron's features can hold products such as its outgoing weight times its response to a query, which a
  network's output sums over its neurons.

Every number it prints is on the validation split; the test split is not read.

    python research/function_objective_probe.py --zoo tetris_seed --datasets datasets --seeds 2
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from representation_quality import FOLDERS, folder_experiment  # noqa: E402  (bench/, on sys.path above)

from weightspace.downstream.evaluate import ProbeWarning  # noqa: E402
from weightspace.pipeline.experiment import Experiment, resolved_config  # noqa: E402
from weightspace.pipeline.quality import (  # noqa: E402
    Rows,
    Trained,
    embedding_scores,
    learner_experiment,
    load_preset_zoo,
    train_config,
    train_learner,
)
from weightspace.representation.function_target import with_zoo_architecture  # noqa: E402
from weightspace.zoo.store import Zoo  # noqa: E402


@dataclass(frozen=True)
class Change:
    """What a variant changes in the folder's `neuron_set` learner."""

    encoder: dict = field(default_factory=dict)  # NeuronSetConfig fields
    loss: dict = field(default_factory=dict)  # LossConfig fields
    train: dict = field(default_factory=dict)  # TrainConfig fields
    epochs: int = 1  # a multiple of the folder's epochs per evaluation (its evaluations stay as many)


# each variant: a registered learner (the quality table's row of that name), or its changes to the folder's
# neuron_set learner
VARIANTS: dict[str, str | Change] = {
    "outputs": "outputs",
    "linear decoder": Change(encoder={"target": "outputs", "decoder_hidden": 0}),
    "linear decoder, no contrast": Change(encoder={"target": "outputs", "decoder_hidden": 0}, loss={"gamma": 0.0}),
    "linear decoder, no contrast, 3x epochs": "function",
    "linear decoder, no contrast, 8x epochs": Change(encoder={"target": "outputs", "decoder_hidden": 0},
                                                     loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=8),
    "statistics + outputs, linear decoder, no contrast, 3x epochs": Change(
        encoder={"target": "both", "decoder_hidden": 0}, loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=3),
    "task queries, linear decoder, no contrast, 3x epochs": "function_task",
    "statistics + task outputs, linear decoder, no contrast, 3x epochs": Change(
        encoder={"target": "both", "decoder_hidden": 0, "queries": "task"}, loss={"gamma": 0.0},
        train={"lr": 3e-3}, epochs=3),
    "statistics, linear decoder, no contrast, 3x epochs": Change(
        encoder={"decoder_hidden": 0}, loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=3),
    "two-layer phi, linear decoder, no contrast, 3x epochs": Change(
        encoder={"target": "outputs", "decoder_hidden": 0, "phi_layers": 2}, loss={"gamma": 0.0},
        train={"lr": 3e-3}, epochs=3),
}


def train_variant(experiment: Experiment, variant: str | Change, seed: int, zoo: Zoo, rows: Rows) -> Trained:
    """Train `variant` with `seed` as `quality.train_learner` trains a learner (`train_in_process`: the same
    evaluations, the random init a candidate, the state chosen on validation), and embed `rows`."""
    if isinstance(variant, str):
        return train_learner(learner_experiment(experiment, variant, seed=seed), zoo, rows)
    run = learner_experiment(experiment, "neuron_set", seed=seed)
    config = resolved_config(run, zoo, device="cpu")
    config.encoder = with_zoo_architecture(replace(config.encoder, **variant.encoder), zoo)
    config.loss = replace(config.loss, **variant.loss)
    config.train = replace(config.train, **variant.train,
                           epochs_per_step=config.train.epochs_per_step * variant.epochs)
    return train_config(config, run, zoo, rows)


def output_r2(model, rows: Rows) -> float:
    """R² of the decoder's prediction of its target on the validation rows (the standardised logits, where it
    predicts them)."""
    x = torch.from_numpy(np.ascontiguousarray(rows.zoo.weights[rows.splits == "val"], dtype=np.float32))
    with torch.no_grad():
        target = model.reconstruction_target(x)
        predicted = model.decode(model.learned(x))
    if model.target == "both":  # the outputs are the last columns
        target, predicted = target[:, -model.num_outputs:], predicted[:, -model.num_outputs:]
    residual = ((predicted - target) ** 2).sum()
    return float(1 - residual / ((target - target.mean(0)) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", default="tetris_seed", choices=sorted(FOLDERS))
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    warnings.simplefilter("ignore", ProbeWarning)
    experiment = folder_experiment(args.zoo)
    zoo = load_preset_zoo(args.zoo, args.datasets)
    probed = Rows.of(zoo, experiment)
    for name in args.variants:
        for seed in range(args.seeds):
            start = time.perf_counter()
            run = train_variant(experiment, VARIANTS[name], seed, zoo, probed)
            rows = []
            for label, z in (("init", run.control), ("trained", run.chosen)):
                table = embedding_scores(label, z, probed, experiment.targets)
                val = table[table.split == "val"].set_index("target")["value"]
                rows.append(f"{label} " + " ".join(f"{t} {v:.3f}" for t, v in val.items()) + f" mean {val.mean():.3f}")
            print(f"{name} | seed {seed} | chose evaluation {run.evaluation} | decoder R² (val, chosen state) "
                  f"{output_r2(run.model, probed):.3f} | {(time.perf_counter() - start) / 60:.1f} min", flush=True)
            for row in rows:
                print("    " + row, flush=True)


if __name__ == "__main__":
    main()
