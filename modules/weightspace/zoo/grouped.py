"""A population forward pass in one grouped, channels-last layout.

`torch.func.vmap` over a convolution lowers to a grouped convolution with one
group per model, but in the contiguous (NCHW) layout, where oneDNN's grouped
kernels and the following max-pooling are slow on a CPU. This module walks a
sequential zoo network layer by layer and keeps the whole population in one
tensor:

- image stages as ``(B, N*C, H, W)`` in channels-last memory: model n owns the
  channels ``n*C .. (n+1)*C - 1``; a Conv2d is one grouped convolution with
  ``groups=N``, pooling, padding, activations and dropout act on it unchanged
  (dropout draws an independent mask per element, so per model);
- flat stages as ``(N, B, F)``; a Linear is one batched matmul.

When every model reads the same input (evaluation), the first parametric layer
is an ordinary convolution / matmul with all models' filters stacked, a far
larger and faster kernel than N small ones.

On 2 CPU cores this layout trains cnn_s about 3x faster than vmap
(bench/bench_zoo.py). Networks holding any other module type fall back to vmap.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weightspace.zoo.activations import ACTIVATIONS
from weightspace.zoo.architectures import GlobalAvgPool2d, SamePad2d

_PASS_THROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, SamePad2d, *ACTIVATIONS.values())


def supports_grouped(template: nn.Module) -> bool:
    """Whether `template` is a flat sequence of layers `grouped_forward` knows."""
    children = list(template.children())
    if not isinstance(template, nn.Sequential) or not children:
        return False
    for m in children:
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                return False
        elif not isinstance(m, (nn.Linear, nn.Flatten, GlobalAvgPool2d, *_PASS_THROUGH)):
            return False
    return True


def grouped_forward(template: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, *,
                    shared_input: bool = False, dropout: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of every model: ``(N, B, classes)``.

    Args:
        template: a network accepted by `supports_grouped` (its own parameters are unused).
        params: stacked parameters ``(N, *shape)`` by parameter name.
        x: ``(N, B, C, H, W)`` one batch per model, or ``(B, C, H, W)`` shared by all
            models when `shared_input`.
        dropout: ``(N,)`` rates, one per model, that the template's dropout layers use instead of
            their own while it is training; None: theirs.
    """
    n = next(iter(params.values())).shape[0]
    if shared_input:
        h, per_model = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, False
    elif x.dim() == 5 and not isinstance(next(iter(template.children())), nn.Flatten):
        # (N, B, C, H, W) -> (B, N*C, H, W), channels-last: physically (B, H, W, N, C)
        h = x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:]).contiguous(memory_format=torch.channels_last)
        per_model = True
    else:  # an MLP: straight to the flat layout (N, B, F)
        h, per_model = x.flatten(2), True
    flat = h.dim() != 4
    for name, m in template.named_children():
        if isinstance(m, nn.Conv2d):
            w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), None if b is None else b.reshape(-1),
                         m.stride, m.padding, m.dilation, groups=n if per_model else 1)
            per_model = True
        elif isinstance(m, nn.Linear):
            w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
            if per_model:  # (N, B, in) @ (N, in, out)
                h = torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            else:  # (B, in) @ (in, N*out), then (N, B, out)
                h = h @ w.reshape(-1, w.shape[-1]).t()
                h = h.view(h.shape[0], n, -1).transpose(0, 1)
                if b is not None:
                    h = h + b.unsqueeze(1)
                per_model = True
        elif isinstance(m, (nn.Flatten, GlobalAvgPool2d)):
            if flat:
                continue
            h = h.mean(dim=(-2, -1)) if isinstance(m, GlobalAvgPool2d) else h
            h = h.reshape(h.shape[0], n, -1).transpose(0, 1) if per_model else h.reshape(h.shape[0], -1)
            flat = True
        elif isinstance(m, nn.Dropout) and dropout is not None:
            h = _per_model_dropout(h, dropout, n, flat) if template.training else h
        else:  # activations, pooling, padding, dropout: layout-agnostic
            h = m(h)
    if not per_model:
        raise ValueError("a network without parameters has no per-model output")
    return h


def _per_model_dropout(h: torch.Tensor, rate: torch.Tensor, n: int, flat: bool) -> torch.Tensor:
    """Inverted dropout with model n's elements dropped at ``rate[n]``: `nn.Dropout`'s rule per model.

    `h` is ``(N, B, F)`` when `flat`, else ``(B, N*C, H, W)`` with model n's channels contiguous."""
    rate = rate.view(n, 1, 1) if flat else rate.repeat_interleave(h.shape[1] // n).view(1, -1, 1, 1)
    keep = torch.rand_like(h) >= rate
    return h * keep / (1 - rate)
