"""Epoch time of the function objective with and without its outputs cache, on a digits_hyp-sized CNN.

The function objective (`weightspace quality --encoders function`: neuron_set reconstructing each network's
logits on 64 data-free queries) runs every network on the queries for its target. Without a cache that is
every row of every batch, twice (two views), every epoch; with it (`function_target.CACHE_BYTES`), each
row runs once, when the learner fits its input scale, and later epochs look its outputs up. This prints
seconds per epoch of each and their ratio, measured in one run on the same rows; the loss of the two
agrees to float rounding (rows run in other batches).

    python bench/bench_function_target.py                     # 1,000 Unterthiner CNNs, width 384
    python bench/bench_function_target.py --rows 300 --threads 1
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from weightspace import WeightLayout, create_zoo_model
from weightspace.data.dataset import ZooDataset
from weightspace.representation import Learner, function_target
from weightspace.representation.function_target import with_zoo_architecture
from weightspace.representation.presets import config_neuron_set
from weightspace.zoo.store import Zoo


def cnn_zoo(rows: int, seed: int = 0) -> Zoo:
    """`rows` randomly initialised Unterthiner CNNs on 28 x 28 digits (as digits_hyp), in memory."""
    gen = torch.Generator().manual_seed(seed)
    nets = [create_zoo_model("cnn_unterthiner", init="kaiming_uniform", generator=gen) for _ in range(rows)]
    layout = WeightLayout.from_module(nets[0])
    weights = torch.stack([layout.vectorize(net.state_dict()) for net in nets]).detach().numpy()
    samples = pd.DataFrame({"model_id": np.arange(rows), "epoch": 0})
    info = {"name": "bench_cnn", "architecture": {"name": "cnn_unterthiner", "kwargs": {}},
            "task": {"name": "digits", "input_shape": [1, 28, 28]}}
    return Zoo(weights.astype(np.float32), samples, layout, info)


def epoch_seconds(zoo: Zoo, train: ZooDataset, width: int, cache: bool) -> tuple[float, float]:
    """(seconds of the second epoch, its mean loss) of the function objective, with or without the cache."""
    config = config_neuron_set(width=width, target="outputs")
    config.encoder = with_zoo_architecture(replace(config.encoder, decoder_hidden=0), zoo)
    config.loss = replace(config.loss, gamma=0.0)
    saved = function_target.CACHE_BYTES
    function_target.CACHE_BYTES = saved if cache else 0
    try:
        learner = Learner(config, train.layout)
        learner.train_epoch(train)  # the first epoch fits the input scale, which runs every row once
        start = time.perf_counter()
        losses = learner.train_epoch(train)
        return time.perf_counter() - start, float(losses["loss_train"])
    finally:
        function_target.CACHE_BYTES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000, help="networks in the zoo (70 %% train)")
    parser.add_argument("--width", type=int, default=384, help="neuron_set width (42_digits_hyp's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    zoo = cnn_zoo(args.rows)
    train = ZooDataset(zoo, "train")
    plain, plain_loss = epoch_seconds(zoo, train, args.width, cache=False)
    cached, cached_loss = epoch_seconds(zoo, train, args.width, cache=True)
    print(f"{len(train)} training rows, {torch.get_num_threads()} threads")
    print(f"epoch without cache: {plain:.1f} s (loss {plain_loss:.4f})")
    print(f"epoch with cache:    {cached:.1f} s (loss {cached_loss:.4f})")
    print(f"ratio: {plain / cached:.1f}x")


if __name__ == "__main__":
    main()
