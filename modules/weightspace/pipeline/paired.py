"""The paired decision rule of the quality table: two rows compared on the same label draws and training seeds.

A learned row and the row it is set against (its own random init, or a baseline) are matched pair by pair:
the same target, k and label draw, and the same training seed where the other row has seeds (a baseline has
none: it is one value per draw). The table reports the mean paired difference and a 90 % bootstrap interval
over the pairs (seeds x draws); a goal is *met* when the whole interval lies above its margin. A gain inside
the noise of the seeds and draws is not met, however large its mean.

`paired_rows` turns the raw rows of `weightspace.pipeline.quality.run_quality` into one row per zoo, learner,
comparison and target; `write_paired` keeps them in ``<stem>_paired.csv`` beside the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.io.atomic import write_text

CONFIDENCE = 0.90  # the bootstrap interval's coverage
RESAMPLES = 2000  # bootstrap resamples of the pairs
GAIN = 0.10  # what training must add over the random init (or half the distance to 1.0 when less is left)
GOAL_TARGETS = ("test_acc", "training_iteration")  # the targets the goals are judged on
SCARCE_K = "30"  # the labelled models of the label-scarce goals
# comparison -> (k, baseline feature set, its probe); None: the learner's own random init (with its margin GAIN)
COMPARISONS: dict[str, tuple[str | None, str | None, str]] = {
    "training": (None, None, "linear"),
    "> code": (None, "code", "linear"),
    "> B_probe": (None, "B_probe (data-free)", "linear"),
    "> B_probe (task)": (None, "B_probe (task inputs)", "linear"),
    f"k={SCARCE_K}: training": (SCARCE_K, None, "linear"),
    f"k={SCARCE_K}: > B_s + gbt": (SCARCE_K, "B_s", "gbt"),
    f"k={SCARCE_K}: > code + gbt": (SCARCE_K, "code", "gbt"),
    f"k={SCARCE_K}: > B_probe (task)": (SCARCE_K, "B_probe (task inputs)", "linear"),
}
COLUMNS = ["zoo", "encoder", "comparison", "target", "k", "diff", "low", "high", "pairs", "margin", "met"]
INIT = ", random init"
MIN_PAIRS = 3  # fewer pairs claim nothing: one training seed is one run


def paired_interval(diffs: np.ndarray, *, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of paired differences: the mean and its `CONFIDENCE` percentile bootstrap interval
    (one pair: the interval is that one value)."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) == 1:
        return float(diffs[0]), float(diffs[0]), float(diffs[0])
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (RESAMPLES, len(diffs)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2
    return float(diffs.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def split_rows(raw: pd.DataFrame, encoder: str, feature_set: str, probe: str, target: str,
               k: str | None) -> pd.DataFrame:
    """The finite test-split rows of one feature set of `encoder` (k None: every label)."""
    rows = raw[(raw.encoder == encoder) & (raw.feature_set == feature_set) & (raw.probe == probe)
               & (raw.target == target) & (raw.split == "test")
               & (raw.k.isna() if k is None else raw.k.astype(str) == k)]
    return rows[np.isfinite(rows.value.astype(float))]


def paired_differences(ours: pd.DataFrame, theirs: pd.DataFrame) -> np.ndarray:
    """``ours - theirs`` pair by pair: matched on the label draw, and on the training seed where `theirs` has more
    than one (a baseline has one value per draw, whatever the seed)."""
    keys = ["draw"] + (["seed"] if theirs.seed.nunique() > 1 else [])
    left = ours.assign(draw=ours.draw.fillna(-1))
    right = theirs.assign(draw=theirs.draw.fillna(-1))[[*keys, "value"]]
    both = left.merge(right, on=keys, suffixes=("", "_theirs"))
    return (both.value.astype(float) - both.value_theirs.astype(float)).to_numpy()


def paired_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """The paired comparisons (`COMPARISONS`) of every learner in the raw rows, on `GOAL_TARGETS`, test split."""
    raw = raw.assign(k=raw.k.astype(object).where(raw.k.notna(), None))
    out = []
    for zoo, part in raw.groupby("zoo", sort=False):
        learners = [e for e in dict.fromkeys(part.encoder) if e != "baselines"]
        for encoder in learners:
            for comparison, (k, baseline, probe) in COMPARISONS.items():
                for target in GOAL_TARGETS:
                    ours = split_rows(part, encoder, encoder, "linear", target, k)
                    if baseline is None:
                        theirs = split_rows(part, encoder, encoder + INIT, "linear", target, k)
                    else:
                        theirs = split_rows(part, "baselines", baseline, probe, target, k)
                    if ours.empty or theirs.empty:
                        continue
                    diffs = paired_differences(ours, theirs)
                    if not len(diffs):
                        continue
                    margin = 0.0
                    if baseline is None:  # training must add GAIN, or half the distance to 1.0 where less is left
                        margin = min(GAIN, (1.0 - float(theirs.value.astype(float).mean())) / 2)
                    mean, low, high = paired_interval(diffs)
                    out.append({"zoo": zoo, "encoder": encoder, "comparison": comparison, "target": target, "k": k,
                                "diff": mean, "low": low, "high": high, "pairs": len(diffs), "margin": margin,
                                "met": bool(len(diffs) >= MIN_PAIRS and low > margin)})
    return pd.DataFrame(out, columns=COLUMNS)


def paired_path(stem: str | os.PathLike, kind: str = "paired") -> Path:
    """Beside the table at `stem`: its paired comparisons ``<stem>_paired.csv``, or (`kind` "rows") the raw rows
    behind them, ``<stem>_rows.csv``."""
    stem = Path(stem)
    return stem.with_name(f"{stem.with_suffix('').name}_{kind}.csv")


# a baseline gives the same numbers whenever it runs, so a narrower run (other k, no class targets) replaces only
# the groups of rows it made: feature set x probe x k x metric (a target it now leaves out as read goes with its
# group); a learner's rows are replaced by kind, its code may have changed since
BASELINE_GROUP = ["feature_set", "probe", "k", "metric"]


def baseline_groups(rows: pd.DataFrame) -> np.ndarray:
    """Each row's `BASELINE_GROUP` as one string (an empty k for every label)."""
    cells = rows.reindex(columns=BASELINE_GROUP).astype(object).to_numpy()
    return np.array(["|".join("" if pd.isna(v) else str(v) for v in row) for row in cells], dtype=object)


def other_baseline_rows(old: pd.DataFrame, new: pd.DataFrame) -> np.ndarray:
    """(len(old),) True where `old` holds a baseline row of a group that `new` did not make: it stays."""
    made = set(baseline_groups(new))
    return old.encoder.eq("baselines").to_numpy() & ~np.isin(baseline_groups(old), list(made))


def write_paired(stem: str | os.PathLike, raw: pd.DataFrame, zoo: str) -> pd.DataFrame:
    """Merge one run's raw rows of `zoo` into ``<stem>_rows.csv`` and write every paired comparison anew to
    ``<stem>_paired.csv``. The run's rows replace the kept ones of the same encoder, feature set, probe and kind
    (every label, or k labelled models), a baseline's only in the groups it made: a run of one baseline, of
    some k, or of the label-scarce rows only, keeps the rest.

    Returns:
        the paired comparisons of the whole table.
    """
    path = paired_path(stem, "rows")
    old = pd.read_csv(path, dtype={"k": object, "note": object}) if path.exists() else pd.DataFrame(columns=raw.columns)

    def kinds(rows: pd.DataFrame) -> pd.Series:
        return rows.encoder + "|" + rows.feature_set + "|" + rows.probe + "|" + rows.k.notna().astype(str)

    keep = (~((old.zoo == zoo) & kinds(old).isin(set(kinds(raw)))) | other_baseline_rows(old, raw)
            if len(old) else np.ones(0, dtype=bool))
    merged = pd.concat([t for t in (old[keep], raw.assign(zoo=zoo)) if len(t)], ignore_index=True)
    write_text(path, merged.to_csv(index=False))
    paired = paired_rows(merged)
    write_text(paired_path(stem), paired.to_csv(index=False))
    return paired


def read_paired(stem: str | os.PathLike) -> pd.DataFrame:
    """The paired comparisons kept beside the table at `stem` (none: an empty table)."""
    path = paired_path(stem)
    return pd.read_csv(path, dtype={"k": object}) if path.exists() else pd.DataFrame(columns=COLUMNS)


def paired_lines(paired: pd.DataFrame) -> list[str]:
    """The paired comparisons as markdown: one row per zoo and learner, a cell per comparison."""
    if paired.empty:
        return ["No paired comparison yet: rerun a learner's rows (the pairs are kept from the raw rows)."]
    comparisons = [c for c in COMPARISONS if c in set(paired.comparison)]
    short = {"test_acc": "acc", "training_iteration": "epoch"}
    lines = [f"Test split, linear probe of the learned row minus the other row, paired on training seeds and "
             f"label draws: mean [{CONFIDENCE:.0%} bootstrap interval] (pairs); **met** where the whole interval "
             f"lies above the margin, from {MIN_PAIRS} pairs up: {GAIN:.2f} for `training` (or half the distance to 1.0 when less than 0.2 is "
             "left), 0 against a baseline.", "",
             "| zoo | encoder | " + " | ".join(comparisons) + " |", "|---|---|" + "---|" * len(comparisons)]
    for (zoo, encoder), rows in paired.groupby(["zoo", "encoder"], sort=False):
        cells = []
        for comparison in comparisons:
            found = rows[rows.comparison == comparison]
            cells.append("; ".join(f"{short.get(r.target, r.target)} {'**met**' if r.met else 'missed'} "
                                   f"{r.diff:+.3f} [{r.low:+.3f}, {r.high:+.3f}] ({r.pairs})"
                                   for r in found.itertuples()) or "-")
        lines.append(f"| {zoo} | {encoder} | " + " | ".join(cells) + " |")
    return lines
