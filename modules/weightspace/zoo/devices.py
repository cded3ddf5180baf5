"""Resolving a device name ("auto", "cpu", "cuda", "cuda:N") to a torch device that exists on this machine."""

from __future__ import annotations

import torch

from weightspace.errors import InputError

CHOICES = "auto (cuda when available, else cpu), cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The device `name` names ("auto" and None: cuda when available, else cpu), checked to exist here.

    Raises:
        InputError: `name` is not a device weightspace trains on, or names a GPU this machine lacks.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"unknown device {str(name)!r}; choose {CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InputError(f"device {str(name)!r} is not supported; choose {CHOICES}")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise InputError(f"device {str(name)!r} needs a GPU, but {why} (torch {torch.__version__}); "
                         "choose cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise InputError(f"device {str(name)!r} does not exist: this machine has {count} GPU(s), "
                         f"cuda:0 to cuda:{count - 1}")
    return device
