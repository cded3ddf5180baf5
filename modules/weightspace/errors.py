"""The project's own error types.

Library code raises these (or a standard exception with a message that says
what to fix); the command-line edge (`weightspace.cli`, the experiment
scripts) turns each into a one-line message and an exit code, never a
traceback. Every subclass keeps a standard base (`ValueError`, `OSError`,
`RuntimeError`) where callers already catch that.
"""

from __future__ import annotations


class WeightspaceError(Exception):
    """Base of every error weightspace raises on purpose; its message is meant for the user."""

    exit_code = 2


class OutputError(WeightspaceError, OSError):
    """An output folder cannot be written: not ours to replace, locked by another run, read-only or full."""

    exit_code = 3


class InputError(WeightspaceError, ValueError):
    """An input file, folder or option is malformed, damaged or out of range."""


class ClusterError(WeightspaceError, ConnectionError):
    """The ray cluster named by ``--ray-address`` cannot be reached."""

    exit_code = 3
