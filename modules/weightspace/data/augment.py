"""Augmentations over batches of flat weight vectors ``(B, D)``.

Every transform is called as ``transform(x, generator)``: all randomness comes
from the explicit `torch.Generator`, each sample gets its own draw, and the
input is never modified (a transform returns a new tensor, so two views never
alias each other or the data; the 2021 code erased both views in place, bug B2).

`PermuteNeurons` is function-preserving: it reorders the neurons (channels) of
hidden layers through the `WeightLayout`, together with the matching inputs of
the next layer, including the channel blocks of a flatten between a conv and a
linear layer. Fresh permutations are drawn per sample at every call.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import torch

from weightspace.layout import LayerSpec, WeightLayout


class Transform(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def _check_batch(x: torch.Tensor, num_params: int | None = None) -> None:
    if x.dim() != 2 or (num_params is not None and x.shape[1] != num_params):
        want = f"(B, {num_params})" if num_params is not None else "(B, D)"
        raise ValueError(f"expected a batch of flat weight vectors of shape {want}, got {tuple(x.shape)}")


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def batched_permutation_index(layout: WeightLayout, perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-sample gather index ``(B, D)`` for per-sample neuron permutations.

    ``perms[name]`` is ``(B, n_out)``: row b permutes layer `name` of sample b,
    with the convention of `WeightLayout.permutation_index` (output i of the
    permuted network is output ``perm[i]`` of the original). Use as
    ``x.gather(1, index)``. Layers absent from `perms` keep their order.
    """
    if not perms:
        raise ValueError("perms is empty; name at least one hidden layer to permute")
    first = next(iter(perms.values()))
    batch, device = first.shape[0], first.device
    hidden = {s.name for s in layout.hidden_layers}
    for name in perms:
        if name not in hidden:
            raise ValueError(f"cannot permute layer {name!r}; permutable (hidden) layers are {sorted(hidden)}")
    parts = []
    prev: LayerSpec | None = None
    for spec in layout.layers:
        ar_out = torch.arange(spec.n_out, device=device)
        rows = perms.get(spec.name, ar_out.expand(batch, -1))  # (B, n_out)
        n_in = spec.n_in
        block = spec.fan_in // n_in  # kh*kw for a conv, the flatten block for a linear layer
        if prev is not None and prev.name in perms:
            cols = perms[prev.name]
            if prev.n_out != n_in:
                raise ValueError(f"layer {spec.name!r} has {n_in} input units but {prev.name!r} has {prev.n_out} outputs")
        else:
            cols = torch.arange(n_in, device=device).expand(batch, -1)
        # (B, n_out, n_in, block): source position of every weight of this layer
        w = (spec.offset + rows[:, :, None, None] * spec.fan_in + cols[:, None, :, None] * block
             + torch.arange(block, device=device))
        parts.append(w.reshape(batch, -1))
        if spec.has_bias:
            parts.append(spec.offset + spec.n_weights + rows)  # the bias follows the weights
        prev = spec
    return torch.cat(parts, dim=1)


class PermuteNeurons:
    """Draw a fresh random permutation of every chosen hidden layer, per sample, at each call.

    Args:
        layout: layout of the vectors.
        layers: names of the hidden layers to permute; None permutes all of them.
    """

    def __init__(self, layout: WeightLayout, layers: Sequence[str] | None = None):
        hidden = [s.name for s in layout.hidden_layers]
        layers = list(hidden if layers is None else layers)
        bad = [n for n in layers if n not in hidden]
        if bad:
            raise ValueError(f"cannot permute {bad}: permutable (hidden) layers are {hidden}; "
                             "the output layer's order is the class order and may not change")
        if not layers:
            raise ValueError(f"PermuteNeurons needs at least one layer; permutable layers are {hidden}")
        self.layout, self.layers = layout, layers
        self._sizes = {n: layout.layer(n).n_out for n in layers}

    def index(self, batch: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """A fresh gather index ``(batch, D)``."""
        device = torch.device(device)
        perms = {n: _rand((batch, k), generator, device).argsort(dim=1) for n, k in self._sizes.items()}
        return batched_permutation_index(self.layout, perms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(x, self.layout.num_params)
        return x.gather(1, self.index(x.shape[0], generator, x.device))

    def __repr__(self) -> str:
        return f"PermuteNeurons(layers={self.layers})"


class RandomErasing:
    """With probability `p` per sample, overwrite a random part of the vector.

    Args:
        p: probability that a sample is erased at all.
        scale: (min, max) share of the D entries erased.
        value: the fill value, or "random" for N(0, 1) draws.
        mode: "block" erases one contiguous run (it may cross layer boundaries);
            "scatter" erases positions drawn with replacement.
    """

    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33), value: float | str = 0.0,
                 mode: str = "block"):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomErasing p must lie in [0, 1], got {p}")
        lo, hi = scale
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"RandomErasing scale must be (min, max) with 0 <= min <= max <= 1, got {scale}")
        if mode not in ("block", "scatter"):
            raise ValueError(f"RandomErasing mode must be 'block' or 'scatter', got {mode!r}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing value must be a number or 'random', got {value!r}")
        self.p, self.scale, self.value, self.mode = p, (float(lo), float(hi)), value, mode

    def mask(self, batch: int, dim: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """Boolean ``(batch, dim)``: True where entries are erased."""
        device = torch.device(device)
        lo, hi = self.scale
        apply = _rand((batch,), generator, device) < self.p
        length = (dim * (lo + (hi - lo) * _rand((batch,), generator, device))).long()
        pos = torch.arange(dim, device=device)
        if self.mode == "block":
            start = (_rand((batch,), generator, device) * (dim - length + 1)).long()
            return apply[:, None] & (pos >= start[:, None]) & (pos < (start + length)[:, None])
        most = int(dim * hi)
        where = (_rand((batch, most), generator, device) * dim).long().clamp_(max=dim - 1)
        valid = apply[:, None] & (torch.arange(most, device=device) < length[:, None])
        where = torch.where(valid, where, dim)  # invalid draws land in a spare column
        mask = torch.zeros(batch, dim + 1, dtype=torch.bool, device=device)
        return mask.scatter_(1, where, True)[:, :dim]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(x)
        mask = self.mask(x.shape[0], x.shape[1], generator, x.device)
        if self.value == "random":
            fill = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
        else:
            fill = torch.tensor(float(self.value), dtype=x.dtype, device=x.device)
        return torch.where(mask, fill, x)

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, value={self.value!r}, mode={self.mode!r})"


class GaussianNoise:
    """Add i.i.d. N(0, std^2) noise to every entry."""

    def __init__(self, std: float):
        if std < 0:
            raise ValueError(f"GaussianNoise std must be >= 0, got {std}")
        self.std = float(std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
        return x + self.std * noise

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


class Compose:
    """Apply transforms in order; with none, return a copy."""

    def __init__(self, transforms: Sequence[Transform] = ()):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.transforms:
            return x.clone()
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class TwoViews:
    """Two independent draws of `transform` on the same batch: ``(view_1, view_2)``."""

    def __init__(self, transform: Transform):
        self.transform = transform

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(x, generator), self.transform(x, generator)


def canonical_form(layout: WeightLayout, x: torch.Tensor, layers: Sequence[str] | None = None) -> torch.Tensor:
    """Sort the neurons of hidden layers by the L2 norm of their token (incoming weights and bias), descending.

    Layers are sorted in forward order, each after the reordering of the layer
    before it has been applied to its inputs, so the result is the same for
    every permuted copy of a network (barring ties). Function-preserving.
    """
    _check_batch(x, layout.num_params)
    names = [s.name for s in layout.hidden_layers] if layers is None else list(layers)
    for name in names:
        tokens = x[:, layout.token_index(name).to(x.device)]  # (B, n_out, token_size)
        order = tokens.norm(dim=-1).argsort(dim=1, descending=True, stable=True)
        x = x.gather(1, batched_permutation_index(layout, {name: order}))
    return x
