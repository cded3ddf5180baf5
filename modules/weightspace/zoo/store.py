"""The zoo on disk: weights.npy + samples.csv + layout.json + zoo.json.

- ``weights.npy``: ``(S, D)`` float32, one row per checkpoint, loaded memory-mapped;
- ``samples.csv``: one row per checkpoint (model_id, epoch, seed, metrics,
  hyperparameters, diverged), aligned with the weight rows;
- ``layout.json``: the `WeightLayout` of the rows;
- ``zoo.json``: format version, name, which columns are hyperparameters and
  which are metrics, the spec or source it came from, package versions;
- a converted zoo may hold its own network (``network.pt2``, `weightspace.zoo.program`) and example
  inputs (``inputs.npy``, `weightspace.zoo.example_inputs`), each with its SHA-256 in ``zoo.json``:
  a zoo whose file differs from its digest, or whose program holds anything but plain tensors and
  operators, is refused when opened, naming the file, before anything in it is loaded.

A zoo is written into a hidden temporary directory beside its destination and
renamed into place when complete, so a reader never sees half a zoo; the
destination is replaced only when it is a zoo (or an empty folder), under its
output lock (`weightspace.io.outputs`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from pandas._libs.parsers import STR_NA_VALUES

import weightspace
from weightspace.errors import InputError
from weightspace.io.atomic import atomic_directory, fsync_tree, replace_dir, write_json
from weightspace.io.json_files import JSONFileError, read_json
from weightspace.io.outputs import ZOO_FORMAT, check_replaceable, clean_stale, output_errors, output_lock
from weightspace.layout import WeightLayout
from weightspace.zoo.example_inputs import INPUTS_FILE, inputs_entry, load_inputs
from weightspace.zoo.program import PROGRAM_FILE, check_program, program_entry

FORMAT = ZOO_FORMAT  # "weightspace-zoo"
VERSION = 1
FILES = ("weights.npy", "samples.csv", "layout.json", "zoo.json")
REQUIRED_COLUMNS = ("model_id", "epoch")
# pandas < 3 parses floats approximately unless asked; pandas 3 round-trips by default
EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


class ZooFormatError(InputError):
    """A zoo directory is missing a file or its files disagree."""


@dataclass
class Zoo:
    """Weights ``(S, D)``, a table of samples, a layout and metadata."""

    weights: np.ndarray  # (S, D) float32, one row per checkpoint
    samples: pd.DataFrame  # S rows: model_id, epoch, metrics, hyperparameters
    layout: WeightLayout
    info: dict = field(default_factory=dict)  # zoo.json: name, hyperparameters, metrics, spec, provenance
    path: Path | None = None  # where it was loaded from
    files: dict[str, bytes] = field(default_factory=dict)  # attached files to write with it (name -> bytes)

    def __post_init__(self) -> None:
        _check_consistent(self.weights, self.samples, self.layout, where="in memory")

    # ------------------------------------------------------------ properties
    @property
    def num_samples(self) -> int:
        return self.weights.shape[0]

    @property
    def num_models(self) -> int:
        return int(self.samples["model_id"].nunique())

    @property
    def epochs(self) -> list[int]:
        return sorted(int(e) for e in self.samples["epoch"].unique())

    @property
    def hyperparameters(self) -> list[str]:
        """Columns of `samples` that hold hyperparameters."""
        return [c for c in self.info.get("hyperparameters", []) if c in self.samples]

    @property
    def metrics(self) -> list[str]:
        """Columns of `samples` that hold measured properties (accuracy, loss, ...)."""
        return [c for c in self.info.get("metrics", []) if c in self.samples]

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.path.name if self.path else "zoo"))

    # ------------------------------------------------------------------- I/O
    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True) -> "Zoo":
        """Open a zoo directory; the weights stay on disk (memory-mapped) unless ``mmap=False``.

        Raises:
            FileNotFoundError: no such directory.
            ZooFormatError: a missing or mismatched file, named in the message.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"no zoo at '{path}'; generate one with `weightspace zoo generate` "
                "or convert an external zoo with `weightspace zoo convert`"
            )
        missing = [f for f in FILES if not (path / f).is_file()]
        if missing:
            raise ZooFormatError(
                f"zoo '{path}' has no {', '.join(missing)}; was it written by weightspace zoo generate? "
                "Convert external zoos with `weightspace zoo convert`"
            )
        info = _read_json(path / "zoo.json")
        if not isinstance(info, dict):
            raise ZooFormatError(f"'{path / 'zoo.json'}' holds a JSON {type(info).__name__}, not an object; "
                                 "it is not a weightspace zoo file. Regenerate or reconvert the zoo")
        if info.get("format") != FORMAT:
            raise ZooFormatError(f"'{path / 'zoo.json'}' is not a weightspace zoo file (format={info.get('format')!r})")
        if not isinstance(info.get("version", 0), int):
            raise ZooFormatError(f"'{path / 'zoo.json'}' has version {info['version']!r}, expected an integer")
        if int(info.get("version", 0)) > VERSION:
            raise ZooFormatError(
                f"'{path / 'zoo.json'}' has format version {info['version']}, newer than this weightspace "
                f"reads ({VERSION}); upgrade weightspace"
            )
        try:
            layout = WeightLayout.from_dict(_read_json(path / "layout.json"))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ZooFormatError(f"'{path / 'layout.json'}' does not describe a layout: {err}") from err
        try:
            weights = np.load(path / "weights.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ZooFormatError(f"'{path / 'weights.npy'}' is not a readable .npy file ({err}); the file may be truncated") from err
        dtypes = info.get("column_dtypes", {})
        if not isinstance(dtypes, dict) or not all(isinstance(v, str) for v in dtypes.values()):
            raise ZooFormatError(f"'{path / 'zoo.json'}': column_dtypes must map column names to dtype names such as "
                                 f"'float64', got {str(dtypes)[:120]}; fix or delete the entry")
        try:
            samples = read_samples(path / "samples.csv", dtypes)
        except (ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise ZooFormatError(f"'{path / 'samples.csv'}' could not be read with the column_dtypes of zoo.json: "
                                 f"{err}") from err
        _check_consistent(weights, samples, layout, where=f"zoo '{path}'")
        _check_unique_keys(samples, where=f"zoo '{path}'")
        zoo = cls(weights, samples, layout, info, path)
        for entry in attachments(info).values():
            zoo.attachment(entry)
        return zoo

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the zoo to `path` atomically (temporary directory, then rename).

        Raises:
            FileExistsError: `path` exists and `overwrite` is False.
            OutputError: `path` is not a zoo (nor an empty folder), or is locked, read-only or full.
            ZooFormatError: a (model_id, epoch) appears twice.
        """
        path = Path(path)
        _check_unique_keys(self.samples, where="the zoo to save")
        with atomic_directory(path, overwrite=overwrite, accept=("zoo",)) as tmp:
            np.save(tmp / "weights.npy", np.ascontiguousarray(self.weights, dtype=np.float32), allow_pickle=False)
            self.samples.to_csv(tmp / "samples.csv", index=False)
            self.layout.save(tmp / "layout.json")
            info = dict(self.info)
            info.update(format=FORMAT, version=VERSION,
                        column_dtypes={c: str(t) for c, t in self.samples.dtypes.items()})
            info.setdefault("versions", package_versions())
            write_json(tmp / "zoo.json", info)
            for entry in attachments(info).values():
                (tmp / entry["file"]).write_bytes(self.attachment(entry))
        self.path = path
        return path

    def attachment(self, entry: Mapping) -> bytes:
        """The bytes of an attached file zoo.json records, checked as `read_attachment` checks them.

        Raises:
            ZooFormatError: naming the file.
        """
        return read_attachment(entry, self.path, self.files)

    # -------------------------------------------------------------- summary
    def summary(self) -> str:
        """Models, epochs, parameters and the test-accuracy distribution per epoch, as text."""
        lines = [
            f"zoo {self.name}" + (f" at {self.path}" if self.path else ""),
            f"  architecture : {_info_name(self.info.get('architecture'))}   task: {_info_name(self.info.get('task'))}",
            f"  models       : {self.num_models}",
            f"  samples      : {self.num_samples} checkpoints",
            f"  epochs       : {_compact(self.epochs)}",
            f"  parameters   : {self.layout.num_params} in {len(self.layout)} layers "
            f"({', '.join(f'{s.name} {tuple(s.weight_shape)}' for s in self.layout.layers)})",
        ]
        if self.hyperparameters:
            varied = [c for c in self.hyperparameters if self.samples[c].nunique() > 1]
            lines.append(f"  varied hyper : {', '.join(varied) if varied else 'none'}")
        if "diverged" in self.samples and self.samples["diverged"].any():
            bad = self.samples.loc[self.samples["diverged"].astype(bool), "model_id"].nunique()
            lines.append(f"  diverged     : {bad} models")
        acc = next((c for c in ("test_acc", "test_accuracy") if c in self.samples), None)
        values = pd.to_numeric(self.samples[acc], errors="coerce") if acc is not None else None
        if values is not None and values.notna().any():  # a converted zoo may hold text there
            table = values.groupby(self.samples["epoch"]).describe(percentiles=[0.25, 0.5, 0.75])
            table = table[["count", "mean", "std", "min", "25%", "50%", "75%", "max"]]
            table["count"] = table["count"].astype(int)
            lines.append(f"  {acc} per epoch:")
            lines += ["    " + row for row in table.to_string(float_format=lambda v: f"{v:.3f}").splitlines()]
        return "\n".join(lines)


# ---------------------------------------------------------------- helpers
def attachments(info: Mapping) -> dict[str, Mapping]:
    """The files zoo.json records besides the four of every zoo: kind ("program", "inputs") -> ``{"file", "sha256"}``."""
    found = {"program": program_entry(info), "inputs": inputs_entry(info)}
    return {kind: entry for kind, entry in found.items() if entry is not None}


def read_attachment(entry: Mapping, folder: str | os.PathLike | None, files: Mapping[str, bytes] | None = None) -> bytes:
    """The bytes of an attached file zoo.json records (``{"file", "sha256"}``), from `files` (a zoo in memory)
    or the zoo `folder`, checked against the digest, and then a program by `check_program` and inputs by
    `load_inputs` (``allow_pickle=False``), before they are returned.

    Raises:
        ZooFormatError: naming the file: not a plain file name, missing, other than recorded, or a refused program.
    """
    name = entry.get("file")
    where = f"'{Path(folder) / str(name)}'" if folder is not None else f"the zoo's {name!r}"
    if not isinstance(name, str) or name in FILES or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ZooFormatError(f"{where}: zoo.json names the attached file {name!r}, not a plain file name in the zoo "
                             "folder; convert the zoo again")
    if files is not None and name in files:
        data = files[name]
    elif folder is not None and (Path(folder) / name).is_file():
        data = (Path(folder) / name).read_bytes()
    else:
        raise ZooFormatError(f"{where} is missing, though zoo.json records it; convert the zoo again, or copy the "
                             "whole zoo folder")
    if digest(data) != entry.get("sha256"):
        raise ZooFormatError(f"{where} differs from the SHA-256 zoo.json records: it was changed or replaced after "
                             "conversion, and nothing in it was loaded; convert the zoo again")
    try:
        if name == PROGRAM_FILE:
            check_program(data, where)
        elif name == INPUTS_FILE:
            load_inputs(data, where)
    except InputError as err:
        raise ZooFormatError(str(err)) from None
    return data


def digest(data: bytes) -> str:
    """The SHA-256 of `data`, as zoo.json records it for an attached file."""
    return hashlib.sha256(data).hexdigest()


def _info_name(entry) -> str:
    """The name in a zoo.json entry such as ``architecture``: ``{"name": ...}``, or a bare string; a stored
    program or own inputs are said so."""
    name = entry.get("name") if isinstance(entry, dict) else entry
    if name is None and isinstance(entry, dict) and isinstance(entry.get("program"), dict):
        return f"stored program ({entry['program'].get('model')})"
    if name is None and isinstance(entry, dict) and isinstance(entry.get("inputs"), dict):
        return f"own inputs ({entry['inputs'].get('count')} of shape {tuple(entry.get('input_shape') or ())})"
    return "?" if name is None else str(name)


def read_samples(path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    """A samples table with its recorded column dtypes; model ids are read as written ("NA", "007" stay text)."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype=dtypes or None, keep_default_na=False,
                       na_values={c: sorted(STR_NA_VALUES) for c in header if c != "model_id"}, **EXACT_FLOATS)


def _check_consistent(weights: np.ndarray, samples: pd.DataFrame, layout: WeightLayout, *, where: str) -> None:
    if weights.dtype != np.float32:
        raise ZooFormatError(f"{where}: weights.npy holds {weights.dtype}, expected float32")
    if weights.ndim != 2:
        raise ZooFormatError(f"{where}: weights.npy has shape {weights.shape}, expected (samples, parameters)")
    if weights.shape[0] != len(samples):
        raise ZooFormatError(
            f"{where}: weights.npy has {weights.shape[0]} rows but samples.csv has {len(samples)}; "
            "they must describe the same checkpoints row by row"
        )
    if weights.shape[1] != layout.num_params:
        raise ZooFormatError(
            f"{where}: weights.npy rows have {weights.shape[1]} entries but layout.json describes {layout.num_params}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise ZooFormatError(f"{where}: samples.csv lacks the columns {missing}")


def _check_unique_keys(samples: pd.DataFrame, *, where: str) -> None:
    """Refuse a (model_id, epoch) that names two rows: each checkpoint is one row."""
    repeated = samples.duplicated(list(REQUIRED_COLUMNS), keep=False)
    if repeated.any():
        keys = samples.loc[repeated, list(REQUIRED_COLUMNS)].drop_duplicates()
        first = ", ".join(f"({m!r}, {e!r})" for m, e in keys.head(3).itertuples(index=False))
        raise ZooFormatError(f"{where}: {int(repeated.sum())} rows share {len(keys)} (model_id, epoch) keys, e.g. "
                             f"{first}; each checkpoint must appear once. Regenerate or reconvert the zoo")


def package_versions() -> dict[str, str]:
    return {"weightspace": weightspace.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "pandas": pd.__version__}


def _read_json(path: Path) -> dict:
    try:
        return read_json(path, "regenerate or reconvert the zoo")
    except JSONFileError as err:
        raise ZooFormatError(str(err)) from None


def _compact(values: list[int]) -> str:
    """[0, 1, 2, 3, 5] -> '0-3, 5'."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out) + f"  ({len(values)} checkpoints per model)" if values else "none"


class ZooWriter:
    """Write a zoo whose weights arrive in row chunks, never holding them all in memory.

    The rows go straight into ``weights.npy`` in a hidden temporary directory
    beside `path` with plain sequential writes (a memory map's dirty pages
    would count in the process's resident memory); `finish` adds the other
    files and renames the directory into place, like `Zoo.save`.

    Use as a context manager: leaving the block with an exception removes the
    temporary directory.

    The writer holds the output lock of `path` from construction to `finish` or `abort`.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        OutputError: `path` is not a zoo (nor an empty folder), or is locked, read-only or full.
    """

    def __init__(self, path: str | os.PathLike, num_rows: int, layout: WeightLayout, *, overwrite: bool = False):
        self.path, self.num_rows, self.layout = Path(path), int(num_rows), layout
        self._lock = ExitStack()
        with output_errors(self.path):
            self._lock.enter_context(output_lock(self.path))
            try:
                clean_stale(self.path)
                check_replaceable(self.path, accept=("zoo",), overwrite=overwrite)
                self.tmp = self.path.parent / f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}"
                self.tmp.mkdir()
            except BaseException:
                self._lock.close()
                raise
        self.rows_written = 0
        self._file = open(self.tmp / "weights.npy", "wb")
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.num_rows, layout.num_params)}
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, rows: np.ndarray) -> None:
        """Append rows ``(n, D)`` (cast to float32)."""
        rows = np.ascontiguousarray(rows, dtype="<f4")
        if rows.ndim != 2 or rows.shape[1] != self.layout.num_params:
            raise ValueError(f"rows must have shape (n, {self.layout.num_params}), got {rows.shape}")
        if self.rows_written + len(rows) > self.num_rows:
            raise ValueError(f"writing {len(rows)} rows after {self.rows_written} exceeds the {self.num_rows} announced")
        with output_errors(self.path):
            self._file.write(rows.data.cast("B"))  # rows is C-contiguous
        self.rows_written += len(rows)

    def finish(self, samples: pd.DataFrame, info: dict) -> Zoo:
        """Write samples.csv, layout.json and zoo.json, move the zoo into place and open it."""
        self._file.close()
        if self.rows_written != self.num_rows:
            raise ZooFormatError(f"{self.rows_written} weight rows were written but {self.num_rows} announced")
        if len(samples) != self.num_rows:
            raise ZooFormatError(f"samples has {len(samples)} rows but the weights {self.num_rows}")
        missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
        if missing:
            raise ZooFormatError(f"samples lacks the columns {missing}")
        _check_unique_keys(samples, where="the zoo to write")
        with output_errors(self.path):
            samples.to_csv(self.tmp / "samples.csv", index=False)
            self.layout.save(self.tmp / "layout.json")
            info = dict(info)
            info.update(format=FORMAT, version=VERSION, column_dtypes={c: str(t) for c, t in samples.dtypes.items()})
            info.setdefault("versions", package_versions())
            write_json(self.tmp / "zoo.json", info)
            fsync_tree(self.tmp)
            replace_dir(self.tmp, self.path, accept=("zoo",))
        self._lock.close()
        return Zoo.load(self.path)

    def abort(self) -> None:
        """Close and remove the temporary directory, and release the output lock."""
        self._file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.close()

    def __enter__(self) -> "ZooWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.tmp.exists():
            self.abort()
