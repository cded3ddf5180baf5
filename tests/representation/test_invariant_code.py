"""The invariant statistics code as a baseline of its own: the neuron_set encoder's fixed code, fitted on
training weights, invariant to function-preserving permutations, reported by the baselines."""

import json

import numpy as np
import pytest
import torch

from weightspace.data.augment import PermuteNeurons
from weightspace.downstream.baselines import BaselineConfig, run_baselines
from weightspace.downstream.features import InvariantCode
from weightspace.representation.encoders.neuron_set import NeuronSetEncoder


def test_the_code_is_the_encoders_fixed_code_fitted_on_the_same_rows(make_zoo):
    zoo = make_zoo(hyper=False)
    weights = np.asarray(zoo.weights, dtype=np.float32)
    train = weights[::2]
    code = InvariantCode(zoo.layout, knots=3).fit(train)
    encoder = NeuronSetEncoder(zoo.layout, width=8, code=True, code_knots=3, generator=torch.Generator().manual_seed(1))
    encoder.fit_input_scale(torch.from_numpy(train))
    with torch.no_grad():
        appended = encoder.encode(torch.from_numpy(weights))[:, encoder.trained_dim:].numpy()
    assert np.array_equal(code.transform(weights), appended)  # the same code, whatever the learned part
    assert code.transform(weights).shape == (len(weights), encoder.code_dim)


def test_the_unhinged_code_holds_the_entries_the_hinges_cut(make_zoo):
    zoo = make_zoo(hyper=False)
    weights = np.asarray(zoo.weights, dtype=np.float32)
    hinged = InvariantCode(zoo.layout, knots=3).fit(weights).transform(weights)
    entries = InvariantCode(zoo.layout, knots=3, hinged=False).fit(weights).transform(weights)
    stats = hinged.shape[1] - 3 * entries.shape[1]  # the statistics lead both, then 3 knots x every entry
    np.testing.assert_array_equal(hinged[:, :stats], entries[:, :stats])
    knots = np.quantile(entries.astype(np.float64), [0.25, 0.5, 0.75], axis=0).astype(np.float32)
    expected = np.maximum(entries[:, None, :] - knots, 0).reshape(len(entries), -1)  # relu(v - knot), knot by knot
    np.testing.assert_allclose(hinged[:, stats:], expected, rtol=1e-5, atol=1e-5)


def test_the_knots_come_from_the_training_rows_alone(make_zoo):
    zoo = make_zoo(hyper=False)
    weights = np.asarray(zoo.weights, dtype=np.float32)
    a = InvariantCode(zoo.layout).fit(weights[:10]).transform(weights)
    b = InvariantCode(zoo.layout).fit(weights[:10]).transform(weights[::-1])[::-1]
    c = InvariantCode(zoo.layout).fit(weights[10:20]).transform(weights)
    assert np.array_equal(a, b) and not np.allclose(a, c)  # rows are coded one by one; the fit decides


def test_the_code_is_invariant_to_function_preserving_permutations(make_zoo):
    zoo = make_zoo(hyper=False)
    weights = torch.as_tensor(np.asarray(zoo.weights, dtype=np.float32))
    code = InvariantCode(zoo.layout).fit(weights.numpy())
    permuted = PermuteNeurons(zoo.layout)(weights, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(permuted, weights)
    # quantiles and pools over neurons: the same numbers in another order of summation
    np.testing.assert_allclose(code.transform(permuted.numpy()), code.transform(weights.numpy()), rtol=1e-5,
                               atol=1e-5)


def test_the_baselines_report_the_code_linear_and_with_boosted_trees(make_zoo, tmp_path):
    zoo = make_zoo(hyper=False)
    table = run_baselines(zoo, tmp_path, BaselineConfig(outputs={"variants": ()}))
    code, stats = table[table["feature_set"] == "code"], table[table["feature_set"] == "code_stats"]
    assert set(code["probe"]) == {"linear"} and set(stats["probe"]) == {"gbt"}
    assert code["value"].notna().any() and stats["value"].notna().any()
    data = json.loads((tmp_path / "baseline_performance.json").read_text())
    assert "results_code" in data and "results_code_stats_gbt" in data
    with pytest.raises(ValueError, match="0 or more"):
        InvariantCode(zoo.layout, knots=-1).fit(np.asarray(zoo.weights))
