"""ZooDataset: one split (train / val / test) of a zoo's weights, as a float32 tensor plus a table.

The split is by model (every checkpoint of a model lands in the same split),
seeded, over sorted model ids (`ModelSplit`). It is drawn over all rows of
the zoo before any filtering, so excluding epochs or diverged checkpoints never
moves a model to another split; pass the zoo's `ModelSplit` to share one split
with the probes and baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from weightspace.data.rows import usable_rows
from weightspace.data.splits import SPLITS, ModelSplit
from weightspace.layout import WeightLayout
from weightspace.zoo.store import Zoo


@dataclass
class DataConfig:
    """Which zoo, which split fractions, which epochs."""

    path: str = ""  # zoo directory; made absolute before it crosses into a ray trial
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, val, test share of the models
    seed: int = 42  # seed of the split by model
    epochs: tuple[int, ...] | None = None  # checkpoints (epochs) to use; None: all
    exclude_diverged: bool = True  # drop rows flagged `diverged` and rows with non-finite weights

    def __post_init__(self) -> None:
        fractions = tuple(float(f) for f in self.fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"DataConfig.fractions must be (train, val, test) >= 0 summing to 1, got {fractions}")
        train, val, test = fractions
        self.fractions = (train, val, test)
        if self.epochs is not None:
            self.epochs = tuple(int(e) for e in self.epochs)


class ZooDataset(Dataset):
    """The rows of one split of a zoo.

    Attributes:
        weights: ``(N, D)`` float32 tensor of the selected rows (a copy; the zoo may be memory-mapped).
        properties: the N selected rows of ``zoo.samples`` (index reset), plus a ``row`` column
            (position in the zoo) and a ``split`` column.
        layout: the zoo's `WeightLayout`.
        hyperparameters: the zoo's hyperparameter columns (present in `properties`).
        split: "train", "val" or "test".
        num_excluded: rows of this split dropped as diverged or non-finite.
    """

    def __init__(self, zoo: Zoo, split: str = "train", *, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                 seed: int = 42, epochs: int | Sequence[int] | None = None, exclude_diverged: bool = True,
                 model_split: ModelSplit | None = None):
        """
        Args:
            zoo: the zoo to read.
            split: "train", "val" or "test".
            fractions: (train, val, test) share of the models, summing to 1.
            seed: seed of the split; the same seed gives the same split on every machine.
            epochs: one epoch, several, or None for all checkpoints.
            exclude_diverged: drop rows whose ``diverged`` column is true and rows with NaN/inf weights.
            model_split: the zoo's split, drawn once (`ModelSplit.of_zoo`); None: drawn here over all
                rows of `zoo` with `fractions` and `seed` (the same split).

        Raises:
            ValueError: unknown split, bad fractions, epochs the zoo does not hold, or a `model_split`
                drawn with other fractions or another seed, or over other models.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        samples = zoo.samples
        if model_split is None:
            model_split = ModelSplit.of_zoo(zoo, fractions, seed)
        elif not model_split.matches(fractions, seed):
            raise ValueError(f"model_split was drawn with fractions {model_split.fractions} and seed "
                             f"{model_split.seed}, but this dataset asks for fractions {tuple(fractions)} and seed "
                             f"{seed}; pass the same fractions and seed, or draw the split with them")
        names = model_split.column(samples["model_id"].to_numpy())
        keep = names == split
        if epochs is not None:
            wanted = [int(e) for e in np.atleast_1d(epochs)]  # one epoch or several
            missing = sorted(set(wanted) - set(zoo.epochs))
            if missing:
                raise ValueError(f"zoo {zoo.name!r} has no checkpoints at epochs {missing}; it holds epochs {zoo.epochs}")
            keep &= samples["epoch"].isin(wanted).to_numpy()
        n_split = int(keep.sum())
        if exclude_diverged:
            keep &= usable_rows(samples)
        rows = np.flatnonzero(keep)
        weights = np.ascontiguousarray(zoo.weights[rows], dtype=np.float32)
        if exclude_diverged and len(rows):
            finite = np.isfinite(weights).all(axis=1)
            if not finite.all():
                rows, weights = rows[finite], weights[finite]
        self.weights = torch.from_numpy(weights)
        self.properties: pd.DataFrame = samples.iloc[rows].reset_index(drop=True)
        self.properties.insert(0, "row", rows)
        self.properties["split"] = split
        self.layout: WeightLayout = zoo.layout
        self.hyperparameters: list[str] = zoo.hyperparameters
        self.split = split
        self.num_excluded = n_split - len(rows)

    @classmethod
    def from_config(cls, config: DataConfig, split: str = "train", zoo: Zoo | None = None, *,
                    model_split: ModelSplit | None = None) -> "ZooDataset":
        """The `split` of the zoo at ``config.path`` (or of `zoo`, if given), by `model_split` if given."""
        if zoo is None:
            if not config.path:
                raise ValueError("DataConfig.path is empty; set it to a zoo directory")
            zoo = Zoo.load(config.path)
        return cls(zoo, split, fractions=config.fractions, seed=config.seed, epochs=config.epochs,
                   exclude_diverged=config.exclude_diverged, model_split=model_split)

    @classmethod
    def splits(cls, config: DataConfig, zoo: Zoo | None = None, *,
               model_split: ModelSplit | None = None) -> dict[str, "ZooDataset"]:
        """Every non-empty split, keyed "train" / "val" / "test" (the zoo is loaded and split once)."""
        if zoo is None:
            if not config.path:
                raise ValueError("DataConfig.path is empty; set it to a zoo directory")
            zoo = Zoo.load(config.path)
        if model_split is None:
            model_split = ModelSplit.of_zoo(zoo, config.fractions, config.seed)
        out = {s: cls.from_config(config, s, zoo, model_split=model_split)
               for s, f in zip(SPLITS, config.fractions) if f > 0}
        return {s: d for s, d in out.items() if len(d)}

    def __len__(self) -> int:
        return self.weights.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.weights[i]

    def __repr__(self) -> str:
        return (f"ZooDataset(split={self.split!r}, samples={len(self)}, "
                f"models={self.properties['model_id'].nunique()}, D={self.layout.num_params})")
