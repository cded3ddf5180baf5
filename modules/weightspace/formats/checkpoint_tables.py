"""The table that lists a folder's checkpoints: the CSV's, or the one read from the folder's layout.

`read_table` reads the CSV (column ``file``, relative to the folder, ``model_id``, ``epoch`` and any
properties such as ``test_acc`` or ``lr``) and `check_table` checks it, or the table
`weightspace.formats.checkpoint_layouts` found: rows counted from 1 after the header, model_id as
whole numbers where every id is one (else as text, as written), whole epochs, numeric accuracies and
losses, files inside the folder, each checkpoint once. `_diverged` reads the ``diverged`` column and
`_roles` tells hyperparameter columns from metric columns (numeric columns that hold one value per
model and vary between models are taken as hyperparameters, with a note).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from weightspace.errors import InputError
from weightspace.formats.checkpoint_states import _first_line
from weightspace.zoo.store import EXACT_FLOATS

CSV = "checkpoints.csv"
REQUIRED = ("file", "model_id", "epoch")
_NOT_PROPERTIES = {"model_id", "epoch", "diverged", "seed"}  # neither hyperparameters nor metrics
MAX_WHOLE = 2**53  # largest model_id and epoch: every whole number up to it reads exactly from a CSV
NUMERIC_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_accuracy", "ggap")  # must be numbers


def read_table(path: str | os.PathLike, src: str | os.PathLike, *, dtypes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read and check the CSV that lists the checkpoints; its index is the row number (from 1).

    Args:
        path: the CSV file.
        src: the folder its ``file`` column is relative to.
        dtypes: column dtypes (those `export_checkpoints` recorded), model_id and epoch excepted.

    Raises:
        FileNotFoundError: no CSV.
        InputError: a missing column, a row without a file, a file outside `src` or not there,
            a model_id or epoch that is not a whole number (of at most 2**53), an accuracy or loss
            that is not a number, or two rows for one checkpoint or one file.
    """
    path, src = Path(path), Path(src)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV '{path}'; a checkpoint folder needs one with the columns {list(REQUIRED)} "
                                "and any properties (test_acc, lr, ...); name another with --csv (csv= in Python)")
    id_dtype = (dtypes or {}).get("model_id")
    dtypes = {k: v for k, v in (dtypes or {}).items() if k not in REQUIRED}
    try:  # model ids as text, as written (no cell of them read as NaN but an empty one); the rest as pandas reads
        header = pd.read_csv(path, nrows=0).columns
        table = pd.read_csv(path, dtype={**dtypes, "file": str, "model_id": str}, keep_default_na=False,
                            na_values={c: sorted(STR_NA_VALUES) for c in header if c != "model_id"}, **EXACT_FLOATS)
    except (ValueError, TypeError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"'{path}' could not be read as CSV ({type(err).__name__}: {_first_line(err)})") from err
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"'{path}' lacks the columns {missing}; it has {list(table.columns)[:20]}. It needs "
                         f"{list(REQUIRED)}: each checkpoint file (relative to '{src}') with its model and epoch")
    return check_table(table, f"'{path}'", src, id_dtype)


def check_table(table: pd.DataFrame, where: str, src: Path, id_dtype: str | None = None) -> pd.DataFrame:
    """Check a table of checkpoints (a CSV's, or one read from the folder) as `read_table` says; its index becomes
    the row number (from 1) and model_id and epoch their types.

    Raises:
        InputError: see `read_table`; `where` names the table.
    """
    table.index = pd.RangeIndex(1, len(table) + 1)
    _refuse_rows(table["file"].isna() | (table["file"] == ""), where, "have no file",
                 "give each row its checkpoint file")
    table["model_id"] = _model_ids(table["model_id"], where, id_dtype)
    for column in ("epoch",):
        values = pd.to_numeric(table[column], errors="coerce")
        whole = values.notna() & np.isfinite(values) & (values == values.round()) & (values.abs() <= MAX_WHOLE)
        _refuse_rows(~whole, where, f"hold {column} values that are not whole numbers "
                     f"({table.loc[~whole, column].head(3).tolist()})",
                     f"write each {column} as a whole number, at most 2**53 in size")
        table[column] = values.astype(np.int64)
    negative = table["epoch"] < 0
    _refuse_rows(negative, where, f"hold negative epochs ({table.loc[negative, 'epoch'].head(3).tolist()})",
                 "epochs count from 0, the initialisation")
    for column in [c for c in NUMERIC_METRICS if c in table]:
        values = pd.to_numeric(table[column], errors="coerce")
        number = values.notna() | table[column].isna()
        _refuse_rows(~number, where, f"hold {column} values that are not numbers "
                     f"({table.loc[~number, column].head(3).tolist()})", f"write each {column} as a number or leave "
                     "it empty")
        # a loss may be infinite (a diverged model); an accuracy, or 1e400 read as one, never is
        infinite = np.isinf(values) & ((values < 0) | (not column.endswith("_loss")))
        _refuse_rows(infinite, where, f"hold infinite {column} values ({table.loc[infinite, column].head(3).tolist()})",
                     f"write each {column} as a finite number or leave it empty")
    outside = table["file"].map(lambda f: Path(f).is_absolute() or ".." in Path(f).parts)
    _refuse_rows(outside, where, f"name files outside '{src}' ({table.loc[outside, 'file'].head(3).tolist()})",
                 "give paths relative to the folder, inside it")
    gone = ~table["file"].map(lambda f: (src / f).is_file())
    _refuse_rows(gone, where, f"name files that are not in '{src}' ({table.loc[gone, 'file'].head(3).tolist()})",
                 "fix the file column or remove those rows")
    for key in (["model_id", "epoch"], ["file"]):
        twice = table.duplicated(key, keep=False)
        first = ", ".join(f"{k} {table.loc[twice, k].iloc[0]}" for k in key) if twice.any() else ""
        _refuse_rows(twice, where, f"repeat a {' and '.join(key)} (the first: {first})",
                     "each checkpoint must appear once; remove or correct the repeated rows")
    return table


def _model_ids(ids: pd.Series, where: str, recorded: str | None) -> pd.Series:
    """The model_id column: whole numbers (int64) where every id is one written plainly (``7``, not ``007``,
    ``7.0`` or beyond 15 digits), else the ids as text, as written; `recorded` (the dtype an export wrote)
    decides where given.

    Raises:
        InputError: an empty cell, or, where the export recorded whole numbers, an id that is not one.
    """
    _refuse_rows(ids == "", where, "have no model_id", "give each row the id of its model (any text, e.g. run000)")
    if recorded is not None and not _integer_dtype(recorded):
        return ids
    whole = ids.str.fullmatch(r"-?(0|[1-9][0-9]{0,14})").astype(bool)
    if whole.all():
        return ids.astype(np.int64)
    if recorded is not None:
        _refuse_rows(~whole, where, f"hold model_id values that are not whole numbers ({ids[~whole].head(3).tolist()})",
                     "write each model_id as a whole number, as the export recorded")
    return ids


def _integer_dtype(name: str) -> bool:
    try:
        return pd.api.types.is_integer_dtype(pd.api.types.pandas_dtype(name))
    except TypeError:
        return False


def _refuse_rows(bad: pd.Series, where: str, what: str, fix: str) -> None:
    if bad.any():
        rows = list(bad.index[bad])
        raise InputError(f"{where}: rows {rows[:8]}{' ...' if len(rows) > 8 else ''} {what}; {fix}")



def _diverged(samples: pd.DataFrame, weights: np.ndarray, where: str) -> np.ndarray:
    """Non-finite weights, or marked diverged in the table."""
    computed = ~np.isfinite(weights).all(axis=1)
    if "diverged" not in samples:
        return computed
    given = samples["diverged"]
    odd = ~(given.isna() | given.isin([True, False]))
    if odd.any():
        raise InputError(f"{where}: column diverged must hold True or False (or nothing), got "
                         f"{given[odd].head(3).tolist()}")
    return computed | given.fillna(False).to_numpy(bool)



def _roles(samples: pd.DataFrame, meta: dict, hyperparameters: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(hyperparameter columns, metric columns) of the samples table."""
    properties = [c for c in samples.columns if c not in _NOT_PROPERTIES]
    if hyperparameters is None and "hyperparameters" in meta:
        return [c for c in meta["hyperparameters"] if c in samples], [c for c in meta.get("metrics", []) if c in samples]
    if hyperparameters is None:
        per_model = _set_per_model(samples, properties)
        if per_model:
            warnings.warn(f"columns {per_model} vary between models but not between a model's checkpoints: taken as "
                          "hyperparameters (choose them with --hyperparameters)", stacklevel=3)
        hyperparameters = [c for c in properties if not pd.api.types.is_numeric_dtype(samples[c]) or c in per_model]
    unknown = [c for c in hyperparameters if c not in samples]
    if unknown:
        raise InputError(f"hyperparameters {unknown} are not columns of the CSV; it has {properties}")
    metrics = [c for c in properties if c not in hyperparameters and pd.api.types.is_numeric_dtype(samples[c])]
    return list(hyperparameters), metrics


def _set_per_model(samples: pd.DataFrame, properties: Sequence[str]) -> list[str]:
    """The numeric columns (no accuracy or loss) that hold one value per model and vary between models, in a zoo
    whose models have several checkpoints: settings of a model's training, not measurements of a checkpoint."""
    models = samples.groupby("model_id", sort=False)
    if len(models) < 2 or not (models.size() > 1).any():
        return []
    found = []
    for column in properties:
        values = samples[column]
        if column in NUMERIC_METRICS or not pd.api.types.is_numeric_dtype(values) or \
                pd.api.types.is_bool_dtype(values) or values.isna().any():
            continue
        if (models[column].nunique() == 1).all() and values.nunique() > 1:
            found.append(column)
    return found

