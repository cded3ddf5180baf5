"""Research probe: which function-space objective makes `neuron_set`'s training count, judged on validation.

`neuron_set` trained on its default objective (NT-Xent + a decoder of invariant statistics) reads what it
reads at random init (docs/research_log.md). Its decoder can instead predict the networks' logits on 64
data-free queries (`NeuronSetConfig(target="outputs")`), which B_probe shows to carry a model's accuracy.
This probe trains variants of that objective on one zoo, exactly as its experiment folder schedules the
learner, and prints for each seed the validation R² of the linear probes at random init and after training,
and how well the decoder predicts the outputs on validation at the end of training (R² of the standardised
logits). Variants:

- ``outputs``: the `weightspace quality` row "neuron_set, outputs target" (decoder 256 wide, gamma 0.5);
- ``linear decoder``: the outputs predicted by one Linear layer of the learned features, so that what the
  decoder reads of them is what a linear probe can read;
- ``linear decoder, no contrast``: the same with gamma 0 (the reconstruction alone);
- ``linear decoder, no contrast, 3x epochs``: three times the folder's epochs, at lr 3e-3;
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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from representation_quality import FOLDERS, folder_experiment  # noqa: E402  (bench/, on sys.path above)

from weightspace.downstream.evaluate import ProbeWarning  # noqa: E402
from weightspace.pipeline.quality import (  # noqa: E402
    ENCODER_OVERRIDES,
    Override,
    embedding_scores,
    encoders_of,
    load_preset_zoo,
    overridden,
    train_encoder,
    zoo_data,
)
from weightspace.representation.function_target import with_zoo_architecture  # noqa: E402

# each variant's changes to the folder's neuron_set learner
VARIANTS = {
    "outputs": ENCODER_OVERRIDES["neuron_set, outputs target"],
    "linear decoder": Override(encoder={"target": "outputs", "decoder_hidden": 0}),
    "linear decoder, no contrast": Override(encoder={"target": "outputs", "decoder_hidden": 0}, loss={"gamma": 0.0}),
    "linear decoder, no contrast, 3x epochs": ENCODER_OVERRIDES["neuron_set, function objective"],
    "linear decoder, no contrast, 8x epochs": Override(encoder={"target": "outputs", "decoder_hidden": 0},
                                                       loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=8),
    "statistics + outputs, linear decoder, no contrast, 3x epochs": Override(
        encoder={"target": "both", "decoder_hidden": 0}, loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=3),
    "task queries, linear decoder, no contrast, 3x epochs": Override(
        encoder={"target": "outputs", "decoder_hidden": 0, "queries": "task"}, loss={"gamma": 0.0},
        train={"lr": 3e-3}, epochs=3),
    "statistics + task outputs, linear decoder, no contrast, 3x epochs": Override(
        encoder={"target": "both", "decoder_hidden": 0, "queries": "task"}, loss={"gamma": 0.0},
        train={"lr": 3e-3}, epochs=3),
    "statistics, linear decoder, no contrast, 3x epochs": Override(
        encoder={"decoder_hidden": 0}, loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=3),
    "two-layer phi, linear decoder, no contrast, 3x epochs": Override(
        encoder={"target": "outputs", "decoder_hidden": 0, "phi_layers": 2}, loss={"gamma": 0.0},
        train={"lr": 3e-3}, epochs=3),
}


def output_r2(model, data) -> float:
    """R² of the decoder's prediction of its target on the validation rows (the standardised logits, where it
    predicts them)."""
    x = data["val"].weights
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
    data = zoo_data(zoo, experiment.zoo_epochs)
    targets = list(experiment.targets) if experiment.targets else None
    base = encoders_of(experiment, ["neuron_set"])[0]
    for name in args.variants:
        encoder = overridden(base, VARIANTS[name], name)
        encoder.config.encoder = with_zoo_architecture(encoder.config.encoder, zoo)
        for seed in range(args.seeds):
            start = time.perf_counter()
            run = train_encoder(encoder, data, seed, targets)
            rows = []
            for label, z in (("init", run.control), ("trained", run.chosen)):
                table = embedding_scores(label, z, data, targets)
                val = table[table.split == "val"].set_index("target")["value"]
                rows.append(f"{label} " + " ".join(f"{t} {v:.3f}" for t, v in val.items()) + f" mean {val.mean():.3f}")
            print(f"{name} | seed {seed} | chose evaluation {run.evaluation} | decoder R² (val) "
                  f"{output_r2(run.model, data):.3f} | {(time.perf_counter() - start) / 60:.1f} min", flush=True)
            for row in rows:
                print("    " + row, flush=True)


if __name__ == "__main__":
    main()
