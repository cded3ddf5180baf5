"""Ablation studies: ray.tune grids of config variants, and one summary table over their trials.

A search space (see `weightspace.pipeline.tune.run_tuner`) holds ``{"grid_search": [...]}``
entries at config keys. Two conveniences for ablations live here:

- **variants**: a grid at a config *section* (``encoder``, ``loss``, ...) whose values
  are partial dicts, e.g. ``{"encoder": grid_search([{"name": "mlp"}, {"name":
  "transformer_weight", "compression_token": False}])}``. `resolve_search_space`
  completes every variant with the rest of the section, so that one grid axis
  can change several fields together (and skip combinations that make no sense).
  A variant that names another encoder is completed with the fields both encoders'
  configs have (`encoder_dict_as`); the others take its defaults.
- **smoke grids**: `shrink_search_space` keeps two trials of any grid.

A grid's results are ``<out>/trials.csv`` (one row per trial: its flattened config
and last metrics) and the run's ``experiment_config.json`` (the param_space, which
names the axes; in ``<out>/tune``, or under ``--storage``). `ablation_summary` reads
them from several grids and `write_ablation_summary` writes the one table of a
folder of grids.

Nothing here imports ray: ``{"grid_search": values}`` is ray's own format.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from weightspace.io.atomic import write_csv, write_text
from weightspace.io.json_files import read_json
from weightspace.pipeline import storage
from weightspace.representation.config import encoder_dict_as

# final test-split scores shown per trial: trials.csv column -> summary label
SUMMARY_METRICS = {
    "test_acc_test": "R² accuracy",
    "training_iteration_test": "R² epoch",
    "ggap_test": "R² ggap",
    "rsq_test": "R² reconstruction",
}


def is_grid(value: Any) -> bool:
    """Whether `value` is a ray grid, ``{"grid_search": [...]}``."""
    return isinstance(value, dict) and set(value) == {"grid_search"}


def resolve_search_space(search_space: Mapping | None, base: Mapping, _path: str = "") -> dict | None:
    """`search_space` with each partial-dict value of a grid at a config section completed from `base`.

    Args:
        search_space: nested dict of search objects at config keys (None: no search).
        base: the config as a nested dict (`config_to_dict`).

    Returns:
        a search space whose grid values at sections are whole sections; None for None.

    Raises:
        ValueError: a key (of the search space or of a variant) that the config does not have.
    """
    if search_space is None:
        return None
    out: dict[str, Any] = {}
    for key, value in search_space.items():
        where = f"{_path}{key}"
        if key not in base:
            raise ValueError(f"search space key {where!r} is not a config field; valid here: {sorted(base)}")
        section = base[key]
        if is_grid(value) and isinstance(section, dict):
            out[key] = {"grid_search": [_merged(section, v, f"{where}.") if isinstance(v, dict) else v
                                        for v in value["grid_search"]]}
        elif isinstance(value, dict) and not is_grid(value) and isinstance(section, dict):
            out[key] = resolve_search_space(value, section, f"{where}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merged(base: Mapping, partial: Mapping, path: str) -> dict:
    if path == "encoder." and partial.get("name", base.get("name")) != base.get("name"):
        base = encoder_dict_as(dict(base), partial["name"])  # another encoder: its config's fields
    out = copy.deepcopy(dict(base))
    for key, value in partial.items():
        if key not in out:
            raise ValueError(f"variant key '{path}{key}' is not a config field; valid here: {sorted(out)}")
        out[key] = _merged(out[key], value, f"{path}{key}.") if isinstance(out[key], dict) and isinstance(value, dict) \
            else copy.deepcopy(value)
    return out


def shrink_search_space(search_space: Mapping | None) -> dict | None:
    """A grid of two trials: the first two values of the first axis, the first value of every other axis."""
    if search_space is None:
        return None
    first = [True]

    def shrink(space: Mapping) -> dict:
        out = {}
        for key, value in space.items():
            if is_grid(value):
                keep = 2 if first[0] else 1
                first[0] = False
                out[key] = {"grid_search": copy.deepcopy(list(value["grid_search"])[:keep])}
            elif isinstance(value, dict):
                out[key] = shrink(value)
            else:
                out[key] = copy.deepcopy(value)
        return out

    return shrink(search_space)


def grid_axes(param_space: Mapping, _path: str = "") -> list[str]:
    """The dotted config keys a param_space varies, in order.

    A grid of plain values is one axis; a grid of whole sections (resolved variants)
    contributes the fields that differ between the values that have them (variants of
    different encoders have different fields).
    """
    axes = []
    for key, value in param_space.items():
        where = f"{_path}{key}"
        if is_grid(value):
            values = value["grid_search"]
            if values and all(isinstance(v, dict) for v in values):
                flat = [_flatten(v, f"{where}.") for v in values]
                fields = list(dict.fromkeys(k for f in flat for k in f))
                distinct = {k: {json.dumps(f[k], sort_keys=True, default=str) for f in flat if k in f} for k in fields}
                axes += [k for k in fields if len(distinct[k]) > 1]
            else:
                axes.append(where)
        elif isinstance(value, dict):
            axes += grid_axes(value, f"{where}.")
    return axes


def _flatten(d: Mapping, prefix: str) -> dict:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def ablation_summary(out_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per trial of several grids: ablation, the axes of all grids, iterations, final test scores.

    Args:
        out_dirs: output folders of grid experiments (each with ``trials.csv`` and
            ``experiment_config.json`` in their ray.tune run); a row's ``ablation`` is its folder's name.

    Returns:
        columns ``ablation``, ``trial``, ``axes`` (the keys its grid varies, comma separated), the
        union of all grids' axes (every trial shows its own value, varied or not), ``iterations``,
        the `SUMMARY_METRICS` columns (NaN where a trial did not report one) and ``minutes``
        (the trial's training time).

    Raises:
        FileNotFoundError: a folder without ``trials.csv``.
    """
    parts, all_axes = [], []
    for out in map(Path, out_dirs):
        trials_csv = out / "trials.csv"
        if not trials_csv.is_file():
            raise FileNotFoundError(f"'{trials_csv}' is missing: '{out}' holds no finished grid; run its "
                                    "ablation script (or rerun it with --resume)")
        trials = pd.read_csv(trials_csv)
        axes = grid_axes(_tune_config(out).get("config", {}))
        all_axes += [a for a in axes if a not in all_axes]
        part = trials.assign(ablation=out.name, trial=range(len(trials)), axes=", ".join(axes))
        if "training_iteration" in part:
            part = part.rename(columns={"training_iteration": "iterations"})
        if "time_total_s" in part:
            part["minutes"] = part["time_total_s"] / 60
        parts.append(part)
    columns = ["ablation", "trial", "axes", *all_axes, "iterations", *SUMMARY_METRICS, "minutes"]
    if not parts:
        return pd.DataFrame(columns=columns)
    table = pd.concat(parts, ignore_index=True)
    return table.reindex(columns=columns)


def _tune_config(out: Path) -> dict:
    """The param_space record of a grid's ray.tune run ({} when it is gone): at the location its
    experiment.json names (a folder or a ``--storage`` URI), else ``<out>/tune``."""
    record = out / "experiment.json"
    try:
        meta = read_json(record) if record.is_file() else {}
        run = meta.get("tune") if isinstance(meta, dict) and isinstance(meta.get("tune"), str) else None
        config = storage.read_json(storage.join(run or out / "tune", storage.CONFIG_FILE))
    except (OSError, ValueError):  # not there (any more), or not readable
        return {}
    return config if isinstance(config, dict) else {}


def summary_markdown(table: pd.DataFrame) -> str:
    """Markdown of an `ablation_summary` table; per ablation, the best value of each score is bold."""
    # rows by hand, not DataFrame.to_markdown: tabulate pads cells to the column width, and the rows are
    # searched as written ("| architecture | ..."); bold cells are text tabulate would not align as numbers
    if table.empty:
        return "# Ablation studies\n\n_No finished grid yet._\n"
    fixed = ("ablation", "trial", "axes", "iterations", *SUMMARY_METRICS, "minutes")
    axes = [c for c in table.columns if c not in fixed]
    best = {(a, m): table.loc[table["ablation"] == a, m].round(3).max() for a in table["ablation"].unique()
            for m in SUMMARY_METRICS}
    lines = [
        "# Ablation studies",
        "",
        "Final scores on the test split of each trial: R² of a linear probe (ridge) on the embedding for "
        "the zoo models' test accuracy, epoch and generalization gap, and the reconstruction R² of the weights. "
        "The best value of each ablation is bold; the last column is each trial's training time.",
        "",
    ]
    for ablation, group in table.groupby("ablation", sort=False):
        lines.append(f"- **{ablation}** varies {group['axes'].iloc[0] or '(no recorded axis)'} "
                     f"({len(group)} trials, {_iterations(group)} iterations)")
    lines += ["", "| ablation | " + " | ".join(axes) + " | " + " | ".join(SUMMARY_METRICS.values()) + " | minutes |",
              "|---|" + "---|" * len(axes) + "---:|" * (len(SUMMARY_METRICS) + 1)]
    for row in table.itertuples(index=False):
        r = dict(zip(table.columns, row))
        cells = [_setting(r[a]) for a in axes]
        for m in SUMMARY_METRICS:
            v = r[m]
            text = _value(v)
            cells.append(f"**{text}**" if _finite(v) and round(float(v), 3) == best[(r["ablation"], m)] else text)
        cells.append(f"{r['minutes']:.1f}" if _finite(r["minutes"]) else _value(None))
        lines.append(f"| {r['ablation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_ablation_summary(root: str | os.PathLike) -> Path:
    """Write ``<root>/summary.md`` and ``<root>/summary.csv`` over every subfolder of `root` holding a grid.

    Returns:
        the path of ``summary.md``.

    Raises:
        FileNotFoundError: `root` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no ablation folder at '{root}'; run an ablation script first")
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / "trials.csv").is_file())
    table = ablation_summary(dirs)
    write_csv(table, root / "summary.csv")
    return write_text(root / "summary.md", summary_markdown(table))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _setting(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) and math.isfinite(v) else _value(v)


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "\u2014"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3f}"
    if isinstance(v, float):
        return str(int(v))
    return str(v)


def _iterations(group: pd.DataFrame) -> str:
    its = sorted({int(i) for i in group["iterations"].dropna()})
    return "/".join(map(str, its)) if its else "?"
