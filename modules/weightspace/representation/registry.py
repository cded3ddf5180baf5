"""The encoder registry: `register_encoder`, `create_autoencoder`, `list_encoders`, `encoder_config`.

An encoder module registers a builder together with its config class::

    @dataclass
    class MyConfig(EncoderConfig):
        name: str = "my_encoder"
        width: int = 64  # ...

    @register_encoder("my_encoder", config=MyConfig)
    def build(config: MyConfig, layout: WeightLayout, generator: torch.Generator | None) -> Autoencoder:
        return MyAutoencoder(layout.num_params, config.width, generator=generator)

and nothing else has to change: the modules of ``weightspace.representation.encoders``
are all imported with the package. This module imports nothing else from
``weightspace.representation``, so every encoder and config module can import it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from weightspace.layout import WeightLayout

Builder = Callable[[Any, WeightLayout, "torch.Generator | None"], nn.Module]


@dataclass
class EncoderConfig:
    """Base of the per-encoder configs: ``name`` picks a registered encoder, the subclass holds its fields.

    Each subclass gives ``name`` a default and validates its own fields in ``__post_init__``
    after calling this one.
    """

    name: str  # a registered encoder (`list_encoders`) whose config class is this one

    def __post_init__(self) -> None:
        _entry(self)


class _Entry(NamedTuple):
    build: Builder
    config: type[EncoderConfig]


_ENCODERS: dict[str, _Entry] = {}


def _entry(config: EncoderConfig) -> _Entry:
    """The registered encoder of ``config.name``, whose config class must be exactly the type of `config`.

    Raises:
        ValueError: an unknown name, or a config of another class than the name's.
    """
    cls = encoder_config(config.name)
    if type(config) is not cls:
        own = [n for n, e in _ENCODERS.items() if e.config is type(config)]
        raise ValueError(f"{type(config).__name__}.name {config.name!r} is configured by {cls.__name__}, not by "
                         f"{type(config).__name__}; use {cls.__name__}(name={config.name!r}, ...)"
                         + (f" or one of {own}" if own else ""))
    return _ENCODERS[config.name]


def register_encoder(name: str, *, config: type[EncoderConfig]) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(config, layout, generator) -> Autoencoder`` under `name`, configured by `config`.

    Raises:
        ValueError: `name` is taken, or `config` is not an `EncoderConfig` dataclass.
    """
    if name in _ENCODERS:
        raise ValueError(f"an encoder named {name!r} is already registered; pick another name")
    if not (isinstance(config, type) and issubclass(config, EncoderConfig) and dataclasses.is_dataclass(config)):
        raise ValueError(f"encoder {name!r}: config must be a dataclass subclassing EncoderConfig, got {config!r}")

    def register(build: Builder) -> Builder:
        _ENCODERS[name] = _Entry(build, config)
        return build

    return register


def list_encoders() -> list[str]:
    """Names accepted by `create_autoencoder` and by the ``name`` of an encoder config, sorted."""
    return sorted(_ENCODERS)


def encoder_config(name: str) -> type[EncoderConfig]:
    """The config class of encoder `name`.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
    """
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {list_encoders()}")
    return _ENCODERS[name].config


def create_autoencoder(config: EncoderConfig | str, layout: WeightLayout, *,
                       generator: torch.Generator | None = None, **overrides: Any) -> nn.Module:
    """Build a registered encoder for vectors of `layout`.

    Args:
        config: an encoder config (`TransformerConfig`, `MLPConfig`, ...), or a registered name
            (then `overrides` set fields of its config).
        layout: the layout of the weight vectors.
        generator: draws the initial parameters; None keeps PyTorch's default init (global RNG).

    Raises:
        ValueError: an unknown name (the valid ones are listed) or an invalid config value.
    """
    if isinstance(config, str):
        config = encoder_config(config)(name=config, **overrides)
    elif overrides:
        raise ValueError("pass field overrides only with a name; with a config, set them on the config")
    entry = _entry(config)  # raises, saying which config the name needs
    if generator is None:
        return entry.build(config, layout, None)
    with torch.random.fork_rng(devices=[]):  # module constructors draw a default init from the global RNG
        return entry.build(config, layout, generator)
