"""A learner checkpoint (`weightspace.representation.learner.Learner.save`): reading one back, and refusing
in one line a file that is not one.

A checkpoint is the dict of tensors and plain values of `Learner.state_dict` (`STATE_KEYS`), loaded with
``torch.load(weights_only=True)``, which runs no code. A trial's checkpoint may sit in shared storage
(``--storage``), so a planted, damaged or foreign file is refused naming it, never with torch's advice to
load it unsafely.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings

import torch

from weightspace.errors import InputError


class CheckpointError(InputError):
    """A file is not a learner checkpoint weightspace wrote (or not one of this learner)."""


STATE_KEYS = ("model", "head", "optimizer", "scheduler", "scaler", "generator", "aug_generator", "step", "epoch")


def read_checkpoint(source: str | os.PathLike | bytes, name: str | None = None) -> dict:
    """The training state in a checkpoint `Learner.save` wrote: the file `source`, or its bytes (named `name`).

    Loaded with ``torch.load(weights_only=True)``, which runs no code.

    Raises:
        CheckpointError: not a PyTorch file, pickled objects besides tensors, or not a learner's state
            (one line naming the file, never torch's advice to load it unsafely).
    """
    where = name or str(source if not isinstance(source, bytes) else "checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol: the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu",
                               weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError:
        raise CheckpointError(not_ours(where, "it holds pickled objects besides tensors, which "
                                              "torch.load(weights_only=True) refuses; nothing in it was run")) from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a corrupt or truncated file
        raise CheckpointError(not_ours(where, f"it is not a readable PyTorch file ({type(err).__name__})")) from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        found = f"a {type(state).__name__}" if not isinstance(state, dict) else f"a dict without {missing}"
        raise CheckpointError(not_ours(where, f"it holds {found}"))
    return state


def not_ours(where: str, why: str) -> str:
    """The refusal of the file `where`: what it is not, `why`, and what to do."""
    return (f"'{where}' is not a learner checkpoint weightspace wrote ({why}); weightspace will not continue from it. "
            "Start the run over with --overwrite, or remove its output folder")


def first_line(err: BaseException) -> str:
    """The first line of an error's message, at most 200 characters."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
