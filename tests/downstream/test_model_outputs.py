"""B_probe (model outputs on fixed queries): equal to building and running each model alone, invariant to
neuron permutations, stateless across rows, and "not available" with a reason where a zoo cannot be run."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace import WeightLayout, create_zoo_model
from weightspace.data.augment import PermuteNeurons
from weightspace.downstream.baselines import BaselineConfig, run_baselines
from weightspace.downstream.model_outputs import (
    ModelOutputs,
    OutputsConfig,
    ProbeUnavailable,
    task_inputs,
    zoo_model_outputs,
)
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES, list_zoo_models
from weightspace.zoo.store import Zoo

# the smallest arguments of each registered architecture that still hold every kind of layer it has
TINY = {"tetris_mlp": {}, "mlp": {"in_dim": 16, "hidden": [6, 5], "out_dim": 3},
        "cnn_s": {"num_classes": 4}, "cnn_unterthiner": {"units": 4, "num_classes": 3}}
EPS32 = float(np.finfo(np.float32).eps)  # 2**-23


def tiny_zoo(arch: str, models: int = 5, activations=("tanh", "relu")) -> Zoo:
    """`models` freshly initialised networks of `arch` (weights scaled up, so activations leave their linear
    range), one checkpoint each, activations alternating, with the zoo.json entries generate writes."""
    gen = torch.Generator().manual_seed(0)
    nets = [create_zoo_model(arch, init="kaiming_normal", generator=gen, **TINY[arch]) for _ in range(models)]
    layout = WeightLayout.from_module(nets[0])
    with torch.no_grad():
        weights = (2 * torch.stack([layout.vectorize(n.state_dict()) for n in nets])).numpy().astype(np.float32)
    samples = pd.DataFrame({"model_id": np.arange(models), "epoch": 1, "test_acc": np.linspace(0.2, 0.9, models),
                            "activation": [activations[i % len(activations)] for i in range(models)]})
    info = {"name": f"tiny_{arch}", "architecture": {"name": arch, "kwargs": TINY[arch]},
            "task": {"name": "synthetic", "input_shape": list(DEFAULT_INPUT_SHAPES[arch])}}
    return Zoo(weights, samples, layout, info)


def loop_outputs(zoo: Zoo, queries: torch.Tensor) -> np.ndarray:
    """The reference: build each model with create_zoo_model, load its state dict, run it alone."""
    out = []
    for row, act in zip(zoo.weights, zoo.samples["activation"]):
        net = create_zoo_model(zoo.info["architecture"]["name"], activation=act, **zoo.info["architecture"]["kwargs"])
        net.load_state_dict(zoo.layout.devectorize(torch.from_numpy(row.copy())))
        with torch.no_grad():
            out.append(net.eval()(queries).reshape(-1).numpy())  # (K * classes,)
    return np.stack(out)


def tolerance(zoo: Zoo, reference: np.ndarray, eps: float = EPS32) -> float:
    """Rounding errors of a float32 sum of n terms grow as about sqrt(n) eps of the sum's scale (a random
    walk; n eps is the worst case), once per layer: layers x sqrt(largest fan-in) x eps x the outputs' scale."""
    fan_in = max(spec.fan_in for spec in zoo.layout.layers)
    return len(zoo.layout.layers) * fan_in ** 0.5 * eps * max(1.0, float(np.abs(reference).max()))


@pytest.mark.parametrize("arch", list_zoo_models())
def test_outputs_equal_a_loop_over_models_for_every_architecture(arch):
    zoo = tiny_zoo(arch)
    features = zoo_model_outputs(zoo, "free", n_queries=7, random_state=3)
    shape = tuple(zoo.info["task"]["input_shape"])
    queries = ModelOutputs(zoo.layout, arch, {**TINY[arch], "activation": "tanh"}, input_shape=shape, n_queries=7,
                           random_state=3).fit(zoo.weights).queries_
    assert queries.shape == (7, *shape) and 0 <= queries.min() and queries.max() < 1
    reference = loop_outputs(zoo, queries)
    assert features.shape == reference.shape and np.isfinite(features).all()
    np.testing.assert_allclose(features, reference, rtol=1e-5, atol=tolerance(zoo, reference))


def test_vmap_path_equals_the_grouped_path():
    zoo = tiny_zoo("cnn_s", activations=("tanh",))
    kwargs = {**TINY["cnn_s"], "activation": "tanh"}
    grouped = ModelOutputs(zoo.layout, "cnn_s", kwargs, n_queries=5).fit(zoo.weights)
    vmapped = ModelOutputs(zoo.layout, "cnn_s", kwargs, n_queries=5).fit(zoo.weights)
    vmapped.grouped_ = False
    assert grouped.grouped_
    a, b = grouped.transform(zoo.weights), vmapped.transform(zoo.weights)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=tolerance(zoo, b))


@pytest.mark.parametrize("arch", list_zoo_models())
def test_outputs_are_invariant_under_neuron_permutations(arch):
    zoo = tiny_zoo(arch, activations=("relu",))
    extractor = ModelOutputs(zoo.layout, arch, {**TINY[arch], "activation": "relu"}, n_queries=6).fit(zoo.weights)
    permuted = PermuteNeurons(zoo.layout)(torch.from_numpy(zoo.weights), torch.Generator().manual_seed(1)).numpy()
    assert not np.array_equal(permuted, zoo.weights)
    plain = extractor.transform(zoo.weights)
    np.testing.assert_allclose(extractor.transform(permuted), plain, rtol=1e-5, atol=tolerance(zoo, plain))


def test_a_row_does_not_depend_on_the_rows_beside_it():
    zoo = tiny_zoo("cnn_unterthiner", models=6, activations=("relu",))
    kwargs = {**TINY["cnn_unterthiner"], "activation": "relu"}
    # fitted on two rows or on all: the same queries (fit learns nothing from rows)
    few = ModelOutputs(zoo.layout, "cnn_unterthiner", kwargs, random_state=5).fit(zoo.weights[:2])
    full = ModelOutputs(zoo.layout, "cnn_unterthiner", kwargs, random_state=5, chunk_size=4).fit(zoo.weights)
    assert torch.equal(few.queries_, full.queries_) and len(full.queries_) == 64
    all_rows = full.transform(zoo.weights)  # two chunks: 4 rows, then 2
    order = np.array([4, 0, 5, 2])
    # batches of other sizes may take other kernels: the rows agree to float32 rounding of these sums
    atol = tolerance(zoo, all_rows)
    np.testing.assert_allclose(few.transform(zoo.weights[order]), all_rows[order], rtol=1e-6, atol=atol)
    for i in range(len(zoo.weights)):
        np.testing.assert_allclose(few.transform(zoo.weights[i:i + 1])[0], all_rows[i], rtol=1e-6, atol=atol)


def test_probabilities_are_the_softmax_of_the_logits_and_queries_follow_the_seed():
    zoo = tiny_zoo("tetris_mlp", activations=("tanh",))
    logits = zoo_model_outputs(zoo, "free", n_queries=8)
    probs = zoo_model_outputs(zoo, "free", n_queries=8, output="probabilities")
    np.testing.assert_allclose(probs, torch.from_numpy(logits).view(5, 8, 4).softmax(-1).view(5, -1).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(zoo_model_outputs(zoo, "free", n_queries=8, random_state=1), logits)
    normal = ModelOutputs(zoo.layout, "tetris_mlp", {}, queries="normal", n_queries=200).fit(zoo.weights).queries_
    assert normal.min() < 0 and abs(float(normal.mean())) < 0.1


def test_task_queries_are_training_inputs_without_labels():
    zoo = tiny_zoo("tetris_mlp", activations=("tanh",))
    zoo.info["task"] = {"name": "tetris", "placement": "fixed", "n_train": 50, "seed": 2, "input_shape": [1, 4, 4],
                        "num_classes": 4}
    pool = task_inputs(zoo.info)
    assert pool.shape == (50, 1, 4, 4)
    queries = ModelOutputs(zoo.layout, "tetris_mlp", {}, queries=pool, n_queries=10).fit(zoo.weights).queries_
    rows = {tuple(r) for r in pool.reshape(50, -1).tolist()}
    assert all(tuple(q) in rows for q in queries.reshape(10, -1).tolist())
    assert zoo_model_outputs(zoo, "task", n_queries=64).shape == (5, 50 * 4)  # fewer inputs than K: all of them


@pytest.mark.parametrize("change, reason", [
    (lambda z: z.info.pop("architecture"), "records no network for the weights; convert the zoo with --model"),
    (lambda z: z.info.update(architecture={"name": None, "kwargs": {}}),
     r"no registered architecture, no stored program\); convert the zoo with --model MODULE:CALLABLE"),
    (lambda z: z.info.update(architecture={"name": "resnet9000", "kwargs": {}}), "is not registered"),
    (lambda z: z.info.update(architecture={"name": "mlp", "kwargs": {"hidden": [7]}}), "layout describes"),
    (lambda z: z.samples.pop("activation"), "activation is unknown"),
    (lambda z: z.samples.__setitem__("activation", "swish"), "unknown activation"),
])
def test_a_zoo_that_cannot_be_run_says_why(change, reason):
    zoo = tiny_zoo("tetris_mlp")
    change(zoo)
    with pytest.raises(ProbeUnavailable, match=reason):
        zoo_model_outputs(zoo, "free")


def test_task_variant_without_task_files_says_so(tmp_path):
    info = {"task": {"name": "mnist", "input_shape": [1, 28, 28]}}
    with pytest.raises(ProbeUnavailable, match="reads files that are not here"):
        task_inputs(info, root=str(tmp_path))
    with pytest.raises(ProbeUnavailable, match="not one of"):
        task_inputs({"task": {"name": "imagenet"}})


def test_baselines_probe_the_outputs_and_write_their_json_keys(tmp_path):
    zoo = tiny_zoo("tetris_mlp", models=12)
    zoo.info["task"] = {"name": "tetris", "n_train": 80, "input_shape": [1, 4, 4]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 12-model zoo: probe notes
        table = run_baselines(zoo, tmp_path, BaselineConfig(targets=("test_acc",), outputs=OutputsConfig(n_queries=16, trees=True)))
    data = json.loads((tmp_path / "baseline_performance.json").read_text())
    keys = ("results_outputs_free", "results_outputs_free_gbt", "results_outputs_task", "results_outputs_task_gbt")
    assert set(keys) <= set(data) and {"results_im", "results_lq", "results_lq_gbt"} <= set(data)
    for key in keys:
        assert set(data[key]) == {"test_acc_train", "test_acc_val", "test_acc_test"}
    part = table[table["feature_set"].str.startswith("outputs_") & (table["metric"] == "r2")
                 & (table["split"] != "val")]  # 12 models may leave the validation split empty
    assert len(part) == 8 and part["value"].notna().all()
    assert not part["note"].fillna("").str.contains("not available").any()
    config = json.loads((tmp_path / "baselines_config.json").read_text())
    assert config["outputs"]["n_queries"] == 16


def test_baselines_of_a_zoo_without_architecture_note_b_probe_not_available(make_zoo, tmp_path):
    zoo = make_zoo(models=12, hyper=False)  # the toy zoo records no architecture
    with pytest.warns(UserWarning, match="not available"):
        table = run_baselines(zoo, tmp_path, BaselineConfig(targets=("test_acc",)))
    for name, label in (("outputs_free", "B_probe (data-free)"), ("outputs_task", "B_probe (task inputs)")):
        part = table[table["feature_set"] == name]
        assert set(part["probe"]) == {"linear"} and part["value"].isna().all()  # trees only on request
        assert part["note"].str.contains(f"{label}: not available: zoo.json records no network for the weights; "
                                         "convert the zoo with --model", regex=False).all()
    assert table.loc[table["feature_set"] == "stats", "value"].notna().any()  # the other rows still run
    data = json.loads((tmp_path / "baseline_performance.json").read_text())
    assert data["results_outputs_free"]["test_acc_test"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", list_zoo_models())
def test_outputs_on_a_gpu_equal_those_on_the_cpu(arch):
    zoo = tiny_zoo(arch, activations=("tanh",))
    kwargs = {**TINY[arch], "activation": "tanh"}
    cpu = ModelOutputs(zoo.layout, arch, kwargs, n_queries=8).fit(zoo.weights).transform(zoo.weights)
    gpu = ModelOutputs(zoo.layout, arch, kwargs, n_queries=8, device="cuda").fit(zoo.weights).transform(zoo.weights)
    # cuDNN convolutions may run in TF32 (10-bit mantissa, eps 2**-11)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=tolerance(zoo, cpu, eps=2.0**-11))


def test_b_probe_shows_the_activation_as_read_where_each_network_ran_with_its_own(tmp_path):
    zoo = tiny_zoo("tetris_mlp", models=24)  # tanh and relu alternate: B_probe runs each as it was built
    zoo.info["hyperparameters"] = ["activation"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 24-model zoo: probe notes
        table = run_baselines(zoo, tmp_path, BaselineConfig(targets=("test_acc", "activation"),
                                                            outputs=OutputsConfig(n_queries=8, variants=("free",))))
    probe = table[(table.feature_set == "outputs_free") & (table.target == "activation")]
    assert len(probe) and probe.value.isna().all() and probe.note.str.contains("read, not predicted").all()
    stats = table[(table.feature_set == "stats") & (table.target == "activation") & (table.split == "train")]
    assert stats.value.notna().all()  # the weight statistics never ran a network: they predict it
    shared = tiny_zoo("tetris_mlp", models=24, activations=("relu",))
    shared.info["hyperparameters"] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = run_baselines(shared, tmp_path / "shared", BaselineConfig(targets=("test_acc",),
                                                                          outputs=OutputsConfig(n_queries=8)))
    assert table[(table.feature_set == "outputs_free") & (table.split == "train")].value.notna().all()
