"""11_tetris_seed: the embedded default. The Tetris seed zoo, generated here when datasets/ lacks it.

The 2021 configuration (d 256, 2 blocks, 4 heads, ff 512, latent 50, projection head 3/50/20,
batch 500, gamma 0.5, 1000 epochs on every checkpoint) takes hours on a CPU. This one keeps the
architecture and the loss and cuts the schedule so that the whole pipeline runs in minutes on
2 CPU cores; see NOTES.
"""

from weightspace.experiment import Experiment
from weightspace.representation.config import (AugmentConfig, EncoderConfig, ExperimentConfig, HeadConfig,
                                               LossConfig, TrainConfig)

NOTES = (
    "Same transformer (neuron tokens + compression token, d 256, 2 blocks, 4 heads, ff 512, latent 50), "
    "projection head 3/50/20, NT-Xent (tau 0.1) + reconstruction at gamma 0.5, permutation + erasing "
    "augmentations as in 2021. Gives up, to fit a 2-CPU budget of about 10 minutes: 1000 epochs become "
    "12 x 5 = 60; 6 of the 26 checkpoints per model are used (epochs 0, 5, 10, 15, 20, 25); batch 100 "
    "instead of 500 with lr 5e-4 instead of 1e-4 (more, larger steps in the same time); bf16 autocast "
    "(twice the fp32 throughput on CPU)."
)

EXPERIMENT = Experiment(
    name="tetris_seed",
    preset="tetris_seed",
    zenodo="11_tetris_seed",
    zoo_epochs=(0, 5, 10, 15, 20, 25),
    baseline_extras=False,
    representation=ExperimentConfig(
        encoder=EncoderConfig(name="transformer_neuron", d_model=256, n_heads=4, n_blocks=2, d_ff=512,
                              latent_dim=50, dropout=0.1),
        head=HeadConfig(layers=3, hidden=50, out_dim=20),
        loss=LossConfig(gamma=0.5, contrast="ntxent", temperature=0.1),
        augment=AugmentConfig(permute=True, erase_p=0.5, erase_scale=(0.02, 0.33), noise_std=0.0),
        train=TrainConfig(batch_size=100, epochs_per_step=5, lr=5e-4, weight_decay=1e-9, precision="bf16",
                          seed=42),
    ),
    iterations=12,
    notes=NOTES,
)
