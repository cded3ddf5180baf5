"""Check that a network computes what its derived WeightLayout assumes.

`WeightLayout.from_module` reads layers by parameter name and assumes that each
Linear/Conv2d layer feeds the next one in registration order, through
parameter-free modules, with torch's channel-major flatten between a conv and a
linear layer. Then permuting a hidden layer's neurons (its rows and biases, and
the next layer's inputs) keeps the network's function. A skip connection, a
channels-last flatten, layers called out of registration order or a
normalization over neurons break that assumption; the layout would then be
wrong without any error. `check_permutations` runs the network on one small
random batch with random weights and biases, then with every hidden layer
permuted, and refuses the network when the outputs differ.

The check reads a layout through the `Layout` protocol, which
`weightspace.layout.WeightLayout` satisfies: `weightspace.layout` imports this
module, never the other way round.
"""

from __future__ import annotations

import math
from typing import Mapping, Protocol, Sequence

import torch
from torch import nn
from torch.func import functional_call

from weightspace.errors import InputError

# normalizations hold statistics, groups or shapes tied to neuron positions that a layout does not track
NORMALIZATIONS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
                  nn.CrossMapLRN2d, nn.RMSNorm)
BATCH = 2  # images in the example batch: the check costs two forward passes of it
MAX_SIDE = 512  # largest square image searched for when no input shape is given
# the check runs in float64, where reordered sums agree to about K * eps64 (1e-12 for K = 1e4 terms); a layout
# error changes outputs by about their own size; sqrt(eps64) (1.5e-8) of the output scale lies between the two
RELATIVE_TOLERANCE = math.sqrt(torch.finfo(torch.float64).eps)
SEED = 0  # the check's weights, input and permutations come from this seed: same network, same verdict


class Layer(Protocol):
    """What the check reads of one layer (a `weightspace.layout.LayerSpec`)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def weight_shape(self) -> tuple[int, ...]: ...
    @property
    def has_bias(self) -> bool: ...
    @property
    def n_out(self) -> int: ...
    @property
    def n_weights(self) -> int: ...
    @property
    def fan_in(self) -> int: ...


class Layout(Protocol):
    """What the check reads of a layout (a `weightspace.layout.WeightLayout`)."""

    @property
    def layers(self) -> Sequence[Layer]: ...
    @property
    def hidden_layers(self) -> Sequence[Layer]: ...
    def devectorize(self, vector: torch.Tensor) -> dict[str, torch.Tensor]: ...
    def permutation_index(self, perms: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


def refuse_normalization(name: str, module: nn.Module) -> None:
    """Raise InputError when `module` normalizes over neurons (any normalization, with or without affine parameters)."""
    if isinstance(module, NORMALIZATIONS):
        raise InputError(
            f"layer {name!r} is a {type(module).__name__}: WeightLayout does not support normalization layers "
            "(their statistics, groups or affine parameters are tied to neuron positions that a permutation "
            "would move); use a network of Linear/Conv2d layers and parameter-free modules"
        )


def check_permutations(module: nn.Module, layout: Layout, input_shape: Sequence[int] | None = None) -> None:
    """Refuse `module` unless permuting its hidden neurons as `layout` says keeps its outputs.

    Args:
        input_shape: one example's shape, e.g. ``(C, H, W)``; by default the first layer's input
            size for a linear layer, or the smallest square image the network accepts for a conv.

    Raises:
        InputError: the network cannot run on the example batch, or a permutation changes its outputs.
    """
    hidden = [spec for spec in layout.hidden_layers if spec.n_out > 1]
    if not hidden:
        return
    shape = tuple(input_shape) if input_shape is not None else _input_shape(module, layout)
    g = torch.Generator().manual_seed(SEED)
    device = next(module.parameters()).device
    device = torch.device("cpu") if device.type == "meta" else device
    # weights N(0, 1/fan_in) keep activations O(1); N(0, 1) biases make a misplaced bias show
    parts = []
    for spec in layout.layers:
        parts.append(torch.randn(spec.n_weights, generator=g, dtype=torch.float64) / math.sqrt(spec.fan_in))
        if spec.has_bias:
            parts.append(torch.randn(spec.n_out, generator=g, dtype=torch.float64))
    vector = torch.cat(parts).to(device)
    x = torch.randn(BATCH, *shape, generator=g, dtype=torch.float64).to(device)
    perms = {}
    for spec in hidden:
        perm = torch.randperm(spec.n_out, generator=g)
        perms[spec.name] = perm.roll(1) if torch.equal(perm, torch.arange(spec.n_out)) else perm
    buffers = {k: b.to(device, torch.float64) if b.is_floating_point() else b.to(device) for k, b in module.named_buffers()}
    modes = {m: m.training for m in module.modules()}
    module.eval()  # dropout off

    def changes(some: dict[str, torch.Tensor]) -> bool:
        """Whether permuting the layers in `some` changes the outputs (NaN counts as a change)."""
        permuted = _forward(module, {**buffers, **layout.devectorize(vector[layout.permutation_index(some)])}, x)
        return not float((permuted - out).abs().max()) <= RELATIVE_TOLERANCE * scale

    try:
        with torch.no_grad():
            out = _forward(module, {**buffers, **layout.devectorize(vector)}, x)
            scale = float(out.abs().max())
            if not math.isfinite(scale):
                raise InputError(f"{type(module).__name__} gives non-finite outputs on a random float64 input of "
                                 f"shape {tuple(x.shape)}; WeightLayout.from_module cannot check its layout")
            if not changes(perms):
                return
            # name the first layer whose permutation alone changes the outputs
            culprit = next((s for s in hidden if changes({s.name: perms[s.name]})), None)
    finally:
        for m, mode in modes.items():
            m.training = mode
    if culprit is None:
        what = "permuting the outputs of all hidden layers at once"
    else:
        nxt = layout.layers[layout.layers.index(culprit) + 1]
        what = f"permuting the outputs of layer {culprit.name!r} (and the inputs of {nxt.name!r})"
    raise InputError(
        f"cannot lay out {type(module).__name__}: {what} changes the network's outputs on a random input of "
        f"shape {tuple(x.shape)}. "
        "WeightLayout assumes each Linear/Conv2d layer feeds the next one in registration order through "
        "parameter-free modules, with conv maps flattened channel-major (nn.Flatten on (B, C, H, W)); "
        "skip connections, channels-last flattening and layers called out of registration order are not supported"
    )


def _forward(module: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    try:
        out = functional_call(module, params, (x,))
    except Exception as err:  # any failure of a foreign forward pass: say what was run
        raise InputError(
            f"WeightLayout.from_module checks a network by running it on a random float64 input of shape "
            f"{tuple(x.shape)}, and {type(module).__name__} failed on it ({type(err).__name__}: {err}); "
            "pass input_shape=(C, H, W) of one example the network accepts"
        ) from err
    if not isinstance(out, torch.Tensor):
        raise InputError(f"{type(module).__name__} returns {type(out).__name__}, not a tensor; WeightLayout.from_module "
                         "needs a network whose forward returns its outputs as one tensor")
    return out


def _input_shape(module: nn.Module, layout: Layout) -> tuple[int, ...]:
    """The input size of a first linear layer, or the smallest square image a conv network accepts."""
    first = layout.layers[0]
    if first.kind == "linear":
        return (first.weight_shape[1],)
    channels, kh, kw = first.weight_shape[1:]
    # shapes only: on the meta device a forward pass computes nothing
    meta = {k: torch.empty(t.shape, dtype=torch.float64 if t.is_floating_point() else t.dtype, device="meta")
            for k, t in [*module.named_parameters(), *module.named_buffers()]}
    for side in range(max(kh, kw), MAX_SIDE + 1):
        try:
            functional_call(module, meta, (torch.empty(1, channels, side, side, dtype=torch.float64, device="meta"),))
        except Exception:  # a shape the network refuses: try the next size
            continue
        return (channels, side, side)
    raise InputError(f"{type(module).__name__} accepts no square image of {channels} channels up to {MAX_SIDE}x{MAX_SIDE} "
                     "pixels; pass input_shape=(C, H, W) of one example the network accepts to WeightLayout.from_module")
