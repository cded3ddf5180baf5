"""Augmentations: permutations preserve the function, views are independent draws, nothing aliases."""

import pytest
import torch
from torch.func import functional_call

from weightspace import WeightLayout, create_zoo_model, list_zoo_models
from weightspace.data.augment import (
    Compose,
    GaussianNoise,
    PermuteNeurons,
    RandomErasing,
    TwoViews,
    batched_permutation_index,
    canonical_form,
)
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES

EPS64 = torch.finfo(torch.float64).eps


def population(name: str, n: int, seed: int = 0) -> tuple[torch.nn.Module, WeightLayout, torch.Tensor]:
    """A template network, its layout and n independently initialised weight vectors (n, D).

    Biases are random: the zoo init's constant 0.01 biases would hide a bias permutation error.
    """
    gen = torch.Generator().manual_seed(seed)
    nets = [create_zoo_model(name, init="xavier_normal", generator=gen) for _ in range(n)]
    layout = WeightLayout.from_module(nets[0])
    with torch.no_grad():
        x = torch.stack([layout.vectorize(m.state_dict()) for m in nets])
        for spec in layout.layers:
            if spec.has_bias:
                x[:, spec.bias_slice] = torch.empty(n, spec.n_out).uniform_(-1.0, 1.0, generator=gen)
    return nets[0].eval(), layout, x


def assert_same_function(net, layout, a, b, inputs):
    """Weight vectors `a` and `b` compute the same outputs on `inputs`, run in float64.

    Permuted neurons only reorder sums: outputs may differ by the longest sum's length times eps64 of the
    output scale per layer (Higham, sec. 3.1), with a factor 4 for the sums' magnitudes.
    """
    net, a, b, inputs = net.double(), a.double(), b.double(), inputs.double()
    with torch.no_grad():
        out_a = functional_call(net, layout.devectorize(a), (inputs,))
        out_b = functional_call(net, layout.devectorize(b), (inputs,))
    bound = 4 * len(layout) * max(s.fan_in for s in layout.layers) * EPS64 * float(out_a.abs().max())
    torch.testing.assert_close(out_b, out_a, atol=bound, rtol=0)


@pytest.mark.float_equivalence
@pytest.mark.parametrize("name", list_zoo_models())
def test_permuted_network_computes_the_same_outputs(name):
    net, layout, x = population(name, 4)
    permuted = PermuteNeurons(layout)(x, torch.Generator().manual_seed(1))
    inputs = torch.randn(7, *DEFAULT_INPUT_SHAPES[name], generator=torch.Generator().manual_seed(2))
    for original, perm in zip(x, permuted):
        assert not torch.equal(original, perm)
        assert torch.equal(original.sort().values, perm.sort().values)  # a reordering, nothing else
        assert_same_function(net, layout, original, perm, inputs)


@pytest.mark.parametrize("name", list_zoo_models())
def test_batched_index_matches_layout_permutation_index(name):
    _, layout, _ = population(name, 1)
    gen = torch.Generator().manual_seed(3)
    perms = [{s.name: torch.randperm(s.n_out, generator=gen) for s in layout.hidden_layers} for _ in range(3)]
    batched = batched_permutation_index(layout, {k: torch.stack([p[k] for p in perms]) for k in perms[0]})
    for row, p in zip(batched, perms):
        assert torch.equal(row, layout.permutation_index(p))


def test_permuting_one_layer_touches_only_it_and_the_next_layer():
    _, layout, x = population("cnn_s", 2)
    out = PermuteNeurons(layout, ["conv2"])(x, torch.Generator().manual_seed(0))
    changed = (out != x).any(0)
    for spec in layout.layers:
        block = changed[spec.offset:spec.offset + spec.size]
        assert block.any() == (spec.name in ("conv2", "conv3")), spec.name


def test_permutations_are_fresh_per_sample_and_per_call():
    _, layout, x = population("tetris_mlp", 1)
    t = PermuteNeurons(layout)
    batch = x.expand(64, -1)
    gen = torch.Generator().manual_seed(0)
    a, b = t(batch, gen), t(batch, gen)
    assert len(torch.unique(a, dim=0)) > 40  # 120 permutations of 5 neurons
    assert not torch.equal(a, b)


def test_permute_rejects_output_and_unknown_layers():
    _, layout, _ = population("tetris_mlp", 1)
    with pytest.raises(ValueError, match="output layer"):
        PermuteNeurons(layout, ["fc2"])
    with pytest.raises(ValueError, match="permutable"):
        PermuteNeurons(layout, ["nope"])


def test_two_views_differ_are_independent_and_never_alias():
    _, layout, x = population("tetris_mlp", 1)
    batch = x.expand(4000, -1).clone()
    before = batch.clone()
    views = TwoViews(Compose([PermuteNeurons(layout), RandomErasing(p=0.5, value=0.0), GaussianNoise(0.0)]))
    v1, v2 = views(batch, torch.Generator().manual_seed(0))
    assert torch.equal(batch, before)  # input untouched
    assert v1.data_ptr() != v2.data_ptr() and v1.data_ptr() != batch.data_ptr()
    assert not torch.equal(v1, v2)
    # identical views need the same permutation (1 in 120) and the same erasing: rare for independent draws
    assert (v1 == v2).all(1).float().mean() < 0.02
    # erasing decisions of the two views are uncorrelated
    e1, e2 = (v1 == 0).any(1).float(), (v2 == 0).any(1).float()
    corr = torch.corrcoef(torch.stack([e1, e2]))[0, 1]
    assert abs(corr) < 0.1 and 0.4 < e1.mean() < 0.6


def test_views_differ_without_permutations():
    # the 2021 code returned one tensor twice when permutations were off (bug B2)
    x = torch.randn(8, 30)
    v1, v2 = TwoViews(Compose([GaussianNoise(0.1)]))(x, torch.Generator().manual_seed(0))
    assert not torch.equal(v1, v2)
    c1, c2 = TwoViews(Compose([]))(x, torch.Generator())
    assert torch.equal(c1, x) and c1.data_ptr() != c2.data_ptr() != x.data_ptr()


def test_same_seed_same_views():
    _, layout, x = population("cnn_s", 3)
    t = Compose([PermuteNeurons(layout), RandomErasing(p=1.0, mode="scatter"), GaussianNoise(0.01)])
    a = t(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, t(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, t(x, torch.Generator().manual_seed(6)))


def test_block_erasing_is_one_contiguous_run_within_scale():
    x = torch.ones(500, 200)
    out = RandomErasing(p=1.0, scale=(0.1, 0.3), value=-1.0, mode="block")(x, torch.Generator().manual_seed(0))
    erased = out == -1.0
    counts = erased.sum(1)
    assert ((counts >= 20) & (counts <= 60)).all()
    runs = (erased[:, 1:] & ~erased[:, :-1]).sum(1) + erased[:, 0]
    assert (runs == 1).all()  # one block per sample
    assert torch.equal(out[~erased], x[~erased])


def test_erasing_probability_and_scatter_mode():
    x = torch.ones(2000, 100)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(RandomErasing(p=0.0)(x, gen), x)
    hit = (RandomErasing(p=0.3, scale=(0.1, 0.2))(x, gen) == 0).any(1).float().mean()
    assert 0.25 < hit < 0.35
    out = RandomErasing(p=1.0, scale=(0.2, 0.2), mode="scatter", value="random")(x, gen)
    changed = (out != 1).sum(1)
    assert (changed <= 20).all() and (changed >= 10).all()  # 20 draws with replacement


def test_gaussian_noise_std():
    x = torch.zeros(1000, 100)
    out = GaussianNoise(0.05)(x, torch.Generator().manual_seed(0))
    assert abs(out.std().item() - 0.05) < 0.002


def test_transforms_reject_bad_arguments():
    with pytest.raises(ValueError, match="p must"):
        RandomErasing(p=1.5)
    with pytest.raises(ValueError, match="scale"):
        RandomErasing(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(mode="stripes")
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(-1.0)
    _, layout, _ = population("tetris_mlp", 1)
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        PermuteNeurons(layout)(torch.zeros(3, 99), torch.Generator())


@pytest.mark.float_equivalence
@pytest.mark.parametrize("name", ["tetris_mlp", "cnn_s"])
def test_canonical_form_is_permutation_invariant_and_function_preserving(name):
    net, layout, x = population(name, 3)
    permuted = PermuteNeurons(layout)(x, torch.Generator().manual_seed(0))
    canon = canonical_form(layout, x)
    torch.testing.assert_close(canonical_form(layout, permuted), canon, atol=0, rtol=0)
    inputs = torch.randn(5, *DEFAULT_INPUT_SHAPES[name], generator=torch.Generator().manual_seed(2))
    for a, b in zip(x, canon):
        assert_same_function(net, layout, a, b, inputs)
    first = layout.hidden_layers[0]
    norms = canon[:, layout.token_index(first)].norm(dim=-1)
    assert (norms[:, :-1] >= norms[:, 1:]).all()
