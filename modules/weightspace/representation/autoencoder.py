"""`Autoencoder`: what the learner, `embed` and the probes may ask of an encoder, with defaults.

The defaults describe a plain weight autoencoder: it reconstructs the weights themselves,
training produces the whole embedding, it needs no statistics of the training zoo, and its loss runs
no network. An encoder whose loss runs the zoo's networks, where they differ in activation, is given
each row's code (``networks``, `function_target.row_networks`) wherever it reconstructs.
An encoder that differs (``neuron_set``: an invariant target, a fixed code appended to the
embedding, a fitted input standardisation) overrides the members that differ.
"""

from __future__ import annotations

import torch
from torch import nn


class Autoencoder(nn.Module):
    """Maps weights ``(B, D)`` to an embedding ``(B, embedding_dim)`` and back to a reconstruction.

    Subclasses set `num_params` and `embedding_dim` and implement `encode` and `decode`.
    """

    reconstruction_kind: str = "weights"  # what `decode` rebuilds, and so what the reconstruction R² scores
    num_params: int  # D, the length of the weight vectors
    embedding_dim: int  # width of what `encode` returns
    network_variants: tuple[str, ...] = ()  # the activations its loss runs networks with, one per code; () alike

    @property
    def reads(self) -> tuple[str, ...]:
        """The samples' columns its training read beside the weights: ``("activation",)`` where the loss ran
        each network with its own. A probe shows those targets as read, not predicted, for its embedding."""
        return ("activation",) if self.network_variants else ()

    @property
    def trained_dim(self) -> int:
        """Width of the part of the embedding that training produces: what `forward` returns and the
        projection head reads (the whole embedding unless an encoder appends untrained features)."""
        return self.embedding_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, embedding_dim)``: the embedding probes read."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim)`` (or ``(B, trained_dim)``) -> the reconstruction of `reconstruction_target`."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: ``(z, reconstruction)``, z ``(B, trained_dim)``; `networks` ``(B,)``: each row's code."""
        z = self.encode(x)
        return z, self.decode(z)

    def reconstruction_target(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """What `decode` should rebuild for the weights `x` ``(B, D)`` (of networks `networks`, each row's code):
        by default the weights themselves."""
        return x

    def fit_input_scale(self, weights: torch.Tensor, networks: torch.Tensor | None = None) -> None:
        """Fit whatever the encoder derives from the training split's weights ``(S, D)`` (no property of any
        model); the learner calls it once, before the first training step. By default there is nothing to fit."""
