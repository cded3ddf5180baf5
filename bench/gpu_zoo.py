"""GPU zoo throughput: one epoch of 1000 cnn_s models over 60,000 synthetic 28x28 images.

Compares the population trainer with the one-model loop (on 8 models, extrapolated to
per-model time) in one run. Targets on one H100: <= 15 s per epoch for the 1000 models and
>= 100x the loop.

    python bench/gpu_zoo.py                      # 1000 models, batch 64
    python bench/gpu_zoo.py --models 1000 --batch-size 10 --population 250
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from weightspace.zoo.population import Member, Population, PopulationConfig, epoch_order, init_member


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--population", type=int, default=1000, help="models per population (shard)")
    parser.add_argument("--loop-models", type=int, default=8)
    parser.add_argument("--layout", default="auto", choices=["auto", "grouped", "vmap"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (see bench/bench_zoo.py for the CPU one)")
        return 1
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 1, 28, 28, generator=g).to(dev)
    y = torch.randint(0, 10, (args.images,), generator=g).to(dev)
    config = PopulationConfig("cnn_s", {"activation": "tanh"}, batch_size=args.batch_size, layout=args.layout)

    total = 0.0
    for start in range(0, args.models, args.population):
        members = [Member(i, i) for i in range(start, min(start + args.population, args.models))]
        pop = Population(config, members, device=dev)
        order = torch.stack([epoch_order(m.seed, args.images, 1.0, 1)[0] for m in members]).to(dev)
        pop.train_epoch(x, y, order[:, : args.batch_size * 3])  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        t = time.perf_counter()
        pop.train_epoch(x, y, order)
        pop.evaluate(x[:10_000], y[:10_000])
        torch.cuda.synchronize()
        total += time.perf_counter() - t
    print(f"population: {args.models} models, one epoch (+ eval on 10k images): {total:.1f} s "
          f"({args.models * args.images / total:,.0f} images*models/s)")

    t = time.perf_counter()
    for seed in range(args.loop_models):
        net = init_member(config, Member(seed, seed)).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        order = epoch_order(seed, args.images, 1.0, 1)[0].to(dev)
        for s in range(0, args.images, args.batch_size):
            idx = order[s:s + args.batch_size]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    torch.cuda.synchronize()
    loop_per_model = (time.perf_counter() - t) / args.loop_models
    print(f"loop: {loop_per_model:.1f} s per model and epoch -> {loop_per_model * args.models:.0f} s for "
          f"{args.models} models")
    print(f"ratio population / loop: {loop_per_model * args.models / total:.0f}x (target >= 100x; "
          f"epoch target <= 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
