"""12_tetris_hyp: the Tetris hyperparameter zoo, offline. Predicting activation, init, dropout, lr and weight decay.

The 2021 configuration is the Tetris-SEED one with a wider feed-forward layer (d 256, 2 blocks,
4 heads, ff 900, latent 50, projection head 3/50/20, batch 500, gamma 0.5, 1000 epochs on every
checkpoint), which takes hours on a CPU. This one keeps the architecture and the loss and cuts the
schedule as 11_tetris_seed does, so the whole pipeline runs in minutes on 2 CPU cores; see NOTES.
"""

from weightspace.experiment import Experiment
from weightspace.representation.presets import config_2021, cpu_schedule

NOTES = (
    "Same transformer as 2021 (neuron tokens + compression token, d 256, 2 blocks, 4 heads, ff 900, latent 50), "
    "projection head 3/50/20, NT-Xent (tau 0.1) + reconstruction at gamma 0.5, permutation + erasing "
    "augmentations. Targets: accuracy, ggap, epoch and the varied hyperparameters (activation, init, dropout, "
    "lr, weight_decay). The zoo is the tetris_hyp preset (a full 4 x 4 x 2 x 2 x 2 grid x 8 seeds), not the "
    "2021 Zenodo file unless datasets/12_tetris_hyp holds it. Gives up, to fit 2 CPU cores (the schedule of "
    "11_tetris_seed): 1000 epochs become 12 x 5 = 60 at batch 100, lr 5e-4, bf16 autocast, and 6 of the 26 "
    "checkpoints per model are used (epochs 0, 5, 10, 15, 20, 25)."
)

EXPERIMENT = Experiment(
    name="tetris_hyp",
    preset="tetris_hyp",
    zenodo="12_tetris_hyp",
    zoo_epochs=(0, 5, 10, 15, 20, 25),
    baseline_extras=False,
    representation=cpu_schedule(config_2021("tetris_hyp")[0]),
    iterations=12,
    notes=NOTES,
)
