"""The zoo architecture registry: every model builds, runs, and rejects bad names."""

import pytest
import torch

from weightspace import create_zoo_model, list_zoo_models
from weightspace.zoo.activations import ACTIVATIONS
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES, INITS


@pytest.mark.parametrize("name", list_zoo_models())
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_forward_without_nan(name, activation):
    model = create_zoo_model(name, activation=activation, dropout=0.1, init="kaiming_normal",
                             generator=torch.Generator().manual_seed(0))
    out = model(torch.rand(3, *DEFAULT_INPUT_SHAPES[name]))
    assert out.shape[0] == 3 and torch.isfinite(out).all()


@pytest.mark.parametrize("init", sorted(INITS))
def test_inits_are_seeded_and_biases_constant(init):
    a = create_zoo_model("cnn_s", init=init, generator=torch.Generator().manual_seed(3))
    b = create_zoo_model("cnn_s", init=init, generator=torch.Generator().manual_seed(3))
    c = create_zoo_model("cnn_s", init=init, generator=torch.Generator().manual_seed(4))
    for (k, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if k.endswith("bias"):
            assert torch.all(pa == 0.01)
        else:
            assert not torch.equal(pa, pc)


def test_uniform_and_normal_follow_2021_defaults_and_std():
    w = create_zoo_model("mlp", in_dim=50, hidden=(200,), out_dim=10, init="uniform",
                         generator=torch.Generator().manual_seed(0)).fc1.weight
    assert w.min() >= 0 and w.max() < 1
    w = create_zoo_model("mlp", in_dim=50, hidden=(200,), out_dim=10, init="normal", init_std=0.05,
                         generator=torch.Generator().manual_seed(0)).fc1.weight
    assert abs(w.std().item() - 0.05) < 0.005


def test_mlp_any_hidden_sizes():
    model = create_zoo_model("mlp", in_dim=64, hidden=[32, 16, 8], out_dim=10)
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [32, 16, 8, 10]
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_cnn_unterthiner_valid_padding_sizes():
    model = create_zoo_model("cnn_unterthiner")
    x = torch.rand(1, 1, 32, 32)
    sizes = []
    for name, module in model.named_children():
        x = module(x)
        if name.startswith("conv"):
            sizes.append(x.shape[-1])
    assert sizes == [15, 7, 3]  # Keras Conv2D(16, 3, strides=2), padding="valid"; 28 -> 13 -> 6 -> 2
    assert create_zoo_model("cnn_unterthiner")(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "resnet50"}, "cnn_s"),
        ({"name": "cnn_s", "activation": "swish"}, "leakyrelu"),
        ({"name": "cnn_s", "init": "orthogonal"}, "kaiming_normal"),
        ({"name": "cnn_s", "dropout": 1.5}, "dropout"),
        ({"name": "tetris_mlp", "width": 3}, "tetris_mlp"),
    ],
)
def test_bad_names_list_valid_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_zoo_model(**kwargs)
