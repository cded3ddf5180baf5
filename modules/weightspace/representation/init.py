"""Parameter initialisation drawn from an explicit generator (the global RNG is never touched)."""

from __future__ import annotations

import math

import torch
from torch import nn


def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every Linear, LayerNorm and BatchNorm1d inside `module`.

    Linear layers get PyTorch's default scheme, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for weight and bias (what ``kaiming_uniform_(a=sqrt(5))`` amounts to), but
    drawn from `generator`, so that building a model twice with equally seeded
    generators gives identical weights. Norm layers are reset to ones and zeros.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features) if m.in_features else 0.0
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
                m.reset_parameters()
