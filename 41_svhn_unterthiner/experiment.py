"""41_svhn_unterthiner: the Unterthiner et al. SVHN (grayscale) hyperparameter zoo, 2021 configuration.

Representation as the 2021 folder 43_svhn_hyp: neuron tokens + compression token, d 512, 4 blocks,
4 heads, ff 1000, latent 1200, projection head 4/400/50, NT-Xent at gamma 0.85, batch 500, 25 x 10
epochs. Zoo, first found: the converted 2021 dataset datasets/43_svhn_hyp, the converted Small CNN
Zoo datasets/unterthiner_svhn (`weightspace zoo download unterthiner_svhn`), the weightspace zoo
datasets/svhn_unterthiner, else the svhn_unterthiner preset is generated (a GPU job). See NOTES.
"""

from weightspace.pipeline.experiment import Experiment

NOTES = (
    "The 2021 configuration, unshortened: transformer over neuron tokens with a compression token (d 512, "
    "4 blocks, 4 heads, ff 1000, latent 1200), projection head 4/400/50, NT-Xent (tau 0.1) + reconstruction at "
    "gamma 0.85, permutation + erasing augmentations, Adam lr 1e-4, batch 500, 25 iterations x 10 = 250 epochs "
    "on every checkpoint. It needs a GPU (many hours on a CPU). Targets are left to the zoo (targets=None): "
    "accuracy, ggap, epoch and every varied hyperparameter, i.e. the paper's lr, l2 reg, dropout, train "
    "fraction, activation, init and optimizer (plus init std) - named lr/weight_decay/init in a generated zoo "
    "and learning_rate/l2reg/w_init in a converted Small CNN Zoo. Gives up: without a downloaded zoo the "
    "svhn_unterthiner preset stands in, a 2304-model grid instead of Unterthiner's 30k random configurations "
    "(generating it trains 2304 CNNs for 86 epochs on SVHN, a GPU job); every view draws a fresh permutation "
    "instead of 2021's 25000 fixed ones. --smoke-test trains on synthetic 32x32 images when SVHN is absent."
)


EXPERIMENT = Experiment(
    name="svhn_hyp",
    preset="svhn_unterthiner",
    zenodo="43_svhn_hyp",
    external=("unterthiner_svhn",),
    learner="2021",
    learner_options={"2021": {"size": "svhn_hyp", "schedule": "2021"}},  # unshortened
    notes=NOTES,
)
