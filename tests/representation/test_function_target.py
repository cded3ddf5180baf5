"""The function-space reconstruction target of neuron_set: the networks' logits on fixed data-free queries.

Invariant under function-preserving permutations for every registered architecture the encoder takes,
equal to running each model alone, trainable in one Learner step, and computed from weights and
zoo.json's architecture only: no model property is read.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace import WeightLayout, create_zoo_model
from weightspace.data.augment import PermuteNeurons
from weightspace.representation import Learner, NeuronSetConfig, create_autoencoder
from weightspace.representation.function_target import (
    FunctionTarget,
    row_networks,
    with_zoo_architecture,
    zoo_architecture,
)
from weightspace.representation.presets import config_neuron_set
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES, list_zoo_models
from weightspace.zoo.store import Zoo

# small arguments per architecture; every one keeps a hidden layer, which neuron_set pools over
SMALL = {"tetris_mlp": {}, "mlp": {"in_dim": 16, "hidden": [7, 5], "out_dim": 3},
         "cnn_s": {"num_classes": 4}, "cnn_unterthiner": {"units": 5, "num_classes": 3}}


def make_zoo(arch: str, n: int = 6, *, activation: str | None = "tanh") -> Zoo:
    """`n` networks of `arch`, weights doubled so units leave their linear range. `activation` None: the
    models' activations differ (a hyperparameter column, as in a hyperparameter zoo)."""
    gen = torch.Generator().manual_seed(7)
    nets = [create_zoo_model(arch, init="kaiming_uniform", generator=gen, **SMALL[arch]) for _ in range(n)]
    layout = WeightLayout.from_module(nets[0])
    rows = torch.stack([layout.vectorize(net.state_dict()) for net in nets]).detach() * 2
    acts = [activation] * n if activation else ["relu", "sigmoid"] * (n // 2)
    samples = pd.DataFrame({"model_id": range(n), "epoch": 3, "test_acc": np.linspace(0.1, 0.8, n),
                            "lr": 1e-3, "activation": acts})
    info = {"name": f"small_{arch}", "hyperparameters": [] if activation else ["activation"],
            "architecture": {"name": arch, "kwargs": SMALL[arch]},
            "task": {"name": "synthetic", "input_shape": list(DEFAULT_INPUT_SHAPES[arch])}}
    return Zoo(rows.numpy().astype(np.float32), samples, layout, info)


def accepted(arch: str) -> bool:
    """Whether neuron_set takes networks of `arch` (it needs a hidden layer)."""
    return len(make_zoo(arch, 2).layout.layers) > 1


ARCHS = [a for a in list_zoo_models() if accepted(a)]


def outputs_encoder(zoo: Zoo, target: str = "outputs", **fields):
    config = with_zoo_architecture(NeuronSetConfig(width=8, target=target, n_queries=5, **fields), zoo)
    model = create_autoencoder(config, zoo.layout, generator=torch.Generator().manual_seed(0))
    model.fit_input_scale(torch.from_numpy(zoo.weights), row_networks(model.network_variants, zoo.samples))
    return model


def test_every_registered_architecture_is_covered():
    assert set(SMALL) == set(list_zoo_models()) and ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_target_is_invariant_under_function_preserving_permutations(arch):
    zoo = make_zoo(arch)
    model = outputs_encoder(zoo, "both")
    x = torch.from_numpy(zoo.weights)
    permuted = PermuteNeurons(zoo.layout)(x, torch.Generator().manual_seed(3))
    assert not torch.equal(permuted, x)
    raw, raw_permuted = model.function(x), model.function(permuted)
    scale = float(raw.abs().max())
    torch.testing.assert_close(raw_permuted, raw, rtol=1e-5, atol=1e-5 * max(1.0, scale))
    target = model.reconstruction_target(x)
    assert target.shape == (x.shape[0], model.num_targets + model.num_outputs) and torch.isfinite(target).all()
    torch.testing.assert_close(model.reconstruction_target(permuted), target, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_target_equals_running_each_model_alone(arch):
    zoo = make_zoo(arch)
    function = FunctionTarget(zoo.layout, zoo_architecture(zoo), n_queries=4, seed=5)
    assert function.queries.shape == (4, *DEFAULT_INPUT_SHAPES[arch])
    assert 0 <= float(function.queries.min()) and float(function.queries.max()) < 1  # data-free, uniform
    x = torch.from_numpy(zoo.weights)
    reference = []
    for row in x:  # the slow way: build, load, forward
        net = create_zoo_model(arch, activation="tanh", **SMALL[arch]).eval()
        net.load_state_dict(zoo.layout.devectorize(row.clone()))
        with torch.no_grad():
            reference.append(net(function.queries).flatten())  # (K * classes,) query by query
    reference = torch.stack(reference)
    fan_in = max(spec.fan_in for spec in zoo.layout.layers)
    # float32 sums: about sqrt(fan-in) eps of the outputs' scale per layer
    atol = len(zoo.layout.layers) * fan_in ** 0.5 * float(np.finfo(np.float32).eps) * max(1.0, float(reference.abs().max()))
    torch.testing.assert_close(function(x), reference, rtol=1e-5, atol=atol)


def test_a_row_met_again_is_looked_up_not_run(monkeypatch):
    from weightspace.representation import function_target

    zoo = make_zoo("mlp", 8)
    x = torch.from_numpy(zoo.weights)
    function = FunctionTarget(zoo.layout, zoo_architecture(zoo), n_queries=4)
    fresh = function._run(x)  # every row run once, uncached
    ran, run = [], function._run
    monkeypatch.setattr(function, "_run", lambda rows, networks=None: ran.append(len(rows)) or run(rows, networks))
    first = function(x[:5])
    again = function(torch.cat([x[3:], x[3:]]))  # rows 3 and 4 met before; 5, 6, 7 new, each twice in the batch
    assert ran == [5, 3]
    tol = dict(rtol=1e-5, atol=1e-5 * max(1.0, float(fresh.abs().max())))  # rows run in other batches
    torch.testing.assert_close(first, fresh[:5], **tol)
    torch.testing.assert_close(again, torch.cat([fresh[3:], fresh[3:]]), **tol)
    # a full cache keeps what fits and returns every row's outputs all the same
    monkeypatch.setattr(function_target, "CACHE_BYTES", 2 * 4 * function.n_outputs)
    small = FunctionTarget(zoo.layout, zoo_architecture(zoo), n_queries=4)
    torch.testing.assert_close(small(x), fresh, **tol)
    assert len(small.__dict__["_cache"]) == 2


def test_one_learner_step_trains_on_weights_alone():
    zoo = make_zoo("mlp", 12)
    config = config_neuron_set(width=8, target="outputs")
    config.encoder = with_zoo_architecture(config.encoder, zoo)
    config.train = dataclasses.replace(config.train, batch_size=6, device="cpu")
    learner = Learner(config, zoo.layout)
    assert learner.model.reconstruction_kind == "outputs on queries"
    weights = torch.from_numpy(zoo.weights)  # a bare tensor: no table of properties is at hand
    learner.model.fit_input_scale(weights)
    before = [p.detach().clone() for p in learner.model.decoder.parameters()]
    losses = learner.train_step(weights[:6])
    assert np.isfinite(losses["loss"]) and losses["loss_recon"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.model.decoder.parameters()))


def test_architecture_comes_from_zoo_json_and_no_property_is_read():
    zoo = make_zoo("tetris_mlp")
    arch = zoo_architecture(zoo)
    assert arch == {"name": "tetris_mlp", "kwargs": {}, "input_shape": [1, 4, 4], "activation": "tanh",
                    "task": {"name": "synthetic", "input_shape": [1, 4, 4]}}
    blind = Zoo(zoo.weights, zoo.samples.assign(test_acc=np.nan, lr=np.nan, epoch=0), zoo.layout, zoo.info)
    assert zoo_architecture(blind) == arch
    x = torch.from_numpy(zoo.weights)
    torch.testing.assert_close(outputs_encoder(blind).reconstruction_target(x), outputs_encoder(zoo).reconstruction_target(x))


def test_task_queries_are_the_tasks_inputs_and_a_task_without_inputs_says_so():
    from weightspace.zoo.tasks import load_task

    zoo = make_zoo("tetris_mlp")
    tetris = Zoo(zoo.weights, zoo.samples, zoo.layout, {**zoo.info, "task": {"name": "tetris", "input_shape": [1, 4, 4]}})
    function = FunctionTarget(tetris.layout, zoo_architecture(tetris), n_queries=5, queries="task")
    inputs = load_task("tetris").x_train.reshape(-1, 16)
    found = [(inputs == q.reshape(1, 16)).all(dim=1).any() for q in function.queries]
    assert function.queries.shape == (5, 1, 4, 4) and all(found)
    with pytest.raises(ValueError, match=r"queries='task': the task's inputs are \(1, 28, 28\)"):
        FunctionTarget(zoo.layout, zoo_architecture(zoo), queries="task")  # "synthetic" makes 28 x 28 images
    unknown = {**zoo_architecture(zoo), "task": {"name": "nonesuch"}}
    with pytest.raises(ValueError, match="queries='task'.*nonesuch"):
        FunctionTarget(zoo.layout, unknown, queries="task")
    with pytest.raises(ValueError, match="queries must be one of"):
        NeuronSetConfig(target="outputs", queries="images")


def test_a_varied_activation_runs_each_network_with_its_own():
    zoo = make_zoo("tetris_mlp", activation=None)
    mixed = Zoo(zoo.weights, zoo.samples.assign(activation=["relu", "sigmoid"] * 3), zoo.layout, zoo.info)
    arch = zoo_architecture(mixed)
    assert arch["activation"] is None and arch["per_row"] == {"activation": ["relu", "sigmoid"]}
    model = outputs_encoder(mixed)
    assert model.function.variants == ("relu", "sigmoid") and model.reads == ("activation",)
    assert outputs_encoder(mixed, target_activation="tanh").function.variants == ()  # one named for all
    x = torch.from_numpy(zoo.weights)
    codes = torch.tensor([0, 1] * 3)
    own = model.function(x, codes)
    for act in ("relu", "sigmoid"):  # each row's outputs are those of its network built with its activation
        alone = FunctionTarget(zoo.layout, {**arch, "per_row": None, "activation": act}, n_queries=5)
        rows = codes == ("relu", "sigmoid").index(act)
        torch.testing.assert_close(own[rows], alone(x)[rows])
    with pytest.raises(ValueError, match="pass each row's code"):
        model.function(x)
    flipped = model.function(x, 1 - codes)
    assert not torch.allclose(flipped, own)  # the activation is what differs, and the target follows it


def test_both_weighs_the_parts_by_output_weight():
    zoo = make_zoo("mlp", 10)
    model = outputs_encoder(zoo, "both", output_weight=0.8)
    x = torch.from_numpy(zoo.weights)
    target, guess = model.reconstruction_target(x), torch.zeros(x.shape[0], model.num_targets + model.num_outputs)
    stats, outs = model.standard_statistics(x), model.standard_outputs(x)
    expected = 0.2 * stats.square().mean() + 0.8 * outs.square().mean()
    torch.testing.assert_close(torch.nn.functional.mse_loss(guess, target), expected)


def test_statistics_target_builds_what_it_built_before():
    zoo = make_zoo("mlp")
    model = create_autoencoder(NeuronSetConfig(width=8), zoo.layout, generator=torch.Generator().manual_seed(0))
    assert model.function is None and not any(k.startswith("output_") for k in model.state_dict())
    assert model.reconstruction_kind == "invariant statistics"
    x = torch.from_numpy(zoo.weights)
    model.fit_input_scale(x)
    assert torch.equal(model.reconstruction_target(x), model.standard_statistics(x))


def test_an_outputs_target_without_the_zoo_architecture_says_how_to_fill_it():
    zoo = make_zoo("mlp")
    with pytest.raises(ValueError, match="with_zoo_architecture"):
        create_autoencoder(NeuronSetConfig(target="outputs"), zoo.layout)
    with pytest.raises(ValueError, match="target must be one of"):
        NeuronSetConfig(target="logits")
    assert with_zoo_architecture(NeuronSetConfig(), zoo).architecture is None  # statistics: nothing to fill


def test_the_function_space_learners_are_registered_beside_neuron_set():
    from weightspace.pipeline.learners import create_learner
    from weightspace.pipeline.quality import DEFAULT_ENCODERS, QualityConfig

    got = [create_learner(n) for n in ("outputs", "both", "function", "function_task")]
    assert [e.config.encoder.target for e in got] == ["outputs", "both", "outputs", "outputs"]
    assert [e.config.encoder.queries for e in got] == ["uniform"] * 3 + ["task"]
    base, function = create_learner("neuron_set"), got[2]
    assert function.config.encoder.decoder_hidden == 0 and function.config.loss.gamma == 0.0
    assert function.epochs == 3 * base.epochs and function.iterations == base.iterations
    assert function.shrunk().config.encoder.decoder_hidden == 0  # a smoke copy keeps its linear decoder
    assert QualityConfig().encoders == DEFAULT_ENCODERS  # named on request only
