"""Training the representation learner: `Learner` (one training state), `fit`, `embed`.

A training step draws two views of a batch (permutation, then erasing/noise),
runs both through the autoencoder as one batch of 2B, and minimises
``gamma * contrast(head(z_i), head(z_j)) + (1 - gamma) * MSE(reconstruction, target)``.

Determinism: all randomness comes from generators seeded by ``TrainConfig.seed``
(initialisation, shuffling, augmentation). Dropout can only draw from torch's
global RNG, so each step runs inside `torch.random.fork_rng`, seeded from the
learner's generator: the caller's global RNG state is restored afterwards and
the step is reproducible after a checkpoint restore.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from weightspace.data.dataset import ZooDataset
from weightspace.io.atomic import append_text, atomic_file, write_json
from weightspace.layout import WeightLayout
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.checkpoint import CheckpointError, first_line, not_ours, read_checkpoint
from weightspace.representation.config import LearnerConfig, config_to_dict
from weightspace.representation.function_target import row_networks
from weightspace.representation.heads import ProjectionHead
from weightspace.representation.losses import build_loss
from weightspace.representation.registry import create_autoencoder
from weightspace.zoo import devices as zoo_devices

EvaluateFn = Callable[[nn.Module, Mapping[str, ZooDataset]], Mapping[str, float]]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the step that produced it was not applied."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" is cuda when available, else cpu; an unknown or absent device raises `InputError`."""
    return zoo_devices.resolve_device(name)


@contextmanager
def _scoped_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG (used by dropout) seeded, restoring the caller's state after."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[device.index or 0].manual_seed(seed)
        yield


def _batches(weights: torch.Tensor | np.ndarray, batch_size: int,
             networks: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Consecutive float32 batches of ``(S, D)`` rows, each with its rows' network codes (None where
    `networks` is); arrays (memory maps too) are read one batch at a time."""
    for start in range(0, weights.shape[0], batch_size):
        yield (torch.as_tensor(np.asarray(weights[start:start + batch_size]) if not torch.is_tensor(weights)
                               else weights[start:start + batch_size], dtype=torch.float32),
               None if networks is None else networks[start:start + batch_size])


class Learner:
    """Autoencoder, projection head, loss, optimizer, scheduler and generators of one run.

    Args:
        config: the run's configuration (``config.data`` is not used here).
        layout: layout of the weight vectors.
        device: overrides ``config.train.device``.
    """

    def __init__(self, config: LearnerConfig, layout: WeightLayout, *, device: str | torch.device | None = None):
        self.config, self.layout = config, layout
        tc = config.train
        self.device = torch.device(device) if device is not None else resolve_device(tc.device)
        init = torch.Generator().manual_seed(tc.seed)
        # every registered builder returns an Autoencoder (the registry, a leaf module, types it nn.Module)
        self.model = cast(Autoencoder, create_autoencoder(config.encoder, layout, generator=init).to(self.device))
        hc = config.head
        self.head = ProjectionHead(self.model.trained_dim, layers=hc.layers, hidden=hc.hidden, out_dim=hc.out_dim,
                                   batch_norm=hc.batch_norm, generator=init).to(self.device)
        self.loss = build_loss(config.loss, layout).to(self.device)
        self.symmetry, self.corruption = config.augment.build(layout)
        self.params = [*self.model.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None  # ReduceLROnPlateau is one too
        if tc.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=tc.plateau_factor, patience=tc.plateau_patience)
        elif tc.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=tc.epochs)
        else:
            self.scheduler = None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=tc.precision == "fp16")
        self.generator = torch.Generator().manual_seed(tc.seed + 1)  # shuffling and dropout seeds
        self.aug_generator = torch.Generator(self.device).manual_seed(tc.seed + 2)  # views
        self.step = 0
        self.epoch = 0
        self.history: list[dict] = []
        self.stop_reason: str | None = None

    # ------------------------------------------------------------ training
    @property
    def finished(self) -> bool:
        """Whether the learning rate has fallen to ``TrainConfig.stop_lr`` (never when it is 0).

        With the plateau scheduler and ``stop_lr`` 1e-8 this is the point where torch's ReduceLROnPlateau stops
        lowering the rate (it skips a reduction smaller than its ``eps``, 1e-8): from 1e-4 at factor 0.3, eight
        reductions reach 6.6e-9 and every later epoch moves each weight by at most a few times that per step.
        """
        stop = self.config.train.stop_lr
        return stop > 0 and self.optimizer.param_groups[0]["lr"] <= stop

    def _autocast(self):
        tc = self.config.train
        return torch.autocast(self.device.type, dtype=_DTYPES.get(tc.precision), enabled=tc.precision in _DTYPES)

    def row_networks(self, dataset: ZooDataset) -> torch.Tensor | None:
        """``(N,)`` each row's network code where the loss runs networks that differ in activation, else None:
        the samples' activation column is the one property a loss may read (`function_target.NETWORK_COLUMNS`)."""
        variants = self.model.network_variants
        return row_networks(variants, dataset.properties) if variants else None

    def views(self, x: torch.Tensor, generator: torch.Generator, *,
              corrupt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(2B, D)``: two independent views of `x` stacked, and what to reconstruct."""
        clean = torch.cat([self.symmetry(x, generator), self.symmetry(x, generator)])
        if not corrupt:
            return clean, clean
        inputs = self.corruption(clean, generator)
        return inputs, (clean if self.config.loss.recon_target == "clean" else inputs)

    def compute_loss(self, x: torch.Tensor, generator: torch.Generator, *, corrupt: bool = True,
                     networks: torch.Tensor | None = None):
        """`LossParts` of one batch ``(B, D)`` (`networks` ``(B,)``: each row's code, `row_networks`)."""
        inputs, targets = self.views(x, generator, corrupt=corrupt)
        both = None if networks is None else torch.cat([networks, networks]).to(self.device)  # as the views
        with self._autocast():
            z, y = self.model(inputs, both)
            p = self.head(z)
        b = x.shape[0]
        p = p.float()
        return self.loss(p[:b], p[b:], y.float(), self.model.reconstruction_target(targets, both))

    def train_step(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> dict[str, float]:
        """One optimizer step on the batch ``(B, D)`` (of networks `networks`, where they differ); raises
        `NonFiniteLossError` before applying a NaN step."""
        self.model.train()
        self.head.train()
        seed = int(torch.randint(0, 2**62, (), generator=self.generator))
        with _scoped_global_rng(seed, self.device):
            parts = self.compute_loss(x.to(self.device, non_blocking=True), self.aug_generator, networks=networks)
            total = parts.total.detach().item()
            if not np.isfinite(total):
                raise NonFiniteLossError(
                    f"loss became {total} at step {self.step + 1} (epoch {self.epoch + 1}); training stopped before "
                    f"applying it, so the model holds the state after step {self.step} and checkpoints already "
                    "written are kept. Lower TrainConfig.lr, set TrainConfig.grad_clip, or use precision='fp32'.",
                    self.step + 1)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(parts.total).backward()
            if self.config.train.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.params, self.config.train.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        return {"loss": total, "loss_contrast": parts.contrast.detach().item(), "loss_recon": parts.recon.detach().item()}

    def train_epoch(self, dataset: ZooDataset) -> dict[str, float]:
        """One pass over `dataset` in shuffled full batches; steps the scheduler; returns mean losses."""
        bs = self.config.train.batch_size
        n = len(dataset)
        if n < bs:
            raise ValueError(f"the {dataset.split} split holds {n} samples, fewer than one batch "
                             f"(TrainConfig.batch_size={bs}); lower batch_size or use a larger zoo")
        networks = self.row_networks(dataset)
        if self.step == 0:  # what the encoder derives from the training weights
            self.model.fit_input_scale(dataset.weights, networks)
        order = torch.randperm(n, generator=self.generator)
        sums: dict[str, float] = {}
        steps = n // bs
        for b in range(steps):
            rows = order[b * bs:(b + 1) * bs]
            for key, value in self.train_step(dataset.weights[rows], None if networks is None else networks[rows]).items():
                sums[key] = sums.get(key, 0.0) + value / steps
        self.epoch += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(sums["loss"])
        elif self.scheduler is not None:
            self.scheduler.step()
        names = {"loss": "loss_train", "loss_contrast": "loss_train_contrast", "loss_recon": "loss_train_recon"}
        return {names[k]: v for k, v in sums.items()} | {"lr": self.optimizer.param_groups[0]["lr"], "epoch": self.epoch}

    # ---------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, datasets: Mapping[str, ZooDataset], *, loss_splits: Sequence[str] | None = None) -> dict[str, float]:
        """Per split: ``rsq_<split>``, the reconstruction R² of what the encoder rebuilds (the weights, or its
        invariant statistics: ``model.reconstruction_kind``), and (for the splits in `loss_splits`, default
        all) ``loss_<split>[_contrast|_recon]`` under permuted, un-erased views.

        Uses eval mode (no dropout, batch-norm running statistics), all samples
        (no dropped last batch), and a generator seeded afresh on every call, so
        evaluating does not change what training does next. `fit` and the tune
        trainable leave "train" out of `loss_splits`: its losses are those of the training epoch.
        """
        out: dict[str, float] = {}
        bs = self.config.train.eval_batch_size
        was_training = self.model.training
        self.model.eval()
        self.head.eval()
        try:
            for split, ds in datasets.items():
                if not len(ds):
                    continue
                networks = self.row_networks(ds)
                if loss_splits is None or split in loss_splits:
                    gen = torch.Generator(self.device).manual_seed(self.config.train.seed + 3)
                    sums = np.zeros(3)
                    for x, codes in _batches(ds.weights, bs, networks):
                        parts = self.compute_loss(x.to(self.device), gen, corrupt=False, networks=codes)
                        sums += np.array([float(p) for p in parts]) * x.shape[0] / len(ds)
                    out |= {f"loss_{split}": float(sums[0]), f"loss_{split}_contrast": float(sums[1]),
                            f"loss_{split}_recon": float(sums[2])}
                out[f"rsq_{split}"] = reconstruction_r2(self.model, ds.weights, batch_size=bs, device=self.device,
                                                        networks=networks)
        finally:
            self.model.train(was_training)
            self.head.train(was_training)
        return out

    # --------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue training bit-for-bit: tensors and plain values only."""
        return {
            "model": self.model.state_dict(), "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(), "aug_generator": self.aug_generator.get_state(),
            "step": self.step, "epoch": self.epoch, "config": config_to_dict(self.config),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.aug_generator.set_state(state["aug_generator"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write `state_dict` to `path` atomically (a crash never leaves half a checkpoint)."""
        path = Path(path)
        with atomic_file(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def load(self, path: str | os.PathLike) -> "Learner":
        """Continue from the checkpoint `Learner.save` wrote to `path`.

        Raises:
            CheckpointError: `path` is not such a checkpoint, or one of another learner (the file named).
        """
        state = read_checkpoint(path)
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(not_ours(str(path), f"it does not fit this learner: {first_line(err)}")) from None
        return self


@torch.no_grad()
def embed(model: Autoencoder, weights: torch.Tensor | np.ndarray | ZooDataset, *, batch_size: int = 1000,
          device: str | torch.device | None = None) -> torch.Tensor:
    """Embeddings ``(S, embedding_dim)`` of weights ``(S, D)``, computed in eval mode (then the mode is restored)."""
    if isinstance(weights, ZooDataset):
        weights = weights.weights
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts = [model.encode(x.to(device)).float().cpu() for x, _ in _batches(weights, batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.embedding_dim)


@torch.no_grad()
def reconstruction_r2(model: Autoencoder, weights: torch.Tensor | np.ndarray, *, batch_size: int = 1000,
                      device: str | torch.device | None = None, networks: torch.Tensor | None = None) -> float:
    """1 - SSE / SST of reconstructing ``model.reconstruction_target`` of `weights` ``(S, D)`` (SST around this
    set's per-entry mean), in eval mode: the weights themselves, or what ``model.reconstruction_kind`` names
    (`networks`: each row's code, where the model runs networks that differ).

    Each split is scored against its own variance (2021 divided by the test set's, bug B10).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    sse = 0.0
    total = total_sq = torch.zeros((), dtype=torch.float64)  # (D,) running sums once a batch is in
    try:
        for batch, codes in _batches(weights, batch_size, networks):
            batch = batch.to(device)
            codes = None if codes is None else codes.to(device)
            x = model.reconstruction_target(batch, codes).float().cpu()
            sse += float((model(batch, codes)[1].float().cpu() - x).double().square().sum())
            x = x.double()
            total, total_sq = total + x.sum(0), total_sq + x.square().sum(0)  # (D,) running sums
    finally:
        model.train(was_training)
    n = weights.shape[0]
    sst = float((total_sq - total.square() / n).sum()) if n else 0.0
    return 1.0 - sse / sst if sst > 0 else float("nan")


def fit(config: LearnerConfig, train: ZooDataset, *, val: ZooDataset | None = None, test: ZooDataset | None = None,
        epochs: int | None = None, learner: Learner | None = None, out_dir: str | os.PathLike | None = None,
        evaluate_every: int = 1, evaluate_fn: EvaluateFn | None = None, progress: bool = True) -> Learner:
    """Train for `epochs` (default ``config.train.epochs``) and return the `Learner`.

    Args:
        learner: continue this learner (e.g. one restored with `Learner.load`) instead of a new one;
            its own config is used then.
        out_dir: if given, ``config.json``, ``history.jsonl`` and ``checkpoint.pt`` (after every epoch) go there.
        evaluate_every: evaluate on every split every this many epochs (0: never).
        evaluate_fn: extra metrics ``evaluate_fn(model, {"train": ..., "val": ..., "test": ...})``, e.g. probe scores.

    A NaN or infinite loss stops training with a warning naming the step
    (also in ``learner.stop_reason``); the model and the checkpoint on disk keep the last good state.
    Training also ends once the learning rate reaches ``TrainConfig.stop_lr`` (`Learner.finished`; the reason
    is in ``learner.stop_reason``).

    Raises:
        ValueError: the train split is smaller than one batch.
    """
    if learner is not None:
        config = learner.config
    else:
        learner = Learner(config, train.layout)
    bs = config.train.batch_size
    if len(train) < bs:
        raise ValueError(f"the train split holds {len(train)} samples, fewer than one batch "
                         f"(TrainConfig.batch_size={bs}); lower batch_size or use a larger zoo")
    splits = {k: d for k, d in (("train", train), ("val", val), ("test", test)) if d is not None and len(d)}
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config_to_dict(config))
    bar = tqdm(range(epochs if epochs is not None else config.train.epochs), disable=not progress, desc="fit")
    for _ in bar:
        try:
            row = learner.train_epoch(train)
        except NonFiniteLossError as err:
            learner.stop_reason = str(err)
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)
            break
        if evaluate_every and learner.epoch % evaluate_every == 0:
            row |= learner.evaluate(splits, loss_splits=["val", "test"])
            if evaluate_fn is not None:
                row |= dict(evaluate_fn(learner.model, splits))
        learner.history.append(row)
        bar.set_postfix({k: f"{row[k]:.4g}" for k in ("loss_train", "rsq_train", "rsq_val") if k in row})
        if out is not None:
            append_text(out / "history.jsonl", json.dumps(row) + "\n")  # whole lines only, synced
            learner.save(out / "checkpoint.pt")
        if learner.finished:
            learner.stop_reason = (f"the learning rate fell to {row['lr']:.3g} <= TrainConfig.stop_lr at epoch "
                                   f"{learner.epoch}")
            break
    return learner
