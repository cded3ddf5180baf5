"""ray.tune around the representation learner: a `Trainable` and `run_tuner`.

ray is imported here and nowhere else in the library (``import weightspace``
never loads it). Configs cross the ray boundary as the nested dict of
`config_to_dict` (the ``param_space``; search spaces sit at the same nested
keys) and are rebuilt with `config_from_dict` inside the trial, which rejects
unknown keys. The library never calls ``ray.init``; the script does, or
`Tuner.fit` starts a local instance.

One tune iteration = ``TrainConfig.epochs_per_step`` training epochs, then an
evaluation on every split (losses, reconstruction R²) and the metrics of an
``evaluate_fn`` (by default the linear-probe scores of `probe_scores`). A
checkpoint holds the model, projection head, optimizer, scheduler, grad scaler
and generator states, so a restored trial continues exactly where it stopped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from weightspace.data.dataset import ZooDataset
from weightspace.data.splits import ModelSplit, names_test_split
from weightspace.io.atomic import write_json
from weightspace.representation.config import LearnerConfig, config_from_dict, config_to_dict
from weightspace.representation.learner import EvaluateFn, Learner
from weightspace.downstream.probing import probe_scores
from weightspace.zoo.store import Zoo

CHECKPOINT_FILE = "learner.pt"


class WeightspaceTrainable(tune.Trainable):
    """One trial: a `Learner` over the splits of the zoo named in ``config["data"]["path"]``.

    `model_split` is the zoo's split, drawn once by `run_tuner` and shared by every trial; None: drawn
    here over all rows of the zoo with ``config["data"]``'s fractions and seed.
    """

    def setup(self, config: dict, evaluate_fn: EvaluateFn | None = None, model_split: ModelSplit | None = None) -> None:
        self.learner_config = config_from_dict(LearnerConfig, config)
        if not Path(self.learner_config.data.path).is_absolute():
            raise ValueError(f"data.path {self.learner_config.data.path!r} must be absolute inside a ray trial "
                             "(trials run in their own directory); run_tuner resolves it for you")
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            torch.set_num_threads(max(1, int(cpus)))
        self.datasets = ZooDataset.splits(self.learner_config.data, model_split=model_split)
        if "train" not in self.datasets:
            raise ValueError(f"the zoo at {self.learner_config.data.path} has no training samples with {self.learner_config.data}")
        self.learner = Learner(self.learner_config, self.datasets["train"].layout)
        self.evaluate_fn = evaluate_fn

    def step(self) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for _ in range(self.learner_config.train.epochs_per_step):
            row = self.learner.train_epoch(self.datasets["train"])  # NonFiniteLossError fails the trial
        row |= self.learner.evaluate(self.datasets, loss_splits=["val", "test"])
        if self.evaluate_fn is not None:
            row |= dict(self.evaluate_fn(self.learner.model, self.datasets))
        row["step"] = self.learner.step
        return row

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.learner.save(Path(checkpoint_dir) / CHECKPOINT_FILE)

    def load_checkpoint(self, checkpoint: str | dict) -> None:
        self.learner.load(Path(checkpoint) / CHECKPOINT_FILE)


def merge_search_space(base: dict, search: dict | None, _path: str = "") -> dict:
    """`base` (a `config_to_dict` dict) with the entries of `search` put at the same nested keys.

    Raises:
        ValueError: a key of `search` that the config does not have.
    """
    out = copy.deepcopy(base)
    for key, value in (search or {}).items():
        where = f"{_path}{key}"
        if key not in out:
            raise ValueError(f"search space key {where!r} is not a config field; valid here: {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict) and not _is_search(value):
            out[key] = merge_search_space(out[key], value, f"{where}.")
        else:
            out[key] = value
    return out


def _is_search(value: dict) -> bool:
    return set(value) == {"grid_search"}


def run_tuner(config: LearnerConfig, *, name: str, storage_path: str | Path, iterations: int,
              search_space: dict | None = None, num_samples: int = 1, cpus_per_trial: float = 1.0,
              gpus_per_trial: float = 0.0, checkpoint_frequency: int = 1, num_to_keep: int | None = None,
              metric: str | None = None, mode: str = "min", max_failures: int = 0,
              evaluate_fn: EvaluateFn | None = probe_scores(), model_split: ModelSplit | None = None,
              trainable: type[WeightspaceTrainable] = WeightspaceTrainable, resume: bool = True,
              verbose: int = 1) -> tune.ResultGrid:
    """Run (or continue) a tune experiment of the representation learner.

    Args:
        config: the base configuration; ``config.data.path`` is made absolute.
        name: experiment name; results go to ``<storage_path>/<name>``.
        storage_path: where experiments live; made absolute.
        iterations: tune iterations per trial (each ``config.train.epochs_per_step`` epochs).
        search_space: nested dict of ray search objects at config keys, e.g.
            ``{"loss": {"gamma": tune.grid_search([0.0, 0.5, 1.0])}}``.
        cpus_per_trial, gpus_per_trial: resources per trial (fractions of a GPU allowed).
        checkpoint_frequency: checkpoint every this many iterations (and at the end).
        metric, mode: what "best" means for checkpoints kept and ``ResultGrid.get_best_result``;
            default ``loss_val``, none without a val split (then `num_to_keep` keeps the latest
            checkpoints). A metric of the test split is refused: nothing is chosen on it.
        evaluate_fn: extra metrics per iteration, ``evaluate_fn(model, datasets) -> dict``; by default
            the linear-probe scores of every target (`probe_scores`); None for none.
        model_split: the zoo's split by model (`ModelSplit.of_zoo`), shared by every trial; None: drawn
            here, once, over all rows of the zoo with ``config.data``'s fractions and seed. Trials of a
            search space over ``data`` draw their own.
        trainable: a `WeightspaceTrainable` subclass.
        resume: if ``<storage_path>/<name>`` holds an interrupted run, continue it with
            `Tuner.restore` (unfinished and errored trials resume from their last checkpoint).

    Returns:
        the `ResultGrid`.
    """
    storage = Path(storage_path).expanduser().resolve()
    config = copy.deepcopy(config)
    config.data.path = str(Path(config.data.path).expanduser().resolve())
    if metric is None:
        metric = "loss_val" if config.data.fractions[1] > 0 else None
    elif names_test_split(metric):
        raise ValueError(f"metric {metric!r} is measured on the test split, and nothing may be chosen on it; "
                         "pass a validation metric such as 'loss_val', or give DataConfig.fractions a val share")
    if "data" in (search_space or {}):
        if model_split is not None:
            raise ValueError("a search space over 'data' draws a split per trial; pass model_split=None")
    elif model_split is None:
        model_split = ModelSplit.of_zoo(Zoo.load(config.data.path), config.data.fractions, config.data.seed)
    wrapped = tune.with_resources(tune.with_parameters(trainable, evaluate_fn=evaluate_fn, model_split=model_split),
                                  {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    experiment_dir = storage / name
    if resume and tune.Tuner.can_restore(str(experiment_dir)):
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=wrapped, resume_unfinished=True, resume_errored=True)
    else:
        param_space = merge_search_space(config_to_dict(config), search_space)
        tuner = tune.Tuner(
            wrapped,
            param_space=param_space,
            tune_config=tune.TuneConfig(num_samples=num_samples, metric=metric, mode=mode if metric else None),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                stop={"training_iteration": iterations},
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=checkpoint_frequency, checkpoint_at_end=True, num_to_keep=num_to_keep,
                    checkpoint_score_attribute=metric if num_to_keep else None, checkpoint_score_order=mode),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                verbose=verbose,
            ),
        )
        experiment_dir.mkdir(parents=True, exist_ok=True)
        write_json(experiment_dir / "experiment_config.json", {"config": param_space, "iterations": iterations})
    return tuner.fit()
