"""The quality table on disk: raw rows summarized over seeds, merged into a CSV and rendered as markdown.

The CSV is written with pandas' quoting, so a field holding a comma (the ``command`` column often does)
reads back as one field; `read_table` also reads tables written before that, whose unquoted commands
spill into extra fields, by joining the overflow back into ``command``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from weightspace.io.atomic import write_text
from weightspace.pipeline.learners import create_learner, learner_schedules, list_learners
from weightspace.pipeline.paired import COLUMNS as PAIRED_COLUMNS
from weightspace.pipeline.paired import other_baseline_rows, paired_lines, read_paired

KEYS = ["zoo", "encoder", "feature_set", "probe", "target", "metric", "split", "k"]
COLUMNS = KEYS + ["mean", "spread", "seeds", "draws", "minutes", "init_chosen", "note", "command"]
# column -> what it holds; rendered into the markdown so that the documentation travels with the table
COLUMN_DOCS = {
    "zoo": "the zoo's name",
    "encoder": "`baselines`, or the encoder whose rows these are (its control rows included)",
    "feature_set": "what the probe reads: a baseline (B_W, B_s, code, B_probe (data-free), B_probe (task inputs), "
                   "hyperparameters), an encoder's embedding chosen on validation, or `<encoder>, random init`",
    "probe": "`linear` (ridge, or logistic regression for a class; regularisation chosen on validation, or by "
             "cross-validation among the labelled models when k is set) or `gbt` (boosted trees)",
    "target": "the predicted property",
    "metric": "`r2` for a number, `accuracy` for a class",
    "split": "where the score was measured: train, val or test (label-scarce rows: test)",
    "k": "empty: every training label; else labelled training models of the label-scarce protocol (`all`: "
         "every training model, regularisation by cross-validation)",
    "mean": "the score, averaged over training seeds (and over draws of the labelled models when k is set)",
    "spread": "max - min of the score over the same seeds (and draws); 0 for one value",
    "seeds": "training seeds averaged (1 for baselines)",
    "draws": "draws of the labelled models per seed (empty when k is empty)",
    "minutes": "training minutes per seed (0 for baselines and controls)",
    "init_chosen": "of the seeds, how many chose the random init on validation (its rows then are the untrained "
                   "state); empty for baselines, controls and tables made before the init was a candidate",
    "note": "why a row is empty (a feature set that is not available for this zoo), else empty",
    "command": "the command that made the rows, where it ran and how long it took",
}


def summarize(raw: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (max - min over seeds and draws) per zoo, encoder, feature set, probe, target, split, k."""
    raw = raw.assign(k=raw.k.astype(object).where(raw.k.notna(), None),
                     init_seed=raw.seed.where(raw.chosen == 0))
    grouped = raw.groupby(KEYS, sort=False, dropna=False)
    out = grouped.agg(mean=("value", "mean"), spread=("value", lambda v: v.max() - v.min()),
                      seeds=("seed", "nunique"), draws=("draw", "nunique"), minutes=("minutes", "mean"),
                      init_chosen=("init_seed", "nunique"), chosen=("chosen", "count"),
                      note=("note", lambda v: next((n for n in v if isinstance(n, str) and n), ""))).reset_index()
    out["draws"] = out.draws.where(out.k.notna())
    out["init_chosen"] = out.init_chosen.where(out.pop("chosen") > 0)
    return out.reindex(columns=COLUMNS)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The table at `path` with the columns `COLUMNS` (those an older table lacks come back empty).

    Raises:
        ValueError: a row with more fields than the header that cannot be a spilt ``command``, or fewer fields.
    """
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    header, body = rows[0], rows[1:]
    width = len(header)
    if header[-1] == "command":  # an unquoted command with commas spilt over extra fields: join them back
        body = [r[:width - 1] + [",".join(r[width - 1:])] if len(r) > width else r for r in body]
    bad = [i + 2 for i, r in enumerate(body) if len(r) != width]
    if bad:
        raise ValueError(f"'{path}': lines {bad[:5]} have other than the header's {width} fields; the table is "
                         "damaged beyond a spilt command column, regenerate it")
    text = io.StringIO()
    csv.writer(text).writerows([header, *body])
    table = pd.read_csv(io.StringIO(text.getvalue()), dtype={"k": object, "note": object, "command": object})
    return table.reindex(columns=COLUMNS)


def write_table(stem: str | os.PathLike, part: pd.DataFrame, zoo: str, encoders: Sequence[str], *,
                order: Sequence[str] = (), source: str = "`weightspace quality`",
                scarce_only: bool = False) -> pd.DataFrame:
    """Write `part` into the table at ``stem.csv`` (and ``stem.md``), replacing the rows of `zoo` x `encoders`
    (only the label-scarce ones with `scarce_only`, for a run that made no every-label row; of the baselines,
    only the feature set x probe x k x metric groups that `part` holds, so that a run of some baselines, or of
    one at some k, keeps the others).

    The table is read just before writing, so that runs of other zoos or encoders at the same time keep
    their rows (two runs of the same zoo and encoder: the later one wins). Zoos sort in `order`, others after.
    """
    csv_path = Path(stem).with_suffix(".csv")
    old = read_table(csv_path) if csv_path.exists() else pd.DataFrame(columns=COLUMNS)
    replaced = (old.zoo == zoo) & old.encoder.isin(list(encoders))
    if scarce_only:
        replaced &= old.k.notna()
    replaced &= ~other_baseline_rows(old, part)  # a narrower baseline run keeps the groups it did not make
    held = list(dict.fromkeys(old.encoder))  # the order the table holds its encoders in
    old = old[~replaced]
    table = pd.concat([t for t in (old, part.reindex(columns=COLUMNS)) if len(t)], ignore_index=True)
    zoos = list(order) + [z for z in dict.fromkeys(table.zoo) if z not in order]
    # encoders keep the place they hold in the table; new ones follow in the registry's order
    learners = [create_learner(n, schedule=s).title for n in list_learners() for s in learner_schedules(n)]
    order = [e for e in dict.fromkeys([*held, *learners, *part.encoder]) if e != "baselines"]
    rank = {"baselines": -1} | {title: i for i, title in enumerate(order)}
    table = table.sort_values(["zoo", "encoder"], key=lambda c: c.map(zoos.index) if c.name == "zoo"
                              else c.map(lambda e: rank.get(e, len(rank))), kind="stable").reset_index(drop=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(csv_path, table.to_csv(index=False))  # pandas quotes every field that holds a comma
    write_text(csv_path.with_suffix(".md"), markdown(table, source=source, paired=read_paired(stem)))
    return table


def _cell(rows: pd.DataFrame, target: str, *, val: bool = True) -> str:
    test, valid = rows[(rows.target == target) & (rows.split == "test")], rows[(rows.target == target)
                                                                                  & (rows.split == "val")]
    if test.empty or not np.isfinite(test["mean"].iloc[0]):
        return "-"
    t = test.iloc[0]
    text = f"{t['mean']:.3f}" + (f" ± {t.spread:.3f}" if t.seeds * (1 if pd.isna(t.draws) else t.draws) > 1 else "")
    return text + (f" ({valid['mean'].iloc[0]:.3f})" if val and not valid.empty else "")


def markdown(table: pd.DataFrame, *, source: str = "`weightspace quality`", paired: pd.DataFrame | None = None) -> str:
    """The table as markdown: per zoo, every-label probes, then label-scarce probes (where run)."""
    learned = table[(table.encoder != "baselines") & table.k.isna() & (table.feature_set == table.encoder)]
    stale = ("; `-` where the rows were made before the random init was a candidate"
             if learned.init_chosen.isna().any() else "")
    lines = ["# Representation quality", "",
             f"Generated by {source}. Linear probes (ridge, alpha chosen on validation) unless the probe column "
             "says `gbt` (boosted trees). Cells: test R² (accuracy for a class; mean ± spread over training seeds, "
             "spread = max - min), and in brackets the validation score that every choice was made on. Each "
             "seed's embedding is the state of training, the random init included, whose linear probes score "
             "best on validation; `init chosen` counts the seeds where that was the random init (the row is "
             f"then the untrained state{stale}). `code` is the invariant statistics code, an untrained baseline; "
             "B_probe are the models' outputs on fixed inputs.", ""]
    for zoo, part in table.groupby("zoo", sort=False):
        full, scarce = part[part.k.isna()], part[part.k.notna()]
        targets = list(dict.fromkeys(full.target if len(full) else part.target))
        lines += [f"## {zoo}", ""] + [f"    {c}" for c in part.command.dropna().unique()] + [""]
        lines += ["| features | probe | " + " | ".join(targets) + " | train min | init chosen |",
                  "|---|---|" + "---:|" * (len(targets) + 2)]
        for (fs, probe), rows in full.groupby(["feature_set", "probe"], sort=False):
            first = rows.iloc[0]
            minutes = f"{first.minutes:.1f}" if first.minutes else "-"
            init = "-" if pd.isna(first.init_chosen) else f"{int(first.init_chosen)}/{int(first.seeds)}"
            lines.append(f"| {fs} | {probe} | " + " | ".join(_cell(rows, t) for t in targets)
                         + f" | {minutes} | {init} |")
        noted = part[part.note.map(lambda n: isinstance(n, str) and n != "")]
        notes = noted[noted.k.isna() | ~noted.feature_set.isin(noted[noted.k.isna()].feature_set)]
        notes = notes.drop_duplicates(["feature_set", "note"])
        lines += [""] + [f"- {r.feature_set}: {r.note}" for r in notes.itertuples()] + ([""] if len(notes) else [])
        if len(scarce):
            lines += [f"### {zoo}: probes with k labelled training models", "",
                      "Test scores, mean ± spread over draws of the labelled models × training seeds; "
                      "regularisation chosen by cross-validation among the k models.", "",
                      "| features | probe | k | " + " | ".join(targets) + " |", "|---|---|---|" + "---:|" * len(targets)]
            for (fs, probe, k), rows in scarce.groupby(["feature_set", "probe", "k"], sort=False):
                lines.append(f"| {fs} | {probe} | {k} | " + " | ".join(_cell(rows, t, val=False) for t in targets) + " |")
            lines.append("")
    lines += ["## The goals of self-supervision, paired", ""] + paired_lines(
        paired if paired is not None else pd.DataFrame(columns=PAIRED_COLUMNS)) + [""]
    lines += ["## The goals of self-supervision, by spread (tables made before the paired rule)", ""]
    lines += goal_lines(table) + [""]
    lines += ["## Columns of the CSV", ""] + [f"- `{c}`: {doc}" for c, doc in COLUMN_DOCS.items()] + [""]
    return "\n".join(lines)


GOAL_TARGETS = {"test_acc": "acc", "training_iteration": "epoch"}  # the targets every goal is judged on
GAIN = 0.10  # what training must add over the random init (or half the distance to 1.0, when less than 0.2 is left)
SCARCE_K = "30"  # the labelled models of the label-scarce goal
# goal column -> (k, baseline feature set, its probe); the learned row's linear probe must beat it
GOALS = {"> code": (None, "code", "linear"), "> B_probe": (None, "B_probe (data-free)", "linear"),
         f"k={SCARCE_K}: > B_s + gbt": (SCARCE_K, "B_s", "gbt"), f"k={SCARCE_K}: > code + gbt": (SCARCE_K, "code", "gbt"),
         f"k={SCARCE_K}: > B_probe": (SCARCE_K, "B_probe (data-free)", "linear")}


def _score(part: pd.DataFrame, feature_set: str, probe: str, target: str, k: str | None):
    """(mean, spread, training seeds) of one test cell, or None where the table lacks it."""
    rows = part[(part.feature_set == feature_set) & (part.probe == probe) & (part.target == target)
                & (part.k.isna() if k is None else part.k == k)]
    if rows.empty or not np.isfinite(rows["mean"].iloc[0]):
        return None
    r = rows.iloc[0]
    return float(r["mean"]), float(r.spread) if np.isfinite(r.spread) else 0.0, int(r.seeds)


def _versus(ours, theirs, need: float = 0.0) -> tuple[bool, str] | None:
    """(met, text): `ours` clears `theirs` by more than `need` and both rows' spreads; None where one is missing.
    A learned row of one training seed has no spread: it is one run and claims nothing."""
    if ours is None or theirs is None:
        return None
    (m, spread, seeds), (b, other, _) = ours, theirs
    bar = max(need, spread, other)
    if seeds < 2:
        return False, f"{m - b:+.3f} (one run)"
    return m - b > bar, f"{m - b:+.3f} ({bar:.3f})"


def goal_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The goals of self-supervision per zoo and learned encoder, on the test split, for accuracy and epoch:
    training adds `GAIN` over the random init (and loses by no more than the spread on other targets); with
    every label the linear probe beats the code and data-free B_probe; with `SCARCE_K` labelled models it beats
    B_s and the code with boosted trees and data-free B_probe. Met where the mean clears by more than the larger
    spread of the two rows (and, for training, the gain). Cells: (met, text) per target, None where a row is
    missing."""
    test = table[table.split == "test"]
    out = []
    for zoo, part in test.groupby("zoo", sort=False):
        learned = [e for e in dict.fromkeys(part.encoder) if e != "baselines"
                   and not part[(part.feature_set == e) & (part.probe == "linear") & part.k.isna()].empty]
        for encoder in learned:
            control = encoder + ", random init"
            row = {"zoo": zoo, "encoder": encoder, "training": {}}
            for t in GOAL_TARGETS:
                init = _score(part, control, "linear", t, None)
                need = GAIN if init is None else min(GAIN, (1.0 - init[0]) / 2)
                row["training"][t] = _versus(_score(part, encoder, "linear", t, None), init, need)
            for goal, (k, feature_set, probe) in GOALS.items():
                row[goal] = {t: _versus(_score(part, encoder, "linear", t, k), _score(part, feature_set, probe, t, k))
                             for t in GOAL_TARGETS}
            worse = []
            for t in sorted(set(part[(part.feature_set == encoder) & part.k.isna()].target) - set(GOAL_TARGETS)):
                ours, init = _score(part, encoder, "linear", t, None), _score(part, control, "linear", t, None)
                if ours is not None and init is not None and ours[2] > 1 and init[0] - ours[0] > max(ours[1], init[1]):
                    worse.append(f"{t} {ours[0] - init[0]:+.3f}")
            row["training loses on"] = ", ".join(worse) or "-"
            out.append(row)
    return pd.DataFrame(out, columns=["zoo", "encoder", "training", *GOALS, "training loses on"])


def _goal_cell(cell: dict) -> str:
    parts = [f"{short} {'**met**' if v[0] else 'missed'} {v[1]}" for t, short in GOAL_TARGETS.items()
             if (v := cell.get(t)) is not None]
    return "; ".join(parts) or "-"


def goal_lines(table: pd.DataFrame) -> list[str]:
    """`goal_rows` as markdown: one row per zoo and learned encoder."""
    rows = goal_rows(table)
    if rows.empty:
        return ["No learned encoder in the table yet."]
    goals = ["training", *GOALS]
    lines = [f"Test split; accuracy (acc) and epoch. Each cell: the learned row's linear probe minus the other row, "
             f"and in brackets what it must exceed: the larger spread of the two rows (for training, at least "
             f"{GAIN:.2f} over the random init, or half the distance to 1.0 when less than 0.2 is left). `training`: "
             f"against the encoder's own random init; `> X`: against baseline X with every label; `k={SCARCE_K}`: "
             f"probes that saw {SCARCE_K} labelled models. `-`: a row the table lacks.", "",
             "| zoo | encoder | " + " | ".join(goals) + " | training loses on |",
             "|---|---|" + "---|" * (len(goals) + 1)]
    lines += [f"| {r['zoo']} | {r['encoder']} | " + " | ".join(_goal_cell(r[g]) for g in goals)
              + f" | {r['training loses on']} |" for _, r in rows.iterrows()]
    return lines
