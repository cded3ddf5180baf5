"""Zoo generation speed: population trainer vs one model at a time, measured in one run.

Prints, on this machine's CPU:
  1. the measured fp32 matmul peak (GFLOP/s);
  2. the wall time of whole presets (`--presets`; targets on 2 cores: tetris_seed <= 60 s,
     digits_hyp <= 600 s);
  3. for tetris_mlp (batch 32) and cnn_s (batch 10, the Model Zoos setting, and batch 64):
     images*models/s of the population trainer over population sizes and layouts, of the
     plain loop (one process, all threads) and of the loop in one single-thread process per core
     (what one-model-per-trial ray.tune does); the ratio of the best population to the best loop
     (targets: >= 50x tetris, >= 3x cnn_s batch 10, >= 1x cnn_s batch 64); the achieved GFLOP/s
     of cnn_s training beside the peak (aim >= 25%).
Same models (seeds), same data order, same synthetic data for every contender.

    python bench/bench_zoo.py            # full run, a few minutes
    python bench/bench_zoo.py --quick    # fewer steps and sizes
    python bench/bench_zoo.py --presets digits_hyp --only-presets   # the Small CNN Zoo miniature, ~10 min
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from weightspace.zoo.loop import train_single
from weightspace.zoo.population import Member, Population, PopulationConfig, epoch_order, init_member


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def synthetic(arch: str, n: int):
    g = torch.Generator().manual_seed(0)
    shape = (1, 4, 4) if arch == "tetris_mlp" else (1, 28, 28)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 4 if arch == "tetris_mlp" else 10, (n,), generator=g)


def train_flops_per_image(config: PopulationConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    net = init_member(config, Member(0, 0))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(net(x[:8]), y[:8]).backward()
    return counter.get_total_flops() / 8


def population_rate(config: PopulationConfig, n_models: int, x, y, repeats: int = 3) -> float:
    members = [Member(i, i) for i in range(n_models)]
    pop = Population(config, members)
    order = torch.stack([epoch_order(m.seed, len(x), 1.0, 1)[0] for m in members])
    warm = order[:, : config.batch_size * 2]
    pop.train_epoch(x, y, warm)
    best = float("inf")
    for _ in range(repeats):  # the machine is shared and noisy: keep the best of a few epochs
        t = time.perf_counter()
        pop.train_epoch(x, y, order)
        best = min(best, time.perf_counter() - t)
    return n_models * len(x) / best


def _loop_worker(args) -> float:
    config, seeds, x, y, threads = args
    torch.set_num_threads(threads)
    t = time.perf_counter()
    for s in seeds:
        train_single(config, Member(s, s), x, y, epochs=1)
    return time.perf_counter() - t


def loop_rates(config: PopulationConfig, n_models: int, x, y, cores: int) -> tuple[float, float]:
    """(plain loop, one single-thread process per core) in images*models/s."""
    seeds = list(range(n_models))
    plain = n_models * len(x) / _loop_worker((config, seeds, x, y, torch.get_num_threads()))
    ctx = mp.get_context("spawn")
    with ctx.Pool(cores) as pool:
        pool.map(_loop_worker, [(config, [], x, y, 1)] * cores)  # imports and start-up, not timed
        # the processes run side by side; the slowest one decides when the zoo is done
        elapsed = pool.map(_loop_worker, [(config, seeds[i::cores], x, y, 1) for i in range(cores)])
        per_core = n_models * len(x) / max(elapsed)
    return plain, per_core


# preset -> the most seconds its whole generation may take on 2 CPU cores
PRESET_TARGETS = {"tetris_seed": 60.0, "digits_hyp": 600.0}


def preset_seconds(name: str) -> float:
    """Wall time of generating the preset `name` on the CPU, evaluation and writing included."""
    import tempfile

    from weightspace.zoo.generate import generate
    from weightspace.zoo.presets import get_preset

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate(get_preset(name), os.path.join(tmp, "z"), device="cpu", progress=False)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--presets", nargs="+", default=["tetris_seed"], choices=list(PRESET_TARGETS),
                        help="presets whose whole generation is timed (digits_hyp: about 10 minutes)")
    parser.add_argument("--only-presets", action="store_true", help="time the presets and stop")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    peak = matmul_peak()
    print(f"machine: {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s")
    from weightspace.zoo.presets import get_preset

    for name in args.presets:
        spec = get_preset(name)
        seconds = preset_seconds(name)
        print(f"{name} preset ({len(spec.models())} models x {spec.epochs} epochs, evaluation and writing included): "
              f"{seconds:.1f} s (target <= {PRESET_TARGETS[name]:.0f} s on 2 cores)", flush=True)
    if args.only_presets:
        return

    cases = [
        ("tetris_mlp", 32, 320, [1000] if args.quick else [250, 1000], 16 if args.quick else 40, 50.0),
        ("cnn_s", 10, 100 if args.quick else 200, [64] if args.quick else [32, 64, 128, 256], 4 if args.quick else 8, 3.0),
        ("cnn_s", 64, 256 if args.quick else 512, [16] if args.quick else [8, 16, 64], 4 if args.quick else 8, 1.0),
    ]
    for arch, bs, n_images, sizes, loop_models, target in cases:
        x, y = synthetic(arch, n_images)
        impls = ["grouped", "vmap"]
        print(f"\n{arch}, batch {bs}, {n_images} images per model and epoch")
        best_pop, best_label = 0.0, ""
        for impl in impls:
            config = PopulationConfig(arch, {"activation": "tanh"}, batch_size=bs, layout=impl)
            for n in sizes:
                rate = population_rate(config, n, x, y)
                print(f"  population {impl:8s} N={n:5d}: {rate:12,.0f} images*models/s")
                if rate > best_pop:
                    best_pop, best_label = rate, f"{impl} N={n}"
        config = PopulationConfig(arch, {"activation": "tanh"}, batch_size=bs)
        plain, per_core = loop_rates(config, loop_models, x, y, cores)
        print(f"  plain loop ({loop_models} models)           : {plain:12,.0f} images*models/s")
        print(f"  loop, {cores} single-thread processes       : {per_core:12,.0f} images*models/s")
        ratio = best_pop / max(plain, per_core)
        print(f"  => best population ({best_label}) / best loop = {ratio:.1f}x (target >= {target:g}x)")
        if arch == "cnn_s":
            flops = train_flops_per_image(config, x, y)
            for label, rate in (("population", best_pop), ("plain loop", plain)):
                achieved = flops * rate / 1e9
                print(f"  {label:10s}: {achieved:6.2f} GFLOP/s = {100 * achieved / peak:4.1f}% of peak "
                      f"({flops / 1e6:.2f} MFLOP per training image)")


if __name__ == "__main__":
    main()
