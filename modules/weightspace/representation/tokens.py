"""Token embedders: cut a flat weight vector ``(B, D)`` into tokens ``(B, T, d_model)`` and back.

A tokenization is a list of index groups: group g is a LongTensor
``(n_tokens_g, size_g)`` of positions in the vector, and all tokens of a group
share one Linear embedding. Neuron tokens have one group per layer (row k:
neuron k's incoming weights, then its bias); weight tokens have one group of D
tokens of size 1. The groups together must cover every position exactly once,
so that the detokenizer can put each output back with a single gather.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from weightspace.layout import WeightLayout


def neuron_token_groups(layout: WeightLayout) -> list[torch.Tensor]:
    """One group per layer: ``(n_out, fan_in + bias)`` indices, from `WeightLayout.token_index`."""
    return layout.token_indices()


def weight_token_groups(layout: WeightLayout) -> list[torch.Tensor]:
    """One group of D tokens, one scalar each."""
    return [torch.arange(layout.num_params).unsqueeze(1)]


def _check_cover(groups: Sequence[torch.Tensor], num_params: int) -> torch.Tensor:
    """The concatenated flat indices; raises unless they are a permutation of range(num_params)."""
    if not groups:
        raise ValueError("a tokenizer needs at least one token group")
    for i, g in enumerate(groups):
        if g.dim() != 2 or g.dtype != torch.long:
            raise ValueError(f"token group {i} must be a LongTensor (n_tokens, token_size), got {g.dtype} {tuple(g.shape)}")
    flat = torch.cat([g.reshape(-1) for g in groups])
    counts = torch.bincount(flat.clamp(0, num_params), minlength=num_params + 1)
    outside = int(((flat < 0) | (flat >= num_params)).sum())
    missing = int((counts[:num_params] == 0).sum())
    repeated = int((counts[:num_params] > 1).sum())
    if outside or missing or repeated:
        raise ValueError(
            f"token slices must cover the {num_params} entries of the vector exactly once, but {missing} are "
            f"missed, {repeated} repeated and {outside} out of range; build the tokens from the zoo's "
            "WeightLayout (neuron_token_groups) or fix the layout"
        )
    return flat


class TokenEmbedder(nn.Module):
    """``(B, D)`` -> ``(B, T, d_model)``: gather each group's tokens, embed them with the group's Linear."""

    def __init__(self, groups: Sequence[torch.Tensor], num_params: int, d_model: int):
        super().__init__()
        _check_cover(groups, num_params)
        self.num_params = num_params
        self.num_tokens = sum(g.shape[0] for g in groups)
        for i, g in enumerate(groups):
            self.register_buffer(f"index_{i}", g.clone(), persistent=False)
        self.embed = nn.ModuleList(nn.Linear(g.shape[1], d_model) for g in groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_params:
            raise ValueError(f"expected weights of shape (B, {self.num_params}), got {tuple(x.shape)}")
        # each group: (B, n_tokens_g, size_g) -> (B, n_tokens_g, d_model)
        return torch.cat([lin(x[:, getattr(self, f"index_{i}")]) for i, lin in enumerate(self.embed)], dim=1)


class TokenDebedder(nn.Module):
    """``(B, T, d_model)`` -> ``(B, D)``: each group's Linear back to token entries, then one gather into place."""

    inverse: torch.Tensor  # buffer (D,): token-ordered outputs -> vector order

    def __init__(self, groups: Sequence[torch.Tensor], num_params: int, d_model: int):
        super().__init__()
        flat = _check_cover(groups, num_params)
        self.num_params = num_params
        self.sizes = [g.shape[0] for g in groups]
        # token-ordered outputs -> vector order
        self.register_buffer("inverse", torch.argsort(flat), persistent=False)
        self.debed = nn.ModuleList(nn.Linear(d_model, g.shape[1]) for g in groups)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[1] != sum(self.sizes):
            raise ValueError(f"expected tokens of shape (B, {sum(self.sizes)}, d_model), got {tuple(tokens.shape)}")
        b = tokens.shape[0]
        chunks = tokens.split(self.sizes, dim=1)
        flat = torch.cat([lin(c).reshape(b, -1) for lin, c in zip(self.debed, chunks)], dim=1)  # (B, D) token order
        return flat[:, self.inverse]
