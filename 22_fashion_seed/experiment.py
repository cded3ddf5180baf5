"""22_fashion_seed: the cnn_s seed zoo on Fashion-MNIST, with the 2021 configuration; needs a GPU (or many CPU hours).

Representation as the 2021 folder 31_f-mnist_seed: neuron tokens + compression token, d 800, 2 blocks,
4 heads, ff 900, latent 700, projection head 4/400/50, NT-Xent at gamma 0.1, batch 500, 50 x 10
epochs on every checkpoint. The zoo is the converted 2021 dataset when datasets/31_f-mnist_seed holds
it, else the fashion_seed preset (Fashion-MNIST itself is fetched with --download). See NOTES.
"""

from weightspace.pipeline.experiment import Experiment

NOTES = (
    "The 2021 configuration, unshortened: transformer over neuron tokens with a compression token (d 800, "
    "2 blocks, 4 heads, ff 900, latent 700), projection head 4/400/50, NT-Xent (tau 0.1) + reconstruction at "
    "gamma 0.1, permutation + erasing augmentations, Adam lr 1e-4, batch 500, 50 iterations x 10 = 500 epochs "
    "on all 26 checkpoints of 1000 models. It needs a GPU (or many hours on a CPU), and generating the "
    "fashion_seed zoo without the Zenodo file trains 1000 cnn_s models first. Gives up: the 2021 runs drew "
    "from 25000 fixed permutations per model, here every view draws a fresh one; the generated zoo is not "
    "the 2021 zoo (batch 64, 25 epochs, see the preset's notes). --smoke-test trains on synthetic 28x28 "
    "images when the Fashion-MNIST files are absent."
)


EXPERIMENT = Experiment(
    name="fashion_mnist_seed",
    preset="fashion_seed",
    zenodo="31_f-mnist_seed",
    learner="2021",
    learner_options={"2021": {"size": "fashion_mnist_seed", "schedule": "2021"}},  # unshortened
    notes=NOTES,
)
