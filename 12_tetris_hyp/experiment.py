"""12_tetris_hyp: the Tetris hyperparameter zoo, offline. Predicting activation, init, dropout, lr and weight decay.

The 2021 configuration is the Tetris-SEED one with a wider feed-forward layer (d 256, 2 blocks,
4 heads, ff 900, latent 50, projection head 3/50/20, batch 500, gamma 0.5, 1000 epochs on every
checkpoint), which takes hours on a CPU. This one keeps the architecture and the loss and cuts the
schedule as 11_tetris_seed does, so the whole pipeline runs in minutes on 2 CPU cores; see NOTES.
"""

from weightspace.experiment import Experiment
from weightspace.representation.config import (AugmentConfig, EncoderConfig, ExperimentConfig, HeadConfig,
                                               LossConfig, TrainConfig)

NOTES = (
    "Same transformer as 2021 (neuron tokens + compression token, d 256, 2 blocks, 4 heads, ff 900, latent 50), "
    "projection head 3/50/20, NT-Xent (tau 0.1) + reconstruction at gamma 0.5, permutation + erasing "
    "augmentations. Targets: accuracy, ggap, epoch and the varied hyperparameters (activation, init, dropout, "
    "lr, weight_decay). The zoo is the tetris_hyp preset (a full 4 x 4 x 2 x 2 x 2 grid x 8 seeds), not the "
    "2021 Zenodo file unless datasets/12_tetris_hyp holds it. Gives up, to fit 2 CPU cores: 1000 epochs become "
    "20 x 2 = 40, and 6 of the 26 checkpoints per model are used (epochs 0, 5, 10, 15, 20, 25)."
)

EXPERIMENT = Experiment(
    name="tetris_hyp",
    preset="tetris_hyp",
    zenodo="12_tetris_hyp",
    zoo_epochs=(0, 5, 10, 15, 20, 25),
    baseline_extras=False,
    representation=ExperimentConfig(
        encoder=EncoderConfig(name="transformer_neuron", d_model=256, n_heads=4, n_blocks=2, d_ff=900,
                              latent_dim=50, dropout=0.1),
        head=HeadConfig(layers=3, hidden=50, out_dim=20),
        loss=LossConfig(gamma=0.5, contrast="ntxent", temperature=0.1),
        augment=AugmentConfig(permute=True, erase_p=0.5, erase_scale=(0.02, 0.33), noise_std=0.0),
        train=TrainConfig(batch_size=500, epochs_per_step=2, lr=1e-4, weight_decay=1e-9, seed=42),
    ),
    iterations=20,
    notes=NOTES,
)
