"""Benchmark B_probe (model outputs on K queries) against B_s (layer statistics): wall times in one run.

Zoos: the smoke ``tetris_seed`` zoo (generated, 18 rows), and synthetic zoos of
random weights with the Tetris MLP (``--tetris-rows``) and cnn_s (``--cnn-rows``);
the time of a forward pass does not depend on what the weights hold.

    python bench/bench_model_outputs.py
    python bench/bench_model_outputs.py --tetris-rows 100000 --cnn-rows 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import pandas as pd


def synthetic_zoo(arch: str, rows: int, task: dict):
    from weightspace import WeightLayout, create_zoo_model
    from weightspace.zoo.store import Zoo

    layout = WeightLayout.from_module(create_zoo_model(arch))
    weights = np.random.default_rng(0).normal(0, 0.3, (rows, layout.num_params)).astype(np.float32)
    samples = pd.DataFrame({"model_id": np.arange(rows), "epoch": 0, "activation": "tanh"})
    return Zoo(weights, samples, layout, {"name": f"synthetic_{arch}", "architecture": {"name": arch, "kwargs": {}},
                                          "task": task})


def timed(fn) -> tuple[float, tuple]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out.shape


def bench(zoo) -> None:
    from weightspace.downstream.features import LayerStatistics
    from weightspace.downstream.model_outputs import zoo_model_outputs

    stats, stats_shape = timed(lambda: LayerStatistics(zoo.layout).fit(zoo.weights).transform(zoo.weights))
    line = f"{zoo.name}: {zoo.weights.shape[0]} x {zoo.weights.shape[1]}  B_s {stats:.3f} s {stats_shape}"
    for variant in ("free", "task"):
        took, shape = timed(lambda: zoo_model_outputs(zoo, variant))
        line += f"  B_probe ({variant}) {took:.3f} s {shape} = {took / stats:.1f} x B_s"
    print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tetris-rows", type=int, default=50_000, help="rows of the synthetic Tetris MLP zoo")
    parser.add_argument("--cnn-rows", type=int, default=5_000, help="rows of the synthetic cnn_s zoo")
    args = parser.parse_args()
    import torch

    from weightspace.zoo.generate import generate
    from weightspace.zoo.presets import get_preset

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; K = 64 queries", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        smoke = generate(get_preset("tetris_seed", smoke=True), f"{tmp}/tetris_smoke", progress=False)
        bench(smoke)  # also warms up torch
        bench(smoke)
    tetris = {"name": "tetris", "input_shape": [1, 4, 4]}
    bench(synthetic_zoo("tetris_mlp", args.tetris_rows, tetris))
    synthetic = {"name": "synthetic", "shape": [1, 28, 28], "n_train": 256, "n_test": 1, "input_shape": [1, 28, 28]}
    bench(synthetic_zoo("cnn_s", args.cnn_rows, synthetic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
