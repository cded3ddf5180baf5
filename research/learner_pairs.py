"""Two learners of the quality table compared pair by pair: the same zoo, target, label draw and training seed.

The table compares each learner with its own random init and with the baselines; an ablation asks how two
learners differ (beta 1 against beta 0, task queries against uniform ones). This prints, per zoo and goal
target, the mean paired difference ``ours - theirs`` of the trained rows (test split, linear probe, every label)
and its 90 % bootstrap interval, from the raw rows kept beside the table:

    python research/learner_pairs.py --ours "behaviour AE (beta 1, task queries)" \
        --theirs "behaviour AE (beta 0, task queries)"

A learner is named as its rows are, less the query count a folder sets (digits_hyp's "64 task queries" is
"task queries" here), so that one learner keeps one name on every zoo.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from weightspace.pipeline.paired import GOAL_TARGETS, MIN_PAIRS, paired_interval, split_rows

ROWS = Path(__file__).resolve().parents[1] / "docs" / "representation_quality_rows.csv"


def common_name(encoder: str) -> str:
    """`encoder` without the query count a folder sets: "(beta 1, 64 task queries)" -> "(beta 1, task queries)"."""
    return re.sub(r", \d+ (task|uniform|normal) queries", r", \1 queries", encoder)


def learner_name(rows: pd.DataFrame, name: str) -> str | None:
    """The name on this zoo of the learner called `name` (`common_name`); None where the zoo has none."""
    return next((e for e in sorted(set(rows.encoder.dropna())) if common_name(e) == name), None)


def compare(rows: pd.DataFrame, ours: str, theirs: str) -> pd.DataFrame:
    out = []
    for zoo, part in rows.groupby("zoo", sort=False):
        a, b = learner_name(part, ours), learner_name(part, theirs)
        if a is None or b is None:
            continue
        for target in GOAL_TARGETS:  # the trained rows, linear probe, every label
            left, right = split_rows(part, a, a, "linear", target, None), split_rows(part, b, b, "linear", target, None)
            both = left.merge(right[["seed", "value"]], on="seed", suffixes=("", "_theirs"))  # seed by seed
            diffs = (both.value.astype(float) - both.value_theirs.astype(float)).to_numpy()
            if not len(diffs):
                continue
            mean, low, high = paired_interval(diffs)
            verdict = ("ahead" if low > 0 else "behind" if high < 0 else "no difference") if len(diffs) >= MIN_PAIRS \
                else "too few pairs"
            out.append({"zoo": zoo, "target": target, "ours": a, "theirs": b, "diff": round(mean, 3),
                        "low": round(low, 3), "high": round(high, 3), "pairs": len(diffs), "reads": verdict})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours", required=True, help="one learner, as its rows name it")
    parser.add_argument("--theirs", required=True, help="the other")
    parser.add_argument("--rows", type=Path, default=ROWS, help="the raw rows (default: the table's, in docs/)")
    args = parser.parse_args(argv)
    rows = pd.read_csv(args.rows, dtype={"k": object, "draw": object, "note": object})
    table = compare(rows, args.ours, args.theirs)
    if table.empty:
        known = sorted({common_name(e) for e in rows.encoder.dropna() if e != "baselines"})
        print(f"no zoo holds rows of both {args.ours!r} and {args.theirs!r}; the learners are: {known}", file=sys.stderr)
        return 1
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
