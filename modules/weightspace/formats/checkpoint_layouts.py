"""The checkpoint folders people save without a CSV: the table of checkpoints read from the folder itself.

- one folder per model: ``run000/epoch_3.pt`` (the folder is the model id, the number in the file's
  name the epoch: ``epoch_3``, ``epoch=3-step=120``, ``ep03``, ``3``);
- a file-name pattern, ``--pattern '{model_id}_ep{epoch}.pt'`` (``/`` may separate folders);
- PyTorch Lightning ``.ckpt`` files: the epoch inside the file (``"epoch"``) where its name has none;
  their ``state_dict`` and its module prefix are read by `checkpoint_states.read_state`;
- a checkpoint's metrics in a JSON file beside it (``epoch_3.json`` next to ``epoch_3.pt``): an object of
  numbers and text, one column each.

The table has the columns of a CSV's (``file``, ``model_id`` as text, ``epoch``, metrics) and is checked
as one (`checkpoint_tables.check_table`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from weightspace.errors import InputError

SUFFIXES = (".pt", ".pth", ".safetensors", ".ckpt")
FIELDS = ("model_id", "epoch")
_EPOCH_NAMED = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[_=-]?(\d+)", re.IGNORECASE)  # epoch_3, epoch=3-step=120, ep03
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # else the last number: checkpoint_000012, 3
_METRICS_BYTES = 2**20  # a metrics file beside a checkpoint is a few numbers
MAX_SCANNED = 200_000  # files and folders looked at before the folder is refused (as checkpoints.MAX_SCANNED)


def pattern_regex(pattern: str) -> re.Pattern:
    """The regular expression of a ``--pattern`` such as ``'{model_id}_ep{epoch}.pt'``.

    Raises:
        InputError: a pattern without both fields, with another field, or a field twice.
    """
    fields = re.findall(r"\{([^{}]*)\}", pattern)
    if sorted(fields) != sorted(FIELDS):
        raise InputError(f"--pattern {pattern!r} must hold {{model_id}} and {{epoch}} once each (found "
                         f"{['{' + f + '}' for f in fields]}), e.g. '{{model_id}}_ep{{epoch}}.pt' or "
                         "'{model_id}/epoch_{epoch}.pt'")
    parts = re.split(r"(\{model_id\}|\{epoch\})", pattern)
    groups = {"{model_id}": r"(?P<model_id>[^/]+?)", "{epoch}": r"(?P<epoch>\d+)"}
    return re.compile("".join(groups.get(part, re.escape(part)) for part in parts))


def discover_table(src: str | os.PathLike, pattern: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The checkpoints of a folder without a CSV, as a table (``file``, ``model_id``, ``epoch``, metrics), and
    the checkpoint files it could not place (named, with why).

    Raises:
        InputError: no checkpoint file found, or a metrics JSON that is not an object of numbers and text.
    """
    src = Path(src)
    regex = pattern_regex(pattern) if pattern is not None else None
    files = []
    for seen, path in enumerate(src.rglob("*")):
        if seen >= MAX_SCANNED:
            raise InputError(f"'{src}' holds more than {MAX_SCANNED:,} files and folders, far more than a checkpoint "
                             "folder; give the folder that holds the checkpoints")
        if path.suffix in SUFFIXES and path.is_file():
            files.append(path.relative_to(src).as_posix())
    files.sort()
    if not files:
        raise InputError(f"'{src}' holds no checkpoint files ({', '.join(SUFFIXES)}) and no checkpoints.csv; give "
                         "the folder of your checkpoints")
    rows: list[dict[str, Any]] = []
    unplaced: list[str] = []
    for file in files:
        found = _place(src, file, regex)
        if isinstance(found, str):
            unplaced.append(f"'{file}' {found}")
            continue
        rows.append({"file": file, **found, **_metrics(src / file)})
    if not rows:
        how = f"--pattern {pattern!r} matches none of them" if pattern else (
            "they are not in one folder per model (run000/epoch_3.pt)")
        raise InputError(f"'{src}' has no checkpoints.csv and {how} (e.g. {unplaced[0]}); give a CSV (--csv), "
                         "a --pattern such as '{model_id}_ep{epoch}.pt', or one folder per model")
    return pd.DataFrame(rows), unplaced


def _place(src: Path, file: str, regex: re.Pattern | None) -> dict[str, str] | str:
    """{"model_id", "epoch"} of one file (text, as written), or why it has none."""
    if regex is not None:
        match = regex.fullmatch(file)
        if match is None:
            return "does not match --pattern"
        return {"model_id": match["model_id"], "epoch": str(int(match["epoch"]))}
    parts = file.split("/")
    if len(parts) != 2:
        return "is not in a model's folder (<model_id>/<file>); give a --pattern or a CSV"
    stem = Path(parts[1]).stem
    match = _EPOCH_NAMED.search(stem) or _LAST_NUMBER.search(stem)
    if match is not None:
        return {"model_id": parts[0], "epoch": str(int(match[1]))}
    epoch = _epoch_inside(src / file)
    if epoch is None:
        return "has no epoch in its name (epoch_3.pt) nor inside (a Lightning checkpoint's 'epoch')"
    return {"model_id": parts[0], "epoch": str(epoch)}


def _epoch_inside(path: Path) -> int | None:
    """The ``"epoch"`` a Lightning checkpoint (or any dict checkpoint) holds; None when it holds none."""
    if path.suffix not in (".ckpt", ".pt", ".pth"):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable here: `read_state` names the file and why when it is imported
        return None
    epoch = state.get("epoch") if isinstance(state, dict) else None
    return int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None


def _metrics(checkpoint: Path) -> dict[str, Any]:
    """The metrics in the JSON file beside `checkpoint` (same name, ``.json``); {} when there is none.

    Raises:
        InputError: naming the file: not JSON, not an object, or a value that is neither a number nor text.
    """
    path = checkpoint.with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > _METRICS_BYTES:
            raise ValueError(f"it holds {path.stat().st_size:,} bytes")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as err:
        raise InputError(f"'{path}' (the metrics of '{checkpoint.name}') is not readable JSON ({err}); fix or "
                         "remove it") from None
    if not isinstance(value, dict):
        raise InputError(f"'{path}' holds a JSON {type(value).__name__}; the metrics beside a checkpoint are an "
                         'object such as {"test_acc": 0.91, "test_loss": 0.3}')
    odd = [k for k, v in value.items() if not isinstance(v, (int, float, str, type(None))) or k in ("file", *FIELDS)]
    if odd:
        raise InputError(f"'{path}': {odd[:3]} are not metrics (each a number or text; file, model_id and epoch "
                         "come from the checkpoint's place); fix or remove them")
    return value
