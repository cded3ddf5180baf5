"""One split by model, drawn once per zoo, shared by the encoder, the probes and the baselines."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from weightspace.cli import main
from weightspace.data.splits import split_models
from weightspace.downstream.baselines import run_baselines
from weightspace.pipeline.experiment import Experiment, compute_baselines, train_representation
from weightspace.pipeline.learners import create_learner
from weightspace.zoo.store import Zoo


def drop_rows(zoo: Zoo, drop: np.ndarray) -> Zoo:
    keep = ~drop
    return Zoo(zoo.weights[keep], zoo.samples[keep].reset_index(drop=True), zoo.layout, zoo.info)


# ------------------------------------------------------- the pipeline of an experiment
def test_a_model_missing_a_selected_epoch_keeps_probe_test_models_out_of_encoder_training(make_zoo, tmp_path,
                                                                                          monkeypatch):
    from ray.train import Checkpoint

    import weightspace.pipeline.tune
    from weightspace.representation.config import config_to_dict

    full = make_zoo(hyper=False)
    ids = sorted(set(full.samples["model_id"]))
    before = split_models(ids, (0.7, 0.15, 0.15), 42)
    # a model whose absence would reshuffle the others: a split over the remaining ids moves some
    # encoder-training model to test
    missing = next(m for m in ids if any(before[k] == "train" and s == "test"
                                         for k, s in split_models([i for i in ids if i != m], (0.7, 0.15, 0.15),
                                                                  42).items()))
    zoo = drop_rows(full, ((full.samples["model_id"] == missing) & (full.samples["epoch"] == 1)).to_numpy())
    zoo = Zoo.load(zoo.save(tmp_path / "zoo"))
    experiment = Experiment(name="toy", preset="tetris_seed", learner="2021", smoke_test=True, zoo_epochs=(1,),
                            targets=("test_acc",), select="last", umap_projection=False, untrained_candidate=False)  # PCA: no umap start-up
    encoder = {}

    def run_tuner(config, *, storage_path, **kwargs):  # one trial of the real trainable, without ray
        trial = object.__new__(weightspace.pipeline.tune.WeightspaceTrainable)
        trial.setup(config_to_dict(config), **{k: kwargs[k] for k in ("model_split", "zoo") if k in kwargs})
        encoder.update({s: set(d.properties["model_id"]) for s, d in trial.session.datasets.items()})
        checkpoint = tmp_path / "checkpoint"
        checkpoint.mkdir()
        trial.save_checkpoint(str(checkpoint))
        done = kwargs["iterations"]  # as if every iteration ran
        return [SimpleNamespace(error=None, metrics_dataframe=pd.DataFrame({"training_iteration": [done]}),
                                checkpoint=Checkpoint.from_directory(str(checkpoint)),
                                metrics={"training_iteration": done}, best_checkpoints=[])]

    monkeypatch.setattr(weightspace.pipeline.tune, "run_tuner", run_tuner)
    monkeypatch.setattr(weightspace.pipeline.tune.ray, "get_runtime_context",
                        lambda: SimpleNamespace(get_assigned_resources=dict))
    train_representation(experiment, zoo, tmp_path / "out")
    probed = pd.read_csv(tmp_path / "out" / "embedding_samples.csv")
    probe_test = set(probed.loc[probed["split"] == "test", "model_id"])
    assert encoder["train"] and probe_test and not encoder["train"] & probe_test
    encoder_split = {m: s for s, models in encoder.items() for m in models}
    assert all(encoder_split[r.model_id] == r.split for r in probed.itertuples())
    table = compute_baselines(experiment, zoo, tmp_path / "out")
    scored = table.query("feature_set == 'raw' and probe == 'linear' and metric == 'r2'").set_index("split")["n"]
    assert {s: scored[s] for s in encoder} == {s: len(encoder[s] - {missing}) for s in encoder}


# ------------------------------------------------------------------- baselines
@pytest.mark.parametrize("models,epochs", [(0, (0,)), (1, (0,)), (1, (0, 1, 2))])
def test_baselines_refuse_a_zoo_too_small_to_split(make_zoo, tmp_path, models, epochs, capsys):
    zoo = make_zoo(models=max(models, 1), epochs=epochs)
    if not models:
        zoo = drop_rows(zoo, np.ones(zoo.num_samples, dtype=bool))
    with pytest.raises(ValueError, match="too few"):
        run_baselines(zoo, tmp_path / "out", None)
    assert not (tmp_path / "out" / "baselines.csv").exists()
    zoo.save(tmp_path / "zoo")
    assert main(["baselines", str(tmp_path / "zoo"), "--out", str(tmp_path / "cli")]) != 0
    assert "too few" in capsys.readouterr().err


# ------------------------------------------------------------------- the split
def test_model_split_ignores_row_selection_and_refuses_unknown_models(make_zoo):
    from weightspace.data.dataset import ZooDataset
    from weightspace.data.splits import ModelSplit
    from weightspace.errors import InputError

    zoo = make_zoo(models=20, epochs=(0, 1, 2))
    split = ModelSplit.of_zoo(zoo, seed=3)
    assert split.assignment == split_models(range(20), (0.7, 0.15, 0.15), 3)
    last = drop_rows(zoo, (zoo.samples["epoch"] != 2) | (zoo.samples["model_id"] < 5)).samples
    np.testing.assert_array_equal(split.column(last["model_id"]), [split.assignment[m] for m in last["model_id"]])
    parts = {s: ZooDataset(zoo, s, seed=3, epochs=2, model_split=split) for s in ("train", "val", "test")}
    assert all(set(d.properties["model_id"]) == split.models(s) for s, d in parts.items())
    with pytest.raises(InputError, match="not in this split"):
        split.column([0, 99])
    with pytest.raises(ValueError, match="seed 3"):
        ZooDataset(zoo, "train", seed=4, model_split=split)


def test_model_folds_and_holdout_never_split_a_model():
    from weightspace.data.splits import model_folds, model_holdout

    groups = np.repeat(np.arange(30), 3)
    y = np.repeat(np.arange(30) % 2, 3)
    folds = model_folds(groups, 5) + model_folds(groups, 4, y=y, random_state=0) + [model_holdout(groups, 0.1, 0)]
    for train, held in folds:
        assert len(held) and not set(groups[train]) & set(groups[held])
        assert len(train) + len(held) == len(groups)


def test_ridge_without_validation_holds_out_whole_models():
    from weightspace.downstream import RidgeProbe

    rng = np.random.default_rng(0)
    models, copies, d = 20, 4, 50
    X = np.repeat(rng.normal(size=(models, d)), copies, axis=0) + 1e-3 * rng.normal(size=(models * copies, d))
    y = np.repeat(rng.normal(size=models), copies)  # noise: nothing to learn across models
    groups = np.repeat(np.arange(models), copies)
    by_row = RidgeProbe().fit(X, y)  # a held-out row's twins are in training: it looks learnable
    by_model = RidgeProbe().fit(X, y, groups=groups)
    assert by_model.alpha_ == max(by_model.alphas) > by_row.alpha_


def test_logistic_without_validation_counts_models_per_class():
    from weightspace.downstream import LogisticProbe

    rng = np.random.default_rng(0)
    X, groups = rng.normal(size=(40, 3)), np.repeat(np.arange(10), 4)
    y = np.where(groups == 0, "rare", "common")  # 4 rows, but one model: no fold by model can hold it out
    assert LogisticProbe().fit(X, y, groups=groups).C_ == 1.0
    assert np.isnan(LogisticProbe().fit(X, y, groups=groups).val_scores_).all()


def test_nothing_is_chosen_on_the_test_split(tmp_path):
    from weightspace.data.dataset import DataConfig
    from weightspace.pipeline.tune import run_tuner

    rep = create_learner("2021").shrunk().config
    rep.data = DataConfig(path=str(tmp_path / "zoo"), fractions=(0.8, 0.0, 0.2))
    for metric in ("loss_test", "test_acc_test"):
        with pytest.raises(ValueError, match="test split"):
            run_tuner(rep, name="x", storage_path=tmp_path, iterations=1, metric=metric)
    with pytest.raises(ValueError, match="test split"):
        Experiment(name="toy", preset="tetris_seed", select="rsq_test")
