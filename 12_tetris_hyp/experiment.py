"""12_tetris_hyp: the Tetris hyperparameter zoo, offline. Predicting activation, init, dropout, lr and weight decay.

The default learner is `neuron_set` (the one of 11_tetris_seed; chosen on validation across the
offline zoos by bench/representation_quality.py). `--variant 2021` runs the 2021 configuration,
the Tetris-SEED transformer with a wider feed-forward layer (ff 900), on the CPU schedule of
11_tetris_seed; see NOTES_2021.
"""

from weightspace.pipeline.experiment import Experiment, Variant
from weightspace.representation.presets import config_2021, config_neuron_set, cpu_schedule

NOTES = (
    "Learner: neuron_set, as in 11_tetris_seed (width 1024, mean / max / min pooling, gamma 0.5, "
    "8 epochs). "
    "Targets: accuracy, ggap, epoch and the varied hyperparameters (activation, init, dropout, lr, weight_decay). "
    "The zoo is the tetris_hyp preset (a full 4 x 4 x 2 x 2 x 2 grid x 8 seeds), not the 2021 Zenodo file unless "
    "datasets/12_tetris_hyp holds it; 6 of the 26 checkpoints per model (epochs 0, 5, 10, 15, 20, 25)."
)
NOTES_2021 = (
    "Same transformer as 2021 (neuron tokens + compression token, d 256, 2 blocks, 4 heads, ff 900, latent 50), "
    "projection head 3/50/20, NT-Xent (tau 0.1) + reconstruction at gamma 0.5, permutation + erasing "
    "augmentations. Gives up, to fit 2 CPU cores (the schedule of 11_tetris_seed): 1000 epochs become 12 x 5 = 60 "
    "at batch 100, lr 5e-4, bf16 autocast, and 6 of the 26 checkpoints per model are used."
)

EXPERIMENT = Experiment(
    name="tetris_hyp",
    preset="tetris_hyp",
    zenodo="12_tetris_hyp",
    zoo_epochs=(0, 5, 10, 15, 20, 25),
    baseline_extras=False,
    representation=config_neuron_set(),
    iterations=4,
    notes=NOTES,
    learner="neuron_set",
    variants={"2021": Variant(cpu_schedule(config_2021("tetris_hyp")[0]), iterations=12, notes=NOTES_2021)},
)
