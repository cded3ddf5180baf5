"""11_tetris_seed: the embedded default. The Tetris seed zoo, generated here when datasets/ lacks it.

The 2021 configuration (d 256, 2 blocks, 4 heads, ff 512, latent 50, projection head 3/50/20,
batch 500, gamma 0.5, 1000 epochs on every checkpoint) takes hours on a CPU. This one keeps the
architecture and the loss and cuts the schedule so that the whole pipeline runs in minutes on
2 CPU cores; see NOTES.
"""

from weightspace.experiment import Experiment
from weightspace.representation.presets import config_2021, cpu_schedule

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
    representation=cpu_schedule(config_2021("tetris_seed")[0]),
    iterations=12,
    notes=NOTES,
)
