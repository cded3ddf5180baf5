"""11_tetris_seed: the embedded default. The Tetris seed zoo, generated here when datasets/ lacks it.

The default learner is `neuron_set`, a permutation-invariant encoder that pools a per-neuron MLP
over each hidden layer (see weightspace.representation.encoders.neuron_set); it was chosen on the validation
split across the offline zoos by bench/representation_quality.py. `--variant 2021` runs the 2021
transformer instead, on a CPU schedule; the registry's notes (weightspace.pipeline.learners) say what it gives up.
"""

from weightspace.pipeline.experiment import Experiment

NOTES = (
    "Probed on 6 of the 26 checkpoints per model (epochs 0, 5, 10, 15, 20, 25), as the baselines. The embedding "
    "holds only what training produced; the invariant statistics code it once carried is a baseline of its own."
)

EXPERIMENT = Experiment(
    name="tetris_seed",
    preset="tetris_seed",
    zenodo="11_tetris_seed",
    zoo_epochs=(0, 5, 10, 15, 20, 25),
    notes=NOTES,
)
