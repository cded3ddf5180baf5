"""`2021`: the transformer autoencoder of Schürholt et al. (2021) with SimCLR + reconstruction.

Its model, head and loss are those of one 2021 experiment folder (`config_2021(size)`: "tetris_seed" by
default). Schedules:

- ``cpu``: 12 evaluations x 5 epochs at batch 100, lr 5e-4, bf16 autocast where the CPU computes bf16 natively,
  else fp32 (`cpu_schedule`): minutes on 2 cores.
- ``2021``: the 2021 folders' own schedule, batch 500, Adam lr 1e-4, 10 epochs per evaluation, as many
  evaluations as the folder ran (tetris: 100, the seed CNN zoos: 50), in fp32.
- ``gpu``: the 2021 schedule in bf16 autocast, the project's accelerator path.

Option ``stop_lr`` ends training once the plateau scheduler has lowered the learning rate to it: at 1e-8 that is
torch's floor for this schedule (6.6e-9 after eight reductions), from where the rest of tetris_seed's 1000 epochs
could move no parameter of the encoder by more than about 1e-4 in all (docs/research_log.md).
"""

from __future__ import annotations

from dataclasses import replace

from weightspace.pipeline.learners.registry import LearnerSpec, register_learner
from weightspace.representation.encoders.transformer import TransformerConfig
from weightspace.representation.presets import config_2021, cpu_schedule

CPU_ITERATIONS = 12  # x 5 epochs = 60


@register_learner("2021", schedules=("cpu", "2021", "gpu"))
def transformer_2021(schedule: str = "cpu", *, size: str = "tetris_seed", latent_dim: int | None = None,
                     stop_lr: float = 0.0) -> LearnerSpec:
    config, iterations = config_2021(size)
    enc = config.encoder
    assert isinstance(enc, TransformerConfig)  # config_2021 always builds the transformer
    if latent_dim is not None:
        enc = config.encoder = replace(enc, latent_dim=int(latent_dim))
    model = (f"the 2021 transformer of the {size} folder (neuron tokens + compression token, d {enc.d_model}, "
             f"{enc.n_blocks} blocks, {enc.n_heads} heads, ff {enc.d_ff}, latent {enc.latent_dim}), NT-Xent "
             f"(tau 0.1) + reconstruction at gamma {config.loss.gamma}, permutation + erasing augmentations")
    ended = f", ended at lr {stop_lr:g}" if stop_lr else ""
    stop_note = f", ended once ReduceLROnPlateau has lowered the rate to {stop_lr:g} or below" if stop_lr else ""
    if schedule == "cpu":
        short = cpu_schedule(config)
        short.train = replace(short.train, stop_lr=float(stop_lr))
        precision = "bf16 autocast" if short.train.precision == "bf16" else short.train.precision
        return LearnerSpec("2021", f"2021 transformer (cpu schedule{ended})", short, CPU_ITERATIONS,
                           notes=f"{model}; on a CPU schedule: {CPU_ITERATIONS} x 5 epochs at batch 100, lr 5e-4, "
                                 f"{precision}{stop_note}, instead of {iterations} x 10 epochs at batch 500, lr 1e-4.")
    config.train = replace(config.train, stop_lr=float(stop_lr), precision="bf16" if schedule == "gpu" else "fp32")
    return LearnerSpec("2021", f"2021 transformer ({schedule} schedule{ended})", config, iterations,
                       notes=f"{model}; the 2021 schedule: {iterations} x 10 epochs at batch 500, Adam lr 1e-4"
                             + (", bf16 autocast" if schedule == "gpu" else "") + stop_note + ".")
