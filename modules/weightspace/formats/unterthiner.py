"""The Unterthiner et al. 2020 "Small CNN Zoo" (google-research dnn_predict_accuracy).

Per image dataset: ``weights.npy`` (or ``all_weights.npy``) ``[N, 4970]``, one
row per checkpoint in TensorFlow order (per layer the bias, then the kernel;
conv kernels HWIO, dense kernels [in, out]); ``metrics.csv(.gz)`` with the
``config.*``, ``modeldir``, ``step``, ``test_accuracy``... columns, row-aligned;
``layout.csv`` (``varname``, ``start_idx``, ``end_idx``, ``shape``); without it
the per-layer order (``param_order``, ``--param-order``) must be given, never guessed.

Conversion permutes every row into the torch layout of ``cnn_unterthiner``
(OIHW / [out, in], weight before bias) with one gather index, streaming row
chunks from the file into a `ZooWriter`, so a 270k x 4970 matrix is never held
twice (nor once). Sample columns: ``modeldir`` -> ``model_id``, ``step`` ->
``epoch`` (every checkpoint 0..86 is kept), ``test_accuracy`` -> ``test_acc``,
``train_accuracy`` -> ``train_acc``, ``ggap = train_acc - test_acc``, rows with
non-finite weights get ``diverged=True``, and every ``config.<x>`` column is
kept as hyperparameter ``<x>`` (prefix kept only where the short name is taken).
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.errors import InputError
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.store import Zoo, ZooWriter

ARCHITECTURE = "cnn_unterthiner"
WEIGHT_FILES = ("weights.npy", "all_weights.npy")
METRIC_FILES = ("metrics.csv.gz", "metrics.csv", "all_metrics.csv.gz", "all_metrics.csv")
REQUIRED_METRICS = ("modeldir", "step", "test_accuracy", "train_accuracy")
_RENAMES = {"modeldir": "model_id", "step": "epoch", "test_accuracy": "test_acc", "train_accuracy": "train_acc"}
METRICS = ("test_acc", "train_acc", "test_loss", "train_loss", "ggap")
# per layer, which TF variable comes first in a row; the released archives (and their layout.csv) are bias-kernel
PARAM_ORDERS = {"bias-kernel": True, "kernel-bias": False}
_CHUNK_BYTES = 32 << 20  # rows read per step: ~32 MiB


@dataclass(frozen=True)
class TFVariable:
    """One row of ``layout.csv``: a TF variable's slice of the flat row."""

    varname: str  # e.g. "sequential/conv2d/kernel:0"
    start: int
    end: int
    shape: tuple[int, ...]  # TF shape: (kh, kw, in, out), (in, out) or (out,)

    @property
    def is_bias(self) -> bool:
        return self.varname.endswith("bias:0")


def tf_variables(*, bias_first: bool = True, units: int = 16, classes: int = 10) -> list[TFVariable]:
    """The Small CNN Zoo's TF layout (the released layout.csv; the colab's boundaries).

    ``bias_first=False`` gives the 2021 GoogleDatasetSimCLR order, which moved
    each layer's bias behind its (still TF-ordered) kernel (bug B5).
    """
    shapes = [("conv2d", (3, 3, 1, units)), ("conv2d_1", (3, 3, units, units)),
              ("conv2d_2", (3, 3, units, units)), ("dense", (units, classes))]
    out, start = [], 0
    for name, shape in shapes:
        pair = [(f"sequential/{name}/bias:0", (shape[-1],)), (f"sequential/{name}/kernel:0", shape)]
        for varname, s in pair if bias_first else pair[::-1]:
            out.append(TFVariable(varname, start, start + math.prod(s), s))
            start += math.prod(s)
    return out


def tf_layout_table(variables: list[TFVariable] | None = None) -> pd.DataFrame:
    """`variables` (default: `tf_variables()`) as the ``layout.csv`` table."""
    rows = [{"varname": v.varname, "start_idx": v.start, "end_idx": v.end, "shape": str(v.shape)}
            for v in variables or tf_variables()]
    return pd.DataFrame(rows)


def read_tf_layout(path: str | os.PathLike, num_params: int = 4970) -> list[TFVariable]:
    """Read and check ``layout.csv``: its slices must tile ``[0, num_params)``.

    Raises:
        ValueError: missing columns, a bad shape, a slice whose length is not
            the shape's size, gaps/overlaps, or a total other than `num_params`.
    """
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as err:
        raise ValueError(f"'{path}' could not be read as CSV: {err}") from err
    missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in table.columns]
    if missing:
        raise ValueError(f"'{path}' lacks the columns {missing}; it has {list(table.columns)}")
    variables = []
    for i, row in table.iterrows():
        try:
            shape = tuple(int(v) for v in ast.literal_eval(str(row["shape"])))
            var = TFVariable(str(row["varname"]), int(row["start_idx"]), int(row["end_idx"]), shape)
        except (ValueError, SyntaxError, TypeError) as err:
            raise ValueError(f"'{path}' row {i}: cannot read {dict(row)} ({err})") from err
        if var.end - var.start != math.prod(shape):
            raise ValueError(f"'{path}' row {i}: {var.varname} spans {var.end - var.start} entries but its shape {shape} "
                             f"has {math.prod(shape)}")
        if not (var.is_bias or var.varname.endswith("kernel:0")):
            raise ValueError(f"'{path}' row {i}: varname {var.varname!r} ends in neither 'kernel:0' nor 'bias:0'")
        variables.append(var)
    variables.sort(key=lambda v: v.start)
    end = 0
    for v in variables:
        if v.start != end:
            raise ValueError(f"'{path}': {v.varname} starts at {v.start} but the variables before it end at {end}")
        end = v.end
    if end != num_params:
        raise ValueError(f"'{path}' describes {end} weights, but the Small CNN Zoo rows have {num_params}")
    return variables


def gather_index(variables: list[TFVariable], layout: WeightLayout) -> np.ndarray:
    """Index ``(D,)`` with ``torch_rows = tf_rows[:, index]``; inverse: ``tf_rows = torch_rows[:, argsort(index)]``.

    Variables pair up per layer by name (``.../kernel:0`` with ``.../bias:0``),
    layers in order of their first entry. Conv kernels go HWIO -> OIHW, dense
    kernels [in, out] -> [out, in].

    Raises:
        ValueError: the TF variables do not describe the layers of `layout`.
    """
    layers: dict[str, dict[str, TFVariable]] = {}
    for v in sorted(variables, key=lambda v: v.start):
        layers.setdefault(v.varname.rsplit("/", 1)[0], {})["bias" if v.is_bias else "kernel"] = v
    if len(layers) != len(layout.layers):
        raise ValueError(f"the TF layout has {len(layers)} layers but {ARCHITECTURE} has {len(layout.layers)}")
    parts = []
    for (name, pair), spec in zip(layers.items(), layout.layers):
        kernel = pair.get("kernel")
        if kernel is None or ("bias" in pair) != spec.has_bias:
            raise ValueError(f"TF layer {name!r}: expected a kernel{' and a bias' if spec.has_bias else ''}, got {sorted(pair)}")
        idx = np.arange(kernel.start, kernel.end).reshape(kernel.shape)
        idx = idx.transpose(3, 2, 0, 1) if idx.ndim == 4 else idx.T  # HWIO -> OIHW; (in, out) -> (out, in)
        if idx.shape != spec.weight_shape:
            raise ValueError(f"TF layer {name!r} kernel {kernel.shape} does not give {spec.name}'s torch shape {spec.weight_shape}")
        parts.append(idx.reshape(-1))
        if spec.has_bias:
            parts.append(np.arange(pair["bias"].start, pair["bias"].end))
    return np.concatenate(parts)


def variables_order(variables: list[TFVariable]) -> str:
    """The order of each layer's TF variables in the rows: bias-kernel, kernel-bias, or mixed."""
    first: dict[str, bool] = {}
    for v in sorted(variables, key=lambda v: v.start):
        first.setdefault(v.varname.rsplit("/", 1)[0], v.is_bias)
    orders = {bias_first for bias_first in first.values()}
    return next(k for k, b in PARAM_ORDERS.items() if orders == {b}) if len(orders) == 1 else "mixed"


def _row_variables(src: str | os.PathLike, files: dict[str, Path], num_params: int,
                   order: str | None) -> tuple[list[TFVariable], str]:
    """The TF variables of the rows (layout.csv, else the published layout in the given order) and how that was known."""
    if order is not None and order not in PARAM_ORDERS:
        raise InputError(f"param_order must be one of {sorted(PARAM_ORDERS)}, got {order!r}")
    if "layout" in files:
        variables = read_tf_layout(files["layout"], num_params)
        found = variables_order(variables)
        if order is not None and order != found:
            raise InputError(f"'{files['layout']}' puts the parameters in {found} order, but {order} was given; "
                             "drop the order option (layout.csv decides) or fix the file")
        return variables, f"{found} (layout.csv)"
    if order is None:
        raise InputError(
            f"'{src}' has no layout.csv, so whether each layer's bias comes before or after its kernel in the rows is "
            "unknown (a wrong guess converts into wrong weights); put the archive's layout.csv in the folder, or give "
            "the order: --param-order bias-kernel (the released Small CNN Zoo archives) or --param-order kernel-bias "
            "(param_order=... in Python)")
    return tf_variables(bias_first=PARAM_ORDERS[order]), f"{order} (given)"


def unterthiner_layout() -> WeightLayout:
    return WeightLayout.from_module(create_zoo_model(ARCHITECTURE))


def tf_to_torch(rows: np.ndarray, variables: list[TFVariable] | None = None) -> np.ndarray:
    """TF-ordered rows ``(N, 4970)`` -> torch-ordered rows of ``cnn_unterthiner``."""
    return np.asarray(rows)[..., gather_index(variables or tf_variables(), unterthiner_layout())]


def torch_to_tf(rows: np.ndarray, variables: list[TFVariable] | None = None) -> np.ndarray:
    """The inverse of `tf_to_torch`: torch-ordered rows -> the Small CNN Zoo's TF order."""
    return np.asarray(rows)[..., np.argsort(gather_index(variables or tf_variables(), unterthiner_layout()))]


# ------------------------------------------------------------------ metrics
def metrics_to_samples(metrics: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str], dict[str, str]]:
    """Unterthiner metric columns -> (samples, hyperparameter columns, metric columns, renames).

    Raises:
        ValueError: a required column is missing or a row lacks its model or step.
    """
    metrics = metrics.rename(columns={c: "checkpoint" for c in metrics.columns if not c or c.startswith("Unnamed:")})
    missing = [c for c in REQUIRED_METRICS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics lack the columns {missing}; a Small CNN Zoo metrics.csv has {list(REQUIRED_METRICS)}, "
                         f"this one has {list(metrics.columns)[:30]}")
    bad = metrics.index[metrics["modeldir"].isna() | pd.to_numeric(metrics["step"], errors="coerce").isna()]
    if len(bad):
        raise ValueError(f"metrics rows {list(bad[:5])} ({len(bad)} in all) lack a modeldir or an integer step; "
                         "the file may be truncated or corrupt")
    renames = {c: _RENAMES[c] for c in metrics.columns if c in _RENAMES}
    taken = set(renames.values()) | {c for c in metrics.columns if not c.startswith("config.")} | {"ggap", "diverged"}
    for c in metrics.columns:
        if c.startswith("config."):
            short = c[len("config."):]
            renames[c] = short if short not in taken and short else c
            taken.add(renames[c])
    samples = metrics.rename(columns=renames)
    samples["model_id"] = samples["model_id"].astype(str)
    samples["epoch"] = pd.to_numeric(samples["epoch"]).astype(np.int64)
    samples["ggap"] = samples["train_acc"] - samples["test_acc"]
    hyper = [renames[c] for c in metrics.columns if c.startswith("config.")]
    metric_cols = [c for c in METRICS if c in samples.columns]
    order = ["model_id", "epoch", *metric_cols, *hyper]
    samples = samples[order + [c for c in samples.columns if c not in order]]
    return samples.reset_index(drop=True), hyper, metric_cols, renames


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``metrics.csv(.gz)``, refusing files that are cut short.

    Raises:
        ValueError: unreadable, corrupt or truncated file.
    """
    path = Path(path)
    if path.suffix != ".gz":
        with open(path, "rb") as f:
            f.seek(max(path.stat().st_size - 1, 0))
            if f.read(1) not in (b"\n", b""):
                raise ValueError(f"'{path}' does not end with a newline; it looks truncated")
    try:
        return pd.read_csv(path)
    except (ValueError, OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"'{path}' could not be read ({type(err).__name__}: {err}); it may be truncated or corrupt") from err


# --------------------------------------------------------------- conversion
def find_files(src: str | os.PathLike) -> dict[str, Path]:
    """The weights, metrics and (optional) layout.csv files of a Small CNN Zoo folder.

    Raises:
        FileNotFoundError: no weights or metrics file, naming what was looked for.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"no folder '{src}'; unpack a Small CNN Zoo archive (weightspace zoo download) first")
    found = {}
    for role, names in (("weights", WEIGHT_FILES), ("metrics", METRIC_FILES), ("layout", ("layout.csv",))):
        hit = next((src / n for n in names if (src / n).is_file()), None)
        if hit is None and role != "layout":
            raise FileNotFoundError(f"'{src}' has none of {list(names)}; is it an unpacked Small CNN Zoo dataset folder?")
        if hit is not None:
            found[role] = hit
    return found


def _npy_header(path: Path) -> tuple[tuple[int, int], np.dtype, int, bool]:
    try:
        view = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"'{path}' is not a readable .npy file ({err}); it may be truncated or corrupt") from err
    shape, dtype, offset, fortran = view.shape, view.dtype, view.offset, bool(view.flags.f_contiguous and view.ndim > 1)
    del view
    if len(shape) != 2 or dtype.kind != "f":
        raise ValueError(f"'{path}' holds a {dtype} array of shape {shape}; expected float rows (N, 4970)")
    if offset + math.prod(shape) * dtype.itemsize > path.stat().st_size:
        raise ValueError(f"'{path}' is shorter than its header announces; the file is truncated")
    return (shape[0], shape[1]), dtype, offset, fortran


def _row_chunks(path: Path, shape: tuple[int, int], dtype: np.dtype, offset: int, fortran: bool, chunk_rows: int):
    """Yield (start, rows) with rows read by plain file reads into one reused buffer."""
    n, d = shape
    if fortran:  # rare: rows are not contiguous, go through a memory map
        view = np.load(path, mmap_mode="r")
        for start in range(0, n, chunk_rows):
            yield start, np.array(view[start:start + chunk_rows])
        return
    buf = np.empty((chunk_rows, d), dtype)
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, n, chunk_rows):
            rows = buf[: min(chunk_rows, n - start)]
            if f.readinto(rows.data.cast("B")) != rows.nbytes:  # rows: leading rows of a C-contiguous buffer
                raise ValueError(f"'{path}' ended early at row {start}; the file is truncated")
            yield start, rows


def convert_unterthiner(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                        name: str | None = None, chunk_rows: int | None = None,
                        provenance: dict | None = None, param_order: str | None = None) -> Zoo:
    """Convert a Small CNN Zoo dataset folder into a weightspace zoo at `out`.

    Args:
        src: folder with weights.npy / all_weights.npy, metrics.csv(.gz), layout.csv.
        out: zoo directory to write (atomically).
        overwrite: replace an existing zoo at `out`.
        name: zoo name (default: the folder name).
        chunk_rows: rows per read (default: about 32 MiB worth).
        provenance: extra entries for the zoo's provenance (e.g. download url).
        param_order: per layer "bias-kernel" or "kernel-bias"; needed when `src`
            has no layout.csv (which otherwise decides, and must agree with it).

    Raises:
        FileNotFoundError, FileExistsError, ValueError: missing files, an
            existing `out`, or files that are truncated, inconsistent or malformed.
        InputError: no layout.csv and no `param_order`, or the two disagree.
    """
    files = find_files(src)
    layout = unterthiner_layout()
    shape, dtype, offset, fortran = _npy_header(files["weights"])
    variables, order_found = _row_variables(src, files, layout.num_params, param_order)
    index = gather_index(variables, layout)
    if shape[1] != layout.num_params:
        raise ValueError(f"'{files['weights']}' rows have {shape[1]} entries; Small CNN Zoo rows have {layout.num_params}")
    metrics = read_metrics(files["metrics"])
    if len(metrics) != shape[0]:
        raise ValueError(f"'{files['weights']}' has {shape[0]} rows but '{files['metrics']}' has {len(metrics)}; "
                         "they must describe the same checkpoints row by row")
    samples, hyper, metric_cols, renames = metrics_to_samples(metrics)
    diverged = np.zeros(shape[0], bool)
    chunk_rows = chunk_rows or max(1, _CHUNK_BYTES // (shape[1] * dtype.itemsize))
    torch_rows = np.empty((chunk_rows, shape[1]), np.float32)  # reused output buffer
    with ZooWriter(out, shape[0], layout, overwrite=overwrite) as writer:
        for start, rows in _row_chunks(files["weights"], shape, dtype, offset, fortran, chunk_rows):
            rows = rows.astype(np.float32, copy=False)
            diverged[start:start + len(rows)] = ~np.isfinite(rows).all(axis=1)
            # `index` is a permutation of range(D), so no bounds check is needed
            writer.write(np.take(rows, index, axis=1, out=torch_rows[: len(rows)], mode="clip"))
        samples.insert(len(metric_cols) + 2, "diverged", diverged)
        datasets = samples["dataset"].unique() if "dataset" in samples else []
        info = {
            "name": name or Path(src).resolve().name,
            "hyperparameters": hyper,
            "metrics": metric_cols,
            "architecture": {"name": ARCHITECTURE, "kwargs": {}},
            "task": {"name": str(datasets[0]) if len(datasets) == 1 else Path(src).resolve().name},
            "provenance": {
                "format": "unterthiner",
                "source": str(Path(src).resolve()),
                "files": {k: v.name for k, v in files.items()},
                "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "columns": renames,
                "source_dtype": str(dtype),
                "diverged_rows": int(diverged.sum()),
                "param_order": order_found,
                "layout": "TF (per layer bias and kernel in param_order, kernel HWIO / [in, out]) -> "
                          "torch (weight OIHW / [out, in], bias)",
                "notes": "activation varies per model: build each network with cnn_unterthiner(activation=<activation>)",
                **(provenance or {}),
            },
        }
        return writer.finish(samples, info)
