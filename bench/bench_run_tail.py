"""What a run spends after training, with the old settings and the current ones, timed in one run.

After its last iteration a run embeds the zoo, probes the embedding and projects it for the report.
It used to probe with boosted trees as well as the linear probe, and to fit UMAP on up to 5000 rows of
the full embedding; now boosted trees run only on request (``--embedding-trees``) and UMAP is fitted on
at most 2000 rows of 50 principal components. This reads a finished experiment folder (its
``embeddings.npy`` and ``embedding_samples.csv``) and times both tails on that embedding, so the ratio
is measured on one machine in one run.

    python bench/bench_run_tail.py 11_tetris_seed/tetris_seed
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.downstream.evaluate import evaluate
from weightspace.pipeline import projection


def tail(Z: np.ndarray, samples: pd.DataFrame, *, trees: bool, umap_rows: int, umap_dim: int) -> dict[str, float]:
    """Seconds of the final probes and of the projection with the given settings."""
    times = {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(Z, samples.drop(columns=["split"]), feature_sets={"embedding": Z},
                 probes=("linear", "gbt") if trees else ("linear",), splits=samples["split"].to_numpy())
    times["final probes"] = time.perf_counter() - start
    before = projection.MAX_UMAP_ROWS, projection.UMAP_INPUT_DIM
    projection.MAX_UMAP_ROWS, projection.UMAP_INPUT_DIM = umap_rows, umap_dim
    try:
        start = time.perf_counter()
        projection.project_embedding(Z, umap=True)
        times["projection"] = time.perf_counter() - start
    finally:
        projection.MAX_UMAP_ROWS, projection.UMAP_INPUT_DIM = before
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a finished experiment folder")
    args = parser.parse_args()
    Z = np.load(args.folder / "embeddings.npy")
    samples = pd.read_csv(args.folder / "embedding_samples.csv")
    print(f"embedding {Z.shape[0]} x {Z.shape[1]} from '{args.folder}'")
    old = tail(Z, samples, trees=True, umap_rows=projection.MAX_PROJECTED, umap_dim=Z.shape[1])
    new = tail(Z, samples, trees=False, umap_rows=projection.MAX_UMAP_ROWS, umap_dim=projection.UMAP_INPUT_DIM)
    for step in old:
        print(f"{step:>14}: before {old[step]:6.1f} s, now {new[step]:6.1f} s")
    total_old, total_new = sum(old.values()), sum(new.values())
    print(f"{'tail':>14}: before {total_old:6.1f} s, now {total_new:6.1f} s ({total_new / total_old:.2f} of before)")


if __name__ == "__main__":
    main()
