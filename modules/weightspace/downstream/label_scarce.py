"""The label-scarce protocol: probes that see the labels of only k training models.

Self-supervised training may read every training model's weights; what is scarce is labels. So
for each k (e.g. 10, 30, 100, all) and each of several draws, k models are drawn from the
training split, and a probe is fitted on their rows alone. Its regularisation is chosen by
cross-validation over those labelled models (whole models held out: the probes' `groups`), never
on the validation split, whose labels the protocol does not grant. It is scored on every row of
the test split.

A linear probe fitted on a few models standardises each feature by those models' spread; a feature nearly
constant among them (a hinge of the code that few of them reach) then stands thousands of standard deviations
out on other models, and the probe's prediction there runs away (tetris_seed, the code, 10 models: R² -55 on
one draw). So the rows a probe scores are clipped to the range its labelled rows span (`clip`): a probe sees
no feature value beyond what its labelled models showed, as a tree's splits do by construction.

The labels of the other models never reach a probe: the fitting step reads its targets from a
copy in which every row outside the drawn models is blanked (NaN, or None for a class), and
refuses (`LabelLeakError`) when a blank reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from weightspace.downstream.probes import ProbeConfig, make_probe
from weightspace.downstream.targets import CLASSIFICATION, Target, score
from weightspace.errors import InputError

ALL = "all"  # k = every training model


class LabelLeakError(RuntimeError):
    """A label of a model outside the labelled draw reached a probe."""


@dataclass
class LabelScarceConfig:
    """What `label_scarce_scores` runs."""

    ks: tuple = (10, 30, 100, ALL)  # labelled training models per draw; ALL: every one
    draws: int = 5  # draws of the labelled models per k (one for ALL)
    probes: tuple[str, ...] = ("linear", "gbt")  # probe kinds
    seed: int = 0  # seeds the draws
    clip: bool = True  # scored rows clipped to the range of the labelled rows' features (linear probes)
    classes: bool = True  # also the class targets (logistic cross-validation: minutes per draw on wide features)

    def __post_init__(self) -> None:
        for k in self.ks:
            if k != ALL and not (isinstance(k, (int, np.integer)) and k >= 2):
                raise InputError(f"LabelScarceConfig.ks holds {k!r}; give whole numbers of at least 2 "
                                 f"(cross-validation needs two models) or {ALL!r}")
        if int(self.draws) < 1:
            raise InputError(f"LabelScarceConfig.draws must be at least 1, got {self.draws}")


def draw_labelled(train_models: np.ndarray, k, draws: int, seed: int) -> list[np.ndarray]:
    """`draws` sorted sets of `k` model ids drawn from `train_models` (every model, once, for k = ALL)."""
    models = np.unique(train_models)
    if k == ALL or k >= len(models):
        return [models]
    rng = np.random.default_rng([seed, int(k)])
    return [np.sort(rng.choice(models, int(k), replace=False)) for _ in range(draws)]


def _labelled_rows(model_ids: np.ndarray, splits: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """The rows a probe is fitted on: training rows of the labelled models."""
    return np.flatnonzero((splits == "train") & np.isin(model_ids, labelled))


def _visible(target: Target, rows: np.ndarray) -> np.ndarray:
    """The target's values with every row outside `rows` blanked."""
    if target.task == CLASSIFICATION:
        blank = np.full(len(target.values), None, dtype=object)
    else:
        blank = np.full(len(target.values), np.nan)
    blank[rows] = target.values[rows]
    return blank


def _checked_labels(values: np.ndarray, task: str) -> np.ndarray:
    missing = np.array([v is None for v in values]) if task == CLASSIFICATION else ~np.isfinite(values)
    if missing.any():
        raise LabelLeakError(f"{int(missing.sum())} of the {len(values)} labels handed to a probe belong to models "
                             "outside the labelled draw; the protocol grants only the drawn models' labels")
    return values


def label_scarce_scores(features: Mapping[str, np.ndarray], targets: Sequence[Target], model_ids: np.ndarray,
                        splits: np.ndarray, config: LabelScarceConfig | None = None,
                        probe_config: ProbeConfig | None = None) -> pd.DataFrame:
    """Score every feature set, probe and target with k labelled training models.

    Args:
        features: feature set name -> ``(S, F)`` features, one row per sample.
        targets: the properties to predict (rows aligned with `features`); only their labelled rows are read.
        model_ids: ``(S,)`` the model of each row; splits: ``(S,)`` "train" / "val" / "test" per row.

    Returns:
        One row per feature set, probe, target, k and draw: ``feature_set, probe, target, k, draw,
        labelled_models, labelled_rows, metric, score`` (R² for regression, accuracy for classification,
        on the whole test split).

    Raises:
        LabelLeakError: a label outside the drawn models reached a probe.
    """
    config = config or LabelScarceConfig()
    model_ids, splits = np.asarray(model_ids), np.asarray(splits).astype(str)
    test = splits == "test"
    train_models = model_ids[splits == "train"]
    rows = []
    live = [t for t in targets if not t.note and (config.classes or t.task != CLASSIFICATION)]
    for k in config.ks:
        for draw, labelled in enumerate(draw_labelled(train_models, k, config.draws, config.seed)):
            fit_rows = _labelled_rows(model_ids, splits, labelled)
            labelled_rows = np.isin(model_ids, labelled)

            def record(name, probe_name, target, usable, value):
                rows.append({"feature_set": name, "probe": probe_name, "target": target.name, "k": str(k),
                             "draw": draw, "labelled_models": len(labelled), "labelled_rows": len(usable),
                             "metric": "accuracy" if target.task == CLASSIFICATION else "r2", "score": value})

            for name, X in features.items():
                X = np.asarray(X)
                finite = np.isfinite(X[fit_rows]).all(axis=1)
                # the linear probe fits every regression target on the same rows at once: rows -> (rows, [(target, y)])
                together: dict[bytes, tuple[np.ndarray, list[tuple[Target, np.ndarray]]]] = {}
                for target in live:
                    usable = fit_rows[finite & target.valid[fit_rows]]
                    visible = _visible(target, np.flatnonzero(labelled_rows & target.valid))
                    y = _checked_labels(visible[usable], target.task)
                    for probe_name in config.probes:
                        if probe_name == "linear" and target.task != CLASSIFICATION:
                            together.setdefault(usable.tobytes(), (usable, []))[1].append((target, y))
                            continue
                        value = _fit_and_score(probe_name, target.task, X, y, usable, model_ids, test & target.valid,
                                               target.values, probe_config, clip=config.clip)
                        record(name, probe_name, target, usable, value)
                for usable, group in together.values():
                    for (target, _), value in zip(group, _fit_and_score_together(X, usable, group, model_ids, test,
                                                                                 probe_config, clip=config.clip)):
                        record(name, "linear", target, usable, value)
    return pd.DataFrame(rows)


def _scored_rows(X: np.ndarray, rows: np.ndarray, scored: np.ndarray, clip: bool) -> np.ndarray:
    """The features of the `scored` rows, clipped (with `clip`) to the range the fitted `rows` span."""
    Z = X[scored]
    return np.clip(Z, X[rows].min(axis=0), X[rows].max(axis=0)) if clip else Z


def _fit_and_score_together(X: np.ndarray, rows: np.ndarray, group: list, model_ids: np.ndarray, test: np.ndarray,
                            probe_config: ProbeConfig | None, *, clip: bool = True) -> list[float]:
    """R² of each (target, labels) in `group`: one ridge probe fitted on `rows` for all of them (each target
    keeps its own alpha: the same fits as one probe per target, from one decomposition)."""
    Y = np.column_stack([y for _, y in group]).astype(np.float64)
    probe = make_probe("linear", group[0][0].task, probe_config)
    probe.fit(X[rows], Y if Y.shape[1] > 1 else Y[:, 0], groups=model_ids[rows])
    scored = test & np.any([target.valid for target, _ in group], axis=0)
    Z = _scored_rows(X, rows, scored, clip)
    predicted = np.asarray(probe.predict(Z)).reshape(len(Z), -1)
    out = []
    for j, (target, _) in enumerate(group):
        mask = target.valid[scored]
        out.append(score(target.task, target.values[scored][mask], predicted[mask, j])["r2"])
    return out


def _fit_and_score(probe_name: str, task: str, X: np.ndarray, y: np.ndarray, rows: np.ndarray,
                   model_ids: np.ndarray, scored: np.ndarray, truth: np.ndarray,
                   probe_config: ProbeConfig | None, *, clip: bool = True) -> float:
    if task == CLASSIFICATION and len(set(y)) < 2:
        return np.nan  # one class among the labelled models: nothing to fit
    probe = make_probe(probe_name, task, probe_config)
    probe.fit(X[rows], y, groups=model_ids[rows])  # no validation split: CV over the labelled models
    predicted = probe.predict(_scored_rows(X, rows, scored, clip and probe_name == "linear"))
    result = score(task, truth[scored], predicted)
    return result["accuracy" if task == CLASSIFICATION else "r2"]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (standard deviation) over draws: one row per feature set, probe, target and k."""
    keys = ["feature_set", "probe", "target", "k", "metric"]
    summary = table.groupby(keys, sort=False)["score"].agg(["mean", "std", "count"]).reset_index()
    return summary.rename(columns={"count": "draws"})
