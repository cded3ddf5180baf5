"""Zoo spec files: a `ZooSpec` written as JSON or TOML, for `weightspace zoo generate --spec FILE`.

A spec file holds the fields of `ZooSpec` at its top level, nothing else::

    {"name": "my_zoo", "task": "digits", "architecture": "mlp",
     "arch_kwargs": {"in_dim": 64, "hidden": [16], "out_dim": 10},
     "fixed": {"lr": 0.001}, "grid": {"activation": ["tanh", "relu"]}, "seeds": 50, "epochs": 20}

`name`, `task` and `architecture` are required; every other key takes `ZooSpec`'s default when
omitted. ``weightspace zoo presets --show NAME`` prints a preset in this form to start from.
TOML has no null: leave a key out where JSON would say null (``checkpoint_epochs``: every epoch;
``fixed.init_std``: the init's own scale). A grid that lists null among its values (``init_std``)
can only be written in JSON.

`load_spec_file` checks what `ZooSpec` does not (unknown keys, value types, the task and its
options, the architecture's arguments) and names the file and the key in every error.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import fields
from pathlib import Path

from weightspace.errors import InputError
from weightspace.io.json_files import MAX_DIGITS, JSONFileError, loads
from weightspace.zoo.architectures import list_zoo_models, zoo_model_arguments
from weightspace.zoo.spec import ZooSpec
from weightspace.zoo.tasks import list_tasks, task_options

FORMATS = ("json", "toml")
REQUIRED = ("name", "task", "architecture")
_DICTS = ("grid", "fixed", "sample", "task_options", "arch_kwargs")  # written as TOML tables
# what each key holds, for the type check: (test, description)
_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number")
_TYPES = {
    "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "task": (lambda v: isinstance(v, str), "a string"),
    "architecture": (lambda v: isinstance(v, str), "a string"),
    "notes": (lambda v: isinstance(v, str), "a string"),
    **{key: (lambda v: isinstance(v, dict), "an object (a TOML table)") for key in _DICTS},
    "seeds": (lambda v: _INT[0](v) or (isinstance(v, list) and all(_INT[0](s) for s in v)),
              "a count or a list of whole numbers"),
    "checkpoint_epochs": (lambda v: v is None or (isinstance(v, list) and all(_INT[0](e) for e in v)),
                          "a list of whole numbers (omit the key for every epoch)"),
    **{key: _INT for key in ("samples", "sample_seed", "epochs", "batch_size", "shard_size")},
}


_START = "`weightspace zoo presets --show NAME` prints a spec file to start from"
_TOO_DEEP = ("'{path}' nests lists or objects too deeply to read; a zoo spec nests at most three levels "
             "(e.g. sample -> lr -> choice); `weightspace zoo presets --show NAME` prints one to start from")


class SpecFileError(InputError):
    """A zoo spec file cannot be read or does not describe a zoo; the message names the file and the key."""


def spec_keys() -> list[str]:
    """The keys a spec file may hold: the fields of `ZooSpec`, in its order."""
    return [f.name for f in fields(ZooSpec)]


def load_spec_file(path: str | os.PathLike) -> ZooSpec:
    """Read a zoo spec from a ``.json`` or ``.toml`` file.

    Raises:
        FileNotFoundError: no such file.
        SpecFileError: not valid JSON/TOML (with the line), not an object, an unknown or missing key
            (the valid ones listed), a value of the wrong type, an unknown task, task option,
            architecture or architecture argument, or a value `ZooSpec` refuses.
    """
    path = Path(path)
    data = _parse(path)
    unknown = sorted(set(data) - set(spec_keys()))
    if unknown:
        raise SpecFileError(f"'{path}': unknown key(s) {unknown}; a zoo spec file holds {spec_keys()}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise SpecFileError(f"'{path}': missing key(s) {missing}; {list(REQUIRED)} are required "
                            "(`weightspace zoo presets --show NAME` prints a complete file to start from)")
    for key, value in data.items():
        test, wanted = _TYPES.get(key, (lambda v: True, ""))
        if not test(value):
            raise SpecFileError(f"'{path}': {key} must be {wanted}, got {value!r}")
    _check_task(path, data["task"], data.get("task_options", {}))
    _check_architecture(path, data["architecture"], data.get("arch_kwargs", {}))
    try:
        return ZooSpec.from_dict(data)
    except (ValueError, TypeError) as err:
        raise SpecFileError(f"'{path}': {err}") from err


def _parse(path: Path) -> dict:
    """The file's top-level object; JSON or TOML by the file's suffix."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise SpecFileError(f"'{path}': a zoo spec file ends in .json or .toml, not {path.suffix or '(no suffix)'!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no zoo spec file '{path}'; `weightspace zoo presets --show NAME > {path.name}` "
                                "writes one to start from")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecFileError(f"'{path}' is not UTF-8 text: {err}") from err
    if kind == "json":
        try:
            data = loads(text, str(path), _START)
        except JSONFileError as err:  # not JSON, nested too deeply, or an integer Python refuses (its key named)
            raise SpecFileError(str(err)) from None
    else:
        try:
            import tomllib  # the standard library's from Python 3.11; the package supports 3.10
        except ImportError:
            raise SpecFileError(f"reading the TOML file '{path}' needs Python 3.11 or newer (tomllib); "
                                "write the spec as JSON (`weightspace zoo presets --show NAME` prints JSON)") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:  # its message ends "(at line L, column C)"
            raise SpecFileError(f"'{path}' is not valid TOML: {err}") from err
        except RecursionError:
            raise SpecFileError(_TOO_DEEP.format(path=path)) from None
        except ValueError:  # an integer of more digits than Python converts; tomllib names no line
            raise SpecFileError(_long_integer(path, text)) from None
    if not isinstance(data, dict):
        raise SpecFileError(f"'{path}' holds a JSON {type(data).__name__}, not an object of spec keys")
    return data


def _long_integer(path: Path, text: str) -> str:
    """The refusal of a TOML file holding an integer of more than `MAX_DIGITS` digits, naming its line and key."""
    found = re.search(r"[0-9_]{%d,}" % (MAX_DIGITS + 1), text)
    if found is None:
        return f"'{path}' holds an integer of more than {MAX_DIGITS:,} digits, more than Python reads; {_START}"
    line = text.count("\n", 0, found.start()) + 1
    key = re.match(r"\s*([^=\s]+)\s*=", text.splitlines()[line - 1])
    where = f"line {line}" + (f" ({key[1]})" if key else "")
    return (f"'{path}' {where}: an integer of {len(found[0].replace('_', '')):,} digits, more than the "
            f"{MAX_DIGITS:,} Python reads; {_START}")


def _check_task(path: Path, task: str, options: dict) -> None:
    if task not in list_tasks():
        raise SpecFileError(f"'{path}': task {task!r} is not one of {list_tasks()}")
    valid = task_options(task)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SpecFileError(f"'{path}': task_options {unknown} are not options of task {task!r}; "
                            f"its options (and defaults): {valid}")


def _check_architecture(path: Path, architecture: str, kwargs: dict) -> None:
    if architecture not in list_zoo_models():
        raise SpecFileError(f"'{path}': architecture {architecture!r} is not one of {list_zoo_models()}")
    hyper = sorted({"activation", "dropout"} & set(kwargs))
    if hyper:
        raise SpecFileError(f"'{path}': arch_kwargs {hyper} are hyperparameters; put them in fixed, grid or sample")
    valid = zoo_model_arguments(architecture)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise SpecFileError(f"'{path}': arch_kwargs {unknown} are not arguments of architecture {architecture!r}; "
                            f"it takes {valid}")


# ------------------------------------------------------------------ writing
def dump_spec(spec: ZooSpec, fmt: str = "json") -> str:
    """`spec` as the text of a spec file that `load_spec_file` reads back as an equal spec.

    Raises:
        ValueError: unknown `fmt`, or TOML asked for a spec with null inside a list (write JSON).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown spec file format {fmt!r}; choose one of {list(FORMATS)}")
    data = spec.to_dict()
    return _json_text(data) if fmt == "json" else _toml_text(data)


def _json_text(data: dict) -> str:
    """One line per key, and per entry of an object-valued key."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            entries = ",\n".join(f"    {json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
                                  for k, v in value.items())
            lines.append(f"  {json.dumps(key)}: {{\n{entries}\n  }}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _toml_text(data: dict) -> str:
    """Scalars and lists first, then one table per object-valued key; null values are left out."""
    head = [f"{key} = {_toml_value(value, key)}" for key, value in data.items()
            if value is not None and not isinstance(value, dict)]
    tables = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append(f"\n[{key}]")
            tables += [f"{_toml_key(k)} = {_toml_value(v, f'{key}.{k}')}" for k, v in value.items() if v is not None]
    return "\n".join(head + tables) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _toml_value(value, where: str) -> str:
    if value is None:
        raise ValueError(f"{where} holds null, which TOML cannot write; use --format json")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v, f'{where}.{k}')}" for k, v in value.items()) + "}"
    raise ValueError(f"{where}: cannot write {type(value).__name__} {value!r} as TOML")
