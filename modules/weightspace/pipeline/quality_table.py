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
from weightspace.pipeline.quality import ENCODER_VARIANTS

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
                order: Sequence[str] = (), source: str = "`weightspace quality`") -> pd.DataFrame:
    """Write `part` into the table at ``stem.csv`` (and ``stem.md``), replacing the rows of `zoo` x `encoders`.

    The table is read just before writing, so that runs of other zoos or encoders at the same time keep
    their rows (two runs of the same zoo and encoder: the later one wins). Zoos sort in `order`, others after.
    """
    csv_path = Path(stem).with_suffix(".csv")
    old = read_table(csv_path) if csv_path.exists() else pd.DataFrame(columns=COLUMNS)
    old = old[~((old.zoo == zoo) & old.encoder.isin(list(encoders)))]
    table = pd.concat([t for t in (old, part.reindex(columns=COLUMNS)) if len(t)], ignore_index=True)
    zoos = list(order) + [z for z in dict.fromkeys(table.zoo) if z not in order]
    rank = {"baselines": -1} | {name: i for i, name in enumerate(ENCODER_VARIANTS)}
    table = table.sort_values(["zoo", "encoder"], key=lambda c: c.map(zoos.index) if c.name == "zoo"
                              else c.map(lambda e: rank.get(e, len(rank))), kind="stable").reset_index(drop=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(csv_path, table.to_csv(index=False))  # pandas quotes every field that holds a comma
    write_text(csv_path.with_suffix(".md"), markdown(table, source=source))
    return table


def _cell(rows: pd.DataFrame, target: str, *, val: bool = True) -> str:
    test, valid = rows[(rows.target == target) & (rows.split == "test")], rows[(rows.target == target)
                                                                                  & (rows.split == "val")]
    if test.empty or not np.isfinite(test["mean"].iloc[0]):
        return "-"
    t = test.iloc[0]
    text = f"{t['mean']:.3f}" + (f" ± {t.spread:.3f}" if t.seeds * (1 if pd.isna(t.draws) else t.draws) > 1 else "")
    return text + (f" ({valid['mean'].iloc[0]:.3f})" if val and not valid.empty else "")


def markdown(table: pd.DataFrame, *, source: str = "`weightspace quality`") -> str:
    """The table as markdown: per zoo, every-label probes, then label-scarce probes (where run)."""
    lines = ["# Representation quality", "",
             f"Generated by {source}. Linear probes (ridge, alpha chosen on validation) unless the probe column "
             "says `gbt` (boosted trees). Cells: test R² (accuracy for a class; mean ± spread over training seeds, "
             "spread = max - min), and in brackets the validation score that every choice was made on. Each "
             "seed's embedding is the state of training, the random init included, whose linear probes score "
             "best on validation; `init chosen` counts the seeds where that was the random init (the row is "
             "then the untrained state; `-` where the rows were made before the random init was a candidate). `code` is the invariant statistics code, an untrained baseline; "
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
    lines += ["## Does the representation beat the baselines?", ""] + goal_lines(table) + [""]
    lines += ["## Columns of the CSV", ""] + [f"- `{c}`: {doc}" for c, doc in COLUMN_DOCS.items()] + [""]
    return "\n".join(lines)


def goal_lines(table: pd.DataFrame, encoder: str = "neuron_set") -> list[str]:
    """Per zoo: where `encoder`'s linear probe beats B_s (linear), B_s + boosted trees, and where boosted
    trees on it beat B_s + boosted trees; met where the mean clears the baseline by more than the seeds'
    spread. Only regression targets (R²) count, every-label probes only."""
    test = table[(table.split == "test") & table.k.isna()]
    lines = []
    for zoo, part in test.groupby("zoo", sort=False):
        def cell(fs, probe):
            rows = part[(part.feature_set == fs) & (part.probe == probe)]
            return {r.target: (r["mean"], r.spread if r.seeds > 1 else 0.0) for _, r in rows.iterrows()}

        rep, rep_gbt, bs, bs_gbt = cell(encoder, "linear"), cell(encoder, "gbt"), cell("B_s", "linear"), cell("B_s", "gbt")
        regression = [t for t in rep if t in bs and (part[part.target == t].metric == "r2").all()]
        if not rep:
            continue

        def verdict(ours, theirs, targets, *, near=False):
            out = []
            for t in targets:
                if t not in ours or t not in theirs:
                    continue
                (m, spread), (b, _) = ours[t], theirs[t]
                met = m - b > spread or (near and b > 0.98 and b - m <= 0.01)
                out.append(f"{t} {'met' if met else 'missed'} ({m:.3f} vs {b:.3f}"
                           + (f", short by {b - m:.3f}" if not met and b > m else "") + ")")
            return "; ".join(out) or "-"

        lines.append(f"- **{zoo}**: beats B_s: {verdict(rep, bs, regression)}. Beats B_s + boosted trees on accuracy "
                     f"and epoch: {verdict(rep, bs_gbt, ['test_acc', 'training_iteration'], near=True)}. Boosted "
                     f"trees on the embedding against B_s + boosted trees: {verdict(rep_gbt, bs_gbt, regression)}.")
    return lines

