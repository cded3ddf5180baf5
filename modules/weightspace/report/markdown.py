"""The experiment report: ``report.md`` and its PNG figures, drawn from an experiment folder's files.

Reads what the experiment runner (`weightspace.pipeline.experiment`) writes: the tidy
tables ``baselines.csv`` and ``results.csv`` and the probes' predictions
``baseline_predictions.csv.gz`` and ``predictions.csv.gz`` (`downstream.evaluate`),
``embeddings.npy`` with ``embedding_samples.csv`` and its 2-D projection
``embedding_2d.csv``, ``history.csv``, ``results.json`` and ``experiment.json``. It
fits nothing and never opens the zoo. Every input is optional: whatever is missing
or unreadable skips the parts that need it, and the report says why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.downstream.evaluate import COLUMNS as TABLE_COLUMNS
from weightspace.downstream.targets import CLASSIFICATION, REGRESSION, SOURCES, score
from weightspace.downstream.training_gain import gain_sentence
from weightspace.io.atomic import write_text
from weightspace.io.json_files import read_json
from weightspace.report import plots as report_plots
from weightspace.report.tables import outcome_sentence, results_markdown

REPORT = "report.md"
FIGURES = {"umap_accuracy": "umap_accuracy.png", "umap_epoch": "umap_epoch.png",
           "pred_vs_true": "pred_vs_true_accuracy.png", "curves": "training_curves.png"}
# the panels of the predicted-vs-true figure: (title, predictions file, feature set, probe, the step writing it)
PRED_VS_TRUE = (("Representation, linear probe", "predictions.csv.gz", "embedding", "linear", "representation"),
                ("B_s + boosted trees", "baseline_predictions.csv.gz", "stats", "gbt", "baselines"))

HOW_TO_READ = (
    "Each cell is a probe's score on the **test split** (models never seen while fitting the probe or the "
    "representation; splits are by model). Columns: **B_W** a linear probe on the raw weights, **B_s** a linear "
    "probe on per-layer weight statistics, **B_s + GBT** gradient-boosted trees on the same statistics, "
    "**Code** a linear probe on the invariant statistics code (per-layer quantiles of w and |w| and per-neuron "
    "summaries, standardised and hinged at training quantiles: untrained), **Code + GBT** boosted trees on the same "
    "entries before hinging (a tree's splits are indifferent to a hinge), "
    "**B_probe** a linear probe on each model's outputs on 64 fixed random inputs (**B_probe task**: on task "
    "inputs, without their labels), "
    "**Hyperparameters** the training configuration alone (the better probe on the validation split, named in "
    "parentheses), **Representation** a linear probe on the embedding that self-supervised training produced. "
    "Continuous targets report R² "
    "(1 is perfect, 0 is predicting the mean, below 0 is worse than the mean) and, in the second table, Kendall's "
    "rank correlation τ; categorical targets report accuracy. The best value of each row is bold; \u201c\u2014\u201d "
    "marks a score that was not computed, with the reason in a footnote where one was recorded."
)


def build_report(experiment_dir: str | os.PathLike, *, umap: bool = True) -> Path:
    """Write ``<experiment_dir>/report.md`` and its figures beside it.

    Args:
        experiment_dir: an experiment folder (see the module docstring for the files read).
        umap: draw the saved UMAP projection of the embeddings; False, or none saved: the saved PCA one.

    Returns:
        The path of ``report.md``.

    Raises:
        FileNotFoundError: `experiment_dir` is not a directory.
    """
    out = Path(experiment_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"no experiment folder at '{out}'; run the experiment first "
                                "(it writes baselines.csv, results.csv, embeddings.npy, history.csv, experiment.json)")
    meta = _read_json(out / "experiment.json")
    table, table_notes = _read_tables(out)
    samples, why_no_embeddings = _read_embedding_samples(out)
    name = str(meta.get("name") or out.resolve().name)
    zoo = meta.get("zoo")
    if not isinstance(zoo, dict):
        zoo = {}
    lines = [f"# Experiment report: {name}", ""]
    source = zoo.get("source") or "source not recorded"
    shown_path = zoo.get("path") and str(zoo["path"]) not in source  # the source sentence often names it already
    lines.append(f"Zoo: {source}" + (f" (`{zoo['path']}`)" if shown_path else ""))
    if meta.get("learner"):
        lines += ["", f"Learner: {meta['learner']}"]
    if not meta:
        lines += ["", "_experiment.json is missing or unreadable: the name, zoo, configuration and timings are not "
                  "recorded._"]
    lines += ["", "## How to read this", "", HOW_TO_READ, "", "## Results (test split)", ""]
    lines += [f"_{n}_" for n in table_notes] + ([""] if table_notes else [])
    if table is not None:
        outcome = outcome_sentence(table)
        lines += ([outcome, ""] if outcome else []) + [results_markdown(table), ""]
    lines += ["## Embedding", ""]
    if samples is None:
        lines += [f"_Skipped the embedding figures: {why_no_embeddings}._", ""]
    else:
        lines += _projection_figures(out, samples, umap)
        lines += _pred_vs_true_figure(out)
    lines += ["## Training", ""] + _curves_figure(out, table) + _selection_line(out, meta) + _gain_lines(out)
    config = meta.get("config")
    if config is not None:
        lines += ["## Configuration", "", "<details><summary>resolved configuration (JSON)</summary>", "",
                  "```json", json.dumps(config, indent=1, default=str), "```", "", "</details>", ""]
    if isinstance(meta.get("timings"), dict) and meta["timings"]:
        lines += ["## Timings", "", "| step | time |", "|---|---|"]
        lines += [f"| {k} | {_duration(v)} |" for k, v in meta["timings"].items()] + [""]
    if meta.get("notes"):
        lines += ["## Notes", "", str(meta["notes"]), ""]
    path = out / REPORT
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


# ------------------------------------------------------------------ figures
def _projection_figures(out: Path, samples: pd.DataFrame, umap: bool) -> list[str]:
    """The saved 2-D projection (``embedding_2d.csv``) coloured by test accuracy and by epoch."""
    coords = _read_csv(out / "embedding_2d.csv")
    if isinstance(coords, str):
        return [f"_Skipped the 2-D projection: {coords}._", ""]
    if missing := [c for c in ("row", "method", "x", "y") if c not in coords]:
        return [f"_Skipped the 2-D projection: embedding_2d.csv lacks the columns {missing}._", ""]
    note = str(_read_json(out / "results.json").get("projection_note") or "")
    method = "UMAP" if umap and (coords["method"] == "UMAP").any() else "PCA"
    part = coords[coords["method"] == method]
    if part.empty:
        return ["_Skipped the 2-D projection: embedding_2d.csv holds no projection"
                + (f" ({note})" if note else "") + "._", ""]
    rows = pd.to_numeric(part["row"], errors="coerce").to_numpy()
    if not np.isin(rows, np.arange(len(samples))).all():
        return [f"_Skipped the 2-D projection: embedding_2d.csv names rows that embedding_samples.csv "
                f"({len(samples)} rows) does not have._", ""]
    rows = rows.astype(np.int64)
    xy = part[["x", "y"]].to_numpy(dtype=np.float64)  # (n, 2)
    why = ""
    if method == "PCA":
        why = ("; PCA because the report was built without UMAP (--no-umap)" if not umap else
               "; PCA because the run saved no UMAP projection" + (f" ({note})" if note else ""))
    sub = f"{len(rows)} of {len(samples)} samples" if len(rows) < len(samples) else f"all {len(samples)} samples"
    lines = []
    for key, name, what in (("umap_accuracy", "test_acc", "test accuracy"), ("umap_epoch", "epoch", "epoch")):
        column = next((c for c in SOURCES.get(name, (name,)) if c in samples), None)
        if column is None:
            lines += [f"_Skipped the {method} coloured by {what}: embedding_samples.csv has no {name} column._", ""]
            continue
        values = pd.to_numeric(samples[column].iloc[rows], errors="coerce").to_numpy(dtype=np.float64)
        report_plots.embedding_scatter(xy, values, out / FIGURES[key], title=f"{method} of the embeddings",
                                       label=what, method=method)
        lines += [f"![{method} of the embeddings coloured by {what}]({FIGURES[key]})", "",
                  f"*{method} of the embeddings ({sub}) coloured by {what}{why}.*", ""]
    return lines


def _pred_vs_true_figure(out: Path) -> list[str]:
    """The saved test-split predictions of test accuracy against the truth, one panel per `PRED_VS_TRUE` entry."""
    panels, skipped = [], []
    for title, name, feature_set, probe, step in PRED_VS_TRUE:
        panel = _test_accuracy_predictions(out / name, feature_set, probe, step)
        if isinstance(panel, str):
            skipped.append(f"{title}: {panel}")
        else:
            panels.append((title, *panel))
    lines = []
    if panels:
        report_plots.pred_vs_true(panels, out / FIGURES["pred_vs_true"])
        lines += [f"![predicted vs true test accuracy]({FIGURES['pred_vs_true']})", "",
                  "*Predicted vs true test accuracy of the test-split models: "
                  + " and ".join(p[0] for p in panels) + " (the probes of the tables above: fitted on train, "
                  "regularization chosen on val; line: y = x).*", ""]
    return lines + [f"_Not plotted: {s.rstrip('.')}._" for s in skipped] + ([""] if skipped else [])


def _test_accuracy_predictions(path: Path, feature_set: str, probe: str,
                               step: str) -> tuple[np.ndarray, np.ndarray, float] | str:
    """(truth, prediction, R²) of test accuracy on the test split from a predictions file, or why not."""
    if not path.is_file():
        return f"{path.name} is not there (the {step} step writes it)"
    table = _read_csv(path)
    if isinstance(table, str):
        return table
    if missing := [c for c in ("feature_set", "probe", "target", "split", "truth", "prediction") if c not in table]:
        return f"{path.name} lacks the columns {missing}"
    part = table[(table["feature_set"] == feature_set) & (table["probe"] == probe)
                 & (table["target"] == "test_acc") & (table["split"] == "test")]
    y_true = pd.to_numeric(part["truth"], errors="coerce").to_numpy(dtype=np.float64)
    y_pred = pd.to_numeric(part["prediction"], errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    if ok.sum() < 2:
        return (f"{path.name} holds {int(ok.sum())} test-split predictions of test_acc by {feature_set}/{probe}; "
                "a plot needs at least 2")
    return y_true[ok], y_pred[ok], score(REGRESSION, y_true[ok], y_pred[ok])["r2"]


def _curves_figure(out: Path, table: pd.DataFrame | None) -> list[str]:
    history = _read_csv(out / "history.csv")
    if isinstance(history, str):
        return [f"_Skipped the training curves: {history}._", ""]
    if table is not None:
        targets = list(dict.fromkeys(zip(table["target"], table["task"])))
    else:  # no tables: every ``<name>_val`` / ``<name>_test`` column that is not a loss or R²
        names = [c.rsplit("_", 1)[0] for c in history.columns if c.endswith(("_val", "_test"))]
        targets = [(n, REGRESSION) for n in dict.fromkeys(names) if not n.startswith(("loss", "rsq", "probe_mean")) and "/" not in n]
    metric = {REGRESSION: "R²", CLASSIFICATION: "accuracy"}
    path = report_plots.training_curves(history, [(t, metric.get(task, "score")) for t, task in targets],
                                        out / FIGURES["curves"])
    if path is None:
        return ["_Skipped the training curves: history.csv has no loss, R² or probe-score columns._", ""]
    return [f"![training curves]({FIGURES['curves']})", "",
            "*Per training iteration: losses (train, val, test), reconstruction R² "
            f"({_read_json(out / 'results.json').get('reconstruction_kind', 'weights')}), and the linear "
            "probe's score on the embedding for each target (val and test).*", ""]


def _selection_line(out: Path, meta: dict) -> list[str]:
    """Which training iteration the embedding (the Representation column) comes from."""
    results = _read_json(out / "results.json")
    chosen, select = results.get("selected_iteration"), results.get("selected_by", "last")
    config = meta.get("config")
    if not isinstance(config, dict):
        config = {}
    if chosen is None:
        return []
    total = config.get("iterations")
    of = f" of {total}" if total else ""
    why = "the last one" if select == "last" else \
        f"the one with the best `{select}` (mean validation score of the linear probes; the test split plays no part)"
    lines = [f"The embedding and the Representation column come from iteration {chosen}{of}: {why}."]
    if results.get("untrained_candidate"):
        lines.append("The untrained encoder (iteration 0, its random initialisation) was a candidate of the same "
                     "choice" + (": **it won**, so no training iteration beat the encoder's own initialisation "
                                 "on the validation split, and the Representation column shows the untrained "
                                 "encoder." if results.get("selected_untrained") else ", and a trained iteration "
                                                                                     "beat it."))
    return [" ".join(lines), ""]


def _gain_lines(out: Path) -> list[str]:
    """What training added over the same encoder at random init, with the interval (``training_gain.csv``)."""
    gains = _read_csv(out / "training_gain.csv")
    if isinstance(gains, str):
        return []
    results = _read_json(out / "results.json")
    sentence = gain_sentence(gains, selected_untrained=bool(results.get("selected_untrained")))
    if not sentence:
        return []
    rows = ["| target | random init | trained | gain | 90 % interval | verdict |", "|---|---:|---:|---:|---|---|"]
    rows += [f"| {r.target} ({'R²' if r.metric == 'r2' else r.metric}) | {r.init:.3f} | {r.trained:.3f} | "
             f"{r.gain:+.3f} | [{r.low:+.3f}, {r.high:+.3f}] | {r.verdict} |" for r in gains.itertuples()]
    return ["### What training added", "", sentence, "", *rows, "",
            "*The same encoder at its random initialisation (iteration 0, input scale fitted on the training "
            "split) is probed as the trained one is; the interval resamples the test models. One training seed: "
            "docs/representation_quality.md compares three.*", ""]


# ------------------------------------------------------------------ inputs
def _read_tables(out: Path) -> tuple[pd.DataFrame | None, list[str]]:
    parts, notes = [], []
    for name, what in (("baselines.csv", "baselines"), ("results.csv", "representation results")):
        table = _read_csv(out / name)
        if isinstance(table, str):
            notes.append(f"No {what}: {table}.")
        elif missing := [c for c in TABLE_COLUMNS if c not in table and c not in ("param", "n", "note")]:
            notes.append(f"No {what}: {name} lacks the columns {missing}.")
        else:
            parts.append(table.reindex(columns=TABLE_COLUMNS))
    if not parts:
        return None, notes
    table = pd.concat(parts, ignore_index=True)
    return table.assign(value=pd.to_numeric(table["value"], errors="coerce")), notes


def _read_embedding_samples(out: Path) -> tuple[pd.DataFrame | None, str]:
    """embedding_samples.csv when embeddings.npy has a row for each of its rows, else (None, why)."""
    if not (out / "embeddings.npy").is_file():
        return None, "there is no embeddings.npy"
    samples = _read_csv(out / "embedding_samples.csv")
    if isinstance(samples, str):
        return None, samples
    try:
        Z = np.load(out / "embeddings.npy", mmap_mode="r", allow_pickle=False)  # only its shape is read
    except (ValueError, OSError, EOFError) as err:
        return None, f"embeddings.npy is unreadable ({err})"
    if Z.ndim != 2 or Z.shape[0] != len(samples):
        return None, (f"embeddings.npy has shape {Z.shape}, but embedding_samples.csv has {len(samples)} rows "
                      "(expected (rows, latent))")
    return samples, ""


def _read_csv(path: Path) -> pd.DataFrame | str:
    """The table, or why it could not be read."""
    if not path.is_file():
        return f"there is no {path.name}"
    try:
        return pd.read_csv(path, low_memory=False)  # low_memory=False: one dtype per column of a large file
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as err:  # EmptyDataError is a ValueError
        return f"{path.name} is unreadable ({err})"


def _read_json(path: Path) -> dict:
    try:
        data = read_json(path)
    except (OSError, ValueError):  # the report says what it could not read
        return {}
    return data if isinstance(data, dict) else {}


def _duration(value) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return str(value)
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"

