"""11_tetris_seed: the embedded default. The Tetris seed zoo, generated here when datasets/ lacks it.

The default learner is `neuron_set`, a permutation-invariant encoder that pools a per-neuron MLP
over each hidden layer (see weightspace.representation.encoders.neuron_set); it was chosen on the validation
split across the offline zoos by bench/representation_quality.py. `--variant 2021` runs the 2021
transformer instead, on a CPU schedule; see NOTES_2021.
"""

from weightspace.pipeline.experiment import Experiment, Variant
from weightspace.representation.presets import config_2021, config_neuron_set, cpu_schedule

NOTES = (
    "Learner: neuron_set (per-neuron tanh MLP of width 1024 over each hidden neuron's incoming weights, bias, "
    "outgoing weights and per-neuron summaries, pooled by mean / max / min; tokens standardised per layer on the "
    "training split), NT-Xent (tau 0.1) on erased views mixed at gamma 0.5 with the reconstruction of invariant "
    "weight statistics; 4 x 2 = 8 epochs at batch 200, lr 1e-3. The embedding holds only what training produced "
    "(the untrained encoder is a candidate of the validation choice); the invariant statistics code it once "
    "carried is a baseline of its own (Code). Probed on 6 of the 26 checkpoints per model "
    "(epochs 0, 5, 10, 15, 20, 25), as the baselines."
)
NOTES_2021 = (
    "Same transformer as 2021 (neuron tokens + compression token, d 256, 2 blocks, 4 heads, ff 512, latent 50), "
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
    representation=config_neuron_set(),
    iterations=4,
    notes=NOTES,
    learner="neuron_set",
    variants={"2021": Variant(cpu_schedule(config_2021("tetris_seed")[0]), iterations=12, notes=NOTES_2021)},
)
