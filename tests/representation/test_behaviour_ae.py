"""The behaviour-anchored autoencoder: its loss is the structure MSE plus beta times the behaviour MSE, zero when
the decoder gives back the input weights; the behaviour part trains the decoder through the rebuilt network; the
logits it matches are those of the zoo's own networks, and the rebuilt weights run in every registered
architecture, each network with its own activation, as a per-model loop of `create_zoo_model` computes them; no
model property but how a network is built reaches the training loss."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from weightspace.data.dataset import ZooDataset
from weightspace.layout import WeightLayout
from weightspace.representation import LearnerConfig, create_autoencoder
from weightspace.representation.config import TrainConfig
from weightspace.representation.encoders.behaviour_ae import BehaviourAEConfig
from weightspace.representation.function_target import with_zoo_architecture, zoo_architecture
from weightspace.representation.learner import Learner
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES, create_zoo_model, list_zoo_models
from weightspace.zoo.store import Zoo


def tetris_zoo(n: int = 6) -> Zoo:
    gen = torch.Generator().manual_seed(3)
    nets = [create_zoo_model("tetris_mlp", init="kaiming_uniform", generator=gen) for _ in range(n)]
    layout = WeightLayout.from_module(nets[0])
    rows = torch.stack([layout.vectorize(net.state_dict()) for net in nets]).detach().numpy()
    info = {"name": "t", "architecture": {"name": "tetris_mlp", "kwargs": {}},
            "task": {"name": "tetris", "input_shape": [1, 4, 4]}}
    return Zoo(rows, pd.DataFrame({"model_id": range(n), "epoch": 0}), layout, info)


def model(zoo: Zoo, beta: float, queries: str = "uniform", balance: str = "units"):
    config = with_zoo_architecture(BehaviourAEConfig(d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8,
                                                     beta=beta, queries=queries, n_queries=5, balance=balance), zoo)
    return create_autoencoder(config, zoo.layout, generator=torch.Generator().manual_seed(0)).eval()


def test_the_loss_is_structure_plus_beta_times_behaviour_and_zero_for_the_input_weights():
    zoo = tetris_zoo()
    x = torch.as_tensor(zoo.weights)
    ae = model(zoo, beta=0.7)
    target = ae.reconstruction_target(x)
    assert float(F.mse_loss(ae._joined(x, None, grad=True), target)) == pytest.approx(0.0, abs=1e-12)
    w_hat = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    f = ae.behaviour._run
    expected = F.mse_loss(w_hat, x) + 0.7 * F.mse_loss(f(w_hat), f(x))
    # float32 sums over a few hundred entries: relative error far below 1e-5
    assert float(F.mse_loss(ae._joined(w_hat, None, grad=True), target)) == pytest.approx(float(expected), rel=1e-5)
    assert model(zoo, beta=0.0).reconstruction_target(x).shape == x.shape  # beta 0: the plain weight autoencoder


def test_spread_balance_weighs_each_part_by_its_variance_on_the_training_rows():
    zoo = tetris_zoo(12)
    x = torch.as_tensor(zoo.weights)
    ae = model(zoo, beta=0.5, balance="spread")
    train = x[:8]
    ae.fit_input_scale(train)
    logits = ae.behaviour._run(train).detach().double().numpy()
    ratio = train.double().numpy().var(axis=0).mean() / logits.var(axis=0).mean()
    assert float(ae.spread_ratio) == pytest.approx(ratio, rel=1e-5)  # float32 logits, variances in float64
    w_hat = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    f = ae.behaviour._run
    expected = F.mse_loss(w_hat, x) + 0.5 * ratio * F.mse_loss(f(w_hat), f(x))
    loss = F.mse_loss(ae._joined(w_hat, None, grad=True), ae.reconstruction_target(x))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # the ratio is saved with the model, and the default balance has no such state
    again = model(zoo, beta=0.5, balance="spread")
    again.load_state_dict(ae.state_dict())
    assert float(again.spread_ratio) == float(ae.spread_ratio)
    assert "spread_ratio" not in model(zoo, beta=0.5).state_dict()
    with pytest.raises(ValueError, match="balance"):
        BehaviourAEConfig(balance="variance")


def test_the_behaviour_part_trains_the_decoder_through_the_rebuilt_network():
    zoo = tetris_zoo()
    x = torch.as_tensor(zoo.weights)
    ae = model(zoo, beta=1.0).train()
    z = ae.encode(x)
    out = ae.decode(z)
    behaviour = out[:, zoo.layout.num_params:]
    behaviour.square().sum().backward()
    grads = [p.grad for p in ae.inner.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_the_logits_matched_are_the_zoo_networks_own_on_the_task_inputs():
    zoo = tetris_zoo(3)
    ae = model(zoo, beta=1.0, queries="task")
    queries = ae.behaviour.queries
    x = torch.as_tensor(zoo.weights)
    logits = ae.behaviour(x).reshape(3, len(queries), -1)
    for i in range(3):
        net = create_zoo_model("tetris_mlp")
        net.load_state_dict({k: v[0] for k, v in zoo.layout.devectorize(x[i:i + 1]).items()})
        with torch.no_grad():
            np.testing.assert_allclose(net(queries).numpy(), logits[i].numpy(), rtol=1e-5, atol=1e-6)


ACTIVATIONS = ("tanh", "relu", "sigmoid")


def varied_zoo(name: str, n: int = 6) -> Zoo:
    """`n` networks of architecture `name`, their activation varying (a hyperparameter of the zoo), with the
    properties a zoo records beside them."""
    gen = torch.Generator().manual_seed(5)
    acts = [ACTIVATIONS[i % len(ACTIVATIONS)] for i in range(n)]
    nets = [create_zoo_model(name, activation=a, init="kaiming_uniform", generator=gen) for a in acts]
    layout = WeightLayout.from_module(nets[0])
    rows = torch.stack([layout.vectorize(net.state_dict()) for net in nets]).detach().numpy()
    info = {"name": name, "architecture": {"name": name, "kwargs": {}}, "hyperparameters": ["activation"],
            "task": {"name": "none", "input_shape": list(DEFAULT_INPUT_SHAPES[name])}}
    samples = pd.DataFrame({"model_id": range(n), "epoch": 0, "activation": acts,
                            "test_acc": np.linspace(0.1, 0.9, n), "lr": np.geomspace(1e-4, 1e-2, n)})
    return Zoo(rows, samples, layout, info)


@pytest.mark.parametrize("name", list_zoo_models())
def test_the_rebuilt_weights_run_in_every_registered_architecture_each_with_its_own_activation(name):
    zoo = varied_zoo(name)
    ae = model(zoo, beta=1.0)
    assert ae.network_variants == tuple(sorted(ACTIVATIONS)) and ae.reads == ("activation",)
    x = torch.as_tensor(zoo.weights)
    codes = torch.as_tensor([ae.network_variants.index(a) for a in zoo.samples["activation"]])
    with torch.no_grad():
        out = ae.decode(ae.encode(x), codes)
    d = zoo.layout.num_params
    rebuilt, logits = out[:, :d] / ae.scale_weights, out[:, d:] / ae.scale_logits
    queries = ae.behaviour.queries
    for i, act in enumerate(zoo.samples["activation"]):
        net = create_zoo_model(name, activation=act)
        net.load_state_dict({k: v[0] for k, v in zoo.layout.devectorize(rebuilt[i:i + 1]).items()})
        with torch.no_grad():
            expected = net.eval()(queries).reshape(-1)
        # float32 logits of the same network, grouped and per model: a few ulps of their size apart
        np.testing.assert_allclose(logits[i].numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="differ in activation"):
        ae.decode(ae.encode(x))  # without each row's network it refuses, rather than run them all alike


def test_no_model_property_reaches_the_training_loss():
    zoo = varied_zoo("tetris_mlp", n=8)
    planted = {**zoo_architecture(zoo), "per_row": {"activation": sorted(ACTIVATIONS), "test_acc": [0.1, 0.9]}}
    config = BehaviourAEConfig(d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8, n_queries=5,
                               queries="uniform", architecture=planted)
    with pytest.raises(ValueError, match=r"property of each model.*\['test_acc'\]|\['test_acc'\].*property"):
        create_autoencoder(config, zoo.layout)

    learner = Learner(LearnerConfig(encoder=with_zoo_architecture(replace(config, architecture=None), zoo),
                                    train=TrainConfig(batch_size=4, seed=0)), zoo.layout)
    data = ZooDataset(zoo, "train", fractions=(1.0, 0.0, 0.0))

    def loss(properties: pd.DataFrame) -> float:
        data.properties = properties
        x = data.weights[:4]
        gen = torch.Generator().manual_seed(0)  # the same views each time
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)  # the same dropout each time
            return float(learner.compute_loss(x, gen, networks=learner.row_networks(data)[:4]).total)

    honest = data.properties.copy()
    before = loss(honest)
    assert loss(honest) == before  # the same batch, views and dropout: the same loss
    scrambled = honest.assign(test_acc=honest.test_acc[::-1].to_numpy(), lr=1.0, epoch=7, model_id=-1)
    assert loss(scrambled) == before  # every other property changed: the loss did not see them
    relabelled = honest.assign(activation=honest.activation.map({"tanh": "relu", "relu": "sigmoid",
                                                                 "sigmoid": "tanh"}))
    assert loss(relabelled) != before  # the one column it reads: how each network is built
