"""Zoo architectures: the small networks that populate model zoos, in a registry.

Every architecture names its Linear/Conv2d layers (``conv1``, ``fc2``), so the
parameter names, and with them the WeightLayout, do not depend on whether
dropout is on (the 2021 code's module indices shifted with dropout, bug B6).
``legacy_module_index`` maps layer names to the 2021 ``module_list`` indices
(dropout off), used when writing ``index_dict.json`` or ray.tune checkpoints.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Callable, Protocol, Sequence

import torch
from torch import nn

from weightspace.zoo.activations import make_activation


class Init(Protocol):
    """An in-place initializer of `torch.nn.init`: the tensor, a generator, its other arguments left at their defaults."""

    def __call__(self, tensor: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor: ...


INITS: dict[str, Init] = {
    # uniform/normal follow the 2021 zoos: U[0, 1) and N(0, 1) unless std is given
    "uniform": nn.init.uniform_,
    "normal": nn.init.normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
}


def init_weights(model: nn.Module, init: str, *, std: float | None = None, bias: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
    """Initialise every Linear/Conv2d weight with `init`, biases with the constant `bias`.

    Args:
        init: one of `INITS`; "normal" draws N(0, std^2) (std defaults to 1, as in
            the 2021 zoos), "uniform" draws U[-std, std] when std is given, else U[0, 1).
        generator: the source of randomness; never the global RNG when given.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITS)}")
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        w = module.weight
        with torch.no_grad():
            if init == "normal":
                nn.init.normal_(w, 0.0, 1.0 if std is None else std, generator=generator)
            elif init == "uniform":
                lo, hi = (0.0, 1.0) if std is None else (-std, std)
                nn.init.uniform_(w, lo, hi, generator=generator)
            else:
                INITS[init](w, generator=generator)
            if module.bias is not None:
                nn.init.constant_(module.bias, bias)


class SamePad2d(nn.Module):
    """TensorFlow's "same" padding for a following conv: extra padding goes bottom/right.

    No registered architecture uses it (``cnn_unterthiner`` pads "valid", as published).
    """

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
            out = -(-size // self.stride)
            total = max((out - 1) * self.stride + self.kernel_size - size, 0)
            pads += [total // 2, total - total // 2]
        return nn.functional.pad(x, pads)


class GlobalAvgPool2d(nn.Module):
    """(B, C, H, W) -> (B, C): the mean over all positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class ZooNet(nn.Sequential):
    """An `nn.Sequential` with named layers and the 2021 module indices of its layers."""

    def __init__(self, modules: "OrderedDict[str, nn.Module]", legacy_module_index: dict[str, int]):
        super().__init__(modules)
        self.legacy_module_index = legacy_module_index


def _block(prefix: str, layer: nn.Module, act: str, dropout: float, *, pool: nn.Module | None = None) -> list[tuple[str, nn.Module]]:
    items = [(prefix, layer)]
    if pool is not None:
        items.append((f"pool{prefix[-1]}", pool))
    items.append((f"act{prefix[-1]}", make_activation(act)))
    if dropout > 0:
        items.append((f"drop{prefix[-1]}", nn.Dropout(dropout)))
    return items


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")


def mlp(in_dim: int = 16, hidden: Sequence[int] = (5,), out_dim: int = 4, *, activation: str = "tanh",
        dropout: float = 0.0, bias: bool = True) -> ZooNet:
    """Multi-layer perceptron ``in_dim -> hidden... -> out_dim``; inputs are flattened first.

    Layers are ``fc1 .. fcN``. The 2021 MLP put Linear, activation, dropout in a
    module list, so with dropout off its Linear layers sat at 0, 2, 4, ...
    """
    _check_dropout(dropout)
    dims = [in_dim, *hidden, out_dim]
    items: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    legacy = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        name = f"fc{i}"
        legacy[name] = 2 * (i - 1)
        if i < len(dims) - 1:
            items += _block(name, nn.Linear(a, b, bias=bias), activation, dropout)
        else:
            items.append((name, nn.Linear(a, b, bias=bias)))
    return ZooNet(OrderedDict(items), legacy)


def tetris_mlp(*, activation: str = "tanh", dropout: float = 0.0) -> ZooNet:
    """The 2021 Tetris MLP: 16 -> 5 -> 4 without biases (100 parameters)."""
    return mlp(16, (5,), 4, activation=activation, dropout=dropout, bias=False)


def cnn_s(channels_in: int = 1, *, activation: str = "tanh", dropout: float = 0.0, num_classes: int = 10) -> ZooNet:
    """The 2021 / Model Zoos "CNN-s" for 28x28 inputs (2464 parameters on 1 channel, 2864 on 3).

    conv 5x5 (c->8), maxpool 2, conv 5x5 (8->6), maxpool 2, conv 2x2 (6->4),
    flatten (4x3x3 = 36), linear 36->20, linear 20->10.
    """
    _check_dropout(dropout)
    items = [
        *_block("conv1", nn.Conv2d(channels_in, 8, 5), activation, dropout, pool=nn.MaxPool2d(2)),
        *_block("conv2", nn.Conv2d(8, 6, 5), activation, dropout, pool=nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(6, 4, 2)), ("act3", make_activation(activation)),
        ("flatten", nn.Flatten()),
        *_block("fc4", nn.Linear(36, 20), activation, dropout),
        ("fc5", nn.Linear(20, num_classes)),
    ]
    legacy = {"conv1": 0, "conv2": 3, "conv3": 6, "fc4": 9, "fc5": 11}
    return ZooNet(OrderedDict(items), legacy)


def cnn_unterthiner(channels_in: int = 1, *, activation: str = "relu", dropout: float = 0.0,
                    num_classes: int = 10, units: int = 16) -> ZooNet:
    """The Small CNN Zoo network (Unterthiner et al. 2020): 4970 parameters on 1 channel.

    Three 3x3 convolutions of 16 filters with stride 2 and no padding, as the
    published ``Conv2D(16, 3, strides=2)`` with Keras' default ``padding="valid"``
    (28 -> 13 -> 6 -> 2 on MNIST, 32 -> 15 -> 7 -> 3 on 32x32 images), global
    average pooling, dense 10.
    """
    _check_dropout(dropout)
    items = [
        *_block("conv1", nn.Conv2d(channels_in, units, 3, stride=2), activation, dropout),
        *_block("conv2", nn.Conv2d(units, units, 3, stride=2), activation, dropout),
        *_block("conv3", nn.Conv2d(units, units, 3, stride=2), activation, dropout),
        ("gap", GlobalAvgPool2d()),
        ("fc4", nn.Linear(units, num_classes)),
    ]
    legacy = {"conv1": 0, "conv2": 2, "conv3": 4, "fc4": 7}
    return ZooNet(OrderedDict(items), legacy)


MAX_PARAMETERS = 100_000_000  # the most parameters one zoo model may have (400 MB in float32)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "tetris_mlp": tetris_mlp,
    "mlp": mlp,
    "cnn_s": cnn_s,
    "cnn_unterthiner": cnn_unterthiner,
}

# input shape (C, H, W) each architecture is built for by default; used by tests and docs
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "tetris_mlp": (1, 4, 4),
    "mlp": (1, 4, 4),
    "cnn_s": (1, 28, 28),
    "cnn_unterthiner": (1, 32, 32),
}


def list_zoo_models() -> list[str]:
    """Names accepted by `create_zoo_model`."""
    return sorted(_REGISTRY)


def zoo_model_arguments(name: str) -> list[str]:
    """The architecture arguments of `name` other than its hyperparameters (activation, dropout).

    Raises:
        ValueError: unknown name (the message lists the architectures).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown zoo architecture {name!r}; choose one of {list_zoo_models()}")
    return [p for p in inspect.signature(_REGISTRY[name]).parameters if p not in ("activation", "dropout")]


def count_zoo_parameters(name: str, **kwargs) -> int:
    """The parameter count of architecture `name` built with `kwargs`, found on the meta device (nothing allocated).

    Raises:
        ValueError: unknown name, arguments the architecture refuses (a layer width that is not a
            positive whole number, ...), or more than `MAX_PARAMETERS` parameters.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown zoo architecture {name!r}; choose one of {list_zoo_models()}")
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        with torch.device("meta"):
            model = _REGISTRY[name](**kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        fix = (f"it takes {zoo_model_arguments(name)} besides activation and dropout" if "keyword" in str(err)
               else "layer sizes must be positive whole numbers, e.g. hidden=[8]")
        raise ValueError(f"bad arguments for zoo architecture {name!r} ({shown}): {str(err).splitlines()[0]}; "
                         f"{fix}") from None
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"zoo architecture {name!r} with {shown} has {count:,} parameters, more than the "
                         f"{MAX_PARAMETERS:,} a zoo model may have ({4 * count / 1e9:.1f} GB per model in float32); "
                         "choose smaller layers")
    return count


def create_zoo_model(name: str, *, init: str | None = None, init_std: float | None = None,
                     generator: torch.Generator | None = None, **kwargs) -> nn.Module:
    """Build a registered zoo architecture.

    Args:
        name: one of `list_zoo_models()`.
        init: optional weight init (one of `INITS`); biases then start at 0.01.
            Without it, PyTorch's default init is kept.
        init_std: scale for the "normal" / "uniform" inits.
        generator: randomness for `init`.
        **kwargs: the architecture's own arguments (activation, dropout, ...).

    Raises:
        ValueError: unknown name, activation, init, or argument, or more than `MAX_PARAMETERS` parameters.
    """
    count_zoo_parameters(name, **kwargs)  # on the meta device: bad or huge arguments allocate nothing
    model = _REGISTRY[name](**kwargs)
    if init is not None:
        init_weights(model, init, std=init_std, generator=generator)
    return model
