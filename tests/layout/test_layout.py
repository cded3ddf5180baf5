"""WeightLayout invariants: derived layouts, round trips, tokens, permutations, index_dict."""

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from weightspace import WeightLayout, create_zoo_model, list_zoo_models
from weightspace.errors import InputError
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES

ARCHS = list_zoo_models()
EPS64 = torch.finfo(torch.float64).eps


def _model(name, seed=0, **kw):
    """A zoo network with random biases: the zoo init's constant 0.01 biases hide any bias permutation error."""
    gen = torch.Generator().manual_seed(seed)
    model = create_zoo_model(name, init="kaiming_uniform", generator=gen, **kw)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
                module.bias.uniform_(-1.0, 1.0, generator=gen)
    return model


def _random_perms(layout, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {s.name: torch.randperm(s.n_out, generator=g) for s in layout.hidden_layers}


def _keeps_outputs(model, layout, index, x) -> bool:
    """Whether the weights gathered by `index` compute what the model computes on `x` (float64).

    Only the order of the sums changes, so outputs may differ by rounding: at most the longest sum's length
    times eps64 of the output scale per layer (Higham, sec. 3.1), with a factor 4 for the sums' magnitudes.
    """
    vec = layout.vectorize(dict(model.named_parameters())).detach()
    out = functional_call(model, layout.devectorize(vec), (x,))
    permuted = functional_call(model, layout.devectorize(vec[index]), (x,))
    bound = 4 * len(layout) * max(s.fan_in for s in layout.layers) * EPS64 * float(out.abs().max())
    return bool((permuted - out).abs().max() <= bound)


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
    with pytest.raises(InputError, match="starts at 70"):
        WeightLayout.from_index_dict(bad)
    with pytest.raises(InputError, match="lacks"):
        WeightLayout.from_index_dict({"layer": []})
    negative = dict(bad, idx_start=[0, 80], kernel_no=[-5, 4], idx_length=[-80, 20])
    with pytest.raises(InputError, match="must be positive integers"):
        WeightLayout.from_index_dict(negative)
    with pytest.raises(InputError, match="pair"):
        WeightLayout.from_index_dict(dict(bad, layer=[0, [2, "fc"]]))


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


@pytest.mark.float_equivalence
@pytest.mark.parametrize("name", ARCHS)
def test_permutation_preserves_function(name):
    model = _model(name).double().eval()
    layout = WeightLayout.from_module(model)
    index = layout.permutation_index(_random_perms(layout))
    vec = layout.vectorize(dict(model.named_parameters())).detach()
    assert not torch.equal(vec[index], vec)
    x = torch.randn(7, *DEFAULT_INPUT_SHAPES[name], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert _keeps_outputs(model, layout, index, x)


@pytest.mark.parametrize("name", [n for n in ARCHS if n != "tetris_mlp"])  # tetris_mlp has no biases
def test_a_wrong_bias_permutation_is_caught(name):
    model = _model(name).double().eval()
    layout = WeightLayout.from_module(model)
    index = layout.permutation_index(_random_perms(layout))
    wrong = index.clone()
    for spec in layout.hidden_layers:  # rows and next layer's inputs permuted, biases left in place
        wrong[spec.bias_slice] = torch.arange(spec.bias_slice.start, spec.bias_slice.stop)
    assert not torch.equal(wrong, index)
    x = torch.randn(7, *DEFAULT_INPUT_SHAPES[name], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert _keeps_outputs(model, layout, index, x)
    assert not _keeps_outputs(model, layout, wrong, x)


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
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2), nn.PReLU(), nn.Linear(2, 2))
    with pytest.raises(InputError, match="outside Linear/Conv2d.*'3.weight'"):
        WeightLayout.from_module(net)


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(3), nn.BatchNorm1d(3, affine=False), nn.LayerNorm(3, elementwise_affine=False),
                                  nn.GroupNorm(1, 3, affine=False), nn.InstanceNorm1d(3)])
def test_normalization_is_refused(norm):
    net = nn.Sequential(nn.Linear(4, 3), norm, nn.Tanh(), nn.Linear(3, 2))
    with pytest.raises(InputError, match=f"'1'.*{type(norm).__name__}.*normalization"):
        WeightLayout.from_module(net)


class _Residual(nn.Module):
    """fc2's output is added to its input: a skip connection."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 5), nn.Linear(5, 5), nn.Linear(5, 2)

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        return self.fc3(h + torch.tanh(self.fc2(h)))


class _ChannelsLast(nn.Module):
    """A conv map flattened channels-last (as TensorFlow does) before a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv1, self.fc2 = nn.Conv2d(1, 3, 3), nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.conv1(x)).permute(0, 2, 3, 1).flatten(1))


class _OutOfOrder(nn.Module):
    """The output layer is registered first: registration order is not the forward order."""

    def __init__(self):
        super().__init__()
        self.head, self.body = nn.Linear(4, 2), nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


@pytest.mark.parametrize("net, layer", [(_Residual(), "fc1"), (_ChannelsLast(), "conv1"), (_OutOfOrder(), "head")])
def test_networks_whose_permutations_change_the_function_are_refused(net, layer):
    with pytest.raises(InputError, match=f"permuting the outputs of layer '{layer}' .*changes"):
        WeightLayout.from_module(net)


def test_from_module_checks_biases_too(monkeypatch):
    # a permutation that leaves biases in place must fail the check, so the check cannot use constant biases
    right = WeightLayout.permutation_index

    def biases_left_in_place(self, perms):
        index = right(self, perms)
        for spec in self.hidden_layers:
            index[spec.bias_slice] = torch.arange(spec.bias_slice.start, spec.bias_slice.stop)
        return index

    model = create_zoo_model("cnn_s", init="kaiming_uniform")  # biases all 0.01
    monkeypatch.setattr(WeightLayout, "permutation_index", biases_left_in_place)
    with pytest.raises(InputError, match="changes the network's outputs"):
        WeightLayout.from_module(model)


def test_from_module_finds_an_input_or_takes_one():
    assert WeightLayout.from_module(_model("cnn_s"), input_shape=(1, 28, 28)) == WeightLayout.from_module(_model("cnn_s"))
    with pytest.raises(InputError, match=r"input of shape \(2, 1, 5, 5\)"):
        WeightLayout.from_module(_model("cnn_s"), input_shape=(1, 5, 5))
    deep = nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    assert [s.name for s in WeightLayout.from_module(deep).layers] == ["0", "2", "4"]


@pytest.mark.parametrize("change, message", [
    ({"in_block": 0}, "in_block must be a positive integer"),
    ({"in_block": -2}, "in_block must be a positive integer"),
    ({"weight_shape": [-5, 16]}, "weight_shape must hold positive integers"),
    ({"weight_shape": [0, 16]}, "weight_shape must hold positive integers"),
    ({"weight_shape": [5.0, 16]}, "weight_shape must hold positive integers"),
    ({"weight_shape": [5, 16, 1]}, "a linear weight has 2 dims"),
    ({"offset": -1}, "offset must be a non-negative integer"),
    ({"has_bias": "yes"}, "has_bias must be true or false"),
    ({"kind": "lstm"}, "kind must be one of"),
    ({"legacy_index": -1}, "legacy_index must be"),
    ({"colour": "red"}, "not a weightspace layout"),
])
def test_malformed_layout_files_are_refused(change, message):
    data = WeightLayout.from_module(_model("tetris_mlp")).to_dict()
    data["layers"][0].update(change)
    with pytest.raises(InputError, match=message):
        WeightLayout.from_dict(data)


@pytest.mark.parametrize("data", [[], {"layers": 3}, {"layers": [[1, 2]]}, {"layers": []}])
def test_layout_files_that_are_not_layouts_are_refused(data):
    with pytest.raises(InputError, match="(?i)layout"):
        WeightLayout.from_dict(data)
