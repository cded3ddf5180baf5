"""The label-scarce protocol: k labelled training models per draw, CV among them, the whole test split."""

import numpy as np
import pandas as pd
import pytest

from weightspace.downstream import label_scarce
from weightspace.downstream.label_scarce import (
    ALL,
    LabelLeakError,
    LabelScarceConfig,
    draw_labelled,
    label_scarce_scores,
    summarize,
)
from weightspace.downstream.targets import Target


def population(models: int = 60, checkpoints: int = 3, seed: int = 0):
    """Rows of `models` models x `checkpoints`; the target is linear in the features plus noise."""
    rng = np.random.default_rng(seed)
    model_ids = np.repeat(np.arange(models), checkpoints)
    X = rng.normal(size=(len(model_ids), 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=len(model_ids))
    splits = np.where(model_ids < 40, "train", np.where(model_ids < 50, "val", "test"))
    return X, Target("y", "regression", y), model_ids, splits


def test_each_draw_labels_k_training_models_and_scores_the_whole_test_split():
    X, target, model_ids, splits = population()
    config = LabelScarceConfig(ks=(10, ALL), draws=3, probes=("linear",))
    table = label_scarce_scores({"x": X}, [target], model_ids, splits, config)
    assert sorted(table["k"].unique()) == ["10", "all"]
    assert (table.loc[table.k == "10", "labelled_models"] == 10).all() and (table.k == "10").sum() == 3
    assert table.loc[table.k == "all", "labelled_models"].item() == 40  # every training model, once
    assert (table.loc[table.k == "10", "labelled_rows"] == 30).all()
    assert table["score"].min() > 0.9  # a linear target: even 10 labelled models recover it
    summary = summarize(table)
    assert summary.loc[summary.k == "10", "draws"].item() == 3


def test_draws_come_from_the_training_models_only_and_differ():
    draws = draw_labelled(np.arange(40), 10, 5, seed=0)
    assert all(len(d) == 10 and set(d) <= set(range(40)) for d in draws)
    assert len({tuple(d) for d in draws}) == 5
    assert [tuple(d) for d in draws] == [tuple(d) for d in draw_labelled(np.arange(40), 10, 5, seed=0)]


def test_the_labels_of_unlabelled_models_never_reach_a_probe(monkeypatch):
    X, target, model_ids, splits = population()
    config = LabelScarceConfig(ks=(10,), draws=1, probes=("linear",))
    seen = []
    real = label_scarce.make_probe

    def spy(*args, **kwargs):  # every probe the protocol fits records the models of its rows
        probe = real(*args, **kwargs)
        fit = probe.fit

        def recorded(X, y, **fit_kwargs):
            seen.append(np.unique(fit_kwargs["groups"]))
            return fit(X, y, **fit_kwargs)

        probe.fit = recorded
        return probe

    monkeypatch.setattr(label_scarce, "make_probe", spy)
    label_scarce_scores({"x": X}, [target], model_ids, splits, config)
    assert len(seen) == 1 and len(seen[0]) == 10

    # a planted leak: the fitting rows become every training row, not the drawn models' rows
    monkeypatch.setattr(label_scarce, "_labelled_rows", lambda ids, s, labelled: np.flatnonzero(s == "train"))
    with pytest.raises(LabelLeakError, match="outside the labelled draw"):
        label_scarce_scores({"x": X}, [target], model_ids, splits, config)


def test_classification_targets_score_accuracy_and_bad_ks_are_refused():
    X, target, model_ids, splits = population()
    labels = np.where(target.values > 0, "high", "low").astype(object)
    table = label_scarce_scores({"x": X}, [Target("c", "classification", labels)], model_ids, splits,
                                LabelScarceConfig(ks=(30,), draws=1, probes=("linear",)))
    assert table["metric"].item() == "accuracy" and table["score"].item() > 0.8
    with pytest.raises(ValueError, match="at least 2"):
        LabelScarceConfig(ks=(1,))
    assert isinstance(table, pd.DataFrame)


def test_scored_rows_are_clipped_to_the_labelled_models_range():
    X, target, model_ids, splits = population()
    rng = np.random.default_rng(1)
    # a feature of pure noise, nearly constant on the training models and wide elsewhere: standardised by the
    # labelled rows' tiny spread, it stands ~1e4 deviations out on the test rows
    narrow = np.where(splits == "train", 1e-4, 1.0) * rng.normal(size=len(model_ids))
    X = np.column_stack([X, narrow])
    config = LabelScarceConfig(ks=(10,), draws=3, probes=("linear",))
    clipped = label_scarce_scores({"x": X}, [target], model_ids, splits, config)
    raw = label_scarce_scores({"x": X}, [target], model_ids, splits, LabelScarceConfig(ks=(10,), draws=3,
                                                                                      probes=("linear",), clip=False))
    assert clipped.score.min() > 0.9  # what the four real features give
    assert raw.score.min() < 0.5  # unclipped, the noise feature's tiny fitted weight times 1e4 runs away


def test_regression_targets_fitted_together_score_as_each_alone():
    X, target, model_ids, splits = population()
    rng = np.random.default_rng(2)
    other = Target("z", "regression", X @ np.array([0.0, 1.0, 1.0, -1.0]) + rng.normal(size=len(model_ids)))
    gappy = target.values.copy()
    gappy[::7] = np.nan  # rows without this target: fitted apart from the others
    gappy = Target("g", "regression", gappy)
    targets = [target, other, gappy]
    config = LabelScarceConfig(ks=(10, ALL), draws=2, probes=("linear",))
    together = label_scarce_scores({"x": X}, targets, model_ids, splits, config)
    alone = pd.concat([label_scarce_scores({"x": X}, [t], model_ids, splits, config) for t in targets])
    keys = ["target", "k", "draw"]
    merged = together.merge(alone, on=keys, suffixes=("", "_alone"))
    assert len(merged) == len(together) == 3 * 3
    assert (merged.labelled_rows == merged.labelled_rows_alone).all()
    # one decomposition for every target instead of one each: the same fit up to rounding
    np.testing.assert_allclose(merged.score, merged.score_alone, rtol=0, atol=1e-9)


def test_class_targets_can_be_left_out():
    X, target, model_ids, splits = population()
    labels = Target("c", "classification", np.where(target.values > 0, "high", "low").astype(object))
    config = LabelScarceConfig(ks=(30,), draws=1, probes=("linear",), classes=False)
    table = label_scarce_scores({"x": X}, [target, labels], model_ids, splits, config)
    assert list(table.target) == ["y"]
