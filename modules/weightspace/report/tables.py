"""The results tables of the experiment report (`weightspace.report.markdown`): markdown from the tidy probe tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from weightspace.downstream.baselines import BASELINES, EMBEDDING
from weightspace.downstream.targets import PRIMARY_METRIC, REGRESSION

# the main table's columns, from the baseline registry: (label, feature set, probes); of several probes the one
# best on validation is shown; boosted trees of B_probe stay among the further feature sets
COLUMNS = tuple(c for b in BASELINES for c in b.columns()) + (("Representation", EMBEDDING, ("linear",)),)
# what the representation's linear probe is set against in the report's sentence: (label, feature set, probe)
RIVALS = tuple((b.prose + (" + boosted trees" if p == "gbt" and "boosted" not in b.prose else ""), b.key, p)
               for b in BASELINES for p in b.rival)
METRIC_LABELS = {"r2": "R²", "kendall_tau": "Kendall τ", "accuracy": "accuracy"}
MISSING = "\u2014"
# Rows are written by hand, not with DataFrame.to_markdown: tabulate pads every cell to its column's width,
# and these rows are read and searched as written ("| test_acc | R² | 0.412 | ..."); cells also carry bold
# markers, probe names and footnote marks that are text, not numbers tabulate could align.


def results_markdown(table: pd.DataFrame, split: str = "test") -> str:
    """Markdown tables of `table` (the columns of `evaluate.COLUMNS`) on one split, with footnotes.

    The main table has one row per target and a column per entry of `COLUMNS`:
    R² for regression, accuracy for classification. A second table gives Kendall τ
    of the regression targets, a third the other (feature set, probe) pairs present
    (kernel PCA, UMAP, boosted trees on the embedding, ...). The best value of a row
    is bold; a missing value is "—", with a footnote giving the reason where the
    table recorded one.
    """
    table = table.assign(note=table["note"].fillna("").astype(str),
                         value=pd.to_numeric(table["value"], errors="coerce"))
    targets = list(dict.fromkeys(zip(table["target"], table["task"])))
    notes: dict[str, int] = {}
    absent = [label for label, fs, probes in COLUMNS
              if not ((table["feature_set"] == fs) & table["probe"].isin(probes)).any()]
    columns = [c for c in COLUMNS if c[0] not in absent or c[0] in ("Hyperparameters", "Representation")]
    main = _grid(table, targets, columns, lambda task: PRIMARY_METRIC.get(task), split, notes)
    if not main:
        return f"_No results on the {split} split._"
    parts = main
    if absent:
        parts += ["", f"_Not in the tables: {', '.join(absent)}"
                  + (" (the zoo varies no hyperparameter, or the baselines were run without them)"
                     if "Hyperparameters" in absent else "") + "._"]
    tau = _grid(table, [t for t in targets if t[1] == REGRESSION], columns, lambda task: "kendall_tau", split, notes)
    if tau:
        parts += ["", "**Kendall τ** (rank correlation of prediction and truth, regression targets)", ""] + tau
    shown = {(fs, p) for _, fs, probes in COLUMNS for p in probes}
    others = [(f"{fs} / {p}", fs, (p,)) for fs, p in dict.fromkeys(zip(table["feature_set"], table["probe"]))
              if (fs, p) not in shown]
    if others:
        parts += ["", "**Further feature sets and probes**", ""]
        parts += _grid(table, targets, others, lambda task: PRIMARY_METRIC.get(task), split, notes)
    if notes:
        parts += [""] + [f"[^{i}]: {note}" for note, i in notes.items()]
    return "\n".join(parts)


def _grid(table: pd.DataFrame, targets, columns, metric_of, split: str, notes: dict[str, int]) -> list[str]:
    rows = []
    for target, task in targets:
        metric = metric_of(task)
        if not ((table["target"] == target) & (table["split"] == split) & (table["metric"] == metric)).any():
            continue
        cells = [_pick(table, target, task, fs, probes, metric, split) for _, fs, probes in columns]
        finite = [round(c[0], 3) for c in cells if c is not None and np.isfinite(c[0])]
        best = max(finite) if len(finite) > 1 else None  # compared as shown: ties at 3 decimals are all bold
        rows.append(f"| {target} | {METRIC_LABELS.get(metric, metric)} | "
                    + " | ".join(_cell(c, best, notes, len(p) > 1) for c, (_, _, p) in zip(cells, columns)) + " |")
    if not rows:
        return []
    header = "| target | metric | " + " | ".join(label for label, _, _ in columns) + " |"
    return [header, "|---|---|" + "---:|" * len(columns)] + rows


def _pick(table, target, task, fs, probes, metric, split) -> tuple[float, str, str] | None:
    """(value, note, probe) of one cell; of several probes, the one with the best validation score."""
    part = table[(table["feature_set"] == fs) & (table["target"] == target) & table["probe"].isin(probes)]
    present = [p for p in probes if (part["probe"] == p).any()]
    if not present:
        return None
    probe, primary = present[0], PRIMARY_METRIC.get(task)
    if len(present) > 1:
        val = part[(part["split"] == "val") & (part["metric"] == primary) & np.isfinite(part["value"])]
        if not val.empty:
            probe = val.loc[val["value"].idxmax(), "probe"]
    part = part[(part["probe"] == probe) & (part["split"] == split)]
    row = part[part["metric"] == metric]
    if row.empty:
        return None
    value, note = float(row["value"].iloc[0]), str(row["note"].iloc[0])
    if not np.isfinite(value) and metric != primary and np.isfinite(part.loc[part["metric"] == primary, "value"]).any():
        # the probe ran (its primary score exists), so this metric is undefined for its predictions
        note = (f"{METRIC_LABELS.get(metric, metric)} is undefined here: the predictions (or the true values) "
                "are constant" + (f". The probe's note: {note}" if note else ""))
    return value, note, str(probe)


def _cell(cell, best: float | None, notes: dict[str, int], name_probe: bool) -> str:
    if cell is None:
        return MISSING
    value, note, probe = cell
    if not np.isfinite(value):
        return f"{MISSING}[^{notes.setdefault(note, len(notes) + 1)}]" if note else MISSING
    shown = round(value, 3) + 0.0  # + 0.0: no "-0.000"
    text = f"**{shown:.3f}**" if best is not None and shown == best else f"{shown:.3f}"
    return text + (f" ({probe})" if name_probe else "")


def outcome_sentence(table: pd.DataFrame, split: str = "test") -> str:
    """One sentence: on which regression targets the representation's linear probe reads above each baseline of
    `RIVALS` on `split`, from one training run, so it claims no win; "" when the table lacks the rows."""
    table = table.assign(value=pd.to_numeric(table["value"], errors="coerce"))
    rows = table[(table["split"] == split) & (table["metric"] == "r2") & (table["task"] == REGRESSION)]

    def scores(fs: str, probe: str) -> pd.Series:
        part = rows[(rows["feature_set"] == fs) & (rows["probe"] == probe)]
        return part.groupby("target", sort=False)["value"].first()

    rep = scores("embedding", "linear").dropna()
    if rep.empty:
        return ""
    parts = []
    for label, fs, probe in RIVALS:
        other = scores(fs, probe)
        common = [t for t in rep.index if t in other.index and np.isfinite(other[t])]
        if not common:
            continue
        above = [t for t in common if rep[t] > other[t]]
        parts.append(f"{label} on {len(above)} of {len(common)}" + (f" ({', '.join(above)})" if above else ""))
    if not parts:
        return ""
    return (f"One run: on the {split} split the representation's linear probe reads above " + ", ".join(parts)
            + " regression targets (R²). One training run supports no claim of a win; docs/representation_quality.md "
            "compares means over three training seeds, and a win there is one that clears the seeds' spread.")
