"""The baseline suite of a zoo: raw weights and statistics with linear probes, statistics with boosted
trees, hyperparameters alone, and optionally the 2021 Tetris extras (kernel PCA, UMAP).

Beside the 2021 baselines (B_W, B_s with a linear probe) this runs the stronger
bars of Unterthiner et al. 2020: boosted trees on the statistics, and the
hyperparameters alone. On a zoo with several checkpoints per model the
``hyper`` features include the epoch (configuration plus training time), so
``training_iteration`` is not probed from them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from weightspace.downstream.evaluate import DEFAULT_FRACTIONS, evaluate, write_baseline_json, write_csv
from weightspace.downstream.features import (PRESETS, Hyperparameters, KernelPCAFeatures, LayerStatistics,
                                             RawWeights, UMAPFeatures)
from weightspace.downstream.probes import ProbeConfig
from weightspace.zoo.store import Zoo

KPCA_KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")
FILES = {"table": "baselines.csv", "json": "baseline_performance.json", "config": "baselines_config.json"}


@dataclass
class BaselineConfig:
    """What `run_baselines` computes."""

    split_seed: int = 42  # seed of the split by model (`split_column`); 42 as ZooDataset and the 2021 code
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS  # (train, val, test) fractions of the models
    stats_preset: str = "schuerholt2021"  # LayerStatistics preset: "schuerholt2021" or "unterthiner"
    stats_biases: bool | None = None  # summarize biases too; None: the preset's default
    targets: tuple[str, ...] | None = None  # target names; None: accuracies, ggap, epoch, varied hyperparameters
    extras: bool = False  # add the 2021 Tetris extras: kernel PCA per kernel and UMAP
    extra_dims: tuple[int, ...] = (50, 33)  # output dimensions of the extras
    kpca_kernels: tuple[str, ...] = KPCA_KERNELS  # kernels of the kernel PCA extras
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # probe grids and seeds

    def __post_init__(self) -> None:
        if self.stats_preset not in PRESETS:
            raise ValueError(f"stats_preset must be one of {sorted(PRESETS)}, got {self.stats_preset!r}")
        if any(int(d) < 1 for d in self.extra_dims):
            raise ValueError(f"extra_dims must be positive, got {self.extra_dims}")
        if isinstance(self.probe, dict):
            self.probe = ProbeConfig(**self.probe)


def baseline_feature_sets(zoo: Zoo, config: BaselineConfig) -> tuple[dict, list[tuple[str, str]]]:
    """The feature sets of the suite and the (feature set, probe) pairs to run on them."""
    feature_sets: dict[str, object] = {
        "raw": RawWeights(),
        "stats": LayerStatistics(zoo.layout, preset=config.stats_preset, biases=config.stats_biases),
    }
    pairs = [("raw", "linear"), ("stats", "linear"), ("stats", "gbt")]
    varied = [h for h in zoo.hyperparameters if zoo.samples[h].nunique(dropna=True) > 1]
    if varied:
        columns = varied + (["epoch"] if zoo.samples["epoch"].nunique() > 1 else [])
        feature_sets["hyper"] = Hyperparameters(columns)
        pairs += [("hyper", "linear"), ("hyper", "gbt")]
    if config.extras:
        for dim in config.extra_dims:
            for kernel in config.kpca_kernels:
                feature_sets[f"pca_{kernel}_dim_{dim}"] = KernelPCAFeatures(dim, kernel=kernel,
                                                                            random_state=config.probe.random_state)
            feature_sets[f"umap_dim_{dim}"] = UMAPFeatures(dim)
        pairs += [(name, "linear") for name in feature_sets if name.startswith(("pca_", "umap_"))]
    return feature_sets, pairs


def run_baselines(zoo: Zoo, out_dir: str | os.PathLike, config: BaselineConfig | None = None) -> pd.DataFrame:
    """Run the baseline suite on `zoo` and write the table, the 2021 JSON file and the config to `out_dir`.

    Writes ``baselines.csv`` (the tidy table), ``baseline_performance.json``
    (2021 shape plus new keys) and ``baselines_config.json`` (the resolved
    `BaselineConfig`). Diverged samples are excluded.

    Returns:
        The tidy table of `evaluate`.
    """
    config = config or BaselineConfig()
    out = Path(out_dir)
    feature_sets, pairs = baseline_feature_sets(zoo, config)
    table = evaluate(zoo, feature_sets=feature_sets, probes=("linear", "gbt"), pairs=pairs,
                     targets=config.targets, split_seed=config.split_seed, fractions=config.fractions,
                     config=config.probe)
    write_csv(table, out / FILES["table"])
    write_baseline_json(table, out / FILES["json"])
    (out / FILES["config"]).write_text(json.dumps({"zoo": str(zoo.path or zoo.name), **asdict(config)},
                                                  indent=1, default=str) + "\n")
    return table
