"""Random hyperparameter sampling in ZooSpec, per-model dropout, and the digits_hyp preset's pieces."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from weightspace.zoo.generate import generate
from weightspace.zoo.grouped import _per_model_dropout
from weightspace.zoo.population import EXPLODED, Member, Population, PopulationConfig
from weightspace.zoo.presets import get_preset
from weightspace.zoo.spec import ZooSpec
from weightspace.zoo.tasks import load_task

SAMPLE = {"activation": {"choice": ["relu", "tanh"]}, "lr": {"log_uniform": [1e-4, 1e-1]},
          "dropout": {"uniform": [0.0, 0.7]}, "train_fraction": {"choice": [0.5, 1.0]}}


def sampled(**changes) -> ZooSpec:
    spec = ZooSpec("s", "tetris", "tetris_mlp", sample=SAMPLE, samples=300, seeds=1, epochs=1, sample_seed=3,
                   task_options={"n_train": 32, "n_test": 32})
    return replace(spec, **changes)


def test_a_sampled_spec_draws_the_same_models_twice_and_others_with_another_seed():
    spec = sampled()
    assert spec.models() == sampled().models()
    assert ZooSpec.from_dict(spec.to_dict()).models() == spec.models()  # what a resumed run reloads
    other = sampled(sample_seed=4).models()
    assert [m["lr"] for m in other] != [m["lr"] for m in spec.models()]
    # draw j does not depend on how many are drawn: a longer zoo extends a shorter one
    assert sampled(samples=500).models()[:300] == spec.models()
    # no two draws share an init seed (and with it a data order)
    assert len({m["seed"] for m in spec.models()}) == 300


def test_the_fingerprint_changes_with_any_distribution():
    base = sampled().fingerprint()
    changed = [
        {**SAMPLE, "lr": {"log_uniform": [1e-4, 2e-1]}},
        {**SAMPLE, "lr": {"uniform": [1e-4, 1e-1]}},
        {**SAMPLE, "activation": {"choice": ["tanh", "relu"]}},
        {**SAMPLE, "dropout": {"uniform": [0.0, 0.6]}},
        {k: v for k, v in SAMPLE.items() if k != "train_fraction"},
    ]
    prints = {sampled(sample=s).fingerprint() for s in changed}
    prints |= {sampled(samples=301).fingerprint(), sampled(sample_seed=0).fingerprint()}
    assert base not in prints and len(prints) == len(changed) + 2


def test_grid_zoos_keep_the_fingerprints_they_had_before_sampling():
    # recorded from zoos generated before `sample` existed: finished zoos must stay recognised
    assert get_preset("tetris_seed").fingerprint() == "45bc4d32b2c1fd30"
    assert get_preset("tetris_hyp").fingerprint() == "a828f84c7f833921"


def test_drawn_values_follow_their_ranges():
    models = sampled(samples=3000).models()
    lr = np.array([m["lr"] for m in models])
    dropout = np.array([m["dropout"] for m in models])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    # log-uniform over three decades: each holds a third (3000 draws: binomial sd 0.009, 5 sd = 0.045)
    decades = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1])[0] / len(lr)
    assert np.all(np.abs(decades - 1 / 3) < 0.045), decades
    assert dropout.min() >= 0 and dropout.max() <= 0.7 and abs(dropout.mean() - 0.35) < 0.02  # sd 0.0037
    assert {m["activation"] for m in models} == {"relu", "tanh"}
    assert {m["train_fraction"] for m in models} == {0.5, 1.0}


@pytest.mark.parametrize("sample, message", [
    ({"lr": {"gamma": [1, 2]}}, "choice"),
    ({"lr": {"uniform": [1e-2, 1e-3]}}, "low 0.01 > high 0.001"),
    ({"weight_decay": {"log_uniform": [0.0, 1e-3]}}, "above 0"),
    ({"activation": {"choice": []}}, "non-empty"),
    ({"activation": {"choice": ["relu", "swish"]}}, "swish"),
    ({"optimizer": {"uniform": [0, 1]}}, "takes names"),
    ({"train_fraction": {"uniform": [0.1, 1.0]}}, "shared by the models of a population"),
    ({"dropout": {"uniform": [0.0, 1.0]}}, r"\[0.0, 1.0\)"),
    ({"learning_rate": {"choice": [1e-3]}}, "unknown hyperparameter"),
])
def test_bad_distributions_are_refused_before_any_training(sample, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ZooSpec("s", "tetris", "tetris_mlp", sample=sample, samples=4)
    assert not list(tmp_path.iterdir())


def test_distributions_and_a_count_go_together():
    with pytest.raises(ValueError, match="go together"):
        ZooSpec("s", "tetris", "tetris_mlp", sample=SAMPLE)
    with pytest.raises(ValueError, match="go together"):
        ZooSpec("s", "tetris", "tetris_mlp", samples=5)
    with pytest.raises(ValueError, match="both grid and sample"):
        ZooSpec("s", "tetris", "tetris_mlp", grid={"lr": [1e-3]}, sample={"lr": {"choice": [1e-3]}}, samples=2)


def test_a_sampled_zoo_records_each_models_draw(tmp_path):
    spec = sampled(samples=12, shard_size=64)
    zoo = generate(spec, tmp_path / "z", progress=False)
    first = zoo.samples[zoo.samples.epoch == 0].set_index("model_id")
    for m in spec.models():
        row = first.loc[m["model_id"]]
        assert row["seed"] == m["seed"] and row["activation"] == m["activation"]
        assert row["lr"] == m["lr"] and row["dropout"] == m["dropout"]
    assert set(zoo.hyperparameters) == {"activation", "dropout", "train_fraction", "lr"}
    # dropout is per model: one population (shard) holds several rates
    assert max(len({m["dropout"] for m in s.models}) for s in spec.shards()) > 1


def test_per_model_dropout_drops_each_model_at_its_rate():
    torch.manual_seed(0)
    rate = torch.tensor([0.0, 0.25, 0.6])
    for flat, h in ((False, torch.ones(400, 3 * 8, 5, 5).contiguous(memory_format=torch.channels_last)),
                    (True, torch.ones(3, 400, 200))):
        out = _per_model_dropout(h, rate, 3, flat)
        parts = [out[:, 8 * i:8 * (i + 1)] for i in range(3)] if not flat else list(out)
        for r, part in zip(rate.tolist(), parts):
            dropped = (part == 0).float().mean().item()
            # 80,000 elements per model: binomial sd <= 0.0018, 5 sd
            assert abs(dropped - r) < 0.009, (flat, r, dropped)
            kept = part[part != 0]
            assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - r)))


def test_a_member_without_dropout_is_untouched_by_its_neighbours_rates():
    task = load_task("digits")
    config = PopulationConfig("mlp", {"in_dim": 64, "hidden": [8], "out_dim": 10, "dropout": 0.5}, batch_size=16)
    pop = Population(config, [Member(0, 0, dropout=0.0), Member(1, 1, dropout=0.6)])
    alone = Population(replace(config, arch_kwargs={**config.arch_kwargs, "dropout": 0.0}), [Member(0, 0)])
    x = task.x_train[:32].expand(2, -1, -1, -1, -1)
    y = task.y_train[:32].expand(2, -1)
    with_rates, _ = pop.loss_and_grads(x, y)
    without, _ = alone.loss_and_grads(x[:1], y[:1])
    assert torch.allclose(with_rates[0], without[0], rtol=1e-6)
    with pytest.raises(ValueError, match="every member"):
        Population(config, [Member(0, 0, dropout=0.1), Member(1, 1)])


def test_exploded_weights_flag_a_model_as_diverged():
    config = PopulationConfig("tetris_mlp", {})
    pop = Population(config, [Member(0, 0), Member(1, 1), Member(2, 2)])
    with torch.no_grad():
        pop.params["fc1.weight"][1, 0, 0] = 2 * EXPLODED
        pop.params["fc2.weight"][2, 0, 0] = float("nan")
    assert pop.check_divergence().tolist() == [False, True, True]


def test_digits_resized_to_mnist_geometry():
    small, big = load_task("digits"), load_task("digits", size=28)
    assert big.x_train.shape[1:] == (1, 28, 28) and big.x_train.shape[0] == small.x_train.shape[0]
    assert torch.equal(big.y_train, small.y_train)
    assert 0 <= big.x_train.min() and big.x_train.max() <= 1
    # corners are aligned: the resized image keeps the original's corner pixels
    assert torch.allclose(big.x_train[:, :, 0, 0], small.x_train[:, :, 0, 0])
    with pytest.raises(ValueError, match="size"):
        load_task("digits", size=4)


def test_the_digits_hyp_preset_draws_unterthiners_properties():
    spec = get_preset("digits_hyp")
    assert len(spec.models()) == 2000
    assert set(spec.varied) == {"activation", "init", "init_std", "optimizer", "lr", "weight_decay", "dropout",
                                "train_fraction"}
    assert spec.kept_epochs[:4] == [0, 1, 2, 3]
    smoke = get_preset("digits_hyp", smoke=True)
    assert len(smoke.models()) == 12 and smoke.task_options["size"] == 16
