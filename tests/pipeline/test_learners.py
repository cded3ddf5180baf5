"""The learner registry: every registered learner trains, shrunk, for one step on a tiny zoo, and its smoke copy
is the same learner (encoder kind, losses, augmentations) at a tiny size; unknown names, schedules and options
are refused with the valid ones listed; every experiment folder's learner resolves from the registry."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from weightspace.pipeline.experiment import experiment_split, resolved_config, zoo_experiment
from weightspace.pipeline.learners import create_learner, learner_schedules, list_learners
from weightspace.pipeline.training import pick_best, train_in_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list_learners())
def test_every_registered_learner_trains_shrunk_on_a_tiny_zoo(name, make_zoo):
    zoo = make_zoo(models=30)
    # the function-space learners run the zoo's networks on queries: name the networks and their task
    zoo.info |= {"architecture": {"name": "tetris_mlp", "kwargs": {}}, "task": {"name": "tetris", "input_shape": [1, 4, 4]}}
    run = dataclasses.replace(zoo_experiment(zoo).variant(name), smoke_test=True)
    spec = run.spec
    full = create_learner(name)
    assert spec.smoke and spec.name == name and spec.config.encoder.name == full.config.encoder.name
    assert spec.config.loss == full.config.loss and spec.config.augment == full.config.augment
    trained = train_in_process(resolved_config(run, zoo, device="cpu"), zoo, experiment_split(run, zoo),
                               iterations=1, select=run.select)
    assert len(trained.history) == 2 and np.isfinite(trained.history["loss_train"].iloc[-1])
    assert trained.chosen in (0, 1)


@pytest.mark.parametrize("name", list_learners())
def test_every_schedule_of_a_learner_resolves(name):
    for schedule in learner_schedules(name):
        spec = create_learner(name, schedule=schedule)
        assert spec.schedule == schedule and spec.iterations >= 1 and spec.title


def test_unknown_names_schedules_and_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown learner 'nope'; choose one of"):
        create_learner("nope")
    with pytest.raises(ValueError, match="no schedule 'tpu'; choose one of"):
        create_learner("neuron_set", schedule="tpu")
    with pytest.raises(ValueError, match="takes no option"):
        create_learner("neuron_set", d_model=3)


def test_the_2021_schedule_is_the_2021_folders_own():
    spec = create_learner("2021", schedule="2021")
    train = spec.config.train
    assert (train.batch_size, train.lr, train.epochs_per_step, spec.iterations) == (500, 1e-4, 10, 100)
    assert create_learner("2021", schedule="2021", size="mnist_seed").iterations == 50
    assert create_learner("2021", schedule="gpu").config.train.precision == "bf16"


def test_stop_lr_names_the_2021_learner_and_reaches_its_config():
    for schedule in learner_schedules("2021"):
        spec = create_learner("2021", schedule=schedule, stop_lr=1e-8)
        assert spec.config.train.stop_lr == 1e-8 and spec.title.endswith(", ended at lr 1e-08)")
        assert create_learner("2021", schedule=schedule).config.train.stop_lr == 0


def test_an_evaluation_whose_rate_reached_stop_lr_is_the_last(make_zoo):
    zoo = make_zoo(models=30)
    run = dataclasses.replace(zoo_experiment(zoo).variant("2021"), smoke_test=True)
    config = resolved_config(run, zoo, device="cpu")  # one epoch per evaluation
    lr = config.train.lr
    # cosine over 4 epochs: 0.85 lr after the first, 0.5 lr after the second
    config.train = dataclasses.replace(config.train, scheduler="cosine", epochs=4, stop_lr=0.6 * lr)
    trained = train_in_process(config, zoo, experiment_split(run, zoo), iterations=5, select=run.select)
    assert list(trained.history["training_iteration"]) == [0, 1, 2]
    assert trained.history["done"].fillna(False).tolist() == [False, False, True]
    assert trained.learner.epoch == 2 and trained.chosen in (0, 1, 2)


def test_the_later_state_wins_a_tie_and_unscored_states_are_skipped():
    rows = [("a", {"m": 0.5, "training_iteration": 0}), ("b", {"m": np.nan, "training_iteration": 1}),
            ("c", {"m": 0.5, "training_iteration": 2})]
    assert pick_best(rows, "m")[0] == "c" and pick_best(rows[1:2], "m") is None


FOLDERS = sorted(p.parent.name for p in ROOT.glob("[0-9][0-9]_*/experiment.py"))


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_smoke_test_trains_its_own_learner_shrunk(folder):
    spec = importlib.util.spec_from_file_location(f"experiment_{folder}", ROOT / folder / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for experiment in [v for v in vars(module).values() if type(v).__name__ == "Experiment"]:
        own, smoke = experiment.spec, experiment.smoke().spec
        assert smoke.smoke and smoke.name == own.name
        assert smoke.config.encoder.name == own.config.encoder.name and smoke.config.loss == own.config.loss
