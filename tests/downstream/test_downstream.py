"""Downstream probes and baselines: probes recover what is there and nothing more, statistics equal
NumPy, the 2021 JSON keys, and bad input gives a note instead of a crash."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from weightspace import WeightLayout, create_zoo_model
from weightspace.cli import main
from weightspace.downstream import (
    BaselineConfig,
    BoostedTreesClassifierProbe,
    BoostedTreesRegressorProbe,
    Embedding,
    Hyperparameters,
    KernelPCAFeatures,
    LayerStatistics,
    LogisticProbe,
    ProbeConfig,
    ProbeWarning,
    RawWeights,
    RidgeClassifierProbe,
    RidgeProbe,
    UMAPFeatures,
    derive_targets,
    evaluate,
    run_baselines,
    write_results_json,
)

SPLIT_KEYS = ("train", "val", "test")


# the toy zoo of these tests: four epochs, model 1 diverged (see conftest.make_zoo)
TOY = {"epochs": (0, 1, 2, 3), "diverged": (1,)}


def linear_data(n=600, d=20, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d)
    y = X @ rng.normal(size=d) + 3.0 + noise * rng.normal(size=n)
    return X, y


# ---------------------------------------------------------------- probes
def test_ridge_recovers_linear_relation_with_small_alpha():
    X, y = linear_data()
    probe = RidgeProbe().fit(X[:400], y[:400], X[400:500], y[400:500])
    assert probe.score(X[500:], y[500:]) > 0.99
    assert probe.alpha_ <= 1e-1


def test_ridge_noise_target_scores_near_zero():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(900, 50)), rng.normal(size=900)
    probe = RidgeProbe().fit(X[:600], y[:600], X[600:750], y[600:750])
    assert abs(probe.score(X[750:], y[750:])) < 0.1


@pytest.mark.parametrize("n", [300, 15])  # primal (n >= D) and dual (n < D) decompositions
def test_ridge_equals_sklearn_ridge_on_standardized_features(n):
    X, y = linear_data(n=n + 50, d=20, noise=1.0)
    Y = np.stack([y, -2 * y + X[:, 0]], axis=1)
    probe = RidgeProbe(chunk_size=7).fit(X[:n], Y[:n], X[n:], Y[n:])
    for j in range(2):
        ref = Ridge(alpha=probe.alpha_[j]).fit(probe.scaler_.transform(X[:n]), Y[:n, j])
        np.testing.assert_allclose(probe.ridge_.coef_[j], ref.coef_, rtol=1e-6, atol=1e-8)
        single = RidgeProbe().fit(X[:n], Y[:n, j], X[n:], Y[n:, j])
        assert single.alpha_ == probe.alpha_[j]
        np.testing.assert_allclose(probe.predict(X[n:])[:, j], single.predict(X[n:]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", [700, 300])  # primal (n >= D) and dual (n < D) decompositions
def test_ridge_fits_on_the_same_rows_share_one_decomposition_and_score_as_without(monkeypatch, n):
    from weightspace.downstream import probes

    rng = np.random.default_rng(3)
    X = rng.normal(size=(n + 100, 400)).astype(np.float32)
    y = X[:, :5].sum(1) + rng.normal(size=n + 100)
    classes = np.where(X[:, 0] > 0, "a", "b")
    def fit():
        return (RidgeProbe().fit(X[:n], y[:n], X[n:], y[n:]),
                RidgeClassifierProbe().fit(X[:n], classes[:n], X[n:], classes[n:]))

    monkeypatch.setattr(probes, "CACHE_ENTRIES", 0)
    alone = fit()
    monkeypatch.setattr(probes, "CACHE_ENTRIES", 2)
    probes._DECOMPOSITIONS.clear()
    calls = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda *a, **k: calls.append(1) or eigh(*a, **k))
    shared = fit()
    assert len(calls) == 1  # the classifier found the regression probe's decomposition
    for a, b in zip(alone, shared):
        assert np.array_equal(a.ridge_.coef_, b.ridge_.coef_) and np.array_equal(a.predict(X[n:]), b.predict(X[n:]))
    X[0, 0] += 1.0  # other rows: decomposed anew
    RidgeProbe().fit(X[:n], y[:n], X[n:], y[n:])
    assert len(calls) == 2


def test_ridge_without_validation_uses_leave_one_out():
    X, y = linear_data()
    probe = RidgeProbe().fit(X[:400], y[:400])
    assert np.isnan(probe.val_scores_).all() and probe.score(X[500:], y[500:]) > 0.99


def test_ridge_target_constant_on_val_falls_back_alone():
    X, y = linear_data(n=450, d=20, noise=1.0)
    other = X[:, 1] + np.arange(len(X)) % 3
    other[400:] = 1.0  # constant on the validation rows: validation R² is undefined for it
    probe = RidgeProbe().fit(X[:400], np.stack([y[:400], other[:400]], 1), X[400:], np.stack([y[400:], other[400:]], 1))
    alone = RidgeProbe().fit(X[:400], y[:400], X[400:], y[400:])
    assert probe.alpha_[0] == alone.alpha_  # the scorable target keeps its validation-chosen alpha
    np.testing.assert_allclose(probe.predict(X[:5])[:, 0], alone.predict(X[:5]), rtol=1e-6, atol=1e-8)
    assert np.isfinite(probe.val_scores_[:, 0]).all() and np.isnan(probe.val_scores_[:, 1]).all()
    loo = RidgeProbe().fit(X[:400], other[:400])  # leave-one-out, as without validation rows
    assert probe.alpha_[1] == loo.alpha_


def test_logistic_picks_C_on_validation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = np.where(X[:, 0] + 0.1 * rng.normal(size=400) > 0, "a", "b")
    probe = LogisticProbe().fit(X[:250], y[:250], X[250:320], y[250:320])
    assert probe.C_ == probe.Cs[int(np.nanargmax(probe.val_scores_))]
    assert probe.score(X[320:], y[320:]) > 0.9


def test_logistic_path_stops_at_a_perfect_validation_score():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] > 0, 1, 0)
    X[:, 0] *= 1 + 5 * np.abs(X[:, 0] > 0.3)  # separable with a margin on validation
    keep = np.abs(X[:, 0]) > 0.3
    probe = LogisticProbe().fit(X[:200], y[:200], X[200:][keep[200:]], y[200:][keep[200:]])
    first = int(np.flatnonzero(probe.val_scores_ == 1.0)[0])
    assert probe.C_ == sorted(probe.Cs)[first]  # ties go to the smaller C: nothing after it could win
    assert np.isnan(probe.val_scores_[first + 1:]).all() and np.isfinite(probe.val_scores_[:first + 1]).all()


def test_logistic_cross_validation_on_wide_features_chooses_as_sklearn_does(monkeypatch):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    import weightspace.downstream.probes as probes
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 80))
    y = np.argmax(X[:, :3] + 1.5 * rng.normal(size=(600, 3)), axis=1)  # noisy: a clear best C inside the grid
    monkeypatch.setattr(probes, "PRECONDITIONED_FEATURES", 64)
    probe = LogisticProbe(random_state=0).fit(X, y)
    Z = probe.scaler_.transform(X)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)  # equal folds: summed and averaged accuracy agree
    reference = LogisticRegressionCV(Cs=sorted(probe.Cs), cv=folds, scoring="accuracy", l1_ratios=(0.0,),
                                     max_iter=1000, **probes._CV_NEW_ATTRIBUTES).fit(Z, y)
    assert probe.C_ == float(np.atleast_1d(reference.C_)[0])
    assert np.mean(probe.predict(X) == reference.predict(Z)) > 0.98  # one objective, stopped within tolerance


def test_ridge_classifier_equals_sklearn_at_the_alpha_of_best_validation_accuracy():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 12)) * rng.uniform(0.1, 10, 12)
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :3] / X[:, :3].std(0) + rng.normal(size=(500, 3)), axis=1)]
    y_val = y[300:400].copy()
    y_val[:5] = "unseen"  # a class absent from training: always an error
    probe = RidgeClassifierProbe().fit(X[:300], y[:300], X[300:400], y_val)
    scaler = StandardScaler().fit(X[:300])
    accuracy = [np.mean(RidgeClassifier(alpha=a).fit(scaler.transform(X[:300]), y[:300])
                        .predict(scaler.transform(X[300:400])) == y_val) for a in sorted(probe.alphas)[::-1]]
    np.testing.assert_allclose(probe.val_scores_, accuracy, atol=1e-12)
    assert max(accuracy) <= 0.95  # the unseen rows count as errors
    best = sorted(probe.alphas)[::-1][int(np.argmax(accuracy))]  # first = largest alpha on ties
    reference = RidgeClassifier(alpha=best).fit(scaler.transform(X[:300]), y[:300])
    np.testing.assert_array_equal(probe.predict(X[400:]), reference.predict(scaler.transform(X[400:])))
    assert np.all(probe.alpha_ == best)


def test_boosting_threads_follow_data_size_and_outer_limit_and_leave_the_model_unchanged():
    from threadpoolctl import threadpool_limits

    from weightspace.downstream.probes import THREADED_CELLS, boosting_threads
    assert boosting_threads((100, 14)) == 1  # small data: one thread, whatever the machine has
    with threadpool_limits(1, user_api="openmp"):
        assert boosting_threads((THREADED_CELLS, 2)) == 1  # an outer limit holds
    with threadpool_limits(2, user_api="openmp"):
        assert boosting_threads((THREADED_CELLS, 2)) == 2
    X, y = linear_data(n=2000, d=300, noise=1.0)
    X_val, y_val = linear_data(n=400, d=300, noise=1.0, seed=1)
    assert X.size >= THREADED_CELLS
    fits = [BoostedTreesRegressorProbe(max_iter=10, random_state=0, n_threads=n).fit(X, y, X_val, y_val)
            for n in (1, 2, None)]
    assert [f.threads_ for f in fits[:2]] == [1, 2]
    # the thread count changes how histograms are scheduled, not what they sum: the same trees
    for f in fits[1:]:
        np.testing.assert_array_equal(f.predict(X_val), fits[0].predict(X_val))
@parametrize_with_checks([
    RidgeProbe(),
    RidgeClassifierProbe(),
    LogisticProbe(Cs=(1.0,), random_state=0),  # one C: the checks exercise the API, not the search
    BoostedTreesRegressorProbe(max_iter=10, random_state=0),
    BoostedTreesClassifierProbe(max_iter=10, random_state=0),
])
def test_probes_pass_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check(estimator)


# -------------------------------------------------------------- features
def _reference_stats(block, preset):
    if preset == "schuerholt2021":
        return [block.mean(), block.var()] + list(np.percentile(block, [1, 25, 50, 75, 99]))
    return list(np.percentile(block, [0, 25, 50, 75, 100])) + [block.std(), block.mean()]


@pytest.mark.parametrize("preset,biases", [("schuerholt2021", False), ("schuerholt2021", True), ("unterthiner", None)])
def test_layer_statistics_equal_numpy_per_layer(tmp_path, preset, biases):
    layout = WeightLayout.from_module(create_zoo_model("cnn_s"))
    rng = np.random.default_rng(0)
    W = rng.normal(size=(11, layout.num_params)).astype(np.float32)
    np.save(tmp_path / "w.npy", W)
    W = np.load(tmp_path / "w.npy", mmap_mode="r")
    stats = LayerStatistics(layout, preset=preset, biases=biases, chunk_size=4).fit(W)
    got = stats.transform(W)
    with_bias = biases if biases is not None else preset == "unterthiner"
    expected = []
    for row in np.asarray(W, dtype=np.float64):
        feats = []
        for spec in layout.layers:
            feats += _reference_stats(row[spec.weight_slice], preset)
            if with_bias and spec.has_bias:
                feats += _reference_stats(row[spec.bias_slice], preset)
        expected.append(feats)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-12, atol=1e-12)
    assert len(stats.get_feature_names_out()) == got.shape[1] == len(layout) * 7 * (2 if with_bias else 1)


def test_raw_weights_and_hyperparameters(make_zoo):
    zoo = make_zoo(models=6, **TOY)
    np.testing.assert_array_equal(RawWeights(chunk_size=5).fit(zoo.weights).transform(zoo.weights), zoo.weights)
    hyper = Hyperparameters(["activation", "lr", "diverged"]).fit(zoo.samples)
    X = hyper.transform(zoo.samples)
    names = list(hyper.get_feature_names_out())
    assert names == ["activation_relu", "activation_tanh", "diverged_False", "diverged_True", "lr"]
    np.testing.assert_array_equal(X[:, 1], zoo.samples["activation"] == "tanh")
    np.testing.assert_array_equal(X[:, 4], zoo.samples["lr"])
    unseen = zoo.samples.assign(activation="gelu")
    assert np.all(hyper.transform(unseen)[:, :2] == 0)


class _Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(100, 3)
        self.drop = torch.nn.Dropout(0.5)

    def encode(self, x):
        return torch.tanh(self.drop(self.lin(x)))


def test_embedding_is_batched_deterministic_and_restores_mode():
    torch.manual_seed(0)  # the test's own model init; the library never seeds
    model = _Encoder().train()
    W = np.random.default_rng(0).normal(size=(13, 100)).astype(np.float32)
    a = Embedding(model, batch_size=4).fit(W).transform(W)
    b = Embedding(model, batch_size=100).fit(W).transform(W)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(a, torch.tanh(model.lin(torch.from_numpy(W))).numpy(), rtol=1e-5, atol=1e-6)
    assert model.training
    with pytest.raises(ValueError, match="encode"):
        Embedding(torch.nn.Linear(2, 2)).fit(W)


def test_projections_fit_on_training_rows_only(make_zoo):
    zoo = make_zoo(models=40, **TOY)
    seen = []

    class Spy(KernelPCAFeatures):
        def fit(self, X, y=None):
            seen.append(np.asarray(X).copy())
            return super().fit(X, y)

    table = evaluate(zoo, feature_sets={"pca": Spy(5, kernel="rbf", fit_stride=1)}, targets=["test_acc"])
    train_rows = np.asarray(zoo.weights)[_train_mask(zoo)]
    np.testing.assert_array_equal(seen[0], train_rows)
    assert table["value"].notna().all()


def _train_mask(zoo, seed=42):
    from weightspace.data.splits import split_column

    split = split_column(zoo.samples["model_id"].to_numpy(), (0.7, 0.15, 0.15), seed)
    return (split == "train") & ~zoo.samples["diverged"].to_numpy()


@pytest.mark.long
@pytest.mark.slow  # umap-learn imports and JITs for about 30 s
def test_umap_features_shape():
    W = np.random.default_rng(0).normal(size=(120, 100)).astype(np.float32)
    Z = UMAPFeatures(3, n_neighbors=10, fit_stride=1).fit(W[:90]).transform(W)
    assert Z.shape == (120, 3) and np.isfinite(Z).all()


# -------------------------------------------------------------- targets and evaluation
def test_derive_targets_defaults_and_tasks(make_zoo):
    zoo = make_zoo(models=5, **TOY)
    targets = {t.name: t for t in derive_targets(zoo.samples, None, zoo.hyperparameters)}
    assert list(targets) == ["test_acc", "train_acc", "ggap", "training_iteration", "activation", "lr"]
    assert targets["activation"].task == "classification" and targets["lr"].task == "regression"
    s = zoo.samples
    np.testing.assert_allclose(targets["ggap"].values, s["train_acc"] - s["test_acc"])
    np.testing.assert_array_equal(targets["training_iteration"].values, s["epoch"])


def test_evaluate_small_zoo_excludes_diverged_and_leaves_global_rng_alone(make_zoo):
    zoo = make_zoo(models=60, **TOY)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    table = evaluate(zoo, feature_sets={"raw": RawWeights(), "stats": LayerStatistics(zoo.layout)},
                     probes=("linear", "gbt"), config=ProbeConfig(gbt_max_iter=40))
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.get_rng_state(), torch_state)
    assert list(table.columns[:7]) == ["feature_set", "probe", "target", "task", "split", "metric", "value"]
    assert table.attrs["excluded_diverged"] == 4
    assert table.groupby("target")["n"].max().max() < len(zoo.samples)
    assert set(table["split"]) == set(SPLIT_KEYS)
    test = table[table["split"] == "test"].set_index(["feature_set", "probe", "target", "metric"])["value"]
    assert test["raw", "linear", "test_acc", "r2"] > 0.9 and test["raw", "linear", "test_acc", "kendall_tau"] > 0.7
    assert test["stats", "linear", "training_iteration", "r2"] > 0.8
    assert table.query("task == 'classification'")["metric"].eq("accuracy").all()
    assert table.query("task == 'regression' and note == ''")["value"].notna().all()


def test_predictions_identify_each_sample_and_reproduce_the_scores(make_zoo, tmp_path):
    from weightspace.downstream.evaluate import PREDICTION_COLUMNS
    from weightspace.downstream.targets import score

    zoo = make_zoo(models=20, **TOY)
    table = evaluate(zoo, feature_sets={"stats": LayerStatistics(zoo.layout)}, probes=("linear", "gbt"),
                     targets=["test_acc", "training_iteration", "activation"], config=ProbeConfig(gbt_max_iter=20),
                     out_predictions=tmp_path / "predictions.csv.gz")
    predictions = pd.read_csv(tmp_path / "predictions.csv.gz")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    samples = zoo.samples.loc[predictions["row"]]
    np.testing.assert_array_equal(samples["model_id"], predictions["model_id"])
    np.testing.assert_array_equal(samples["epoch"], predictions["epoch"])
    assert not samples["diverged"].any()  # diverged samples are neither fitted nor predicted
    labels = predictions[predictions["target"] == "activation"]
    assert set(labels["prediction"]) <= {"tanh", "relu"}  # classification: class labels
    np.testing.assert_array_equal(labels["truth"], zoo.samples["activation"].to_numpy()[labels["row"]])
    for r in table.itertuples():
        part = predictions[(predictions["feature_set"] == r.feature_set) & (predictions["probe"] == r.probe)
                           & (predictions["target"] == r.target) & (predictions["split"] == r.split)]
        assert len(part) == r.n
        truth, predicted = part["truth"].to_numpy(), part["prediction"].to_numpy()
        if r.task == "regression":
            truth, predicted = truth.astype(float), predicted.astype(float)
        assert score(r.task, truth, predicted)[r.metric] == pytest.approx(r.value, rel=1e-9, abs=1e-12, nan_ok=True)


def test_score_is_sklearn_r2_and_nan_where_undefined():
    from sklearn.metrics import r2_score

    from weightspace.downstream.targets import score

    rng = np.random.default_rng(0)
    y, pred = rng.normal(size=50), rng.normal(size=50)
    assert score("regression", y, pred)["r2"] == pytest.approx(r2_score(y, pred))
    assert score("regression", y, y)["kendall_tau"] == pytest.approx(1.0)
    for truth, guess in ((np.ones(5), np.ones(5)), (np.ones(5), pred[:5]), (y[:1], pred[:1]),
                         (y[:5], np.r_[pred[:4], np.nan])):
        assert np.isnan(list(score("regression", truth, guess).values())).all()  # sklearn: 1.0, 0.0 or raises
    assert score("classification", np.array(["a", "b"]), np.array(["a", "a"])) == {"accuracy": 0.5}
    assert np.isnan(score("classification", np.array([]), np.array([]))["accuracy"])


def test_json_files_have_2021_keys(make_zoo, tmp_path):
    zoo = make_zoo(models=30, **TOY)
    table = run_baselines(zoo, tmp_path, BaselineConfig())
    data = json.loads((tmp_path / "baseline_performance.json").read_text())
    assert {"results_im", "results_lq", "results_lq_gbt", "results_hyper", "results_hyper_gbt"} <= set(data)
    for key in ("results_im", "results_lq"):
        for target in ("test_acc", "training_iteration", "ggap"):
            assert {f"{target}_{s}" for s in SPLIT_KEYS} <= set(data[key])
    assert (tmp_path / "baselines.csv").is_file() and (tmp_path / "baselines_config.json").is_file()
    assert (tmp_path / "baseline_predictions.csv.gz").is_file()
    write_results_json(table.assign(feature_set=table["feature_set"].replace("stats", "embedding")),
                       tmp_path / "results.json", extra={"loss_test": 0.5})
    flat = json.loads((tmp_path / "results.json").read_text())
    assert flat["loss_test"] == 0.5 and {f"test_acc_{s}" for s in SPLIT_KEYS} <= set(flat)


def test_cli_baselines_prints_table_and_writes_files(make_zoo, tmp_path, capsys):
    make_zoo(models=20, **TOY).save(tmp_path / "zoo")
    assert main(["baselines", str(tmp_path / "zoo"), "--out", str(tmp_path / "out"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "test_acc (R²)" in out and "B_s+T" in out and "B_W" in out
    assert (tmp_path / "out" / "baseline_performance.json").is_file()


# -------------------------------------------------------------- bad input
def _notes(table, **where):
    part = table
    for k, v in where.items():
        part = part[part[k] == v]
    return " ".join(part["note"].unique())


def test_missing_and_constant_targets_give_notes_and_the_rest_is_computed(make_zoo):
    zoo = make_zoo(models=20, hyper=False, **TOY)
    zoo.samples["const"] = 1.0
    with pytest.warns(ProbeWarning):
        table = evaluate(zoo, feature_sets={"stats": LayerStatistics(zoo.layout)},
                         targets=["test_acc", "no_such", "const"])
    assert "not in the samples table" in _notes(table, target="no_such")
    assert "single value" in _notes(table, target="const")
    assert table.query("target in ['no_such', 'const']")["value"].isna().all()
    assert table.query("target == 'test_acc'")["value"].notna().all()


def test_class_only_in_test_and_single_class_in_train(make_zoo):
    zoo = make_zoo(models=20, **TOY)
    split = np.where(zoo.samples["model_id"] < 14, "train", np.where(zoo.samples["model_id"] < 17, "val", "test"))
    zoo.samples["label"] = np.where(zoo.samples["model_id"] >= 17, "rare", zoo.samples["activation"])
    zoo.samples["one"] = np.where(split == "train", "x", "y")
    with pytest.warns(ProbeWarning):
        table = evaluate(zoo, feature_sets={"stats": LayerStatistics(zoo.layout)}, targets=["label", "one", "test_acc"],
                         splits=split)
    assert "['rare'] occur in test but not in train" in _notes(table, target="label")
    assert table.query("target == 'label' and split == 'test'")["value"].eq(0.0).all()
    assert "single class" in _notes(table, target="one")
    assert table.query("target == 'test_acc'")["value"].notna().all()


def test_nan_features_and_targets_are_dropped_and_counted(make_zoo):
    zoo = make_zoo(models=20, hyper=False, **TOY)
    X = LayerStatistics(zoo.layout).fit(zoo.weights).transform(zoo.weights)
    X[9] = np.nan  # rows 4-7 are the diverged model 1, excluded anyway
    zoo.samples.loc[[12, 13, 14], "test_acc"] = np.nan
    with pytest.warns(ProbeWarning):
        table = evaluate(zoo, feature_sets={"stats": X}, targets=["test_acc", "train_acc"])
    note = _notes(table, target="test_acc")
    assert "dropped 1 rows with non-finite features" in note and "dropped 3 rows with a missing (NaN) target" in note
    assert table.query("target == 'test_acc' and metric == 'r2'")["n"].sum() == len(zoo.samples) - 4 - 4
    assert table["value"].notna().all()


def test_empty_splits(make_zoo):
    zoo = make_zoo(models=20, hyper=False, **TOY)
    no_val = np.where(zoo.samples["model_id"] < 15, "train", "test")
    with pytest.warns(ProbeWarning):
        table = evaluate(zoo, feature_sets={"stats": LayerStatistics(zoo.layout)}, targets=["test_acc"], splits=no_val)
    assert "split 'val' is empty" in _notes(table)
    assert table.query("split == 'val'")["value"].isna().all() and table.query("split == 'test'")["value"].notna().all()
    with pytest.warns(ProbeWarning):
        table = evaluate(zoo, feature_sets={"stats": LayerStatistics(zoo.layout)}, targets=["test_acc"],
                         splits=np.full(len(zoo.samples), "test"))
    assert "split 'train' is empty" in _notes(table) and table["value"].isna().all()
