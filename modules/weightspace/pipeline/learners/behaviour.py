"""`behaviour`: the behaviour-anchored weight autoencoder (`weightspace.representation.encoders.behaviour_ae`).

The 2021 transformer's model (d 256, 2 blocks, 4 heads, ff 512) with a latent of 128, its decoder rebuilding
the weights, the rebuilt network's logits on 256 of the task's training inputs (no labels) matched to the
original's at weight `beta` (1 by default; `balance="spread"` weighs the two parts by their spread on the training
split instead of in the zoo's units); no contrastive term by default (gamma 0: the field measured it adding
about nothing once structure and behaviour are both reconstructed), permutation and erasing views as in 2021.
Schedules: ``cpu`` (12 evaluations x 5 epochs at batch 100, lr 5e-4), ``gpu`` (the same in bf16 at batch 500).
"""

from __future__ import annotations

from dataclasses import replace

from weightspace.pipeline.learners.registry import LearnerSpec, register_learner
from weightspace.representation.config import AugmentConfig, HeadConfig, LearnerConfig, LossConfig, TrainConfig
from weightspace.representation.encoders.behaviour_ae import BehaviourAEConfig

ITERATIONS = 12  # x 5 epochs


@register_learner("behaviour", schedules=("cpu", "gpu"))
def behaviour(schedule: str = "cpu", *, beta: float = 1.0, gamma: float = 0.0, queries: str = "task",
              latent_dim: int = 128, n_queries: int = 256, balance: str = "units") -> LearnerSpec:
    config = LearnerConfig(
        encoder=BehaviourAEConfig(latent_dim=latent_dim, beta=beta, queries=queries, n_queries=n_queries,
                                  balance=balance),
        head=HeadConfig(layers=3, hidden=50, out_dim=20),
        loss=LossConfig(gamma=gamma, temperature=0.1),
        augment=AugmentConfig(permute=True, erase_p=0.5, erase_scale=(0.02, 0.33), erase_mode="block"),
        train=TrainConfig(batch_size=100, epochs_per_step=5, lr=5e-4, weight_decay=1e-9, precision="fp32"),
    )
    if schedule == "gpu":
        config.train = replace(config.train, batch_size=500, precision="bf16")
    where = "the task's training inputs (no labels)" if queries == "task" else f"{queries} data-free inputs"
    count = "" if n_queries == 256 else f"{n_queries} "
    extras = ((f", gamma {gamma:g}" if gamma else "") + (", spread-balanced" if balance == "spread" else "")
              + (f", latent {latent_dim}" if latent_dim != 128 else ""))
    return LearnerSpec("behaviour", f"behaviour AE (beta {beta:g}, {count}{queries} queries{extras})", config, ITERATIONS,
                       notes=f"the 2021 transformer (d 256, 2 blocks, latent {latent_dim}) rebuilding the weights, "
                             f"the rebuilt network's logits on {n_queries} of {where} matched to the original's at beta "
                             f"{beta:g}" + (" (each part weighed by its training spread)" if balance == "spread" else "")
                             + f", contrastive gamma {gamma:g}; {ITERATIONS} x 5 epochs at batch 100, lr 5e-4.")
