"""Typed configuration of the representation learner, one dataclass per component.

Every config validates itself in ``__post_init__``. `LearnerConfig` bundles
them; its encoder is the config of the chosen encoder (`TransformerConfig`,
`MLPConfig`, `NeuronSetConfig`, ...: each defined beside its encoder in
``weightspace.representation.encoders``). `config_to_dict` / `config_from_dict`
are the one place where configs become plain nested dicts (the ray.tune
``param_space``) and come back, with unknown keys rejected; an encoder's dict
holds its ``name`` and that encoder's fields, and its ``name`` picks the class.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from weightspace.data.augment import Compose, GaussianNoise, PermuteNeurons, RandomErasing, Transform
from weightspace.data.dataset import DataConfig
from weightspace.layout import WeightLayout
from weightspace.representation.encoders.transformer import TransformerConfig  # imports every encoder
from weightspace.representation.registry import EncoderConfig, encoder_config, list_encoders

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # the stubs' name for "any dataclass"; no runtime module

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("plateau", "cosine", "none")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class HeadConfig:
    """The projection head between z and the contrastive loss."""

    layers: int = 3  # hidden Linear layers; 0 means no head (the loss sees z)
    hidden: int = 50  # their width
    out_dim: int = 20  # output width
    batch_norm: bool = True  # BatchNorm1d after every Linear

    def __post_init__(self) -> None:
        _check(self.layers >= 0, f"HeadConfig.layers must be >= 0, got {self.layers}")
        _check(self.hidden >= 1 and self.out_dim >= 1, f"HeadConfig widths must be >= 1, got {self.hidden}, {self.out_dim}")


@dataclass
class LossConfig:
    """gamma * contrast + (1 - gamma) * reconstruction."""

    gamma: float = 0.5  # weight of the contrastive part, in [0, 1]
    contrast: str = "ntxent"  # "ntxent" (SimCLR) or "positive" (pull positive pairs together only)
    temperature: float = 0.1  # NT-Xent temperature, > 0
    positive_kind: str = "cosine"  # "positive" contrast: "cosine" (1 - cos) or "distance" (squared L2)
    per_layer_normalize: bool = False  # reconstruction: every layer weighs the same, scaled by its variance
    recon_target: str = "clean"  # "clean": permuted, un-erased weights; "input": the augmented view (2021)

    def __post_init__(self) -> None:
        _check(0.0 <= self.gamma <= 1.0, f"LossConfig.gamma must lie in [0, 1], got {self.gamma}")
        _check(self.temperature > 0, f"LossConfig.temperature must be > 0, got {self.temperature}")
        _check(self.contrast in ("ntxent", "positive"),
               f"LossConfig.contrast must be 'ntxent' or 'positive', got {self.contrast!r}")
        _check(self.positive_kind in ("cosine", "distance"),
               f"LossConfig.positive_kind must be 'cosine' or 'distance', got {self.positive_kind!r}")
        _check(self.recon_target in ("clean", "input"),
               f"LossConfig.recon_target must be 'clean' or 'input', got {self.recon_target!r}")


@dataclass
class AugmentConfig:
    """How the two training views are drawn (evaluation uses permutations only)."""

    permute: bool = True  # permute hidden neurons (function-preserving)
    permute_layers: tuple[str, ...] | None = None  # layer names; None: every hidden layer
    erase_p: float = 0.5  # probability of random erasing per view; 0 disables it
    erase_scale: tuple[float, float] = (0.02, 0.33)  # share of the vector erased
    erase_value: float | str = 0.0  # fill value, or "random"
    erase_mode: str = "block"  # "block" or "scatter"
    noise_std: float = 0.0  # std of additive Gaussian noise; 0 disables it

    def __post_init__(self) -> None:
        if self.permute_layers is not None:
            self.permute_layers = tuple(self.permute_layers)
        scale = tuple(float(s) for s in self.erase_scale)
        _check(0.0 <= self.erase_p <= 1.0, f"AugmentConfig.erase_p must lie in [0, 1], got {self.erase_p}")
        _check(len(scale) == 2 and 0 <= scale[0] <= scale[1] <= 1,
               f"AugmentConfig.erase_scale must be (min, max) within [0, 1], got {scale}")
        self.erase_scale = (scale[0], scale[1])
        _check(self.erase_mode in ("block", "scatter"),
               f"AugmentConfig.erase_mode must be 'block' or 'scatter', got {self.erase_mode!r}")
        _check(not isinstance(self.erase_value, str) or self.erase_value == "random",
               f"AugmentConfig.erase_value must be a number or 'random', got {self.erase_value!r}")
        _check(self.noise_std >= 0, f"AugmentConfig.noise_std must be >= 0, got {self.noise_std}")

    def build(self, layout: WeightLayout) -> tuple[Transform, Transform]:
        """``(symmetry, corruption)``: the function-preserving part and the perturbing part of a view.

        A view is ``corruption(symmetry(x))``; the "clean" reconstruction target is ``symmetry(x)``.
        """
        symmetry = Compose([PermuteNeurons(layout, self.permute_layers)] if self.permute else [])
        corruption: list[Transform] = []
        if self.erase_p > 0:
            corruption.append(RandomErasing(self.erase_p, self.erase_scale, self.erase_value, self.erase_mode))
        if self.noise_std > 0:
            corruption.append(GaussianNoise(self.noise_std))
        return symmetry, Compose(corruption)


@dataclass
class TrainConfig:
    """Optimisation."""

    batch_size: int = 500  # samples per step (two views each); the train split must hold at least one batch
    epochs: int = 100  # epochs run by `fit`
    epochs_per_step: int = 10  # epochs per ray.tune iteration
    lr: float = 1e-4  # Adam learning rate
    weight_decay: float = 1e-9  # Adam weight decay
    scheduler: str = "plateau"  # "plateau" (on the epoch's training loss), "cosine" (over `epochs`) or "none"
    plateau_factor: float = 0.3  # ReduceLROnPlateau factor
    plateau_patience: int = 10  # ReduceLROnPlateau patience, in epochs
    stop_lr: float = 0.0  # end training once the learning rate is at or below this (0: never; see `Learner.finished`)
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    precision: str = "fp32"  # "fp32", or autocast to "bf16" / "fp16"
    seed: int = 42  # seeds initialisation, shuffling, augmentation and dropout
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    eval_batch_size: int = 1000  # batch size of evaluation and embedding

    def __post_init__(self) -> None:
        for key in ("batch_size", "epochs", "epochs_per_step", "eval_batch_size"):
            _check(getattr(self, key) >= 1, f"TrainConfig.{key} must be >= 1, got {getattr(self, key)}")
        _check(self.batch_size >= 2,
               "TrainConfig.batch_size must be >= 2 (NT-Xent needs negatives, batch norm needs statistics)")
        _check(self.lr > 0 and self.weight_decay >= 0,
               f"TrainConfig.lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        _check(self.scheduler in SCHEDULERS, f"TrainConfig.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        _check(0 < self.plateau_factor < 1, f"TrainConfig.plateau_factor must lie in (0, 1), got {self.plateau_factor}")
        _check(0 <= self.stop_lr < self.lr,
               f"TrainConfig.stop_lr must lie in [0, lr={self.lr}) (0: never stop early), got {self.stop_lr}")
        _check(self.grad_clip >= 0, f"TrainConfig.grad_clip must be >= 0, got {self.grad_clip}")
        _check(self.precision in PRECISIONS, f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class LearnerConfig:
    """Everything one representation-learning run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=TransformerConfig)  # the chosen encoder's config
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


C = TypeVar("C", bound="DataclassInstance")  # a config dataclass


def config_to_dict(config: Any) -> dict:
    """A config dataclass as a nested dict of plain values (tuples become lists)."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(e) for e in v]
        return v
    return plain(config)


def config_from_dict(cls: type[C], data: dict) -> C:
    """Rebuild a config dataclass from `config_to_dict` output; missing keys keep their defaults.

    An encoder config is rebuilt as the class its ``"name"`` is registered with (without a name: the
    class of the default).

    Raises:
        ValueError: a key that the config does not have (with the valid ones), an unknown encoder name
            (with the registered ones), or an invalid value.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict for {cls.__name__}, got {type(data).__name__}")
    if issubclass(cls, EncoderConfig) and "name" in data:
        # the class the name is registered with: a subclass of `cls` where cls is EncoderConfig (nested configs)
        cls = cast("type[C]", encoder_config(data["name"]))
    elif cls is EncoderConfig:
        raise ValueError(f"an encoder config dict needs its 'name', one of {list_encoders()}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; valid fields are {list(fields)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        nested = [t for t in (typing.get_args(hint) or (hint,)) if isinstance(t, type) and dataclasses.is_dataclass(t)]
        if nested and isinstance(value, dict):
            target = nested[0]
            factory = fields[key].default_factory
            if target is EncoderConfig and "name" not in value and callable(factory):  # the default encoder's class
                target = type(factory())
            value = config_from_dict(target, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def encoder_dict_as(data: dict, name: str) -> dict:
    """An encoder's config dict (`config_to_dict`) turned into one of encoder `name`: the fields both
    configs have keep their values, the others take `name`'s defaults (an ablation's "same learner, other
    encoder").

    Raises:
        ValueError: an unknown encoder name, or a kept value that `name`'s config refuses.
    """
    cls = encoder_config(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    kept = {k: v for k, v in data.items() if k in fields and k != "name"}
    return config_to_dict(config_from_dict(cls, {**kept, "name": name}))
