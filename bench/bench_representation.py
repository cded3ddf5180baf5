"""Training throughput of the representation learner, beside the machine's measured matmul peak.

Two 2021 configurations: 11_tetris_seed (tetris_mlp, D=100, 9 neuron tokens +
compression token, d 256, 2 blocks, 4 heads, ff 512, latent 50, head 3/50/20,
batch 500) and 21_mnist_seed (cnn_s, D=2464, 48 neuron tokens, d 800, 2 blocks,
4 heads, ff 900, latent 700, head 4/400/50; batch 100 by default, 500 in 2021).
One sample = two augmented views, forward and backward through autoencoder and
head, plus the Adam step. FLOPs per step are counted with
torch.utils.flop_counter.FlopCounterMode; times are the median over the timed steps.

    python bench/bench_representation.py                     # both configs, fp32 and bf16
    python bench/bench_representation.py --configs tetris --precisions fp32 --steps 10

Dropout is 0.1 as in 2021, on attention probabilities, the feed-forward layer and
both residual branches (the TransformerConfig defaults; --attn-dropout 0 lets the
fused attention kernel run). Each measurement runs in a fresh process. On shared
cores the load average printed before and after tells how much of the machine
the run had (the benchmark itself adds about 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from weightspace import WeightLayout, create_zoo_model
from weightspace.representation import HeadConfig, Learner, LearnerConfig, LossConfig, TrainConfig, TransformerConfig

CONFIGS = {
    "tetris": dict(arch="tetris_mlp",
                   encoder=TransformerConfig(d_model=256, n_heads=4, n_blocks=2, d_ff=512, latent_dim=50),
                   head=HeadConfig(3, 50, 20), gamma=0.5, batch=500),
    "mnist": dict(arch="cnn_s",
                  encoder=TransformerConfig(d_model=800, n_heads=4, n_blocks=2, d_ff=900, latent_dim=700),
                  head=HeadConfig(4, 400, 50), gamma=0.1, batch=100),  # 2021: 500 (~12 GB in fp32 here)
}


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 4096, reps: int = 5) -> float:
    """Best FLOP/s of an n x n matmul."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def bench(name: str, precision: str, device: torch.device, steps: int, warmup: int, batch: int | None,
          attn_dropout: float = TransformerConfig.attn_dropout) -> dict:
    """Samples/s and FLOP/s of `steps` training steps on random weights of the config's architecture."""
    spec = CONFIGS[name]
    batch = batch or spec["batch"]
    layout = WeightLayout.from_module(create_zoo_model(spec["arch"]))
    encoder = dataclasses.replace(spec["encoder"], attn_dropout=attn_dropout)
    config = LearnerConfig(encoder=encoder, head=spec["head"], loss=LossConfig(gamma=spec["gamma"]),
                              train=TrainConfig(batch_size=batch, precision=precision, device=str(device)))
    learner = Learner(config, layout)
    x = torch.randn(batch, layout.num_params, generator=torch.Generator().manual_seed(0)) * 0.3
    with FlopCounterMode(display=False) as counter:
        learner.train_step(x)
    flops = counter.get_total_flops()
    for _ in range(warmup - 1):
        learner.train_step(x)
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        learner.train_step(x)
        sync(device)
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times)  # robust to bursts of load from other processes
    return {"samples_s": batch / seconds, "flops_s": flops / seconds, "step_s": seconds, "flops": flops, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="tetris,mnist")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first also counts FLOPs)")
    parser.add_argument("--mnist-batch", type=int, default=None,
                        help="mnist batch (default 100; the 2021 run used 500, which needs ~12 GB)")
    parser.add_argument("--attn-dropout", type=float, default=TransformerConfig.attn_dropout,
                        help="attention-probability dropout (default and 2021: 0.1)")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.one:  # one measurement, in its own process so that allocator state never carries over
        name, precision = args.one
        batch = args.mnist_batch if name == "mnist" else None
        print(json.dumps(bench(name, precision, device, args.steps, args.warmup, batch, args.attn_dropout)))
        return
    threads = torch.get_num_threads() if device.type == "cpu" else None
    print(f"device {device}" + (f", {threads} torch threads, {os.cpu_count()} cpus, load average "
                                f"{os.getloadavg()[0]:.2f} (other processes share these cores)" if threads else
                                f" ({torch.cuda.get_device_name(device)})"))
    peaks = {p: matmul_peak(device, DTYPES[p]) for p in args.precisions.split(",")}
    for p, v in peaks.items():
        print(f"matmul peak {p}: {v / 1e9:8.1f} GFLOP/s (4096^2 matmul, best of 5)")
    print(f"{'config':8} {'prec':5} {'batch':>5} {'samples/s':>10} {'s/step':>8} {'GFLOP/step':>11} "
          f"{'GFLOP/s':>9} {'% fp32 peak':>11} {'% own peak':>10}")
    for name in args.configs.split(","):
        for precision in args.precisions.split(","):
            cmd = [sys.executable, __file__, "--one", name, precision, "--device", args.device, "--steps",
                   str(args.steps), "--warmup", str(args.warmup), "--attn-dropout", str(args.attn_dropout)]
            if args.mnist_batch:
                cmd += ["--mnist-batch", str(args.mnist_batch)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{name:8} {precision:5} {r['batch']:5d} {r['samples_s']:10.1f} {r['step_s']:8.3f} "
                  f"{r['flops'] / 1e9:11.1f} {r['flops_s'] / 1e9:9.1f} {100 * r['flops_s'] / peaks['fp32']:10.1f}% "
                  f"{100 * r['flops_s'] / peaks[precision]:9.1f}%", flush=True)
    if threads:
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
