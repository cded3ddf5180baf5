"""Reading JSON: one reader for weightspace's own files (run records, manifests, zoo.json, experiment.json,
spec files) that fails in one line naming the file, and the key where there is one.

Python's `json` raises `RecursionError` on lists or objects nested some thousand levels deep, and a
`ValueError` that names neither file nor key ("use sys.set_int_max_str_digits()") on an integer of
more than 4,300 digits. Neither is a file weightspace wrote. `loads` and `read_json` turn both, and
text that is not JSON or not UTF-8, into a `JSONFileError`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from weightspace.errors import InputError

# the most digits Python converts to an int (0: no limit, before Python 3.11 and its backports)
MAX_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 0)() or 4300


# the end of a message about a file weightspace writes and reads back: such a file was changed by hand
NOT_WRITTEN_BY_US = "weightspace never writes such a file, so it was changed by something else"


class JSONFileError(InputError):
    """A JSON file cannot be read: not JSON, not UTF-8, nested too deeply or holding a huge integer."""


class _LongInteger:
    """What `loads` reads in place of an integer Python refuses to convert; found afterwards by its key."""

    def __init__(self, digits: int):
        self.digits = digits


def _integer(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return _LongInteger(digits) if digits > MAX_DIGITS else int(text)


def loads(text: str, where: str, fix: str = "", *, line: int | None = None) -> Any:
    """The value of the JSON `text` read from `where` (a file or location, named in errors).

    Args:
        fix: what to do, appended to the message of an error (`NOT_WRITTEN_BY_US` for weightspace's own files).
        line: the line of `where` that `text` is (a file of one JSON value per line), named in errors.

    Raises:
        JSONFileError: not JSON (line and column named), nested too deeply, or an integer of more
            than `MAX_DIGITS` digits (its key named).
    """
    tail = f"; {fix}" if fix else ""
    where = f"'{where}'" + (f" line {line}" if line is not None else "")
    try:
        value = json.loads(text, parse_int=_integer)
    except RecursionError:
        raise JSONFileError(f"{where} nests lists or objects too deeply to read (deeper than Python's recursion "
                            f"limit){tail}") from None
    except json.JSONDecodeError as err:
        raise JSONFileError(f"{where} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
                            f"{tail}") from None
    found = _find_long_integer(value)
    if found is not None:
        key, digits = found
        raise JSONFileError(f"{where}: {key} holds an integer of {digits:,} digits, more than the {MAX_DIGITS:,} "
                            f"Python reads{tail}")
    return value


def read_json(path: str | os.PathLike, fix: str = "") -> Any:
    """The value of the JSON file at `path`; see `loads`.

    Raises:
        FileNotFoundError, OSError: the file cannot be opened.
        JSONFileError: see `loads`, or the file is not UTF-8 text.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise JSONFileError(f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start}), so it is not JSON"
                            f"{'; ' + fix if fix else ''}") from None
    return loads(text, str(path), fix)


def _find_long_integer(value: Any) -> tuple[str, int] | None:
    """(key path such as ``config.train.seed`` or ``files[2]``, digits) of the first refused integer, or None."""
    stack: list[tuple[str, Any]] = [("the top level", value)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, _LongInteger):
            return key, item.digits
        if isinstance(item, dict):
            prefix = "" if key == "the top level" else key + "."
            stack += [(f"{prefix}{k}", v) for k, v in reversed(item.items())]
        elif isinstance(item, list):
            prefix = "" if key == "the top level" else key
            stack += [(f"{prefix}[{i}]", v) for i, v in reversed(list(enumerate(item)))]
    return None
