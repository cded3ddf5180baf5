"""Registry of autoencoder variants: `create_autoencoder(name_or_config, layout)`.

Every autoencoder maps ``(B, D)`` weights to ``(B, latent)`` with ``encode``,
back with ``decode``, and returns ``(z, reconstruction)`` from ``forward``.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn

from weightspace.layout import WeightLayout
from weightspace.representation.config import EncoderConfig
from weightspace.representation.mlp import MLPAutoencoder
from weightspace.representation.neuron_set import NeuronSetEncoder
from weightspace.representation.tokens import neuron_token_groups, weight_token_groups
from weightspace.representation.transformer import TransformerAutoencoder


class Autoencoder(Protocol):
    latent_dim: int
    num_params: int

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def _transformer(groups_of: Callable[[WeightLayout], list[torch.Tensor]]):
    def build(c: EncoderConfig, layout: WeightLayout, generator: torch.Generator | None) -> nn.Module:
        return TransformerAutoencoder(
            groups_of(layout), layout.num_params, d_model=c.d_model, n_heads=c.n_heads, n_blocks=c.n_blocks,
            d_ff=c.d_ff, dropout=c.dropout, attn_dropout=c.attn_dropout, latent_dim=c.latent_dim,
            compression_token=c.compression_token, bottleneck=c.bottleneck, bottleneck_layers=c.bottleneck_layers,
            activation=c.activation, generator=generator)
    return build


def _mlp(c: EncoderConfig, layout: WeightLayout, generator: torch.Generator | None) -> nn.Module:
    return MLPAutoencoder(layout.num_params, c.latent_dim, hidden_layers=c.mlp_hidden_layers,
                          activation=c.activation, dropout=c.dropout, generator=generator)


def _neuron_set(c: EncoderConfig, layout: WeightLayout, generator: torch.Generator | None) -> nn.Module:
    return NeuronSetEncoder(layout, width=c.set_width, phi_layers=c.set_phi_layers, activation=c.activation,
                            neuron_stats=c.set_neuron_stats, skip=c.set_skip, latent_dim=c.latent_dim,
                            code=c.set_code, code_knots=c.set_code_knots, generator=generator)


_REGISTRY: dict[str, Callable[[EncoderConfig, WeightLayout, torch.Generator | None], nn.Module]] = {
    "transformer_neuron": _transformer(neuron_token_groups),
    "transformer_weight": _transformer(weight_token_groups),
    "mlp": _mlp,
    "neuron_set": _neuron_set,
}


def list_autoencoders() -> list[str]:
    """Names accepted by `create_autoencoder`."""
    return list(_REGISTRY)


def create_autoencoder(config: EncoderConfig | str, layout: WeightLayout, *,
                       generator: torch.Generator | None = None, **overrides) -> nn.Module:
    """Build a registered autoencoder for vectors of `layout`.

    Args:
        config: an `EncoderConfig`, or a registered name (then `overrides` set its fields).
        layout: the layout of the weight vectors (token groups come from it).
        generator: draws the initial parameters; None keeps PyTorch's default init (global RNG).

    Raises:
        ValueError: an unknown name (the valid ones are listed) or an invalid config value.
    """
    if isinstance(config, str):
        if config not in _REGISTRY:
            raise ValueError(f"unknown autoencoder {config!r}; choose one of {list_autoencoders()}")
        config = EncoderConfig(name=config, **overrides)
    elif overrides:
        raise ValueError("pass field overrides only with a name; with an EncoderConfig, set them on the config")
    if generator is None:
        return _REGISTRY[config.name](config, layout, None)
    with torch.random.fork_rng(devices=[]):  # module constructors draw a default init from the global RNG
        return _REGISTRY[config.name](config, layout, generator)
