"""The behaviour-anchored autoencoder: its loss is the structure MSE plus beta times the behaviour MSE, zero when
the decoder gives back the input weights; the behaviour part trains the decoder through the rebuilt network; the
logits it matches are those of the zoo's own networks, as a per-model loop of `create_zoo_model` computes them."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from weightspace.layout import WeightLayout
from weightspace.representation import create_autoencoder
from weightspace.representation.encoders.behaviour_ae import BehaviourAEConfig
from weightspace.representation.function_target import with_zoo_architecture
from weightspace.zoo.architectures import create_zoo_model
from weightspace.zoo.store import Zoo


def tetris_zoo(n: int = 6) -> Zoo:
    gen = torch.Generator().manual_seed(3)
    nets = [create_zoo_model("tetris_mlp", init="kaiming_uniform", generator=gen) for _ in range(n)]
    layout = WeightLayout.from_module(nets[0])
    rows = torch.stack([layout.vectorize(net.state_dict()) for net in nets]).detach().numpy()
    info = {"name": "t", "architecture": {"name": "tetris_mlp", "kwargs": {}},
            "task": {"name": "tetris", "input_shape": [1, 4, 4]}}
    return Zoo(rows, pd.DataFrame({"model_id": range(n), "epoch": 0}), layout, info)


def model(zoo: Zoo, beta: float, queries: str = "uniform"):
    config = with_zoo_architecture(BehaviourAEConfig(d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8,
                                                     beta=beta, queries=queries, n_queries=5), zoo)
    return create_autoencoder(config, zoo.layout, generator=torch.Generator().manual_seed(0)).eval()


def test_the_loss_is_structure_plus_beta_times_behaviour_and_zero_for_the_input_weights():
    zoo = tetris_zoo()
    x = torch.as_tensor(zoo.weights)
    ae = model(zoo, beta=0.7)
    target = ae.reconstruction_target(x)
    assert float(F.mse_loss(ae._joined(x, grad=True), target)) == pytest.approx(0.0, abs=1e-12)
    w_hat = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    f = ae.behaviour._run
    expected = F.mse_loss(w_hat, x) + 0.7 * F.mse_loss(f(w_hat), f(x))
    # float32 sums over a few hundred entries: relative error far below 1e-5
    assert float(F.mse_loss(ae._joined(w_hat, grad=True), target)) == pytest.approx(float(expected), rel=1e-5)
    assert model(zoo, beta=0.0).reconstruction_target(x).shape == x.shape  # beta 0: the plain weight autoencoder


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
