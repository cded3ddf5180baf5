"""Projection head: maps the embedding z to the space where the contrastive loss is computed."""

from __future__ import annotations

import torch
from torch import nn

from weightspace.representation.init import init_parameters


class ProjectionHead(nn.Module):
    """``layers`` x [Linear -> BatchNorm1d -> ReLU], then Linear -> BatchNorm1d to `out_dim` (as in 2021).

    With ``layers=0`` the head is the identity (the contrastive loss sees z).
    Downstream embeddings are taken before the head.
    """

    def __init__(self, in_dim: int, *, layers: int = 3, hidden: int = 50, out_dim: int = 20, batch_norm: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        with torch.random.fork_rng(devices=[], enabled=generator is not None):
            self._build(in_dim, layers, hidden, out_dim, batch_norm)
        if generator is not None:
            init_parameters(self, generator)

    def _build(self, in_dim: int, layers: int, hidden: int, out_dim: int, batch_norm: bool) -> None:
        """The layers, drawn with PyTorch's default init (overwritten when a generator is given)."""
        if layers < 0:
            raise ValueError(f"ProjectionHead layers must be >= 0, got {layers}")
        self.out_dim = out_dim if layers else in_dim
        modules: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            modules += [nn.Linear(width, hidden), *([nn.BatchNorm1d(hidden)] if batch_norm else []), nn.ReLU()]
            width = hidden
        if layers:
            modules += [nn.Linear(width, out_dim), *([nn.BatchNorm1d(out_dim)] if batch_norm else [])]
        self.net = nn.Sequential(*modules)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
