"""The permutation-invariant neuron_set encoder: invariance, what it can read out, its inputs and errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from weightspace import WeightLayout, create_zoo_model, list_zoo_models
from weightspace.downstream import evaluate
from weightspace.downstream.features import RawWeights
from weightspace.representation import NeuronSetConfig, create_autoencoder
from weightspace.representation.encoders.neuron_set import NeuronSetEncoder

EPS32 = torch.finfo(torch.float32).eps


def random_permutation_index(layout: WeightLayout, generator: torch.Generator) -> torch.Tensor:
    """A gather that permutes every hidden layer's neurons at random (function-preserving)."""
    perms = {spec.name: torch.randperm(spec.n_out, generator=generator) for spec in layout.layers[:-1]}
    return layout.permutation_index(perms)


class DeepMLP(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))


@pytest.mark.parametrize("arch", [*list_zoo_models(), "deep_mlp"])
def test_embedding_is_invariant_to_hidden_permutations(arch):
    net = DeepMLP() if arch == "deep_mlp" else create_zoo_model(arch)
    layout = WeightLayout.from_module(net)
    gen = torch.Generator().manual_seed(0)
    model = NeuronSetEncoder(layout, width=32, generator=gen).eval()
    x = torch.randn(4, layout.num_params, generator=gen)
    model.fit_input_scale(x)
    permuted = x[:, random_permutation_index(layout, gen)]
    assert not torch.equal(permuted, x)
    with torch.no_grad():
        z, zp = model.encode(x), model.encode(permuted)
    # the same numbers are pooled in another order: means over n neurons may differ by about n * eps
    # times the largest pooled magnitude; maxima and minima are exact
    n = max(spec.n_out for spec in layout.layers)
    torch.testing.assert_close(zp, z, rtol=0, atol=4 * n * EPS32 * float(z.abs().max()))
    targets = model.invariant_targets(x)
    torch.testing.assert_close(model.invariant_targets(permuted), targets,
                               rtol=0, atol=4 * n * EPS32 * float(targets.abs().max()))


def test_pooled_random_features_read_a_layers_largest_weight_that_no_single_feature_holds():
    """Training progress shows in order statistics such as a layer's largest |w|. That value is itself an entry
    of the fixed code (the 1.0 quantile of |w|) and of the skip-pooled tokens, so the whole embedding "reads" it
    trivially; here both are off and the learned part alone, at random init, must find it: pooled tanh features
    of the tokens let ridge recover it where no single feature and no raw weight does, and it comes from the
    per-neuron summaries in the tokens (without them the same pooling cannot)."""
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    gen = torch.Generator().manual_seed(1)
    n = 600
    x = torch.randn(n, layout.num_params, generator=gen) * 0.3
    first = layout.layers[0].weight_slice
    # one entry of the first layer grows by a model-specific amount at a random place
    spike = torch.rand(n, generator=gen) * 2
    where = torch.randint(first.start, first.stop, (n,), generator=gen)
    x[torch.arange(n), where] += spike * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    target = x[:, first].abs().amax(1).numpy()
    samples = pd.DataFrame({"model_id": np.arange(n), "epoch": 0, "largest_w": target, "diverged": False})
    z = {}
    for stats in (True, False):
        model = NeuronSetEncoder(layout, width=64, skip=False, code=False, neuron_stats=stats,
                                 generator=torch.Generator().manual_seed(0)).eval()
        model.fit_input_scale(x)
        with torch.no_grad():
            z[stats] = model.encode(x).numpy()
        assert z[stats].shape[1] == model.trained_dim  # the learned features only
    best_single = max(np.corrcoef(f, target)[0, 1] ** 2 for f in z[True].T if f.std() > 0)
    assert best_single < 0.5  # not a coordinate: a probe has to combine features
    table = evaluate(x.numpy(), samples, feature_sets={"pooled": z[True], "no summaries": z[False],
                                                       "B_W": RawWeights()}, targets=["largest_w"])
    r2 = table[(table.split == "test") & (table.metric == "r2")].set_index("feature_set").value
    assert r2["pooled"] > 0.6 and r2["B_W"] < 0.2, r2.to_dict()
    assert r2["pooled"] > r2["no summaries"] + 0.3, r2.to_dict()


def test_the_code_lets_a_linear_probe_bend_a_curved_function_of_the_weights():
    """A target that is a curved function of the weights' scale (1 / scale): the fixed code's hinges let
    ridge follow the curve; the same encoder without the code reads it far worse."""
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    gen = torch.Generator().manual_seed(0)
    n = 600
    scale = torch.exp(torch.rand(n, generator=gen) * 3 - 1.5)  # per-model weight scale, e^-1.5 .. e^1.5
    x = torch.randn(n, layout.num_params, generator=gen) * scale[:, None]
    samples = pd.DataFrame({"model_id": np.arange(n), "epoch": 0, "inverse_scale": (1 / scale).numpy(),
                            "diverged": False})
    z = {}
    for code in (True, False):
        model = NeuronSetEncoder(layout, width=64, code=code, generator=torch.Generator().manual_seed(0)).eval()
        model.fit_input_scale(x)  # weights only: no property of any model
        with torch.no_grad():
            z[code] = model.encode(x).numpy()
    table = evaluate(x.numpy(), samples, feature_sets={"code": z[True], "no code": z[False]},
                     targets=["inverse_scale"])
    r2 = table[(table.split == "test") & (table.metric == "r2")].set_index("feature_set").value
    assert r2["code"] > 0.93 and r2["code"] > r2["no code"] + 0.05, r2.to_dict()


def test_the_code_is_fixed_and_unseen_by_training():
    """The embedding is [learned features, standardised statistics, hinges at training quantiles]; training
    (`forward`, the head, the decoder) reads the learned features only, and the knots are kept in the state."""
    from weightspace.representation import Learner
    from weightspace.representation.presets import config_neuron_set

    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(80, layout.num_params, generator=gen) * 0.5
    model = NeuronSetEncoder(layout, width=8, code=True, code_knots=3, generator=gen).eval()
    model.fit_input_scale(x)
    with torch.no_grad():
        z, learned, stats = model.encode(x), model.learned(x), model.reconstruction_target(x)
        tokens = [(t(x) - getattr(model, f"shift_{i}")) / getattr(model, f"scale_{i}")
                  for i, t in enumerate(model.tokens)]
        hinged = torch.cat([stats] + [torch.cat([t.mean(1), t.amax(1), t.amin(1)], 1) for t in tokens], dim=1)
    levels = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    torch.testing.assert_close(model.knots, torch.quantile(hinged.double(), levels, dim=0).float(),
                               rtol=1e-5, atol=1e-5)
    k, f = model.knots.shape
    assert z.shape == (80, model.trained_dim + model.num_targets + k * f) and model.embedding_dim == z.shape[1]
    torch.testing.assert_close(z[:, :model.trained_dim], learned, rtol=0, atol=0)
    torch.testing.assert_close(z[:, model.trained_dim:model.trained_dim + model.num_targets], stats, rtol=0, atol=0)
    hinges = z[:, model.trained_dim + model.num_targets:].reshape(80, k, f)
    torch.testing.assert_close(hinges, torch.relu(hinged[:, None, :] - model.knots), rtol=0, atol=0)
    # about (k - j) / (k + 1) of the training rows lie above knot j: each hinge is active on that share
    active = (hinges > 0).double().mean(0).mean(1)
    torch.testing.assert_close(active, 1 - levels, rtol=0, atol=2 / 80)
    torch.testing.assert_close(model.decode(z), model.decode(learned), rtol=0, atol=0)
    assert model(x)[0].shape == (80, model.trained_dim)
    clone = NeuronSetEncoder(layout, width=8, code=True, code_knots=3)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.knots, model.knots)
    learner = Learner(config_neuron_set(width=8, code=True), layout)
    assert learner.head.net[0].in_features == learner.model.trained_dim < learner.model.embedding_dim
    assert Learner(config_neuron_set(width=8), layout).model.embedding_dim == learner.model.trained_dim
    assert learner.model.reconstruction_kind == "invariant statistics"


def test_input_scale_is_fitted_from_training_rows_and_kept_in_the_state():
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    model = NeuronSetEncoder(layout, width=8)
    x = torch.randn(50, layout.num_params) * 3 + 1
    model.fit_input_scale(x)
    tokens = model.tokens[0](x).reshape(-1, model.tokens[0].token_dim)
    standardised = (tokens - model.shift_0) / model.scale_0
    torch.testing.assert_close(standardised.mean(0), torch.zeros_like(standardised[0]), rtol=0, atol=1e-4)
    torch.testing.assert_close(standardised.std(0, unbiased=False), torch.ones_like(standardised[0]), rtol=0, atol=1e-4)
    clone = NeuronSetEncoder(layout, width=8)
    clone.load_state_dict(model.state_dict())
    assert bool(clone.scale_fitted) and torch.equal(clone.scale_0, model.scale_0)


def test_a_network_without_hidden_layers_is_refused_with_the_choices():
    layout = WeightLayout.from_module(nn.Sequential(nn.Linear(4, 3)))
    with pytest.raises(ValueError, match="no hidden|only 1 layer.*transformer_neuron"):
        create_autoencoder(NeuronSetConfig(), layout)
    with pytest.raises(ValueError, match="NeuronSetConfig.width must be >= 1"):
        NeuronSetConfig(width=0)
    with pytest.raises(ValueError, match="NeuronSetConfig.code_knots must be >= 0"):
        NeuronSetConfig(code_knots=-1)


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_quality_benchmark_smoke_writes_the_table(tmp_path, jobs):
    """`bench/representation_quality.py --smoke`: every encoder, its random-init control and the baselines,
    trained in this process or in worker processes (``--jobs``)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "representation_quality.py"
    out, raw = tmp_path / "quality", tmp_path / "rows.csv"
    made = subprocess.run([sys.executable, str(script), "--smoke", "--zoo", "tetris_seed", "--seeds", "1",
                           "--datasets", str(tmp_path / "zoos"), "--out", str(out), "--jobs", str(jobs),
                           "--raw", str(raw)], check=True, capture_output=True, text=True)
    assert "neuron_set, seed 0: " in made.stderr and " epochs, chose " in made.stderr  # workers log too
    table = pd.read_csv(out.with_suffix(".csv"))
    # the rows kept part by part give the same table again, without training
    subprocess.run([sys.executable, str(script), "--zoo", "tetris_seed", "--from-raw", str(raw),
                    "--out", str(tmp_path / "merged")], check=True, capture_output=True)
    merged = pd.read_csv(tmp_path / "merged.csv")
    keys = ["encoder", "feature_set", "probe", "target", "metric", "split"]
    pd.testing.assert_frame_equal(merged.drop(columns="command").sort_values(keys).reset_index(drop=True),
                                  table.drop(columns="command").sort_values(keys).reset_index(drop=True))
    assert "--from-raw" in merged.command.iloc[0]
    names = set(table.feature_set)
    assert {"B_W", "B_s", "neuron_set", "neuron_set, random init"} <= names
    assert any(n.startswith("2021") and "random init" not in n for n in names)
    assert set(table.split) == {"train", "val", "test"} and table["mean"].notna().any()
    assert "| neuron_set | linear |" in out.with_suffix(".md").read_text()


def test_an_encoder_that_cannot_take_the_zoo_stops_before_training(tmp_path, monkeypatch):
    from weightspace.pipeline.experiment import Experiment, train_representation
    from weightspace.zoo.store import Zoo

    layout = WeightLayout.from_module(nn.Sequential(nn.Linear(4, 3)))
    zoo = Zoo(np.zeros((4, layout.num_params), np.float32),
              pd.DataFrame({"model_id": range(4), "epoch": 0, "diverged": False}), layout, {"name": "flat"}, tmp_path)

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("weightspace.pipeline.tune.run_tuner", never)
    experiment = Experiment(name="flat", preset="tetris_seed", learner="neuron_set")
    with pytest.raises(ValueError, match="only 1 layer.*transformer_neuron or mlp"):
        train_representation(experiment, zoo, tmp_path / "out")
