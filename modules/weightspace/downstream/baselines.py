"""The baseline suite of a zoo: raw weights and statistics with linear probes, statistics with boosted
trees, hyperparameters alone, the models' outputs on fixed queries (B_probe), and optionally the 2021 Tetris
extras (kernel PCA, UMAP).

Beside the 2021 baselines (B_W, B_s with a linear probe) this runs the stronger
bars of Unterthiner et al. 2020: boosted trees on the statistics, and the
hyperparameters alone. On a zoo with several checkpoints per model the
``hyper`` features include the epoch (configuration plus training time), so
``training_iteration`` is not probed from them. B_probe (`model_outputs.py`) runs
every model on K data-free queries (``outputs_free``) and on K task inputs
without labels (``outputs_task``); where the zoo's models cannot be built or the
task's inputs are not here, its rows hold NaN and a note
"B_probe (...): not available: <reason>".
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.data.splits import DEFAULT_FRACTIONS, ModelSplit
from weightspace.downstream.evaluate import evaluate, write_baseline_json
from weightspace.io.atomic import write_csv, write_json
from weightspace.downstream.features import (PRESETS, Hyperparameters, InvariantCode, KernelPCAFeatures,
                                             LayerStatistics, RawWeights, UMAPFeatures)
from weightspace.downstream.model_outputs import (VARIANTS, OutputsConfig, ProbeUnavailable, Unavailable,
                                                  zoo_model_outputs)
from weightspace.downstream.probes import ProbeConfig
from weightspace.errors import InputError
from weightspace.zoo.store import Zoo

KPCA_KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")
FILES = {"table": "baselines.csv", "predictions": "baseline_predictions.csv.gz", "json": "baseline_performance.json",
         "config": "baselines_config.json"}


@dataclass
class BaselineConfig:
    """What `run_baselines` computes."""

    split_seed: int = 42  # seed of the split by model (`ModelSplit`); 42 as ZooDataset and the 2021 code
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS  # (train, val, test) fractions of the models
    stats_preset: str = "schuerholt2021"  # LayerStatistics preset: "schuerholt2021" or "unterthiner"
    stats_biases: bool | None = None  # summarize biases too; None: the preset's default
    targets: tuple[str, ...] | None = None  # target names; None: accuracies, ggap, epoch, varied hyperparameters
    extras: bool = False  # add the 2021 Tetris extras: kernel PCA per kernel and UMAP
    extra_dims: tuple[int, ...] = (50, 33)  # output dimensions of the extras
    kpca_kernels: tuple[str, ...] = KPCA_KERNELS  # kernels of the kernel PCA extras
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # probe grids and seeds
    outputs: OutputsConfig = field(default_factory=OutputsConfig)  # B_probe: model outputs on fixed queries
    code: bool = True  # the invariant statistics code (`InvariantCode`), linear and boosted trees
    code_knots: int = 5  # its hinge knots per entry, as the neuron_set encoder's code

    def __post_init__(self) -> None:
        if self.stats_preset not in PRESETS:
            raise ValueError(f"stats_preset must be one of {sorted(PRESETS)}, got {self.stats_preset!r}")
        if any(int(d) < 1 for d in self.extra_dims):
            raise ValueError(f"extra_dims must be positive, got {self.extra_dims}")
        if isinstance(self.probe, dict):
            self.probe = ProbeConfig(**self.probe)
        if isinstance(self.outputs, dict):
            self.outputs = OutputsConfig(**self.outputs)


def baseline_feature_sets(zoo: Zoo, config: BaselineConfig) -> tuple[dict, list[tuple[str, str]]]:
    """The feature sets of the suite and the (feature set, probe) pairs to run on them."""
    feature_sets: dict[str, object] = {
        "raw": RawWeights(),
        "stats": LayerStatistics(zoo.layout, preset=config.stats_preset, biases=config.stats_biases),
    }
    pairs = [("raw", "linear"), ("stats", "linear"), ("stats", "gbt")]
    if config.code:  # boosted trees read the code's entries before hinging: the same splits, a fifth of the columns
        hidden = len(zoo.layout.layers) > 1
        for name, hinged in (("code", True), ("code_stats", False)):
            feature_sets[name] = InvariantCode(zoo.layout, knots=config.code_knots, hinged=hinged) if hidden else \
                Unavailable("the invariant statistics code: not available: it summarises hidden layers, and this "
                            "zoo's networks have a single layer")
        pairs += [("code", "linear"), ("code_stats", "gbt")]
    varied = [h for h in zoo.hyperparameters if zoo.samples[h].nunique(dropna=True) > 1]
    if varied:
        columns = varied + (["epoch"] if zoo.samples["epoch"].nunique() > 1 else [])
        feature_sets["hyper"] = Hyperparameters(columns)
        pairs += [("hyper", "linear"), ("hyper", "gbt")]
    for variant in config.outputs.variants:
        name = f"outputs_{variant}"
        feature_sets[name] = _model_outputs(zoo, variant, config.outputs)
        pairs += [(name, "linear")] + ([(name, "gbt")] if config.outputs.trees else [])
    if config.extras:
        for dim in config.extra_dims:
            for kernel in config.kpca_kernels:
                feature_sets[f"pca_{kernel}_dim_{dim}"] = KernelPCAFeatures(dim, kernel=kernel,
                                                                            random_state=config.probe.random_state)
            feature_sets[f"umap_dim_{dim}"] = UMAPFeatures(dim)
        pairs += [(name, "linear") for name in feature_sets if name.startswith(("pca_", "umap_"))]
    return feature_sets, pairs


def _model_outputs(zoo: Zoo, variant: str, config: OutputsConfig):
    """B_probe of every row (it learns nothing from rows, so all are computed at once), or the reason it
    is not available as a feature set that says so."""
    try:
        return zoo_model_outputs(zoo, variant, n_queries=config.n_queries, data_free=config.data_free,
                                 output=config.output, random_state=config.random_state, data_root=config.data_root,
                                 device=config.device)
    except ProbeUnavailable as err:
        return Unavailable(f"{VARIANTS[variant]}: not available: {err}")


def run_baselines(zoo: Zoo, out_dir: str | os.PathLike, config: BaselineConfig | None = None, *,
                  split: ModelSplit | None = None) -> pd.DataFrame:
    """Run the baseline suite on `zoo` and write the tables, the 2021 JSON file and the config to `out_dir`.

    Writes ``baselines.csv`` (the tidy table), ``baseline_predictions.csv.gz``
    (every probe's prediction of every sample, `evaluate.PREDICTION_COLUMNS`),
    ``baseline_performance.json`` (2021 shape plus new keys, B_probe's as ``results_outputs_free``,
    ``results_outputs_free_gbt``, ``results_outputs_task`` and ``results_outputs_task_gbt``) and
    ``baselines_config.json`` (the resolved `BaselineConfig`). Diverged samples
    are excluded.

    Args:
        zoo: the zoo, or a selection of its rows (then pass the whole zoo's `split`).
        split: the zoo's split by model, drawn with ``config.fractions`` and ``config.split_seed``;
            None: drawn over the models of `zoo`.

    Returns:
        The tidy table of `evaluate`.

    Raises:
        InputError: a zoo too small to split (fewer than 2 training or no test samples), or a
            `split` drawn with other fractions or another seed than `config`'s.
    """
    config = config or BaselineConfig()
    if split is None:
        split = ModelSplit.of_zoo(zoo, config.fractions, config.split_seed)
    elif not split.matches(config.fractions, config.split_seed):
        raise InputError(f"the split was drawn with fractions {split.fractions} and seed {split.seed}, but the "
                         f"baselines are configured with fractions {tuple(config.fractions)} and seed "
                         f"{config.split_seed}; draw the split with the config's fractions and seed")
    _check_splittable(zoo, split)
    out = Path(out_dir)
    feature_sets, pairs = baseline_feature_sets(zoo, config)
    table = evaluate(zoo, feature_sets=feature_sets, probes=("linear", "gbt"), pairs=pairs,
                     targets=config.targets, splits=split, config=config.probe,
                     out_predictions=out / FILES["predictions"])
    write_csv(table, out / FILES["table"])
    write_baseline_json(table, out / FILES["json"])
    write_json(out / FILES["config"], {"zoo": str(zoo.path or zoo.name), **asdict(config)})
    return table


def _check_splittable(zoo: Zoo, split: ModelSplit) -> None:
    """Refuse a zoo whose usable rows leave fewer than 2 training samples or no test sample."""
    samples = zoo.samples
    usable = np.ones(len(samples), dtype=bool)
    if "diverged" in samples:
        usable = ~samples["diverged"].fillna(False).astype(bool).to_numpy()
    names = split.column(samples["model_id"].to_numpy()[usable])
    counts = {s: int((names == s).sum()) for s in ("train", "val", "test")}
    if counts["train"] < 2 or counts["test"] < 1:
        models = samples["model_id"][usable].nunique()
        raise InputError(f"zoo {zoo.name!r} has too few samples for the baselines: {int(usable.sum())} usable samples "
                         f"of {models} models ({len(samples) - int(usable.sum())} diverged excluded), split by model "
                         f"with fractions {split.fractions}, give {counts['train']} training and {counts['test']} "
                         "test samples; the probes need at least 2 training samples and 1 test sample. Use a zoo "
                         "with more models")
