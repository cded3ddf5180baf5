"""An unpickler for data files that a file cannot bend: allow-listed globals, checked state, bounded sizes.

A pickle may call any global it names and set the state (BUILD) of any
object it can reach, including the classes and functions it is allowed to
name; a BUILD on a shared object changes it for every later file in the
process. numpy adds two more holes: ``ndarray.__setstate__`` reads past an
object list shorter than the shape (a crash), and ``dtype.__setstate__`` on
a shared dtype such as ``np.dtype("f8")`` changes it process-wide.

`RestrictedUnpickler` resolves only its allow list, applies BUILD only to
objects this file made (of the kinds a subclass names, never to a global),
and rebuilds numpy arrays and dtypes through checked stand-ins whose sizes
are bounded by the file's size. It is the pure-Python unpickler, so BUILD can
be intercepted; the C one cannot.
"""

from __future__ import annotations

import math
import pickle
import reprlib
from typing import Any, Mapping

import numpy as np

from weightspace.errors import InputError

_MAX_DIMS = 32


class RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be replaced
    """Unpickle with an allow list of globals, numpy arrays/dtypes checked and bounded by `budget` bytes.

    Subclasses set `error` (raised for anything refused) and `buildable`
    (types whose instances, made by this file, may receive BUILD state).
    """

    error: type[Exception] = InputError
    buildable: tuple[type, ...] = ()
    dispatch = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # the Python unpickler's value stack, set by load(); typeshed does not declare it

    def __init__(self, file: Any, *, source: str, allowed: Mapping[tuple[str, str], Any], budget: int,
                 encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source, self.budget = source, max(int(budget), 0)
        self._ndarray = object()  # stands for numpy.ndarray: it can only be passed to _reconstruct, never called
        self._allowed = dict(allowed)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            self._allowed[(module, "_reconstruct")] = self._reconstruct
            self._allowed[(module, "scalar")] = self._scalar
        self._allowed[("numpy", "ndarray")] = self._ndarray
        self._allowed[("numpy", "dtype")] = self._dtype
        self._globals = {id(v) for v in self._allowed.values()}
        self._unbuilt: dict[int, Any] = {}  # id -> array or dtype made here and not yet given its state

    def refuse(self, what: str) -> Exception:
        """The error for a refused or malformed part of the file."""
        return self.error(f"'{self.source}': {what}; the file is corrupt or crafted, and nothing in it was run")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise self.error(
                f"'{self.source}': refusing to load the global '{module}.{name}'; only "
                f"{', '.join(sorted({m + '.' + n for m, n in self._allowed}))} are allowed, as loading anything "
                "else could run code. Nothing from the file was executed."
            ) from None

    # ------------------------------------------------------------------ BUILD
    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if id(inst) in self._globals:
            raise self.refuse(f"BUILD on the global {inst!r}: a file may not change what later files load")
        made = self._unbuilt.pop(id(inst), None)
        if made is not None and isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        elif made is not None and isinstance(inst, np.ndarray):
            self._build_array(inst, state)
        elif isinstance(inst, self.buildable) and not isinstance(inst, (np.ndarray, np.dtype)):
            setstate = getattr(inst, "__setstate__", None)
            if setstate is not None:
                setstate(state)
            elif isinstance(state, dict):
                inst.__dict__.update(state)
            else:
                raise self.refuse(f"BUILD of a {type(inst).__name__} with a {type(state).__name__}")
        else:
            raise self.refuse(f"BUILD on a {type(inst).__name__}, which this file format never sets state on")

    # typeshed types the handlers as taking the C Unpickler; the Python one calls them with itself
    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]

    # ------------------------------------------------------------------ numpy
    def _shape(self, shape: Any) -> tuple[int, ...]:
        if (not isinstance(shape, tuple) or len(shape) > _MAX_DIMS
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise self.refuse(f"numpy array shape {reprlib.repr(shape)} is not a tuple of at most {_MAX_DIMS} sizes")
        return shape

    def _dtype(self, obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
        """``numpy.dtype(obj)`` for a plain type code only, always a fresh copy (never numpy's shared instance)."""
        if isinstance(obj, bytes):
            obj = obj.decode("latin1")
        if not isinstance(obj, str) or len(obj) > 16:
            raise self.refuse(f"numpy dtype {reprlib.repr(obj)}: only plain type codes such as 'f8' are allowed")
        try:
            dtype = np.dtype(obj, bool(align), True)
        except (TypeError, ValueError) as err:
            raise self.refuse(f"numpy dtype {obj!r} ({err})") from None
        self._check_dtype(dtype)
        self._unbuilt[id(dtype)] = dtype
        return dtype

    def _check_dtype(self, dtype: np.dtype) -> None:
        if dtype.fields is not None or dtype.subdtype is not None:
            raise self.refuse(f"structured or subarray numpy dtype {dtype}")
        if dtype.itemsize > self.budget:
            raise self.refuse(f"numpy dtype of {dtype.itemsize} bytes, more than the file's {self.budget}")

    def _build_dtype(self, dtype: np.dtype, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[2] is None and state[3] is None and state[4] is None
                and all(isinstance(v, int) for v in state[5:8]) and (len(state) == 8 or state[8] is None)):
            raise self.refuse(f"numpy dtype state {reprlib.repr(state)}: only plain dtypes are allowed")
        elsize = state[5]
        if dtype.kind in "SUV" and not 0 <= elsize <= self.budget:
            raise self.refuse(f"numpy dtype of {elsize} bytes, more than the file's {self.budget}")
        if dtype.kind not in "SUV" and elsize not in (-1, dtype.itemsize):
            raise self.refuse(f"numpy dtype {dtype} given {elsize} bytes")
        try:
            dtype.__setstate__(state)  # type: ignore[attr-defined]  # numpy's stubs omit dtype.__setstate__
        except (TypeError, ValueError) as err:
            raise self.refuse(f"numpy dtype state {reprlib.repr(state)} ({err})") from None
        self._check_dtype(dtype)

    def _reconstruct(self, cls: Any, shape: Any, dtype: Any) -> np.ndarray:
        """numpy's ``_reconstruct(ndarray, shape, dtype)``: an empty array that BUILD fills, bounded by the file."""
        if cls is not self._ndarray:
            raise self.refuse(f"numpy _reconstruct of {reprlib.repr(cls)}; only numpy.ndarray is allowed")
        dtype = dtype if isinstance(dtype, np.dtype) else self._dtype(dtype)
        shape = self._shape(shape if isinstance(shape, tuple) else (shape,))
        if math.prod(shape) * max(dtype.itemsize, 1) > self.budget:
            raise self.refuse(f"numpy array of shape {shape} is larger than the file's {self.budget} bytes")
        array = np.ndarray.__new__(np.ndarray, shape, dtype)
        self._unbuilt[id(array)] = array
        return array

    def _build_array(self, array: np.ndarray, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)):
            raise self.refuse(f"numpy array state of {type(state).__name__}, expected (version, shape, dtype, "
                              "fortran, data)")
        _, shape, dtype, _, data = state
        count = math.prod(self._shape(shape))
        self._check_dtype(dtype)
        if dtype.hasobject:
            if not isinstance(data, list) or len(data) != count or count > self.budget:
                raise self.refuse(f"numpy object array of shape {shape} holds "
                                  f"{len(data) if isinstance(data, list) else type(data).__name__} items")
        elif not isinstance(data, (bytes, bytearray, str)) or len(data) != count * dtype.itemsize:
            raise self.refuse(f"numpy array of shape {shape} and dtype {dtype} holds "
                              f"{len(data) if isinstance(data, (bytes, bytearray, str)) else type(data).__name__} "
                              f"bytes, expected {count * dtype.itemsize}")
        try:
            array.__setstate__(state)
        except (TypeError, ValueError) as err:
            raise self.refuse(f"numpy array state ({err})") from None

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        """numpy's ``scalar(dtype, bytes)``."""
        if not isinstance(dtype, np.dtype):
            raise self.refuse("numpy scalar without a dtype")
        if dtype.hasobject:
            return data
        if isinstance(data, str):
            data = data.encode("latin1")
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise self.refuse(f"numpy scalar of {dtype} with {len(data) if isinstance(data, bytes) else '?'} bytes")
        return np.frombuffer(data, dtype=dtype, count=1)[0]

    def load(self) -> Any:
        """Unpickle; `MemoryError` and `RecursionError` become `error`, naming the file."""
        try:
            return super().load()
        except (MemoryError, RecursionError) as err:
            raise self.error(f"'{self.source}' needs more {'memory' if isinstance(err, MemoryError) else 'nesting'} "
                             "than this machine allows to unpickle; it is corrupt, crafted or too large") from None
