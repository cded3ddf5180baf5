"""Losses of the representation learner: pure tensor modules, shapes come from the inputs."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from weightspace.layout import WeightLayout
from weightspace.representation.config import LossConfig


class NTXentLoss(nn.Module):
    """SimCLR's normalized temperature-scaled cross entropy over 2B projections.

    ``z_i[k]`` and ``z_j[k]`` are the positive pair; the other 2B - 2 vectors are
    the negatives of each anchor. The loss is the mean over all 2B anchors.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"NT-Xent temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        if z_i.shape != z_j.shape or z_i.dim() != 2:
            raise ValueError(f"z_i and z_j must both be (B, dim), got {tuple(z_i.shape)} and {tuple(z_j.shape)}")
        b = z_i.shape[0]
        z = F.normalize(torch.cat([z_i, z_j]), dim=1)  # (2B, dim)
        logits = z @ z.T / self.temperature  # (2B, 2B)
        logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
        target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
        return F.cross_entropy(logits, target)


class PositiveContrastLoss(nn.Module):
    """Pull the two views of each sample together, with no negatives.

    kind "cosine": mean of 1 - cos(z_i, z_j) (0 when the pairs align);
    kind "distance": mean squared difference. (The 2021 "positive" loss drove
    pairs to cosine 0, i.e. orthogonal; bug B1.) Without negatives nothing
    prevents collapse; use it with a reconstruction term (gamma < 1).
    """

    def __init__(self, kind: str = "cosine"):
        super().__init__()
        if kind not in ("cosine", "distance"):
            raise ValueError(f"PositiveContrastLoss kind must be 'cosine' or 'distance', got {kind!r}")
        self.kind = kind

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        if self.kind == "cosine":
            return (1.0 - F.cosine_similarity(z_i, z_j, dim=1)).mean()
        return F.mse_loss(z_i, z_j)


class ReconstructionLoss(nn.Module):
    """Mean squared error between reconstruction and target, ``(B, D)`` each.

    With ``per_layer_normalize`` (needs `layout`), every layer contributes
    equally: its MSE is divided by the variance of its target entries in the
    batch, and the layers are averaged, so neither large-magnitude nor large
    layers dominate (the 2021 loss was unweighted, bug B3).
    """

    # buffers, with per_layer_normalize only
    segment: torch.Tensor  # (D,) the layer of each entry
    sizes: torch.Tensor  # (L,) entries per layer

    def __init__(self, layout: WeightLayout | None = None, per_layer_normalize: bool = False, eps: float = 1e-8):
        super().__init__()
        if per_layer_normalize and layout is None:
            raise ValueError("per_layer_normalize needs the WeightLayout of the vectors")
        self.per_layer_normalize, self.eps = per_layer_normalize, eps
        if per_layer_normalize and layout is not None:
            segment = torch.cat([torch.full((s.size,), i) for i, s in enumerate(layout.layers)])
            self.register_buffer("segment", segment, persistent=False)
            self.register_buffer("sizes", torch.tensor([float(s.size) for s in layout.layers]), persistent=False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        if not self.per_layer_normalize:
            return F.mse_loss(prediction, target)
        if target.shape[1] != self.segment.shape[0]:
            raise ValueError(f"expected vectors of length {self.segment.shape[0]}, got {target.shape[1]}")
        n_layers = self.sizes.shape[0]

        def per_layer(v: torch.Tensor) -> torch.Tensor:  # (B, D) -> (L,) mean per layer
            return v.new_zeros(n_layers).index_add_(0, self.segment, v.mean(0)) / self.sizes

        mean = per_layer(target)
        var = per_layer(target.square()) - mean.square()
        mse = per_layer((prediction - target).square())
        return (mse / (var.clamp_min(0) + self.eps)).mean()


class LossParts(NamedTuple):
    total: torch.Tensor
    contrast: torch.Tensor
    recon: torch.Tensor


class GammaLoss(nn.Module):
    """``gamma * contrast(z_i, z_j) + (1 - gamma) * recon(prediction, target)``.

    Both parts are always computed and returned, so a run with gamma = 1 still
    reports its real reconstruction error (2021 reported 0, bug B10).
    """

    def __init__(self, gamma: float, contrast: nn.Module, recon: nn.Module):
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        self.gamma, self.contrast, self.recon = gamma, contrast, recon

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor, prediction: torch.Tensor, target: torch.Tensor) -> LossParts:
        c = self.contrast(z_i, z_j)
        r = self.recon(prediction, target)
        return LossParts(self.gamma * c + (1.0 - self.gamma) * r, c, r)


def build_loss(config: LossConfig, layout: WeightLayout | None = None) -> GammaLoss:
    """The `GammaLoss` a `LossConfig` describes."""
    if config.contrast == "ntxent":
        contrast: nn.Module = NTXentLoss(config.temperature)
    else:
        contrast = PositiveContrastLoss(config.positive_kind)
    return GammaLoss(config.gamma, contrast, ReconstructionLoss(layout, config.per_layer_normalize))
