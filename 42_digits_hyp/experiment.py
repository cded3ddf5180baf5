"""42_digits_hyp: the 2021 main table offline, on a Small CNN Zoo in miniature (2000 CNNs on digits).

The digits_hyp preset draws 2000 configurations at random as Unterthiner et al. (2020) did
(activation, init and its scale, optimizer, learning rate, l2, dropout, train fraction) and trains
their network on scikit-learn's digits resized to 28x28, with checkpoints at epochs 0-4 and 6. All
ten properties of the 2021 table are probed. The default learner is `neuron_set` (the folders'
winner, bench/representation_quality.py); `--variant 2021` runs the 41_svhn_unterthiner transformer
on a CPU schedule. See NOTES and NOTES_2021.
"""

from weightspace.pipeline.experiment import Experiment, Variant
from weightspace.representation.presets import config_2021, config_neuron_set, cpu_schedule

# the ten properties of the 2021 main table, named as a generated zoo names them
TARGETS = ("training_iteration", "test_acc", "ggap", "lr", "weight_decay", "dropout", "train_fraction",
           "activation", "init", "optimizer")

NOTES = (
    "Zoo: the digits_hyp preset (Unterthiner's CNN, 4970 weights, 2000 random configurations, 6 epochs at "
    "batch 8, checkpoints 0, 1, 2, 3, 4, 6; diverged models are flagged and left out of every probe). Learner: "
    "neuron_set as in 11_tetris_seed (mean / max / min pooling over each hidden layer's 16 channels, "
    "gamma 0.5, 4 x 2 epochs) at width 384 instead of 1024: the network has three hidden layers, not one, and 384 "
    "keeps the learned features (3.9k) near the one-hidden-layer zoos' (3.2k), which the probes' cost follows. Targets: epoch, test accuracy, "
    "generalization gap, learning rate, l2 (weight_decay), dropout and train fraction (R²); activation, init and "
    "optimizer (accuracy)."
)
NOTES_2021 = (
    "The 41_svhn_unterthiner transformer (2021 SVHN-HYP: neuron tokens + compression token, d 512, 4 blocks, "
    "4 heads, ff 1000, latent 1200, projection head 4/400/50, NT-Xent + reconstruction at gamma 0.85, "
    "permutation + erasing augmentations). Gives up, to fit 2 CPU cores: 250 epochs at batch 500 become 2 x 1 "
    "epochs at batch 100, lr 5e-4, bf16 autocast."
)

REPRESENTATION_2021 = cpu_schedule(config_2021("svhn_hyp")[0], epochs_per_step=1)

EXPERIMENT = Experiment(
    name="digits_hyp",
    preset="digits_hyp",
    targets=TARGETS,
    representation=config_neuron_set(width=384),
    iterations=4,
    notes=NOTES,
    learner="neuron_set",
    variants={"2021": Variant(REPRESENTATION_2021, iterations=2, notes=NOTES_2021)},
)
