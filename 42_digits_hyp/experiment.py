"""42_digits_hyp: the 2021 main table offline, on a Small CNN Zoo in miniature (2000 CNNs on digits).

The digits_hyp preset draws 2000 configurations at random as Unterthiner et al. (2020) did
(activation, init and its scale, optimizer, learning rate, l2, dropout, train fraction) and trains
their network on scikit-learn's digits resized to 28x28, with checkpoints at epochs 0-4 and 6. All
ten properties of the 2021 table are probed. The default learner is `neuron_set` (the folders'
winner, bench/representation_quality.py); `--variant 2021` runs the 41_svhn_unterthiner transformer
on a CPU schedule. See NOTES and NOTES_2021.
"""

from weightspace.pipeline.experiment import Experiment

# the ten properties of the 2021 main table, named as a generated zoo names them
TARGETS = ("training_iteration", "test_acc", "ggap", "lr", "weight_decay", "dropout", "train_fraction",
           "activation", "init", "optimizer")

NOTES = (
    "Zoo: the digits_hyp preset (Unterthiner's CNN, 4970 weights, 2000 random configurations, 6 epochs at "
    "batch 8, checkpoints 0, 1, 2, 3, 4, 6; diverged models are flagged and left out of every probe). Targets: epoch, test accuracy, "
    "generalization gap, learning rate, l2 (weight_decay), dropout and train fraction (R²); activation, init and "
    "optimizer (accuracy)."
)
EXPERIMENT = Experiment(
    name="digits_hyp",
    preset="digits_hyp",
    targets=TARGETS,
    learner_options={
        # width 384 instead of 1024: the network has three hidden layers, not one, and 384 keeps the learned
        # features (3.9k) near the one-hidden-layer zoos' (3.2k), which the probes' cost follows
        "neuron_set": {"width": 384},
        # the 41_svhn_unterthiner transformer (2021 SVHN-HYP); to fit 2 CPU cores, 2 x 1 epochs at batch 100
        "2021": {"size": "svhn_hyp", "iterations": 2, "epochs_per_step": 1},
        # 2 x 1 epochs as the transformer above, on 64 queries: a step of 100 CNNs on 256 queries took 17 s on one
        # core, on 64 7.4 s (12000 checkpoints: an epoch is then 10 minutes)
        "behaviour": {"n_queries": 64, "iterations": 2, "epochs_per_step": 1},
    },
    notes=NOTES,
)
