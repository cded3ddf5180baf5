"""Train a population of same-shaped networks as one vectorized program.

N models of one architecture and one structural configuration (activation,
dropout, optimizer type, train fraction) share one template module on the meta
device. Their parameters are stacked with the model axis first, ``(N, *shape)``,
and every forward pass is either ``vmap(functional_call(template, ...))`` or,
for sequential conv/MLP zoo networks, the faster grouped channels-last program
of `weightspace.zoo.grouped` (same numbers, different kernel layout). Each model
keeps its own init seed, data order and dropout noise; learning rate and
weight decay are per-model tensors. The optimizers reproduce ``torch.optim``
(Adam, SGD with momentum, RMSprop) element for element, so a model trained in a
population follows the trajectory it would follow alone.

Written by hand rather than taken from ``torch.optim``: its optimizers take one learning rate and
weight decay per parameter group, not one per model along a stacked axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.grouped import grouped_forward, supports_grouped

OPTIMIZERS = ("adam", "sgd", "rmsprop")
# a weight beyond this has exploded: no zoo network trained at a sane rate gets near it (Adam moves a weight
# by at most about lr per step), and such a model only reaches NaN a few steps later
EXPLODED = 1e3
LAYOUTS = ("grouped", "vmap")


@dataclass(frozen=True)
class Member:
    """One model of a population: its identity and per-model hyperparameters."""

    model_id: int
    seed: int  # init seed; the data order is drawn from a generator derived from it
    lr: float = 1e-3
    weight_decay: float = 0.0
    init: str = "kaiming_uniform"
    init_std: float | None = None
    dropout: float | None = None  # this model's own dropout rate; None: the network's (PopulationConfig)


@dataclass(frozen=True)
class PopulationConfig:
    """What all members of a population share."""

    architecture: str  # a name from list_zoo_models()
    arch_kwargs: dict = field(default_factory=dict)  # activation, dropout, channels_in, ...
    optimizer: str = "adam"  # adam | sgd | rmsprop
    momentum: float = 0.9  # sgd and rmsprop
    batch_size: int = 32
    train_fraction: float = 1.0  # each model trains on its own random subset of this size
    # grouped: one channels-last grouped program for all models (zoo/grouped.py), about 3x faster on
    # cnn_s; vmap: functional_call under torch.func.vmap, for any network; auto: grouped where it applies
    layout: str = "auto"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS + ("auto",):
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {list(LAYOUTS) + ['auto']}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {list(OPTIMIZERS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must lie in (0, 1], got {self.train_fraction}")


def data_generator(seed: int) -> torch.Generator:
    """The generator of a model's data order (and train subset): independent of its init stream."""
    return torch.Generator().manual_seed((int(seed) * 0x9E3779B1 + 0x7F4A7C15) % (2**63))


def epoch_orders(seed: int, n_train: int, train_fraction: float) -> Iterator[torch.Tensor]:
    """The sample order of one model, epoch after epoch: ``(n_used,)`` indices into the train set each.

    A model uses the first ``round(train_fraction * n_train)`` entries of its own
    permutation of the train set, reshuffled each epoch. Drawn one epoch at a time, so
    memory does not grow with the number of epochs.
    """
    g = data_generator(seed)
    n_used = max(1, round(train_fraction * n_train))
    subset = torch.randperm(n_train, generator=g)[:n_used]
    while True:
        yield subset[torch.randperm(n_used, generator=g)]


def epoch_order(seed: int, n_train: int, train_fraction: float, epochs: int) -> torch.Tensor:
    """The first `epochs` orders of `epoch_orders`, stacked: ``(epochs, n_used)``."""
    orders = epoch_orders(seed, n_train, train_fraction)
    return torch.stack([next(orders) for _ in range(epochs)])


def init_member(config: PopulationConfig, member: Member) -> nn.Module:
    """The freshly initialised network of one member (init drawn from its seed)."""
    return create_zoo_model(config.architecture, init=member.init, init_std=member.init_std,
                            generator=torch.Generator().manual_seed(int(member.seed)), **config.arch_kwargs)


class Population:
    """N models trained together; parameters are stacked ``(N, *shape)``, model axis first."""

    def __init__(self, config: PopulationConfig, members: Sequence[Member], *, device: str | torch.device = "cpu"):
        if not members:
            raise ValueError("a population needs at least one member")
        self.config = config
        self.members = list(members)
        self.device = torch.device(device)
        nets = [init_member(config, m) for m in self.members]
        self.layout = WeightLayout.from_module(nets[0])
        with torch.device("meta"):
            self.template = create_zoo_model(config.architecture, **config.arch_kwargs)
        grouped_ok = supports_grouped(self.template)
        self.layout_name = config.layout if config.layout != "auto" else "grouped" if grouped_ok else "vmap"
        if self.layout_name == "grouped" and not grouped_ok:
            raise ValueError(f"{config.architecture} holds layers the grouped layout does not know; use layout='vmap'")
        self.params = {
            name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets]).to(self.device).requires_grad_()
            for name, _ in nets[0].named_parameters()
        }
        n = len(self.members)
        dtype = next(iter(self.params.values())).dtype  # per-model rates in the parameters' precision
        self.lr = torch.tensor([m.lr for m in self.members], dtype=dtype, device=self.device)
        self.wd = torch.tensor([m.weight_decay for m in self.members], dtype=dtype, device=self.device)
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.step_count = 0
        self.diverged = torch.zeros(n, dtype=torch.bool)
        # per-model dropout rates (the network's dropout layers then drop each model at its own rate)
        self.dropout = None
        if any(m.dropout is not None for m in self.members):
            if any(m.dropout is None for m in self.members):
                raise ValueError("either every member of a population brings its own dropout rate or none does")
            if self.layout_name != "grouped":
                raise ValueError(f"per-model dropout rates need the grouped layout, which {config.architecture} "
                                 "cannot use; give the population one dropout rate")
            self.dropout = torch.tensor([m.dropout for m in self.members], dtype=dtype, device=self.device)
        if self.layout_name == "grouped":
            self._train_logits = lambda params, x: grouped_forward(self.template, params, x, dropout=self.dropout)
            self._eval_logits = lambda params, x: grouped_forward(self.template, params, x, shared_input=True)
        else:
            self._train_logits = vmap(self._forward, in_dims=(0, 0), randomness="different")
            self._eval_logits = vmap(self._forward, in_dims=(0, None), randomness="different")

    def __len__(self) -> int:
        return len(self.members)

    # --------------------------------------------------------------- forward
    def _forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, params, (x,))

    def vectors(self) -> torch.Tensor:
        """Flat weights of every member: ``(N, D)`` on the CPU."""
        return self.layout.vectorize({k: v.detach() for k, v in self.params.items()}).float().cpu()

    # ------------------------------------------------------------------ train
    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-model mean cross-entropy on a per-model batch and its gradients.

        Args:
            x: ``(N, B, *input_shape)``, one batch per model.
            y: ``(N, B)`` labels.

        Returns:
            losses ``(N,)`` and gradients shaped like `params`.
        """
        assert x.shape[0] == len(self), f"model axis first: expected {len(self)} batches, got {tuple(x.shape)}"
        self.template.train()
        logits = self._train_logits(self.params, x)  # (N, B, classes)
        losses = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        # models are independent, so d(sum)/d(params_i) is model i's own gradient
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))
        return losses.detach(), dict(zip(self.params, grads))

    @torch.no_grad()
    def apply_gradients(self, grads: dict[str, torch.Tensor]) -> None:
        """One optimizer step for every model, matching torch.optim's update rules."""
        self.step_count += 1
        t = self.step_count
        opt, mom = self.config.optimizer, self.config.momentum
        for name, p in self.params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            lr, wd = self.lr.view(shape), self.wd.view(shape)
            g = grads[name] + wd * p
            st = self.state.setdefault(name, {})
            if opt == "adam":
                b1, b2, eps = 0.9, 0.999, 1e-8
                m = st["m"] = st["m"].mul_(b1).add_(g, alpha=1 - b1) if "m" in st else g * (1 - b1)
                v = st["v"] = st["v"].mul_(b2).addcmul_(g, g, value=1 - b2) if "v" in st else g * g * (1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
                p.sub_(lr / (1 - b1**t) * m / denom)
            elif opt == "sgd":
                buf = st["buf"] = st["buf"].mul_(mom).add_(g) if "buf" in st else g.clone()
                p.sub_(lr * buf)
            else:  # rmsprop, alpha 0.99 as torch.optim.RMSprop
                sq = st["sq"] = st["sq"].mul_(0.99).addcmul_(g, g, value=0.01) if "sq" in st else g * g * 0.01
                step = g / sq.sqrt().add_(1e-8)
                if mom > 0:
                    step = st["buf"] = st["buf"].mul_(mom).add_(step) if "buf" in st else step
                p.sub_(lr * step)

    def train_epoch(self, x_train: torch.Tensor, y_train: torch.Tensor, order: torch.Tensor,
                    on_step: Callable[[int, torch.Tensor, dict], None] | None = None) -> torch.Tensor:
        """One epoch: model i visits ``x_train[order[i]]`` in batches of ``batch_size``.

        Args:
            order: ``(N, n_used)`` sample indices per model (see `epoch_orders`).
            on_step: called as ``on_step(step, losses, grads)`` after each gradient computation.

        Returns:
            the mean training loss of each model over the epoch ``(N,)``.
        """
        bs = self.config.batch_size
        n_used = order.shape[1]
        total = torch.zeros(len(self), device=self.device)
        for step, start in enumerate(range(0, n_used, bs)):
            idx = order[:, start:start + bs].to(self.device)
            losses, grads = self.loss_and_grads(x_train[idx], y_train[idx])
            if on_step is not None:
                on_step(step, losses, grads)
            self.apply_gradients(grads)
            total += losses * idx.shape[1]
        return (total / n_used).cpu()

    # --------------------------------------------------------------- evaluate
    def activation_floats(self, input_shape: Sequence[int]) -> int:
        """Floats one model's forward pass holds per image (see `activation_floats`)."""
        return activation_floats(self.template, input_shape)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, *, chunk: int | None = None,
                 budget_floats: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and accuracy of every model on the shared set ``(x, y)``: two ``(N,)`` tensors.

        Args:
            chunk: images per forward pass; by default as many as keep the activations of all
                models within `budget_floats` (default 2**27 floats = 512 MiB on a CPU, 4 GiB on a
                GPU), so that 250 cnn_s models do not allocate gigabytes at once.
        """
        if chunk is None:
            if budget_floats is None:
                budget_floats = 2**30 if self.device.type == "cuda" else 2**27
            chunk = max(1, budget_floats // (len(self) * self.activation_floats(x.shape[1:])))
        self.template.eval()
        loss = torch.zeros(len(self), device=self.device)
        correct = torch.zeros(len(self), device=self.device)
        params = {k: v.detach() for k, v in self.params.items()}
        for start in range(0, len(x), chunk):
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            logits = self._eval_logits(params, xb)  # (N, b, classes)
            loss += nn.functional.cross_entropy(logits.flatten(0, 1), yb.repeat(len(self)), reduction="none").view(len(self), -1).sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
        return (loss / len(x)).cpu(), (correct / len(x)).cpu()

    def check_divergence(self) -> torch.Tensor:
        """Flag (for good) models whose weights hold NaN or inf or have exploded beyond `EXPLODED`;
        returns the ``(N,)`` flags."""
        ok = torch.stack([(torch.isfinite(p.detach()) & (p.detach().abs() <= EXPLODED)).flatten(1).all(1)
                          for p in self.params.values()]).all(0)
        self.diverged |= ~ok.cpu()
        return self.diverged.clone()


@dataclass
class PopulationResult:
    """Checkpoints of a trained population: one row per (member, checkpoint epoch)."""

    weights: np.ndarray  # (rows, D) float32
    rows: list[dict]  # model_id, epoch, seed, train/test loss and accuracy, diverged


# one CPU training step of a population keeps its activations within about this many floats
# (20 MB, a cache-sized working set): bench/bench_zoo.py measured cnn_s fastest at N=32-64 models
# for batch 10 and N=16 for batch 64, 1.7-2x faster than N=128-256; MLPs stay one population
CPU_STEP_FLOATS = 5_000_000


def activation_floats(template: nn.Module, input_shape: Sequence[int]) -> int:
    """Floats one model's forward pass holds per image (every layer's output summed).

    Runs `template` (best on the meta device, where it costs nothing) on a one-image input.
    """
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out[0].numel())) for m in template.children()]
    try:
        with torch.no_grad():
            template(torch.empty(1, *input_shape, device=next(template.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return max(1, sum(sizes))


def cpu_population_size(config: PopulationConfig, input_shape: Sequence[int]) -> int:
    """Models to train at once on a CPU: as many as keep a step within `CPU_STEP_FLOATS`."""
    with torch.device("meta"):
        template = create_zoo_model(config.architecture, **config.arch_kwargs)
    return max(1, CPU_STEP_FLOATS // (config.batch_size * activation_floats(template, input_shape)))


def train_population(config: PopulationConfig, members: Sequence[Member], x_train: torch.Tensor,
                     y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *, epochs: int,
                     checkpoint_epochs: Sequence[int] | None = None, device: str | torch.device = "cpu",
                     dropout_seed: int = 0, population_size: int | None = None,
                     progress: Callable[[int], None] | None = None) -> PopulationResult:
    """Train `members` together for `epochs` and collect checkpoints with their metrics.

    Every epoch evaluates train and test loss and accuracy of all models. Epoch 0
    is the initialisation. Dropout noise comes from a forked global RNG seeded
    with `dropout_seed` (restored afterwards), so results are reproducible
    without touching the caller's random state.

    Args:
        checkpoint_epochs: epochs to store (default: 0 .. epochs).
        population_size: train the members in consecutive groups of this many, one after the
            other (default: all at once); see `cpu_population_size`.
        progress: called with the number of models after each epoch.
    """
    keep = sorted(set(range(epochs + 1) if checkpoint_epochs is None else checkpoint_epochs))
    if keep and (keep[0] < 0 or keep[-1] > epochs):
        raise ValueError(f"checkpoint epochs must lie in [0, {epochs}], got {keep}")
    size = len(members) if population_size is None else max(1, population_size)
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    weights: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(dropout_seed)
        for start in range(0, len(members), size):
            pop = Population(config, members[start:start + size], device=device)
            _train_and_record(pop, x_train, y_train, x_test, y_test, epochs, keep, weights, rows, progress)
    order = sorted(range(len(rows)), key=lambda r: (rows[r]["model_id"], rows[r]["epoch"]))
    stacked = np.concatenate(weights).astype(np.float32) if weights else np.zeros((0, pop.layout.num_params), np.float32)
    return PopulationResult(stacked[order], [rows[r] for r in order])


def _train_and_record(pop: Population, x_train, y_train, x_test, y_test, epochs: int, keep: list[int],
                      weights: list, rows: list, progress) -> None:
    """Train one population for `epochs`, appending the kept checkpoints to `weights` and `rows`."""
    x_train, y_train = x_train.to(pop.device), y_train.to(pop.device)
    x_test, y_test = x_test.to(pop.device), y_test.to(pop.device)
    n_train, fraction = len(x_train), pop.config.train_fraction
    orders = [epoch_orders(m.seed, n_train, fraction) for m in pop.members]  # one epoch at a time, never all
    for epoch in range(epochs + 1):
        if epoch > 0:
            pop.train_epoch(x_train, y_train, torch.stack([next(o) for o in orders]))  # (N, n_used)
            if progress is not None:
                progress(len(pop))
        if epoch not in keep:
            continue
        diverged = pop.check_divergence()
        tr_loss, tr_acc = pop.evaluate(x_train, y_train)
        te_loss, te_acc = pop.evaluate(x_test, y_test)
        weights.append(pop.vectors().numpy())
        for i, m in enumerate(pop.members):
            rows.append({"model_id": m.model_id, "epoch": epoch, "seed": m.seed,
                         "train_loss": float(tr_loss[i]), "train_acc": float(tr_acc[i]),
                         "test_loss": float(te_loss[i]), "test_acc": float(te_acc[i]),
                         "diverged": bool(diverged[i] or not math.isfinite(float(tr_loss[i])))})
