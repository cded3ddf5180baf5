"""What this machine can hold: available memory and free disk, and refusals of work that cannot fit.

Checks run before anything is allocated or written, so that an absurd size (a spec asking for 10^9
seeds, a 10^10-image task, a zoo larger than the disk) stops with a message instead of an allocator
error hours later. Where the machine does not say (no ``/proc/meminfo``), only the checks that need
no measurement apply.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from weightspace.errors import InputError


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the disk that holds `path` (or its nearest existing parent); None where unknown."""
    for folder in (Path(path).absolute(), *Path(path).absolute().parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def format_bytes(n: float) -> str:
    """`n` bytes as a short text: 512 B, 3.2 GB, 1.1e+06 TB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB" if abs(n) < 1e4 else f"{n:.1e} TB"


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse `what` unless its `nbytes` fit in the memory available now.

    Raises:
        InputError: ``"<what> needs about N of memory, but this machine has M available; <fix>"``.
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise InputError(f"{what} needs about {format_bytes(nbytes)} of memory, but this machine has "
                         f"{format_bytes(available)} available; {fix}")


def check_disk(nbytes: float, path: str | os.PathLike, what: str, fix: str) -> None:
    """Refuse `what` unless its `nbytes` fit on the disk that holds `path`.

    Raises:
        InputError: ``"<what> needs about N on disk, but '<path>' has M free; <fix>"``.
    """
    free = free_disk(path)
    if free is not None and nbytes > free:
        raise InputError(f"{what} needs about {format_bytes(nbytes)} on disk, but the disk of '{path}' has "
                         f"{format_bytes(free)} free; {fix}")
