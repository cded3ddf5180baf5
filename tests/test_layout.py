"""WeightLayout invariants: derived layouts, round trips, tokens, permutations, index_dict."""

import json

import pytest
import torch
from torch.func import functional_call

from weightspace import WeightLayout, create_zoo_model, list_zoo_models
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES

ARCHS = list_zoo_models()


def _model(name, seed=0, **kw):
    return create_zoo_model(name, init="kaiming_uniform", generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("name", ARCHS)
def test_round_trip_single_and_batched(name):
    model = _model(name)
    layout = WeightLayout.from_module(model)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    vec = layout.vectorize(sd)
    assert vec.shape == (layout.num_params,)
    assert vec.shape[0] == sum(p.numel() for p in model.parameters())
    back = layout.devectorize(vec)
    assert back.keys() == sd.keys()
    for key in sd:
        assert torch.equal(back[key], sd[key])
    # batched: (B, D) <-> state dicts with a leading batch dim
    batch = torch.stack([layout.vectorize({k: v.detach() for k, v in _model(name, s).state_dict().items()}) for s in range(3)])
    stacked = layout.devectorize(batch)
    assert all(t.shape[0] == 3 for t in stacked.values())
    assert torch.equal(layout.vectorize(stacked), batch)


@pytest.mark.parametrize("name", ARCHS)
def test_forward_from_devectorized_vector(name):
    model = _model(name).eval()
    layout = WeightLayout.from_module(model)
    vec = layout.vectorize(dict(model.named_parameters())).detach()
    x = torch.randn(5, *DEFAULT_INPUT_SHAPES[name])
    out = functional_call(model, layout.devectorize(vec), (x,))
    assert torch.allclose(out, model(x))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ARCHS)
def test_dropout_does_not_shift_layers(name):
    plain = WeightLayout.from_module(_model(name, dropout=0.0))
    dropped = WeightLayout.from_module(_model(name, dropout=0.5))
    assert plain == dropped


@pytest.mark.parametrize(
    "name, kwargs, params, starts, lengths, token_sizes",
    [
        ("tetris_mlp", {}, 100, [0, 80], [80, 20], [16, 5]),
        ("cnn_s", {}, 2464, [0, 208, 1414, 1514, 2254], [208, 1206, 100, 740, 210], [26, 201, 25, 37, 21]),
        ("cnn_s", {"channels_in": 3}, 2864, [0, 608, 1814, 1914, 2654], [608, 1206, 100, 740, 210], [76, 201, 25, 37, 21]),
        ("cnn_unterthiner", {}, 4970, [0, 160, 2480, 4800], [160, 2320, 2320, 170], [10, 145, 145, 17]),
    ],
)
def test_reference_numbers(name, kwargs, params, starts, lengths, token_sizes):
    layout = WeightLayout.from_module(_model(name, **kwargs))
    assert layout.num_params == params
    index = layout.to_index_dict()
    assert index["idx_start"] == starts
    assert index["idx_length"] == lengths
    assert [s.token_size for s in layout.layers] == token_sizes
    assert layout.num_tokens == {"tetris_mlp": 9, "cnn_s": 48, "cnn_unterthiner": 58}[name]


def test_cnn_s_index_dict_matches_2021_file(tmp_path):
    layout = WeightLayout.from_module(_model("cnn_s"))
    path = tmp_path / "index_dict.json"
    layout.save_index_dict(path)
    data = json.loads(path.read_text())
    assert data["layer"] == [[0, "conv2d"], [3, "conv2d"], [6, "conv2d"], [9, "fc"], [11, "fc"]]
    assert data["kernel_no"] == [8, 6, 4, 20, 10]
    assert data["kernel_size"] == [25, 25, 4, 9, 1]
    assert data["channels_in"] == [1, 8, 6, 4, 20]
    again = WeightLayout.load_index_dict(path)
    assert again.same_structure(layout)
    assert [s.name for s in again.layers] == [f"module_list.{i}" for i in (0, 3, 6, 9, 11)]


def test_tetris_index_dict_as_written_in_2021():
    # the 2021 Tetris file describes the first layer as kernel_size 16 with one channel
    legacy = {"layer": [[0, "fc"], [2, "fc"]], "idx_start": [0, 80], "idx_length": [80, 20],
              "kernel_no": [5, 4], "kernel_size": [16, 1], "channels_in": [1, 5]}
    layout = WeightLayout.from_index_dict(legacy)
    assert layout.num_params == 100
    assert layout.same_structure(WeightLayout.from_module(_model("tetris_mlp"))) is False  # in_block differs
    assert [s.weight_shape for s in layout.layers] == [(5, 16), (4, 5)]
    assert not any(s.has_bias for s in layout.layers)


def test_index_dict_errors():
    bad = {"layer": [[0, "fc"], [2, "fc"]], "idx_start": [0, 70], "idx_length": [80, 20],
           "kernel_no": [5, 4], "kernel_size": [16, 1], "channels_in": [1, 5]}
    with pytest.raises(ValueError, match="starts at 70"):
        WeightLayout.from_index_dict(bad)
    with pytest.raises(ValueError, match="lacks"):
        WeightLayout.from_index_dict({"layer": []})


@pytest.mark.parametrize("name", ARCHS)
def test_token_slices_tile_the_vector(name):
    layout = WeightLayout.from_module(_model(name))
    idx = torch.cat([t.reshape(-1) for t in layout.token_indices()])
    assert torch.equal(idx.sort().values, torch.arange(layout.num_params))
    model = _model(name)
    vec = layout.vectorize(dict(model.named_parameters())).detach()
    for spec, index in zip(layout.layers, layout.token_indices()):
        w = dict(model.named_parameters())[f"{spec.name}.weight"].detach()
        tokens = vec[index]
        assert torch.equal(tokens[:, : spec.fan_in], w.reshape(spec.n_out, -1))
        if spec.has_bias:
            assert torch.equal(tokens[:, -1], dict(model.named_parameters())[f"{spec.name}.bias"].detach())


@pytest.mark.parametrize("name", ARCHS)
def test_permutation_preserves_function(name):
    model = _model(name).eval()
    layout = WeightLayout.from_module(model)
    g = torch.Generator().manual_seed(1)
    perms = {s.name: torch.randperm(s.n_out, generator=g) for s in layout.hidden_layers}
    index = layout.permutation_index(perms)
    vec = layout.vectorize(dict(model.named_parameters())).detach()
    permuted = vec[index]
    assert not torch.equal(permuted, vec)
    x = torch.randn(7, *DEFAULT_INPUT_SHAPES[name])
    out = functional_call(model, layout.devectorize(permuted), (x,))
    assert torch.allclose(out, model(x), atol=1e-5)


def test_permutation_errors():
    layout = WeightLayout.from_module(_model("tetris_mlp"))
    with pytest.raises(ValueError, match="output layer"):
        layout.permutation_index({"fc2": torch.arange(4)})
    with pytest.raises(ValueError, match="permutation of range"):
        layout.permutation_index({"fc1": torch.tensor([0, 0, 1, 2, 3])})
    with pytest.raises(ValueError, match="unknown layer"):
        layout.permutation_index({"nope": torch.arange(5)})


def test_json_round_trip(tmp_path):
    layout = WeightLayout.from_module(_model("cnn_s"))
    layout.save(tmp_path / "layout.json")
    assert WeightLayout.load(tmp_path / "layout.json") == layout


def test_vectorize_errors():
    model = _model("tetris_mlp")
    layout = WeightLayout.from_module(model)
    sd = dict(model.state_dict())
    del sd["fc2.weight"]
    with pytest.raises(KeyError, match="fc2.weight"):
        layout.vectorize(sd)
    with pytest.raises(ValueError, match="D=100"):
        layout.devectorize(torch.zeros(99))


def test_unsupported_modules_are_refused():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="outside Linear/Conv2d"):
        WeightLayout.from_module(net)
