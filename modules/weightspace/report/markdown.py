"""The experiment report: ``report.md`` and its PNG figures, built from an experiment folder's files.

Reads what the experiment runner (`weightspace.pipeline.experiment`) writes: the tidy
tables ``baselines.csv`` and ``results.csv`` (`downstream.evaluate`),
``embeddings.npy`` with ``embedding_samples.csv``, ``history.csv`` and
``experiment.json``. Every input is optional: whatever is missing or unreadable
skips the parts that need it, and the report says why.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.downstream.targets import CLASSIFICATION, REGRESSION, SOURCES, derive_targets, score
from weightspace.io.atomic import write_text
from weightspace.report import plots as report_plots
from weightspace.report.tables import outcome_sentence, results_markdown

REPORT = "report.md"
FIGURES = {"umap_accuracy": "umap_accuracy.png", "umap_epoch": "umap_epoch.png",
           "pred_vs_true": "pred_vs_true_accuracy.png", "curves": "training_curves.png"}
MAX_PROJECTED = 5000  # rows of the embedding projected to 2-D (a fixed random subsample beyond)
SEED = 0  # seeds the subsample, UMAP and the boosted trees

HOW_TO_READ = (
    "Each cell is a probe's score on the **test split** (models never seen while fitting the probe or the "
    "representation; splits are by model). Columns: **B_W** a linear probe on the raw weights, **B_s** a linear "
    "probe on per-layer weight statistics, **B_s + GBT** gradient-boosted trees on the same statistics, "
    "**Hyperparameters** the training configuration alone (the better probe on the validation split, named in "
    "parentheses), **Representation** a linear probe on the learned embedding. Continuous targets report R² "
    "(1 is perfect, 0 is predicting the mean, below 0 is worse than the mean) and, in the second table, Kendall's "
    "rank correlation τ; categorical targets report accuracy. The best value of each row is bold; \u201c\u2014\u201d "
    "marks a score that was not computed, with the reason in a footnote where one was recorded."
)


def build_report(experiment_dir: str | os.PathLike, *, umap: bool = True) -> Path:
    """Write ``<experiment_dir>/report.md`` and its figures beside it.

    Args:
        experiment_dir: an experiment folder (see the module docstring for the files read).
        umap: project the embeddings with UMAP; False (or umap-learn missing) uses PCA.

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
    samples, embeddings, why_no_embeddings = _read_embeddings(out)
    name = str(meta.get("name") or out.resolve().name)
    zoo = meta.get("zoo") if isinstance(meta.get("zoo"), dict) else {}
    lines = [f"# Experiment report: {name}", ""]
    lines.append(f"Zoo: {zoo.get('source') or 'source not recorded'}" + (f" (`{zoo['path']}`)" if zoo.get("path") else ""))
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
    if embeddings is None:
        lines += [f"_Skipped the embedding figures: {why_no_embeddings}._", ""]
    else:
        lines += _projection_figures(out, embeddings, samples, umap)
        lines += _pred_vs_true_figure(out, embeddings, samples, meta)
    lines += ["## Training", ""] + _curves_figure(out, table) + _selection_line(out, meta)
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
def _projection_figures(out: Path, Z: np.ndarray, samples: pd.DataFrame, umap: bool) -> list[str]:
    rng = np.random.default_rng(SEED)
    rows = np.flatnonzero(np.isfinite(Z).all(axis=1))
    if len(rows) < 3:
        return [f"_Skipped the 2-D projection: only {len(rows)} embeddings are finite._", ""]
    if len(rows) > MAX_PROJECTED:
        rows = np.sort(rng.choice(rows, MAX_PROJECTED, replace=False))
    xy, method, why = _project(np.asarray(Z[rows], dtype=np.float64), umap)
    sub = f"{len(rows)} of {len(Z)} samples" if len(rows) < len(Z) else f"all {len(Z)} samples"
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


def _project(Z: np.ndarray, umap: bool) -> tuple[np.ndarray, str, str]:
    """(n, 2) coordinates, the method's name, and why PCA was used instead of UMAP (or "")."""
    why = "; PCA because the report was built without UMAP (--no-umap)"
    if umap and len(Z) >= 5:
        try:
            from umap import UMAP
        except ImportError:
            why = "; PCA because umap-learn is not installed"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reducer = UMAP(n_components=2, n_neighbors=min(15, len(Z) - 1), random_state=SEED, n_jobs=1)
                return reducer.fit_transform(Z), "UMAP", ""
    elif umap:
        why = f"; PCA because UMAP needs more than {len(Z)} samples"
    from sklearn.decomposition import PCA

    xy = PCA(n_components=min(2, *Z.shape), random_state=SEED).fit_transform(Z)
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))), "PCA", why


def _pred_vs_true_figure(out: Path, Z: np.ndarray, samples: pd.DataFrame, meta: dict) -> list[str]:
    from weightspace.downstream.probes import RidgeProbe

    target = derive_targets(samples, ["test_acc"])[0]
    if target.note:
        return [f"_Skipped predicted vs true test accuracy: {target.note}._", ""]
    split = samples["split"].astype(str).to_numpy() if "split" in samples else None
    if split is None:
        return ["_Skipped predicted vs true test accuracy: embedding_samples.csv has no split column._", ""]
    keep = target.valid & np.isfinite(Z).all(axis=1)
    if "diverged" in samples:
        keep &= ~samples["diverged"].fillna(False).astype(bool).to_numpy()
    panels, skipped = [], []
    for title, fit in (("Representation, linear probe", lambda: (RidgeProbe(), Z, keep)),
                       ("B_s + boosted trees", lambda: _statistics(out, samples, meta, keep))):
        try:
            probe, X, rows = fit()
            panels.append(_fit_panel(title, probe, X, target.values, split, rows))
        except (OSError, ValueError) as err:
            skipped.append(f"{title}: {err}")
    lines = []
    if panels:
        report_plots.pred_vs_true(panels, out / FIGURES["pred_vs_true"])
        lines += [f"![predicted vs true test accuracy]({FIGURES['pred_vs_true']})", "",
                  "*Predicted vs true test accuracy of the test-split models: "
                  + " and ".join(p[0] for p in panels) + " (fitted on train, regularization chosen on val; line: y = x).*", ""]
    return lines + [f"_Not plotted: {s.rstrip('.')}._" for s in skipped] + ([""] if skipped else [])


def _statistics(out: Path, samples: pd.DataFrame, meta: dict, keep: np.ndarray):
    """(boosted trees, B_s statistics aligned with `samples`, usable rows), from the zoo named in experiment.json."""
    from weightspace.downstream.features import LayerStatistics
    from weightspace.downstream.probes import ProbeConfig, make_probe
    from weightspace.zoo.store import Zoo

    zoo_path = (meta.get("zoo") or {}).get("path") if isinstance(meta.get("zoo"), dict) else None
    if not zoo_path:
        raise ValueError("experiment.json names no zoo path")
    candidates = [Path(zoo_path)] if Path(zoo_path).is_absolute() else [out / zoo_path, Path(zoo_path)]
    path = next((p for p in candidates if p.is_dir()), None)
    if path is None:
        raise FileNotFoundError(f"the zoo '{zoo_path}' named in experiment.json is not there")
    zoo = Zoo.load(path)
    key = ["model_id", "epoch"]
    if all(k in samples and k in zoo.samples for k in key):
        index = zoo.samples[key].astype(str).assign(row=np.arange(zoo.num_samples))
        rows = samples[key].astype(str).merge(index, on=key, how="left")["row"]
        if rows.isna().any():
            raise ValueError(f"{int(rows.isna().sum())} embedding samples have no (model_id, epoch) in zoo '{path}'")
        rows = rows.to_numpy(dtype=np.int64)
    elif zoo.num_samples == len(samples):
        rows = np.arange(len(samples))
    else:
        raise ValueError(f"zoo '{path}' has {zoo.num_samples} samples, the embeddings {len(samples)}; cannot align")
    preset = _read_json(out / "baselines_config.json").get("stats_preset", "schuerholt2021")
    stats = LayerStatistics(zoo.layout, preset=preset).fit(zoo.weights).transform(zoo.weights)[rows]
    probe = make_probe("gbt", REGRESSION, ProbeConfig(random_state=SEED))
    return probe, stats, keep & np.isfinite(stats).all(axis=1)


def _fit_panel(title: str, probe, X: np.ndarray, y: np.ndarray, split: np.ndarray, keep: np.ndarray):
    idx = {s: np.flatnonzero(keep & (split == s)) for s in ("train", "val", "test")}
    if len(idx["train"]) < 2 or len(idx["test"]) < 2:
        raise ValueError(f"needs at least 2 usable train and test samples, has {len(idx['train'])} and "
                         f"{len(idx['test'])}")
    val = {"X_val": X[idx["val"]], "y_val": y[idx["val"]]} if len(idx["val"]) else {}
    probe.fit(X[idx["train"]], y[idx["train"]], **val)
    pred = probe.predict(X[idx["test"]])
    return title, y[idx["test"]], pred, score(REGRESSION, y[idx["test"]], pred)["r2"]


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
            "*Per training iteration: losses (train, val, test), reconstruction R² of the weights, and the linear "
            "probe's score on the embedding for each target (val and test).*", ""]


def _selection_line(out: Path, meta: dict) -> list[str]:
    """Which training iteration the embedding (the Representation column) comes from."""
    results = _read_json(out / "results.json")
    chosen, select = results.get("selected_iteration"), results.get("selected_by", "last")
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    if chosen is None:
        return []
    total = config.get("iterations")
    of = f" of {total}" if total else ""
    why = "the last one" if select == "last" else \
        f"the one with the best `{select}` (mean validation score of the linear probes; the test split plays no part)"
    return [f"The embedding and the Representation column come from iteration {chosen}{of}: {why}.", ""]


# ------------------------------------------------------------------ inputs
def _read_tables(out: Path) -> tuple[pd.DataFrame | None, list[str]]:
    from weightspace.downstream.evaluate import COLUMNS as TABLE_COLUMNS

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


def _read_embeddings(out: Path) -> tuple[pd.DataFrame | None, np.ndarray | None, str]:
    if not (out / "embeddings.npy").is_file():
        return None, None, "there is no embeddings.npy"
    samples = _read_csv(out / "embedding_samples.csv")
    if isinstance(samples, str):
        return None, None, samples
    try:
        Z = np.load(out / "embeddings.npy", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        return None, None, f"embeddings.npy is unreadable ({err})"
    if Z.ndim != 2 or Z.shape[0] != len(samples):
        return None, None, (f"embeddings.npy has shape {Z.shape}, but embedding_samples.csv has {len(samples)} rows "
                            "(expected (rows, latent))")
    return samples, Z, ""


def _read_csv(path: Path) -> pd.DataFrame | str:
    """The table, or why it could not be read."""
    if not path.is_file():
        return f"there is no {path.name}"
    try:
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as err:  # EmptyDataError is a ValueError
        return f"{path.name} is unreadable ({err})"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
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

