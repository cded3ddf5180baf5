"""Train/val/test splits by model: every checkpoint of a model lands in one split.

A zoo's split is drawn once, over all of its model ids (`ModelSplit.of_zoo`),
and handed to every consumer: the encoder's datasets, the probes, the
baselines. Selecting epochs or dropping diverged rows afterwards never moves a
model to another split. Without a validation split, probes choose their
regularization on folds by model (`model_folds`, `model_holdout`), never with
checkpoints of one model on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from weightspace.errors import InputError
from weightspace.zoo.store import Zoo

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def split_models(model_ids: Sequence, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict:
    """Assign each distinct model id to a split.

    The distinct ids are sorted first (so the result does not depend on row or
    file-system order), then shuffled with ``numpy.random.default_rng(seed)``.
    The first ``floor(f_train * n)`` models go to train, the next
    ``floor(f_val * n)`` to val, the rest to test.

    Args:
        model_ids: one id per sample (repeats allowed) or per model.
        fractions: (train, val, test) or (train, test); must sum to 1.
        seed: seed of the shuffle.

    Returns:
        dict model id -> "train" | "val" | "test".

    Raises:
        ValueError: fractions that are negative or do not sum to 1.
    """
    fractions = _fractions(fractions)
    models = np.array(sorted(set(model_ids)))
    order = np.random.default_rng(seed).permutation(len(models))
    n_train = int(np.floor(fractions[0] * len(models) + 1e-9))
    n_val = int(np.floor(fractions[1] * len(models) + 1e-9))
    names = np.array(["test"] * len(models), dtype=object)
    names[order[:n_train]] = "train"
    names[order[n_train:n_train + n_val]] = "val"
    return {m.item() if hasattr(m, "item") else m: str(s) for m, s in zip(models, names)}


def split_column(model_ids: Sequence, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Per-sample split names (an array of "train"/"val"/"test"), split by model as in `split_models`."""
    assignment = split_models(model_ids, fractions, seed)
    return np.array([assignment[m.item() if hasattr(m, "item") else m] for m in np.asarray(model_ids)], dtype=object)


def _fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) == 2:
        fractions = (fractions[0], 0.0, fractions[1])
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be (train, val, test) >= 0 summing to 1, got {fractions}")
    return fractions


@dataclass(frozen=True)
class ModelSplit:
    """The split of one zoo's models, drawn once and passed to every consumer of the zoo.

    Draw it over all rows of the zoo (`of_zoo`), before selecting epochs or
    dropping rows, and give the same object to `ZooDataset`, `evaluate`,
    `run_baselines` and `run_tuner`: then every subset of the zoo's rows keeps
    each model in the split it was drawn into.
    """

    assignment: dict  # model id -> "train" | "val" | "test"
    fractions: tuple[float, float, float]  # (train, val, test) share of the models it was drawn with
    seed: int  # seed of the draw

    @classmethod
    def draw(cls, model_ids: Sequence, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 42) -> "ModelSplit":
        """The split of the distinct `model_ids` as in `split_models`."""
        fractions = _fractions(fractions)
        return cls(split_models(model_ids, fractions, seed), fractions, int(seed))

    @classmethod
    def of_zoo(cls, zoo: Zoo, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 42) -> "ModelSplit":
        """The split of every model of `zoo` (pass the whole zoo, not a selection of its rows)."""
        return cls.draw(zoo.samples["model_id"].to_numpy(), fractions, seed)

    def column(self, model_ids: Sequence) -> np.ndarray:
        """The split name of each id in `model_ids` (an object array).

        Raises:
            InputError: ids this split was not drawn over.
        """
        names = pd.Series(np.asarray(model_ids)).map(self.assignment)
        unknown = [m.item() if hasattr(m, "item") else m for m in pd.unique(np.asarray(model_ids)[names.isna()])]
        if unknown:
            raise InputError(f"{len(unknown)} model ids (e.g. {unknown[:3]}) are not in this split, which was "
                             f"drawn over {len(self.assignment)} models; draw it over the zoo these rows "
                             "come from, before selecting rows: ModelSplit.of_zoo(zoo, fractions, seed)")
        return names.to_numpy(dtype=object)

    def models(self, split: str) -> set:
        """The model ids in `split` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return {m for m, s in self.assignment.items() if s == split}

    def matches(self, fractions: Sequence[float], seed: int) -> bool:
        """Whether this split was drawn with `fractions` and `seed`."""
        return int(seed) == self.seed and np.allclose(_fractions(fractions), self.fractions, rtol=0, atol=1e-9)


def model_folds(groups: Sequence, n_splits: int, *, y: Sequence | None = None,
                random_state: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train rows, held-out rows) folds in which no group (model) is on both sides.

    With `y` the folds are stratified by it and shuffled with `random_state`; without, they are
    `GroupKFold`'s folds of balanced size.
    """
    # lazy: scikit-learn takes about 0.5 s to import, which `import weightspace.data` need not pay
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    ids = np.asarray(groups)
    if y is None:
        return list(GroupKFold(n_splits).split(ids, groups=ids))
    folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    return list(folds.split(ids, np.asarray(y), ids))


def model_holdout(groups: Sequence, fraction: float = 0.1,
                  random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): about `fraction` of the groups (models) held out whole."""
    from sklearn.model_selection import GroupShuffleSplit  # lazy: as in `model_folds`

    ids = np.asarray(groups)
    return next(GroupShuffleSplit(1, test_size=fraction, random_state=random_state).split(ids, groups=ids))


def has_repeats(groups: Sequence | None) -> bool:
    """Whether some group (model) has several rows, so that splitting rows would split a model."""
    return groups is not None and len(pd.unique(np.asarray(groups))) < len(groups)


def names_test_split(metric: str) -> bool:
    """Whether a reported metric is measured on the test split (``loss_test``, ``rsq_test``, ``<target>_test``)."""
    return metric.endswith("_test") or metric.startswith(("loss_test", "rsq_test"))
