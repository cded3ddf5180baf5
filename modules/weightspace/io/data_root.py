"""Where task data and downloaded zoos live: the folder the caller names, else ``$WEIGHTSPACE_DATA``.

Library code never falls back to the current directory: a relative default
would read and write wherever the process happens to run. The command lines
decide the default for their users (``--data-root``, ``--root``: the variable,
else ``./datasets``; the experiment scripts: ``<repo>/datasets``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "WEIGHTSPACE_DATA"  # the folder used when a caller names none


def data_root(root: str | os.PathLike | None, *, needed_by: str) -> Path:
    """The data folder: `root` when given, else the folder named by ``$WEIGHTSPACE_DATA``.

    Args:
        root: The caller's folder, or None.
        needed_by: What reads or writes the folder, for the error message (e.g. "task 'mnist'").

    Raises:
        ValueError: neither is set; the message says what to pass.
    """
    if root is not None:
        return Path(root)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    raise ValueError(f"{needed_by} needs a data folder and none was given: pass it (load_task(..., root=DIR), "
                     f"generate(..., data_root=DIR), download(name, DIR); on the command line --data-root or "
                     f"--root) or set the environment variable {DATA_ENV}=DIR. Nothing is read from the current "
                     "directory")
