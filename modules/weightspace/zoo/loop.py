"""One model at a time with plain PyTorch: the reference the population trainer is checked and timed against.

This is how one-model-per-trial zoo generation (the 2021 and Model Zoos
ray.tune trainables) trains: an `nn.Module`, a `torch.optim` optimizer, a
shuffled loader. It uses the same init and data order as `Population`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from weightspace.zoo.population import Member, PopulationConfig, epoch_orders, init_member


def make_optimizer(config: PopulationConfig, member: Member, params) -> torch.optim.Optimizer:
    """The torch.optim optimizer a lone model of this member would use."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=member.lr, weight_decay=member.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=member.lr, momentum=config.momentum, weight_decay=member.weight_decay)
    return torch.optim.RMSprop(params, lr=member.lr, momentum=config.momentum, weight_decay=member.weight_decay)


def train_single(config: PopulationConfig, member: Member, x_train: torch.Tensor, y_train: torch.Tensor, *,
                 epochs: int, on_step: Callable[[int, int, dict], None] | None = None) -> nn.Module:
    """Train one member alone for `epochs`; returns the trained network.

    Args:
        on_step: called as ``on_step(epoch, step, grads)`` after each backward pass.
    """
    model = init_member(config, member)
    model.train()
    opt = make_optimizer(config, member, model.parameters())
    orders = epoch_orders(member.seed, len(x_train), config.train_fraction)
    for epoch in range(epochs):
        order = next(orders)
        for step, start in enumerate(range(0, len(order), config.batch_size)):
            idx = order[start:start + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            if on_step is not None:
                on_step(epoch, step, {k: p.grad.detach().clone() for k, p in model.named_parameters()
                                      if p.grad is not None})
            opt.step()
    return model
