"""The "vanilla" MLP autoencoder of the 2021 ablation, and the MLP stack it is built from."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from weightspace.representation.init import init_parameters
from weightspace.zoo.activations import make_activation


def mlp_widths(d_in: int, d_out: int, hidden_layers: int) -> list[int]:
    """Widths shrinking (or growing) linearly from `d_in` to `d_out`: ``hidden_layers + 2`` entries.

    ``mlp_widths(100, 50, 10)`` is [100, 95, 90, 86, 81, 77, 72, 68, 63, 59, 54, 50], as in 2021.
    """
    return [int(w) for w in np.linspace(d_in, d_out, hidden_layers + 2).astype(int)]


def mlp_stack(widths: Sequence[int], activation: str, dropout: float = 0.0, *, tanh_out: bool = False) -> nn.Sequential:
    """Linear -> activation -> dropout between consecutive widths; the last Linear is followed by tanh or nothing."""
    layers: list[nn.Module] = []
    pairs = list(zip(widths[:-1], widths[1:]))
    for i, (a, b) in enumerate(pairs):
        layers.append(nn.Linear(a, b))
        if i < len(pairs) - 1:
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if tanh_out:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MLPAutoencoder(nn.Module):
    """D -> ... -> latent (tanh) -> ... -> D, widths from `mlp_widths`.

    The 2021 ablation trained this variant with a 3x larger learning rate.
    """

    def __init__(self, num_params: int, latent_dim: int, *, hidden_layers: int = 10, activation: str = "leakyrelu",
                 dropout: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        widths = mlp_widths(num_params, latent_dim, hidden_layers)
        self.num_params, self.latent_dim = num_params, latent_dim
        self.encoder = mlp_stack(widths, activation, dropout, tanh_out=True)
        self.decoder = mlp_stack(widths[::-1], activation, dropout)
        if generator is not None:
            init_parameters(self, generator)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, latent)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent)`` -> ``(B, D)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)
