"""The logistic probe on wide features: scikit-learn's lbfgs path against the preconditioned one.

Both paths fit the probe's default C grid (warm-started, small to large) on the same standardized
features and stop by the same rule; the benchmark prints, per target, the time of each path, their
ratio (measured in this one run, so machine noise hits both), the chosen C and the test accuracy.

With ``--selection`` it compares instead the classifiers that may score a class while an encoder trains
(only to pick its checkpoint): the logistic probe on the short grid those probes once used (5 Cs, 100
iterations) against the ridge classifier they use now (`RidgeClassifierProbe`), with the validation
accuracy each reports.

Features: an embedding an experiment folder saved (``embeddings.npy`` + ``embedding_samples.csv`` with a
``split`` column), or, without ``--run``, a synthetic problem of the same shape class (correlated
features, three classes).

    python bench/bench_logistic.py --run 42_digits_hyp/digits_hyp --targets activation init optimizer
    python bench/bench_logistic.py --rows 8000 --features 2000          # synthetic
    python bench/bench_logistic.py --run 12_tetris_hyp/tetris_hyp --targets activation init --selection
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import weightspace.downstream.probes as probes
from weightspace.downstream.probes import LogisticProbe, RidgeClassifierProbe

SHORT_GRID = dict(Cs=(1e-2, 1e-1, 1.0, 1e1, 1e2), max_iter=100)  # the selection probes' logistic grid until now


def saved_problem(run: Path, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, split) of one classification target from an experiment's saved embedding."""
    z = np.load(run / "embeddings.npy", mmap_mode="r")
    samples = pd.read_csv(run / "embedding_samples.csv")
    keep = ~samples["diverged"].fillna(False).astype(bool).to_numpy() if "diverged" in samples else slice(None)
    return np.asarray(z[keep]), samples[target].astype(str).to_numpy()[keep], samples["split"].to_numpy()[keep]


def synthetic_problem(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(64, features)).astype(np.float32)  # features share 64 directions: ill-conditioned
    X = rng.normal(size=(rows, 64)).astype(np.float32) @ mixing + 0.1 * rng.normal(size=(rows, features)).astype(np.float32)
    y = np.argmax(X[:, :64] @ rng.normal(size=(64, 3)) + rng.gumbel(size=(rows, 3)), axis=1).astype(str)
    split = rng.choice(["train", "val", "test"], size=rows, p=[0.7, 0.15, 0.15])
    return X, y, split


def timed_fit(X, y, split, *, preconditioned: bool) -> tuple[float, LogisticProbe]:
    threshold = probes.PRECONDITIONED_FEATURES
    probes.PRECONDITIONED_FEATURES = 0 if preconditioned else X.shape[1] + 1
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs at max_iter warns; the table shows the outcome
            probe = LogisticProbe().fit(X[split == "train"], y[split == "train"], X[split == "val"], y[split == "val"])
        return time.perf_counter() - start, probe
    finally:
        probes.PRECONDITIONED_FEATURES = threshold


def selection_fits(X, y, split) -> tuple[float, float, float, float]:
    """(seconds, validation accuracy) of the short-grid logistic probe, then of the ridge classifier."""
    train, val = split == "train", split == "val"
    out = []
    for probe in (LogisticProbe(**SHORT_GRID), RidgeClassifierProbe()):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe.fit(X[train], y[train], X[val], y[val])
        out += [time.perf_counter() - start, probe.score(X[val], y[val])]
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="an experiment output folder with embeddings.npy")
    parser.add_argument("--targets", nargs="+", default=["activation", "init", "optimizer"])
    parser.add_argument("--rows", type=int, default=8000, help="synthetic rows (without --run)")
    parser.add_argument("--features", type=int, default=2000, help="synthetic features (without --run)")
    parser.add_argument("--selection", action="store_true",
                        help="time the selection probes' classifiers instead (short logistic grid vs ridge classifier)")
    args = parser.parse_args()
    problems = ({t: saved_problem(args.run, t) for t in args.targets} if args.run
                else {"synthetic": synthetic_problem(args.rows, args.features)})
    if args.selection:
        print("| target | logistic, short grid s | ridge classifier s | ratio | val acc (logistic / ridge) |")
        print("|---|---:|---:|---:|---|")
        for name, (X, y, split) in problems.items():
            slow, slow_acc, fast, fast_acc = selection_fits(X, y, split)
            print(f"| {name} | {slow:.1f} | {fast:.1f} | {slow / fast:.1f}x | {slow_acc:.3f} / {fast_acc:.3f} |",
                  flush=True)
        return
    print("| target | rows x features | lbfgs s | preconditioned s | ratio | C (lbfgs / ours) | test acc (lbfgs / ours) |")
    print("|---|---|---:|---:|---:|---|---|")
    for name, (X, y, split) in problems.items():
        test = split == "test"
        slow, reference = timed_fit(X, y, split, preconditioned=False)
        fast, ours = timed_fit(X, y, split, preconditioned=True)
        print(f"| {name} | {int((split == 'train').sum())} x {X.shape[1]} | {slow:.1f} | {fast:.1f} | "
              f"{slow / fast:.1f}x | {reference.C_:g} / {ours.C_:g} | "
              f"{reference.score(X[test], y[test]):.4f} / {ours.score(X[test], y[test]):.4f} |", flush=True)



if __name__ == "__main__":
    main()
