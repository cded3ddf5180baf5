"""What a tune run costs the driver and the object stores as trials and zoos grow, on a local cluster.

`run_tuner` hands the zoo to its trials through ray's object store: the driver puts it once, each node
that runs a trial pulls one copy into its own store, and every trial on that node reads that copy
without copying it again (until it cuts its split out). This measures that on a three-node
`ray.cluster_utils.Cluster` on 127.0.0.1 (a 1-CPU head for the driver, two workers with N CPUs each,
trials only on the workers; a fresh cluster for every row) for a grid of zoo sizes and trial
counts. Trials build their datasets as in training and report, instead of training, their memory;
so the table is the cost of delivery, not of learning.

Columns: the zoo's weights in MiB, trials, the nodes that ran them, the driver's peak resident memory
above its level before the run, the peak of /dev/shm in use above its level before (every node's
object store lives there on one machine, so this is all stores together), and the same divided by
the zoo's size (about the number of copies held); a trial's mean resident memory; and wall time
(noisy: one run per row, on a machine shared with nothing else only if you make it so).

    python bench/cluster_scale.py                            # 3 zoo sizes x 1, 4, 8 trials: 3 min on 2 cores
    python bench/cluster_scale.py --sizes 16 --trials 1 2    # one quick row pair
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every node takes 127.0.0.1 (before ray loads)

import ray
from ray.cluster_utils import Cluster

from weightspace import WeightLayout, create_zoo_model
from weightspace.pipeline.tune import WeightspaceTrainable, run_tuner
from weightspace.representation.config import DataConfig, LearnerConfig
from weightspace.representation.encoders.neuron_set import NeuronSetConfig
from weightspace.zoo.store import Zoo

MIB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def shm_used_bytes() -> int:
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class Peaks:
    """Sample the driver's resident memory and /dev/shm in use every 50 ms while the block runs."""

    def __enter__(self) -> Peaks:
        self.rss0, self.shm0 = rss_bytes(), shm_used_bytes()
        self.rss, self.shm = self.rss0, self.shm0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.rss, self.shm = max(self.rss, rss_bytes()), max(self.shm, shm_used_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class DeliveryTrial(WeightspaceTrainable):
    """A trial that builds its datasets (the zoo from the object store, its splits cut out) and reports
    its memory instead of training."""

    def step(self) -> dict:
        weights = self.datasets["train"].weights
        return {"loss_val": 0.0, "trial_rss_mib": rss_bytes() / MIB, "node": ray.get_runtime_context().get_node_id(),
                "train_mib": weights.numel() * weights.element_size() / MIB}


def synthetic_zoo(mib: float, seed: int = 0) -> Zoo:
    """A Tetris-MLP zoo of random weights with about `mib` MiB of weights (two checkpoints per model)."""
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    rows = max(4, int(mib * MIB / (4 * layout.num_params)) // 2 * 2)
    rng = np.random.default_rng(seed)
    weights = rng.normal(scale=0.1, size=(rows, layout.num_params)).astype(np.float32)
    samples = pd.DataFrame({"model_id": np.arange(rows) // 2, "epoch": np.arange(rows) % 2,
                            "test_acc": rng.uniform(size=rows)})
    return Zoo(weights, samples, layout, {"name": "synthetic"})


def measure(zoo: Zoo, trials: int, root: Path, *, cpus_per_node: int) -> dict:
    config = LearnerConfig(encoder=NeuronSetConfig(width=16, project_dim=50, activation="leakyrelu"))
    config.data = DataConfig(path=str(root / "zoo-not-read"))  # trials read no file: the path need not exist
    with warnings.catch_warnings(), Peaks() as peaks:
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        grid = run_tuner(config, name=f"run-{zoo.weights.nbytes}-{trials}", storage_path=root / "runs",
                         iterations=1, num_samples=trials, zoo=zoo, evaluate_fn=None, trainable=DeliveryTrial,
                         cpus_per_trial=1, trial_resources={"trainer": 1 / cpus_per_node}, resume=False, verbose=0)
        seconds = time.perf_counter() - start
    metrics = [r.metrics for r in grid if not r.error]
    failed = [_reason(r.error) for r in grid if r.error]  # e.g. killed by ray's memory monitor
    zoo_mib = zoo.weights.nbytes / MIB
    shm_mib = (peaks.shm - peaks.shm0) / MIB
    return {"zoo MiB": round(zoo_mib, 1), "trials": trials, "nodes used": len({m["node"] for m in metrics}),
            "driver peak +MiB": round((peaks.rss - peaks.rss0) / MIB, 1),
            "object stores peak +MiB": round(shm_mib, 1), "copies": round(shm_mib / zoo_mib, 2),
            "trial RSS MiB": round(float(np.mean([m["trial_rss_mib"] for m in metrics])), 1) if metrics else None,
            "seconds": round(seconds, 1), "failed": len(failed), "first failure": failed[0][:120] if failed else ""}


def _reason(error: BaseException) -> str:
    """The line of a trial's error that says why it failed (ray prefixes tracebacks and failure counters)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "Error" in line or "memory" in line.lower()]
    return (named or lines or [type(error).__name__])[-1]


@contextmanager
def local_cluster(store_bytes: int, cpus_per_node: int) -> Iterator[None]:
    """A head (1 CPU, the driver's node) and two workers (`cpus_per_node` CPUs and one "trainer" each) on
    127.0.0.1, this process connected as the driver."""
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                           "object_store_memory": store_bytes})
    try:
        for _ in range(2):
            nodes.add_node(num_cpus=cpus_per_node, resources={"trainer": 1}, object_store_memory=store_bytes)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        nodes.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[16, 128, 512], help="zoo sizes in MiB")
    parser.add_argument("--trials", type=int, nargs="+", default=[1, 4, 8], help="trial counts")
    parser.add_argument("--cpus-per-node", type=int, default=4, help="CPUs (trial slots) of each worker node")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as CSV here")
    args = parser.parse_args()

    store = int(max(args.sizes) * 3 * MIB) + 256 * MIB
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mib in args.sizes:
            zoo = synthetic_zoo(mib)
            for trials in args.trials:
                # a fresh cluster per row: no object of an earlier row is left in a store or mapped by the driver
                with local_cluster(store, args.cpus_per_node):
                    rows.append(measure(zoo, trials, Path(tmp), cpus_per_node=args.cpus_per_node))
                print(rows[-1], flush=True)
            del zoo
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
