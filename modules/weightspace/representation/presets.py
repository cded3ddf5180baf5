"""The representation-learner configurations of the 2021 experiments, in one place.

`config_2021(name)` gives the settings of the 2021 experiment folder `name`
(reference: the per-folder table of the 2021 code): the autoencoder, projection
head, gamma and the schedule (batch 500, Adam lr 1e-4, weight decay 1e-9,
10 epochs per ray.tune iteration). `cpu_schedule` shortens any of them to what
2 CPU cores can run in minutes.
"""

from __future__ import annotations

import copy

import torch

from weightspace.representation.config import AugmentConfig, HeadConfig, LearnerConfig, LossConfig, TrainConfig
from weightspace.representation.encoders.neuron_set import NeuronSetConfig
from weightspace.representation.encoders.transformer import TransformerConfig

# name: (d_model, n_blocks, n_heads, d_ff, latent, head (layers, hidden, out), gamma, contrast, iterations)
_TABLE_2021 = {
    "tetris_seed": (256, 2, 4, 512, 50, (3, 50, 20), 0.5, "ntxent", 100),
    "tetris_hyp": (256, 2, 4, 900, 50, (3, 50, 20), 0.5, "ntxent", 100),
    "mnist_seed": (800, 2, 4, 900, 700, (4, 400, 50), 0.1, "ntxent", 50),
    "fashion_mnist_seed": (800, 2, 4, 900, 700, (4, 400, 50), 0.1, "ntxent", 50),
    "mnist_hyp": (512, 4, 4, 1000, 1200, (4, 400, 50), 0.1, "ntxent", 20),
    "fashion_mnist_hyp": (512, 4, 4, 1000, 1200, (4, 400, 50), 0.85, "ntxent", 20),
    "svhn_hyp": (512, 4, 4, 1000, 1200, (4, 400, 50), 0.85, "ntxent", 25),
    "cifar_hyp": (512, 4, 4, 1000, 1200, (4, 400, 50), 0.5, "positive", 25),
}


def list_configs_2021() -> list[str]:
    return sorted(_TABLE_2021)


def config_2021(name: str) -> tuple[LearnerConfig, int]:
    """The 2021 configuration of experiment `name` and its number of ray.tune iterations (x 10 epochs).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _TABLE_2021:
        raise ValueError(f"no 2021 configuration named {name!r}; known: {list_configs_2021()}")
    d, blocks, heads, ff, latent, (h_layers, h_hidden, h_out), gamma, contrast, iterations = _TABLE_2021[name]
    config = LearnerConfig(
        encoder=TransformerConfig(name="transformer_neuron", d_model=d, n_heads=heads, n_blocks=blocks, d_ff=ff,
                                  latent_dim=latent, dropout=0.1, compression_token=True),
        head=HeadConfig(layers=h_layers, hidden=h_hidden, out_dim=h_out),
        loss=LossConfig(gamma=gamma, contrast=contrast, temperature=0.1),
        augment=AugmentConfig(permute=True, erase_p=0.5, erase_scale=(0.02, 0.33), erase_mode="block"),
        train=TrainConfig(batch_size=500, epochs_per_step=10, lr=1e-4, weight_decay=1e-9, seed=42),
    )
    return config, iterations


def config_neuron_set(*, gamma: float = 0.5, width: int = 1024, code: bool = False,
                      target: str = "statistics", output_weight: float = 0.5) -> LearnerConfig:
    """The permutation-invariant learner that replaces the 2021 transformer as the folders' default.

    `neuron_set` encoder (per-neuron tanh MLP of `width` features pooled by mean / max / min over each
    hidden layer, plus the pooled standardised tokens), projection head 2/256/64, NT-Xent (tau 0.1) on two erased views mixed
    at `gamma` with the reconstruction of the invariant weight statistics; Adam at lr 1e-3, batch 200, fp32
    (its matrix products are too small for bf16 to pay on a CPU). Permutation views are off: they cannot
    change this encoder's output.

    The embedding holds only what training produces. `code` appends the untrained invariant statistics
    code with 5 hinge knots, as earlier versions did; that code is a baseline of its own
    (`weightspace.downstream.features.InvariantCode`), so an embedding carrying it is no longer a
    measure of what self-supervision learned.

    `target` "outputs" reconstructs the networks' logits on 64 data-free queries instead of the statistics,
    "both" the two (the outputs weighing `output_weight`); the pipeline fills the zoo's architecture in.
    """
    return LearnerConfig(
        encoder=NeuronSetConfig(width=width, project_dim=0, activation="tanh", code=code, target=target,
                                output_weight=output_weight),
        head=HeadConfig(layers=2, hidden=256, out_dim=64),
        loss=LossConfig(gamma=gamma, temperature=0.1),
        augment=AugmentConfig(permute=False, erase_p=0.5),
        train=TrainConfig(batch_size=200, lr=1e-3, scheduler="none", precision="fp32", epochs_per_step=2),
    )


def cpu_schedule(config: LearnerConfig, *, batch_size: int = 100, lr: float = 5e-4, epochs_per_step: int = 5,
                 precision: str | None = None) -> LearnerConfig:
    """A copy of `config` with a schedule that fits a few CPU minutes: smaller batches, a larger
    learning rate (more and larger steps in the same time) and, by default, `cpu_precision()`.
    The model and the loss stay as they are."""
    config = copy.deepcopy(config)
    config.train.batch_size, config.train.lr = batch_size, lr
    config.train.epochs_per_step, config.train.precision = epochs_per_step, precision or cpu_precision()
    return config


def cpu_precision() -> str:
    """bf16 autocast where this machine's CPU computes bf16 natively (AVX512-BF16 or AMX: about twice the fp32
    throughput), else fp32: emulated, bf16 autocast trained the 2021 transformer ten times slower than fp32 on an
    AVX2-only CPU (0.67 s against 7.0 s a step)."""
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN, or without this check
        native = False
    return "bf16" if native else "fp32"
