"""01_ablation_studies: the three 2021 ablations on the Tetris seed zoo, each a ray.tune grid.

Every trial is the 11_tetris_seed learner (neuron tokens + compression token, d 256, 2 blocks,
4 heads, ff 512, latent 50, projection head 3/50/20, NT-Xent at gamma 0.5, permutation + erasing)
with the grid's fields changed. Results go to ``ablations/<ablation>/trials.csv``; every script
refreshes the one table ``ablations/summary.md`` (+ ``summary.csv``); ``summarize.py`` rebuilds it.

Grids, as implemented (a grid value that is a dict is a variant of that config section,
completed from the base learner; see ``weightspace.pipeline.ablation``):

- architecture, 5 trials: MLP AE; weight tokens with / without compression token; neuron
  tokens with / without. 2021 ran encoder x token = 6, two of them the same MLP AE (it has no
  tokens, so the flag does nothing); the MLP is run once (its config has no compression_token;
  it keeps the learner's latent_dim, dropout and activation).
- compression, 9 trials: latent 50 / 33 / 20 x gamma 1 / 0.5 / 0.
- loss_augmentation, 40 trials: (contrast, gamma) in {NT-Xent, positive} x {1, 0.5}, plus
  gamma 0 once (no contrastive term: the contrast type does nothing, 2021 ran it twice)
  x noise 0 / 0.05 x permutations on / off x erasing on (p 0.5) / off. 2021: 48 with 8 duplicates.
"""

from ray import tune

from weightspace.pipeline.experiment import Experiment

NOTES = (
    "The 11_tetris_seed learner and checkpoints (epochs 0, 5, ..., 25 of the 1000 Tetris seed models). "
    "Gives up, to fit a CPU: 1000 epochs become 4 x 5 = 20 (a third of 11_tetris_seed's 60; same batch "
    "100, lr 5e-4, bf16 schedule), so absolute scores are lower than 2021's and the ranking of close settings "
    "may differ; the 2021 MLP AE's 3x learning rate (all variants share one lr); the 2021 fixed pools of 120 train permutations (here a fresh "
    "permutation per view). Duplicate trials of 2021 (MLP AE x token flag, contrast type at gamma 0) are run once. "
    "Time on 2 CPU cores, two trials at a time, measured: compression 16 min, architecture 33 min (its two "
    "weight-token trials, 101 tokens of width 256, take 30 min each; a neuron-token trial 2.5-3 min, the MLP AE "
    "12 s), loss_augmentation 55 min. "
    "On a GPU or a ray cluster (--ray-address), trials run side by side with a GPU fraction each."
)

COMMON = dict(preset="tetris_seed", zenodo="01_ablations", zoo_epochs=(0, 5, 10, 15, 20, 25),
              targets=("test_acc", "training_iteration", "ggap"), notes=NOTES,
              learner="2021", learner_options={"2021": {"iterations": 4}})  # the model of 11_tetris_seed

ARCHITECTURE = Experiment(
    name="ablations/architecture",
    search_space={"encoder": tune.grid_search([
        {"name": "mlp"},
        {"name": "transformer_weight", "compression_token": True},
        {"name": "transformer_weight", "compression_token": False},
        {"name": "transformer_neuron", "compression_token": True},
        {"name": "transformer_neuron", "compression_token": False},
    ])},
    **COMMON,
)

COMPRESSION = Experiment(
    name="ablations/compression",
    search_space={"encoder": {"latent_dim": tune.grid_search([50, 33, 20])},
                  "loss": {"gamma": tune.grid_search([1.0, 0.5, 0.0])}},
    **COMMON,
)

LOSS_AUGMENTATION = Experiment(
    name="ablations/loss_augmentation",
    search_space={
        "loss": tune.grid_search([{"contrast": c, "gamma": g} for c in ("ntxent", "positive") for g in (1.0, 0.5)]
                                 + [{"contrast": "ntxent", "gamma": 0.0}]),
        "augment": {"noise_std": tune.grid_search([0.0, 0.05]),
                    "permute": tune.grid_search([True, False]),
                    "erase_p": tune.grid_search([0.5, 0.0])},
    },
    **COMMON,
)
