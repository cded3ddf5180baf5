"""Benchmark the downstream baselines; prints wall times and peak memory.

1. ``baselines``: raw + statistics linear probes and statistics boosted trees on a
   synthetic cnn_s zoo (default 50,000 samples, D = 2464), weights in a temporary
   memory-mapped .npy. Target: under 2 minutes on 2 CPU cores.
2. ``stats``: `LayerStatistics` on a memory-mapped synthetic float32 matrix
   (default 270,000 x 4970, about 5.4 GB on disk, written chunk by chunk).
   Target: peak RSS under 2 GB.

Each part runs in its own subprocess so that its peak RSS (VmHWM) is its own.

    python bench/bench_baselines.py                      # both parts, full size
    python bench/bench_baselines.py --rows 60000         # smaller stats matrix (short disk or time)
    python bench/bench_baselines.py --part stats --tmp /data/tmp
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def peak_rss_mb() -> float:
    """VmHWM of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_npy(path: Path, rows: int, cols: int, fill, chunk: int = 8192) -> None:
    """Write a (rows, cols) float32 .npy chunk by chunk; ``fill(start, n) -> (n, cols)``."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)})
        for start in range(0, rows, chunk):
            f.write(np.ascontiguousarray(fill(start, min(chunk, rows - start)), dtype=np.float32).tobytes())


def bench_baselines(samples: int, tmp: Path) -> None:
    from weightspace import WeightLayout, create_zoo_model
    from weightspace.downstream import BaselineConfig, format_table, run_baselines
    from weightspace.zoo.store import Zoo

    layout = WeightLayout.from_module(create_zoo_model("cnn_s"))
    epochs = 10
    models = samples // epochs
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.1, (models, layout.num_params)).astype(np.float32)
    drift = rng.normal(0, 0.02, (models, layout.num_params)).astype(np.float32)
    quality = rng.normal(size=models)

    def fill(start: int, n: int) -> np.ndarray:  # row = model * epochs + epoch; weights drift and grow with training
        m, e = np.divmod(np.arange(start, start + n), epochs)
        return (base[m] + drift[m] * e[:, None]) * (1 + 0.05 * e[:, None] * (1 + 0.2 * quality[m, None]))

    t0 = time.perf_counter()
    write_npy(tmp / "weights.npy", samples, layout.num_params, fill)
    weights = np.load(tmp / "weights.npy", mmap_mode="r")
    m, e = np.divmod(np.arange(samples), epochs)
    test_acc = 0.9 - 0.5 * np.exp(-e / 3) + 0.03 * quality[m] + rng.normal(0, 0.01, samples)
    table = pd.DataFrame({"model_id": m, "epoch": e, "seed": m, "test_acc": test_acc,
                          "train_acc": test_acc + 0.005 * e + rng.normal(0, 0.005, samples)})
    zoo = Zoo(weights, table, layout, {"name": "synthetic_cnn_s", "metrics": ["test_acc", "train_acc"]})
    print(f"[baselines] wrote {samples} x {layout.num_params} cnn_s weights in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    result = run_baselines(zoo, tmp / "out", BaselineConfig())
    took = time.perf_counter() - t0
    print(format_table(result, "test"))
    print(f"[baselines] run_baselines (raw+stats linear, stats gbt; 4 targets): {took:.1f} s "
          f"(target < 120 s), peak RSS {peak_rss_mb():.0f} MiB")


def bench_stats(rows: int, cols: int, tmp: Path) -> None:
    from weightspace import WeightLayout, create_zoo_model
    from weightspace.downstream import LayerStatistics

    layout = WeightLayout.from_module(create_zoo_model("cnn_unterthiner"))
    assert layout.num_params == cols, "the stats benchmark uses the Small CNN Zoo layout (4970)"
    weights = np.load(tmp / "big.npy", mmap_mode="r")
    print(f"[stats] before: peak RSS {peak_rss_mb():.0f} MiB")
    for preset in ("schuerholt2021", "unterthiner"):
        t0 = time.perf_counter()
        out = LayerStatistics(layout, preset=preset).fit(weights).transform(weights)
        took = time.perf_counter() - t0
        print(f"[stats] {preset}: {rows} x {cols} -> {out.shape} in {took:.1f} s "
              f"({rows / took:,.0f} rows/s), peak RSS {peak_rss_mb():.0f} MiB (target < 2048)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "baselines", "stats"], default="all")
    parser.add_argument("--samples", type=int, default=50_000, help="samples of the cnn_s zoo")
    parser.add_argument("--rows", type=int, default=270_000, help="rows of the statistics matrix")
    parser.add_argument("--tmp", type=Path, default=None, help="directory for the temporary .npy files")
    parser.add_argument("--keep-dir", type=Path, default=None, help=argparse.SUPPRESS)  # child: use this directory
    args = parser.parse_args()
    cols = 4970
    if args.keep_dir is not None:  # a child process: run one part in the given directory
        (bench_baselines(args.samples, args.keep_dir) if args.part == "baselines"
         else bench_stats(args.rows, cols, args.keep_dir))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_baselines_", dir=args.tmp))
    try:
        free = shutil.disk_usage(tmp).free
        for part in (["baselines", "stats"] if args.part == "all" else [args.part]):
            if part == "stats":
                need = args.rows * cols * 4
                if need > 0.8 * free:
                    print(f"[stats] skipped: {need / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free in {tmp}; "
                          "lower --rows or pass --tmp")
                    continue
                t0 = time.perf_counter()
                rng = np.random.default_rng(1)
                write_npy(tmp / "big.npy", args.rows, cols,
                          lambda start, n: rng.standard_normal((n, cols), dtype=np.float32) * 0.1)
                print(f"[stats] wrote {args.rows} x {cols} float32 ({need / 2**30:.1f} GiB) in "
                      f"{time.perf_counter() - t0:.1f} s")
            cmd = [sys.executable, __file__, "--part", part, "--samples", str(args.samples),
                   "--rows", str(args.rows), "--keep-dir", str(tmp)]
            subprocess.run(cmd, check=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
