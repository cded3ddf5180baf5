"""Refusing loaded tensors that are not plain dense weights: memory bombs, sparse and meta tensors.

``torch.load(..., weights_only=True)`` runs no code, but it rebuilds a tensor with whatever size and
strides the file states: a 1.6 KB file can hold ``torch.zeros(1, 1).expand(60000, 60000)``, a view of
one float that becomes 14 GB the moment it is copied. Checkpoint readers call `check_tensors` right
after loading, before any tensor is copied, so such a file is refused (and, with ``--skip-bad``,
skipped) like any other bad file. The 2021 reader (`weightspace.formats.legacy_pickle`) applies
the same rule while it rebuilds tensors.
"""

from __future__ import annotations

from typing import Mapping

import torch

from weightspace.errors import InputError

MAX_ELEMENTS = 1 << 30  # the most elements one weight tensor may have (4 GB in float32); zoo models are far smaller


def check_tensors(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a state dict holding a tensor that is sparse, on the meta device, larger than its storage, or huge.

    Raises:
        InputError: naming the tensor and what to save instead.
    """
    for name, tensor in state.items():
        if tensor.layout != torch.strided:
            raise InputError(f"tensor {name!r} is {str(tensor.layout).removeprefix('torch.')}, not dense; save "
                             "dense tensors ({k: v.to_dense() for k, v in state.items()})")
        if tensor.device.type == "meta":
            raise InputError(f"tensor {name!r} is on the meta device and holds no values; save the weights of a "
                             "model that was built on a real device (cpu or cuda)")
        shape = tuple(tensor.shape)
        if tensor.numel() == 0:
            continue
        held = tensor.untyped_storage().nbytes() // max(1, tensor.element_size())
        extent = tensor.storage_offset() + sum((n - 1) * s for n, s in zip(shape, tensor.stride())) + 1
        if tensor.numel() > held or extent > held or min(tensor.stride(), default=1) < 0:
            raise InputError(f"tensor {name!r} of shape {shape} and stride {tuple(tensor.stride())} has "
                             f"{tensor.numel():,} elements but its storage holds {held:,} (an expanded view, "
                             "which would be materialised in memory); save plain tensors "
                             "({k: v.contiguous().clone() for k, v in state.items()})")
        if tensor.numel() > MAX_ELEMENTS:
            raise InputError(f"tensor {name!r} has shape {shape} ({tensor.numel():,} elements), more than the "
                             f"{MAX_ELEMENTS:,} a zoo model's weight may have")
