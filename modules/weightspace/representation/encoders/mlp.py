"""The "vanilla" MLP autoencoder of the 2021 ablation (encoder "mlp"), and the MLP stack it is built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from weightspace.layout import WeightLayout
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.init import init_parameters
from weightspace.representation.registry import EncoderConfig, register_encoder
from weightspace.zoo.activations import ACTIVATIONS, make_activation


@dataclass
class MLPConfig(EncoderConfig):
    """The MLP autoencoder: weights -> shrinking Linear layers -> z (tanh) -> mirrored layers -> weights."""

    name: str = "mlp"  # the registered encoder
    latent_dim: int = 50  # width of the embedding z
    hidden_layers: int = 10  # hidden layers per side, widths shrinking linearly from D to latent_dim
    activation: str = "leakyrelu"  # activation after every hidden Linear
    dropout: float = 0.1  # dropout after every hidden activation

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_dim < 1 or self.hidden_layers < 0:
            raise ValueError(f"MLPConfig.latent_dim must be >= 1 and hidden_layers >= 0, got {self.latent_dim}, "
                             f"{self.hidden_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MLPConfig.dropout must lie in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLPConfig.activation {self.activation!r} is unknown; choose one of {sorted(ACTIVATIONS)}")


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


class MLPAutoencoder(Autoencoder):
    """D -> ... -> latent (tanh) -> ... -> D, widths from `mlp_widths`.

    The 2021 ablation trained this variant with a 3x larger learning rate.
    """

    def __init__(self, num_params: int, latent_dim: int, *, hidden_layers: int = 10, activation: str = "leakyrelu",
                 dropout: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        widths = mlp_widths(num_params, latent_dim, hidden_layers)
        self.num_params, self.embedding_dim = num_params, latent_dim
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


@register_encoder("mlp", config=MLPConfig)
def build_mlp(config: MLPConfig, layout: WeightLayout, generator: torch.Generator | None) -> MLPAutoencoder:
    return MLPAutoencoder(layout.num_params, config.latent_dim, hidden_layers=config.hidden_layers,
                          activation=config.activation, dropout=config.dropout, generator=generator)
