"""12_tetris_hyp: the Tetris hyperparameter zoo, offline. Predicting activation, init, dropout, lr and weight decay.

The default learner is `neuron_set` (the one of 11_tetris_seed; chosen on validation across the
offline zoos by bench/representation_quality.py). `--variant 2021` runs the 2021 configuration,
the Tetris-SEED transformer with a wider feed-forward layer (ff 900), on the CPU schedule of
11_tetris_seed.
"""

from weightspace.pipeline.experiment import Experiment

NOTES = (
    "Targets: accuracy, ggap, epoch and the varied hyperparameters (activation, init, dropout, lr, weight_decay). "
    "The zoo is the tetris_hyp preset (a full 4 x 4 x 2 x 2 x 2 grid x 8 seeds), not the 2021 Zenodo file unless "
    "datasets/12_tetris_hyp holds it; 6 of the 26 checkpoints per model (epochs 0, 5, 10, 15, 20, 25)."
)
EXPERIMENT = Experiment(
    name="tetris_hyp",
    preset="tetris_hyp",
    zenodo="12_tetris_hyp",
    zoo_epochs=(0, 5, 10, 15, 20, 25),
    learner_options={"2021": {"size": "tetris_hyp"}},  # the 2021 Tetris-HYP transformer (ff 900)
    notes=NOTES,
)
