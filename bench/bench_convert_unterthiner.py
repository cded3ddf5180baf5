"""Benchmark: convert a synthetic Small CNN Zoo (default 50,000 x 4970) and report time and peak memory.

The synthetic weights.npy, metrics.csv.gz and layout.csv are written chunk by
chunk into a temporary folder; the conversion runs in a fresh child process
whose peak resident memory (VmHWM) is compared with the size of weights.npy
(target: below 1.5x). A second child only imports the modules, to show the
fixed cost of the interpreter, numpy, pandas and torch.

    python bench/bench_convert_unterthiner.py [--rows 50000] [--tmp /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

D = 4970
STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def write_synthetic(folder: Path, rows: int, chunk: int = 2000) -> None:
    from weightspace.formats.unterthiner import tf_layout_table

    rng = np.random.default_rng(0)
    with open(folder / "weights.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, D)})
        for start in range(0, rows, chunk):
            f.write(rng.normal(0, 0.1, size=(min(chunk, rows - start), D)).astype("<f4").tobytes())
    n_models = -(-rows // len(STEPS))
    model = np.arange(rows) // len(STEPS)
    metrics = pd.DataFrame({
        "config.activation": np.where(model % 2, "relu", "tanh"),
        "config.learning_rate": 10.0 ** -rng.uniform(1, 4, n_models)[model],
        "config.train_fraction": rng.choice([0.1, 0.25, 0.5, 1.0], n_models)[model],
        "modeldir": [f"/zoo/run_{m}" for m in model],
        "step": np.array(STEPS)[np.arange(rows) % len(STEPS)],
        "test_accuracy": rng.uniform(0.1, 0.99, rows),
        "train_accuracy": rng.uniform(0.1, 0.99, rows),
    })
    metrics.to_csv(folder / "metrics.csv.gz", index=False)
    tf_layout_table().to_csv(folder / "layout.csv", index=False)


def child(mode: str, src: str, out: str) -> None:
    """Runs in a fresh process; prints one JSON line."""
    t0 = time.perf_counter()
    from weightspace.formats.unterthiner import convert_unterthiner  # noqa: F401  (imports numpy, pandas, torch)

    result = {"import_s": time.perf_counter() - t0}
    if mode == "convert":
        t1 = time.perf_counter()
        zoo = convert_unterthiner(src, out)
        result.update(convert_s=time.perf_counter() - t1, rows=zoo.num_samples, diverged=int(zoo.samples["diverged"].sum()))
    result["peak_rss"] = peak_rss_bytes()
    print(json.dumps(result))


def run_child(mode: str, src: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(src), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic data and the zoo")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    need = 2 * args.rows * D * 4
    free = shutil.disk_usage(args.tmp).free
    if free < 1.2 * need:
        sys.exit(f"need about {need / 2**30:.1f} GiB free in {args.tmp}, have {free / 2**30:.1f} GiB; pass --tmp or fewer --rows")
    work = Path(tempfile.mkdtemp(prefix="bench_unterthiner_", dir=args.tmp))
    try:
        src = work / "src"
        src.mkdir()
        t0 = time.perf_counter()
        write_synthetic(src, args.rows)
        size = (src / "weights.npy").stat().st_size
        print(f"synthetic zoo: {args.rows} x {D} float32, weights.npy {size / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - t0:.1f} s) in {work}")
        base = run_child("import", src, work / "unused")
        res = run_child("convert", src, work / "zoo")
        out_size = (work / "zoo" / "weights.npy").stat().st_size
        print(f"conversion      : {res['convert_s']:.1f} s for {res['rows']} rows "
              f"({size / 2**20 / res['convert_s']:.0f} MiB/s), zoo weights.npy {out_size / 2**20:.0f} MiB")
        print(f"peak RSS        : {res['peak_rss'] / 2**20:.0f} MiB = {res['peak_rss'] / size:.2f} x weights file "
              f"(target < 1.5 x); {'OK' if res['peak_rss'] < 1.5 * size else 'ABOVE TARGET'}")
        print(f"  of which fixed: {base['peak_rss'] / 2**20:.0f} MiB peak RSS of a process that only imports "
              f"(python, numpy, pandas, torch); conversion adds {(res['peak_rss'] - base['peak_rss']) / 2**20:.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
