"""Time of the linear probes of one wide feature set with and without the shared eigendecomposition.

`evaluate` fits one ridge for every continuous target of a feature set and one ridge classifier per class
target, all on the same training rows; each used to decompose the same standardized Gram matrix again
(digits_hyp: three class targets beside the continuous ones, 3,928 learned features). With
`probes.CACHE_ENTRIES` the later fits look the decomposition up. This fits the same probes both ways on the
same random features in one run and prints the seconds of each, their ratio, and whether the coefficients
are identical (they must be: the same decomposition, the same arithmetic).

    python bench/bench_probe_decomposition.py                        # 6,000 rows x 2,000 features
    python bench/bench_probe_decomposition.py --rows 8400 --features 3928 --threads 1   # digits_hyp's size
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from weightspace.downstream import RidgeClassifierProbe, RidgeProbe, probes


def fit_all(X: np.ndarray, Y: np.ndarray, classes: list[np.ndarray], train: int) -> list:
    """The probes `evaluate` fits on one feature set: the continuous targets together, a classifier per class."""
    fitted = [RidgeProbe().fit(X[:train], Y[:train], X[train:], Y[train:])]
    fitted += [RidgeClassifierProbe().fit(X[:train], c[:train], X[train:], c[train:]) for c in classes]
    return fitted


def timed(X, Y, classes, train, entries: int) -> tuple[float, list]:
    probes.CACHE_ENTRIES = entries
    probes._DECOMPOSITIONS.clear()
    start = time.perf_counter()
    fitted = fit_all(X, Y, classes, train)
    return time.perf_counter() - start, fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6000, help="training rows (validation: a quarter more)")
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--class-targets", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows + args.rows // 4
    X = rng.normal(size=(n, args.features)).astype(np.float32)
    Y = X[:, :8] @ rng.normal(size=(8, 4)) + rng.normal(size=(n, 4))
    classes = [np.asarray(["a", "b", "c"])[(X[:, j] > 0).astype(int) + (X[:, j] > 1)] for j in range(args.class_targets)]
    with threadpool_limits(args.threads):
        without, alone = timed(X, Y, classes, args.rows, 0)
        with_cache, shared = timed(X, Y, classes, args.rows, 2)
    same = all(np.array_equal(a.ridge_.coef_, b.ridge_.coef_) for a, b in zip(alone, shared))
    print(f"{args.rows} rows x {args.features} features, {1 + args.class_targets} probes: "
          f"{without:.1f} s decomposing each, {with_cache:.1f} s sharing one ({without / with_cache:.1f}x); "
          f"identical coefficients: {same}")


if __name__ == "__main__":
    main()
