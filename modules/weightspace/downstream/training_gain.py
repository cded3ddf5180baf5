"""What training added: the trained encoder's probe scores against the same encoder at its random init.

One run has one training seed, so its interval cannot be over seeds (the quality table's paired rule does
that). What one run can say is whether the difference between the two embeddings' probes on the test
split is larger than the test models' own sampling noise: the models of the test split are resampled with
replacement (all checkpoints of a model together), both probes scored on each resample, and the 90 %
percentile interval of the difference reported. Both probes were fitted on the same training rows with the
same targets, so the comparison is paired model by model.

``added`` means the interval lies above 0; ``lost`` below 0; ``nothing measurable`` where it holds 0.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from weightspace.downstream.targets import CLASSIFICATION, PRIMARY_METRIC

LEVEL = 0.90  # the interval's coverage
RESAMPLES = 1000  # bootstrap resamples of the test models
COLUMNS = ["target", "metric", "init", "trained", "gain", "low", "high", "models", "verdict"]


def _score(metric: str, truth: np.ndarray, prediction: np.ndarray) -> float:
    """Accuracy, or R² around the mean of the rows scored (NaN for a constant truth), as `targets.score`."""
    if metric == "accuracy":
        return float(np.mean(truth == prediction))
    truth, prediction = truth.astype(float), prediction.astype(float)
    total = float(np.square(truth - truth.mean()).sum())
    return 1.0 - float(np.square(truth - prediction).sum()) / total if total > 0 else np.nan


def training_gain(trained: pd.DataFrame, init: pd.DataFrame, tasks: Mapping[str, str], *, split: str = "test",
                  probe: str = "linear", resamples: int = RESAMPLES, level: float = LEVEL,
                  seed: int = 0) -> pd.DataFrame:
    """Per target: the score of the trained embedding's probe, of the random init's, their difference and its
    bootstrap interval over `split`'s models.

    Args:
        trained, init: prediction tables (`evaluate.PREDICTION_COLUMNS`) of the same rows and targets.
        tasks: each target's task (regression or classification), as the results table says.

    Returns:
        one row per target (`COLUMNS`); R² for continuous targets, accuracy for classes.

    Raises:
        ValueError: the two tables do not hold the same rows of a target.
    """
    rng = np.random.default_rng(seed)
    out = []
    for target, mine in trained[(trained.split == split) & (trained.probe == probe)].groupby("target", sort=False):
        if target not in tasks:
            continue
        theirs = init[(init.split == split) & (init.probe == probe) & (init.target == target)]
        mine, theirs = mine.sort_values("row"), theirs.sort_values("row")
        if not np.array_equal(mine.row.to_numpy(), theirs.row.to_numpy()):
            raise ValueError(f"target {target!r}: the trained and the random-init predictions cover other rows; "
                             "compare predictions of one run")
        truth = mine.truth.to_numpy()
        metric = PRIMARY_METRIC[tasks[target]]
        if tasks[target] != CLASSIFICATION:
            truth = truth.astype(float)
        a, b = mine.prediction.to_numpy(), theirs.prediction.to_numpy()
        models, where = np.unique(mine.model_id.to_numpy(), return_inverse=True)
        rows_of = [np.flatnonzero(where == m) for m in range(len(models))]
        diffs = []
        for _ in range(resamples):
            rows = np.concatenate([rows_of[m] for m in rng.integers(0, len(models), len(models))])
            diffs.append(_score(metric, truth[rows], a[rows]) - _score(metric, truth[rows], b[rows]))
        low, high = np.nanpercentile(diffs, [50 * (1 - level), 50 * (1 + level)]) if len(models) > 1 else (np.nan,) * 2
        score, base = _score(metric, truth, a), _score(metric, truth, b)
        verdict = ("added" if low > 0 else "lost" if high < 0 else "nothing measurable") if np.isfinite(low) else \
            "too few test models"
        out.append([target, metric, base, score, score - base, low, high, len(models), verdict])
    return pd.DataFrame(out, columns=COLUMNS)


def gain_sentence(gains: pd.DataFrame, *, selected_untrained: bool = False) -> str:
    """One sentence: what training added over the random init, with the interval, or that it added nothing."""
    if gains.empty:
        return ""
    if selected_untrained:
        return ("Training added nothing: the encoder at its random initialisation scored best on the validation "
                "split, so the embedding is the untrained one.")
    cells = [f"{r.target} {r.gain:+.3f} [{r.low:+.3f}, {r.high:+.3f}]" for r in gains.itertuples()]
    added = gains[gains.verdict == "added"]
    head = (f"Training added to the random init on {len(added)} of {len(gains)} targets" if len(added)
            else "Training added nothing measurable over the random init")
    return (f"{head} (test score of the trained encoder's linear probe minus the same encoder's at random init, "
            f"{LEVEL:.0%} bootstrap interval over the test models): " + "; ".join(cells) + ".")
