"""How large the behaviour learner's two loss parts are on each offline zoo.

The `behaviour` learner's loss is ``mean((w_hat - w)^2) + beta * mean((f(w_hat; q) - f(w; q))^2)``, both in the
zoo's own units. For a decoder that predicts the zoo's mean, each part is the variance across the zoo of what it
compares; their ratio is how much more the logits weigh than the weights at ``beta = 1``. This prints, per zoo,
the mean variance of the weights and of the networks' logits on the learner's query inputs (each network with its
own activation), over a sample of the checkpoints the zoo's experiment folder trains on.

    python research/behaviour_loss_scale.py digits_seed digits_hyp tetris_seed tetris_hyp  # seconds a zoo
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from representation_quality import folder_experiment  # noqa: E402  (the folders' experiments, as the table runs them)

from weightspace.pipeline.experiment import resolved_config  # noqa: E402
from weightspace.pipeline.quality import Rows, load_preset_zoo  # noqa: E402
from weightspace.representation.encoders.behaviour_ae import BehaviourAutoencoder  # noqa: E402
from weightspace.representation.function_target import network_variants, row_networks  # noqa: E402
from weightspace.representation.learner import Learner  # noqa: E402


def loss_scale(name: str, datasets: Path, rows: int, seed: int) -> dict:
    """The two parts' scales on `rows` checkpoints of zoo `name`, drawn at `seed`."""
    experiment = folder_experiment(name)
    zoo = Rows.of(load_preset_zoo(name, datasets, progress=False), experiment).zoo
    config = resolved_config(replace(experiment, learner="behaviour"), zoo, device="cpu")
    model = Learner(config, zoo.layout, device="cpu").model
    assert isinstance(model, BehaviourAutoencoder) and model.behaviour is not None  # beta 1: the logits are run
    pick = np.sort(np.random.default_rng(seed).choice(len(zoo.weights), min(rows, len(zoo.weights)), replace=False))
    w = torch.as_tensor(np.asarray(zoo.weights[pick]), dtype=torch.float32)
    architecture = config.encoder.architecture or {}
    codes = (torch.as_tensor(row_networks(network_variants(architecture), zoo.samples.iloc[pick]))
             if architecture.get("per_row") else None)
    with torch.no_grad():
        logits = model.behaviour(w, codes)
    weight_var, logit_var = float(w.var(0).mean()), float(logits.var(0).mean())
    return {"zoo": name, "checkpoints": len(pick), "weights": int(w.shape[1]), "logit_numbers": int(logits.shape[1]),
            "weight_variance": round(weight_var, 4), "logit_variance": round(logit_var, 3),
            "logits_over_weights": round(logit_var / weight_var, 1),
            "logit_abs_p99": round(float(logits.abs().quantile(0.99)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoos", nargs="+", help="offline zoo names (tetris_seed, tetris_hyp, digits_seed, digits_hyp)")
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets", help="where the zoos are (or go)")
    parser.add_argument("--rows", type=int, default=300, help="checkpoints drawn per zoo")
    parser.add_argument("--seed", type=int, default=0, help="draws the checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.zoos:
        print(json.dumps(loss_scale(name, args.datasets, args.rows, args.seed)), flush=True)


if __name__ == "__main__":
    main()
