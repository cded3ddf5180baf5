"""A restricted reader for the pickled torch zip files of the 2021 datasets.

The Zenodo 5645138 files are ``torch.save`` zips whose ``*/data.pkl`` pickles
live objects of the 2021 dataset classes. Unpickling them with ``torch.load`` or
``pickle`` would import (and could execute) whatever the file names. Here the
pickle is read by an `Unpickler` whose ``find_class`` maps an explicit allow
list of globals to light stand-ins and refuses every other global, naming it.
Tensor storages are read from ``<archive>/data/<key>`` with numpy (large ones
memory-mapped), so neither torch.load, ray, the 2021 code nor pandas < 2 is
needed. The unpickler is a `RestrictedUnpickler`: a file cannot set state on
an allow-listed global (and so change how later files load), arrays are
bounded by the file's size, and zip members must be stored uncompressed and
unencrypted, as ``torch.save`` writes them.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import pickle
import reprlib
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from weightspace.errors import InputError
from weightspace.io.restricted_pickle import RestrictedUnpickler


class LegacyPickleError(InputError):
    """A legacy pickle is refused (a global outside the allow list) or unreadable."""


# Attributes the 2021 classes carry that only hold precomputed permutations
# (up to P x D Python ints); dropped as soon as an object is built.
_HEAVY_ATTRS = ("permutation_index_list", "permutations_dct_lst", "permutations_index", "permutations_dct", "data_canon")
_MMAP_BYTES = 64 << 20  # storages larger than this are memory-mapped, not read


class LegacyObject:
    """Plain attribute holder standing in for a pickled 2021 class."""

    legacy_name = "?"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise LegacyPickleError(f"{self.legacy_name}: expected a dict as pickled state, got {type(state).__name__}")
        for key in _HEAVY_ATTRS:
            state.pop(key, None)
        self.__dict__.update(state)


def _legacy_class(path: str) -> type:
    return type(path.rsplit(".", 1)[1], (LegacyObject,), {"legacy_name": path})


_DATASET_CLASSES = [
    "checkpoints_to_datasets.dataset_simclr.SimCLRDataset",
    "checkpoints_to_datasets.dataset_google_simclr.GoogleDatasetSimCLR",
    "checkpoints_to_datasets.random_erasing.RandomErasingVector",
]
# the authors' 2022 code moved the same classes under `ghrp.`
STAND_INS: dict[str, type] = {p: _legacy_class(p) for p in _DATASET_CLASSES}
STAND_INS.update({f"ghrp.{p}": STAND_INS[p] for p in _DATASET_CLASSES})


# ----------------------------------------------------------------- pandas 1.x
class LegacyFrame(LegacyObject):
    legacy_name = "pandas.DataFrame"


class LegacySeries(LegacyObject):
    legacy_name = "pandas.Series"


class LegacyBlockManager:
    """pandas 1.x BlockManager state: (axes, block values, block items, extra state)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class LegacyIndex:
    """A pandas Index rebuilt by ``_new_Index(cls, dict)``."""

    def __init__(self, kind: str, data: dict):
        self.kind, self.data = kind, data

    def values(self) -> np.ndarray:
        if "start" in self.data:  # RangeIndex
            return np.arange(self.data["start"], self.data["stop"], self.data.get("step", 1))
        values = self.data.get("data")
        if not isinstance(values, np.ndarray):
            raise LegacyPickleError(f"pickled {self.kind} holds {type(values).__name__}, expected a numpy array")
        return values


def _index_class(name: str) -> type:
    return type(name, (), {})


_INDEX_CLASSES = {
    "pandas.core.indexes.base.Index": _index_class("Index"),
    "pandas.core.indexes.numeric.Int64Index": _index_class("Int64Index"),
    "pandas.core.indexes.numeric.UInt64Index": _index_class("UInt64Index"),
    "pandas.core.indexes.numeric.Float64Index": _index_class("Float64Index"),
    "pandas.core.indexes.range.RangeIndex": _index_class("RangeIndex"),
}


def _new_index(cls: type, data: dict) -> LegacyIndex:
    if cls not in _INDEX_CLASSES.values() or not isinstance(data, dict):
        raise LegacyPickleError(f"_new_Index called with {reprlib.repr(cls)}; only the pandas index classes are allowed")
    return LegacyIndex(cls.__name__, data)


def _values_of(obj: Any) -> Any:
    return obj.values() if isinstance(obj, LegacyIndex) else obj


def frame_to_pandas(frame: LegacyFrame) -> pd.DataFrame:
    """A pickled pandas 1.x DataFrame -> a current DataFrame with a fresh RangeIndex (rows kept in order)."""
    mgr = frame.__dict__.get("_mgr", frame.__dict__.get("_data"))
    if not isinstance(mgr, LegacyBlockManager) or not isinstance(mgr.state, tuple) or len(mgr.state) < 3:
        raise LegacyPickleError("pickled DataFrame has no readable BlockManager state")
    axes, values, items = mgr.state[0], mgr.state[1], mgr.state[2]
    columns = list(_values_of(axes[0]))
    n_rows = len(_values_of(axes[1]))
    extra = mgr.state[3].get("0.14.1") if len(mgr.state) > 3 and isinstance(mgr.state[3], dict) else None
    if extra:
        blocks = [(b["values"], np.arange(len(columns))[b["mgr_locs"]]) for b in extra["blocks"]]
    else:
        position = {c: i for i, c in enumerate(columns)}
        blocks = [(v, np.array([position[c] for c in _values_of(it)])) for v, it in zip(values, items)]
    data: dict[int, np.ndarray] = {}
    for block, locs in blocks:
        if not isinstance(block, np.ndarray):
            raise LegacyPickleError(f"pickled DataFrame has a {type(block).__name__} block; only numpy blocks are supported")
        block = block.reshape(len(locs), n_rows)  # (columns in block, rows)
        for i, loc in enumerate(locs):
            data[int(loc)] = block[i]
    if sorted(data) != list(range(len(columns))):
        raise LegacyPickleError("pickled DataFrame blocks do not cover its columns")
    return pd.DataFrame({str(columns[i]): data[i] for i in range(len(columns))})


def series_values(series: LegacySeries) -> np.ndarray:
    """A pickled pandas 1.x Series -> its values in row order (its index labels are ignored, bug B7)."""
    mgr = series.__dict__.get("_mgr", series.__dict__.get("_data"))
    if not isinstance(mgr, LegacyBlockManager) or not isinstance(mgr.state, tuple) or len(mgr.state) < 2:
        raise LegacyPickleError("pickled Series has no readable BlockManager state")
    values = mgr.state[1][0]
    if not isinstance(values, np.ndarray):
        raise LegacyPickleError(f"pickled Series holds a {type(values).__name__}; only numpy values are supported")
    return values.reshape(-1)


# ---------------------------------------------------------- tensors, numpy
@dataclass(frozen=True, slots=True)
class _StorageType:
    """An allow-listed ``torch.<Name>Storage``; frozen, so no file can change its dtype for later files."""

    name: str
    dtype: np.dtype


_STORAGE_TYPES = {name: _StorageType(name, np.dtype(dt)) for name, dt in {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}.items()}


class _Storage:
    def __init__(self, array: np.ndarray, kind: _StorageType):
        self.array, self.kind = array, kind


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    """A tensor as a numpy array, bounds-checked against its storage (never reads outside it)."""
    if not isinstance(storage, _Storage):
        raise LegacyPickleError(f"tensor rebuilt from {type(storage).__name__}, expected a storage")
    size, stride = tuple(size), tuple(stride)
    ok = (isinstance(offset, int) and offset >= 0 and len(size) == len(stride)
          and all(isinstance(v, int) and v >= 0 for v in size + stride))
    array = storage.array
    # expanded (stride-0) tensors larger than their storage are refused too: a cheap guard against memory bombs
    if not ok or (all(size) and (offset + sum((n - 1) * s for n, s in zip(size, stride)) >= array.size
                                 or math.prod(size) > array.size)):
        raise LegacyPickleError(f"tensor of size {reprlib.repr(size)}, stride {reprlib.repr(stride)}, offset "
                                f"{reprlib.repr(offset)} does not fit its storage of {array.size} elements; the file "
                                "is corrupt")
    if not all(size):
        out = np.zeros(size, array.dtype)
    else:
        out = np.lib.stride_tricks.as_strided(array[offset:], shape=size,
                                              strides=[s * array.itemsize for s in stride], writeable=False)
        if not isinstance(array, np.memmap):
            out = out.copy()
    if storage.kind.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or codecs.lookup(encoding).name not in ("iso8859-1", "utf-8", "ascii"):
        raise LegacyPickleError(f"_codecs.encode with encoding {encoding!r}; only latin1/utf-8 are allowed")
    return text.encode(encoding)


def _empty_bytes() -> bytes:
    """``bytes()``: how protocol 2 writes b"" (an empty array's data); never ``bytes(n)``, which allocates n bytes."""
    return b""


def _path(kind: type):
    def build(*parts: Any) -> PurePosixPath | PureWindowsPath:
        if not all(isinstance(p, str) for p in parts):
            raise LegacyPickleError("a pickled path holds non-string parts")
        return kind(*parts)
    return build


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _encode,
    ("pandas.core.frame", "DataFrame"): LegacyFrame,
    ("pandas.core.series", "Series"): LegacySeries,
    ("pandas.core.internals.managers", "BlockManager"): LegacyBlockManager,
    ("pandas.core.internals.managers", "SingleBlockManager"): LegacyBlockManager,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
}
for _b in ("builtins", "__builtin__"):  # protocol-2 pickles name builtins the Python 2 way
    _ALLOWED.update({(_b, "set"): set, (_b, "frozenset"): frozenset, (_b, "slice"): slice, (_b, "bytes"): _empty_bytes})
for _name, _kind in [("PosixPath", PurePosixPath), ("PurePosixPath", PurePosixPath),
                     ("WindowsPath", PureWindowsPath), ("PureWindowsPath", PureWindowsPath)]:
    _ALLOWED[("pathlib", _name)] = _path(_kind)
for _name, _st in _STORAGE_TYPES.items():
    _ALLOWED[("torch", _name)] = _st
for _dotted, _cls in {**STAND_INS, **_INDEX_CLASSES}.items():
    _module, _name = _dotted.rsplit(".", 1)
    _ALLOWED[(_module, _name)] = _cls

# numpy's globals are the unpickler's own checked stand-ins (weightspace.io.restricted_pickle)
_NUMPY_GLOBALS = [("numpy", "ndarray"), ("numpy", "dtype"), *((m, n) for m in ("numpy.core.multiarray",
                  "numpy._core.multiarray") for n in ("_reconstruct", "scalar"))]
ALLOWED_GLOBALS: tuple[str, ...] = tuple(sorted(f"{m}.{n}" for m, n in [*_ALLOWED, *_NUMPY_GLOBALS]))


class _RestrictedUnpickler(RestrictedUnpickler):
    error = LegacyPickleError
    buildable = (LegacyObject, LegacyBlockManager, OrderedDict)  # the only kinds the 2021 files set state on

    def __init__(self, file: Any, *, source: str, storages: "_StorageReader | None", budget: int):
        super().__init__(file, source=source, allowed=_ALLOWED, budget=budget, encoding="latin1")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise LegacyPickleError(
                f"refusing to load the global '{module}.{name}' from '{self.source}': the 2021 dataset files "
                "contain only dataset classes, tensors, numpy/pandas data, paths and dicts, and loading "
                "anything else could run code. Nothing from the file was executed."
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or self.storages is None):
            raise LegacyPickleError(f"'{self.source}': unsupported persistent id {reprlib.repr(pid)}")
        return self.storages.get(str(pid[2]), pid[1], pid[4])


class _StorageReader:
    """Reads ``<prefix>/data/<key>`` storages of a torch zip (memory-mapped when large)."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, prefix: str):
        self.path, self.archive, self.prefix = path, archive, prefix
        self.size = os.path.getsize(path)
        order = f"{prefix}/byteorder"
        self.byteorder = "little"
        if order in archive.namelist():
            self.member(order)
            self.byteorder = archive.read(order).decode("latin1").strip()
        if self.byteorder not in ("little", "big"):
            raise LegacyPickleError(f"'{path}': unknown byteorder {self.byteorder[:20]!r}")
        self.cache: dict[str, _Storage] = {}

    def member(self, name: str) -> zipfile.ZipInfo:
        """The zip entry `name`, refused unless stored as ``torch.save`` stores it: uncompressed, unencrypted, whole."""
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise LegacyPickleError(f"'{self.path}' lacks the member '{name}'; the file is incomplete") from None
        if info.flag_bits & 0x1:
            raise LegacyPickleError(f"'{self.path}': member '{name}' is encrypted; torch.save never encrypts, so "
                                    "the file was repacked or crafted. Use the file as published")
        if info.compress_type != zipfile.ZIP_STORED:
            raise LegacyPickleError(
                f"'{self.path}': member '{name}' is compressed (zip method {info.compress_type}); torch.save stores "
                "every member uncompressed, and a compressed one could expand without bound. Repack the file "
                "without compression (`zip -0`) or use it as published")
        if info.compress_size != info.file_size or info.header_offset + info.file_size > self.size:
            raise LegacyPickleError(f"'{self.path}' is truncated or corrupt inside '{name}' ({info.file_size} "
                                    f"bytes declared, the file has {self.size})")
        return info

    def get(self, key: str, kind: _StorageType, numel: int) -> _Storage:
        if key in self.cache:
            return self.cache[key]
        name = f"{self.prefix}/data/{key}"
        info = self.member(name)
        dtype = kind.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
        if not isinstance(numel, int) or numel < 0 or info.file_size < numel * dtype.itemsize:
            raise LegacyPickleError(f"'{self.path}': storage '{name}' holds {info.file_size} bytes, "
                                    f"fewer than {numel} x {dtype.itemsize}; the file is truncated or corrupt")
        array: np.ndarray
        if info.file_size > _MMAP_BYTES:
            array = np.memmap(self.path, dtype=dtype, mode="r", offset=self._data_offset(info), shape=(numel,))
        else:
            try:
                raw = self.archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise LegacyPickleError(f"'{self.path}': storage '{name}' is corrupt ({err})") from err
            array = np.frombuffer(raw, dtype=dtype, count=numel)
        self.cache[key] = _Storage(array.astype(dtype.newbyteorder("="), copy=False), kind)
        return self.cache[key]

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise LegacyPickleError(f"'{self.path}': bad zip entry header for '{info.filename}'; the file is corrupt")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > os.path.getsize(self.path):
            raise LegacyPickleError(f"'{self.path}' is truncated inside '{info.filename}'")
        return start


def load_legacy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a 2021 dataset file through the allow list; tensors come back as numpy arrays.

    Raises:
        LegacyPickleError: a global outside the allow list (nothing is executed),
            not a torch zip file, or a truncated/corrupt file.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file '{path}'; fetch the 2021 datasets with `weightspace zoo download`")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise LegacyPickleError(f"'{path}' is not a readable torch zip file ({err}); it may be truncated, "
                                "or saved in torch's pre-1.6 format, which is not supported") from err
    with archive:
        pkls = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise LegacyPickleError(f"'{path}' has {len(pkls)} '*/data.pkl' members, expected 1; not a torch.save file")
        try:
            storages = _StorageReader(path, archive, pkls[0].split("/")[0])
            storages.member(pkls[0])  # stored, so at most the file's size: read whole (small reads of a zip are slow)
            stream = io.BytesIO(archive.read(pkls[0]))
            return _RestrictedUnpickler(stream, source=str(path), storages=storages, budget=storages.size).load()
        except LegacyPickleError:
            raise
        except MemoryError:
            raise LegacyPickleError(f"'{path}': not enough memory to read it; free memory or use a larger "
                                    "machine (a corrupt file can also claim more data than it holds)") from None
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, AttributeError,
                LookupError, OSError, RecursionError, struct.error, OverflowError, NotImplementedError) as err:
            raise LegacyPickleError(f"'{path}': data.pkl could not be read ({type(err).__name__}: {err}); "
                                    "the file is corrupt or truncated") from err
