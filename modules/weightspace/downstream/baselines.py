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
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import tabulate  # noqa: F401 - DataFrame.to_markdown (format_table) imports it lazily; a missing one fails at import
from sklearn.base import TransformerMixin

from weightspace.data.rows import usable_rows
from weightspace.data.splits import DEFAULT_FRACTIONS, ModelSplit
from weightspace.downstream.evaluate import evaluate, results_dict
from weightspace.downstream.features import (
    PRESETS,
    Hyperparameters,
    InvariantCode,
    KernelPCAFeatures,
    LayerStatistics,
    Precomputed,
    RawWeights,
    UMAPFeatures,
)
from weightspace.downstream.model_outputs import (
    VARIANTS,
    OutputsConfig,
    ProbeUnavailable,
    Unavailable,
    zoo_model_outputs,
)
from weightspace.downstream.probes import ProbeConfig
from weightspace.downstream.targets import CLASSIFICATION, REGRESSION
from weightspace.errors import InputError
from weightspace.io.atomic import write_csv, write_json
from weightspace.zoo.program import program_entry
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


@dataclass(frozen=True)
class Baseline:
    """One baseline, declared once: every table, the report, the console and the JSON file read it from here."""

    key: str  # its feature set in the tidy tables and predictions ("raw", "stats", ...)
    title: str  # the report's column title ("B_W")
    short: str  # the console table's column ("B_W"; boosted trees add "+T")
    table: str  # its name in the quality table ("B_W"); two baselines may share one (linear and trees of the code)
    prose: str  # what the report's sentence calls it ("the code")
    about: str  # what its features are, in a few words (the console table's legend)
    # an unfitted extractor, an array of every row, or Unavailable (itself a transformer)
    features: Callable[[Zoo, BaselineConfig], TransformerMixin | np.ndarray]
    probes: tuple[str, ...] = ("linear",)  # every-label probes
    scarce: tuple[str, ...] = ()  # label-scarce probes (the quality table's k rows)
    rival: tuple[str, ...] = ()  # probes the report's sentence sets the representation against
    json: str = ""  # stem of its baseline_performance.json keys, results_<json>[_<probe>] (default: `key`)
    optional_trees: bool = False  # boosted trees only with BaselineConfig.outputs.trees (they cost minutes)
    best_of_probes: bool = False  # the report shows one column, the probe best on validation (else one per probe)

    def columns(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """The report's columns of this baseline: (title, feature set, probes shown in it)."""
        probes = tuple(p for p in self.probes if not (p == "gbt" and self.optional_trees))
        if self.best_of_probes:
            return [(self.title, self.key, probes)]
        return [(self.title + (" + GBT" if p == "gbt" and p != probes[0] else ""), self.key, (p,)) for p in probes]

    def runs(self, config: BaselineConfig) -> tuple[str, ...]:
        """The every-label probes the suite runs with `config`."""
        return tuple(p for p in self.probes if not (p == "gbt" and self.optional_trees and not config.outputs.trees))


def _code(hinged: bool) -> Callable[[Zoo, BaselineConfig], object]:
    def features(zoo: Zoo, config: BaselineConfig) -> object:
        if len(zoo.layout.layers) < 2:
            return Unavailable("the invariant statistics code: not available: it summarises hidden layers, and this "
                               "zoo's networks have a single layer")
        return InvariantCode(zoo.layout, knots=config.code_knots, hinged=hinged)
    return features


def _hyperparameters(zoo: Zoo, config: BaselineConfig) -> object:
    """The varied hyperparameters, and the epoch where a model has several checkpoints (configuration plus
    training time), so ``training_iteration`` is not probed from them."""
    varied = [h for h in zoo.hyperparameters if zoo.samples[h].nunique(dropna=True) > 1]
    if not varied:
        return Unavailable("the zoo varies no hyperparameter")
    return Hyperparameters(varied + (["epoch"] if zoo.samples["epoch"].nunique() > 1 else []))


def _outputs(variant: str) -> Callable[[Zoo, BaselineConfig], object]:
    return lambda zoo, config: _model_outputs(zoo, variant, config.outputs)


# the baselines, in the report's column order; boosted trees read the code's entries before hinging (the same
# splits, a fifth of the columns), as the separate `code_stats` feature set
BASELINES = (
    Baseline("raw", "B_W", "B_W", "B_W", "B_W", "raw weights", lambda zoo, config: RawWeights(), json="im"),
    Baseline("stats", "B_s", "B_s", "B_s", "B_s", "layer statistics",
             lambda zoo, config: LayerStatistics(zoo.layout, preset=config.stats_preset, biases=config.stats_biases),
             probes=("linear", "gbt"), scarce=("linear", "gbt"), rival=("linear", "gbt"), json="lq"),
    Baseline("code", "Code", "code", "code", "the code", "invariant statistics code", _code(hinged=True), scarce=("linear",), rival=("linear",)),
    Baseline("code_stats", "Code + GBT", "code", "code", "the code", "invariant statistics code", _code(hinged=False), probes=("gbt",),
             scarce=("gbt",), rival=("gbt",)),
    Baseline("outputs_free", "B_probe", "probe", "B_probe (data-free)", "B_probe", "outputs on fixed random inputs",
             _outputs("free"),
             probes=("linear", "gbt"), scarce=("linear",), rival=("linear",), optional_trees=True),
    Baseline("outputs_task", "B_probe task", "probe_task", "B_probe (task inputs)", "B_probe on task inputs",
             "outputs on task inputs", _outputs("task"), probes=("linear", "gbt"), optional_trees=True),
    Baseline("hyper", "Hyperparameters", "hyper", "hyperparameters", "the hyperparameters", "hyperparameters",
             _hyperparameters,
             probes=("linear", "gbt"), best_of_probes=True),
)
BY_KEY = {b.key: b for b in BASELINES}


def list_baselines() -> list[str]:
    """The keys of the registered baselines, in the report's column order."""
    return list(BY_KEY)


def baseline_feature_sets(zoo: Zoo, config: BaselineConfig,
                          names: Sequence[str] | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """The feature sets of the suite (`names`: only these baselines; None: every one `config` asks for) and the
    (feature set, probe) pairs to run on them."""
    wanted = [b for b in BASELINES if (names is None or b.key in names) and _asked(b, config)]
    feature_sets: dict[str, object] = {}
    pairs: list[tuple[str, str]] = []
    for baseline in wanted:
        features = baseline.features(zoo, config)
        if baseline.key == "hyper" and isinstance(features, Unavailable):
            continue  # no column in the report for a zoo that varies nothing (it says so)
        feature_sets[baseline.key] = features
        pairs += [(baseline.key, p) for p in baseline.runs(config)]
    if config.extras:
        for dim in config.extra_dims:
            for kernel in config.kpca_kernels:
                feature_sets[f"pca_{kernel}_dim_{dim}"] = KernelPCAFeatures(dim, kernel=kernel,
                                                                            random_state=config.probe.random_state)
            feature_sets[f"umap_dim_{dim}"] = UMAPFeatures(dim)
        pairs += [(name, "linear") for name in feature_sets if name.startswith(("pca_", "umap_"))]
    return feature_sets, pairs


def _asked(baseline: Baseline, config: BaselineConfig) -> bool:
    """Whether `config` asks for `baseline` (the code and B_probe can be switched off)."""
    if baseline.key in ("code", "code_stats"):
        return config.code
    if baseline.key.startswith("outputs_"):
        return baseline.key.removeprefix("outputs_") in config.outputs.variants
    return True


def _model_outputs(zoo: Zoo, variant: str, config: OutputsConfig):
    """B_probe of every row (it learns nothing from rows, so all are computed at once), or the reason it
    is not available as a feature set that says so. Where the zoo's activation varies, each network ran with
    its own: B_probe has read the activation, and shows that target as read."""
    try:
        X = zoo_model_outputs(zoo, variant, n_queries=config.n_queries, data_free=config.data_free,
                              output=config.output, random_state=config.random_state, data_root=config.data_root,
                              device=config.device)
    except ProbeUnavailable as err:
        return Unavailable(f"{VARIANTS[variant]}: not available: {err}")
    varied = program_entry(zoo.info) is None and "activation" in zoo.samples and zoo.samples.activation.nunique() > 1
    return Precomputed(X, ("activation",)) if varied else X


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
    out = Path(out_dir)
    table = baseline_table(zoo, config, split, out_predictions=out / FILES["predictions"])
    write_csv(table, out / FILES["table"])
    write_baseline_json(table, out / FILES["json"])
    write_json(out / FILES["config"], {"zoo": str(zoo.path or zoo.name), **asdict(config)})
    return table


def baseline_table(zoo: Zoo, config: BaselineConfig, split: ModelSplit, *, names: Sequence[str] | None = None,
                   out_predictions: str | os.PathLike | None = None) -> pd.DataFrame:
    """The tidy table of the baselines `names` (None: all that `config` asks for) on `zoo`, split by `split`.

    Raises:
        InputError: a zoo too small to split.
    """
    _check_splittable(zoo, split)
    feature_sets, pairs = baseline_feature_sets(zoo, config, names)
    return evaluate(zoo, feature_sets=feature_sets, probes=("linear", "gbt"), pairs=pairs, targets=config.targets,
                    splits=split, config=config.probe, out_predictions=out_predictions)


def _check_splittable(zoo: Zoo, split: ModelSplit) -> None:
    """Refuse a zoo whose usable rows leave fewer than 2 training samples or no test sample."""
    samples = zoo.samples
    usable = usable_rows(samples)
    names = split.column(samples["model_id"].to_numpy()[usable])
    counts = {s: int((names == s).sum()) for s in ("train", "val", "test")}
    if counts["train"] < 2 or counts["test"] < 1:
        models = samples["model_id"][usable].nunique()
        raise InputError(f"zoo {zoo.name!r} has too few samples for the baselines: {int(usable.sum())} usable samples "
                         f"of {models} models ({len(samples) - int(usable.sum())} diverged excluded), split by model "
                         f"with fractions {split.fractions}, give {counts['train']} training and {counts['test']} "
                         "test samples; the probes need at least 2 training samples and 1 test sample. Use a zoo "
                         "with more models")


# ------------------------------------------------------------------ names read from the registry
EMBEDDING = "embedding"  # the representation's feature set in the tidy tables
EMBEDDING_SHORT = "repr"


def json_key(feature_set: str, probe: str) -> str:
    """``results_<stem>`` for the linear probe, ``..._<probe>`` for the others; the stem of a baseline is its
    declared `Baseline.json` (2021: ``im`` raw weights, ``lq`` statistics), else the feature set's name."""
    baseline = BY_KEY.get(feature_set)
    stem = (baseline.json or baseline.key) if baseline else feature_set
    return f"results_{stem}" + ("" if probe == "linear" else f"_{probe}")


def write_baseline_json(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """``baseline_performance.json`` in the 2021 shape, one `json_key` entry per (feature set, probe):
    ``results_im`` and ``results_lq`` as in 2021, then ``results_lq_gbt``, ``results_hyper``,
    ``results_pca_rbf_dim_50`` and so on. Undefined values are null."""
    pairs = table[["feature_set", "probe"]].drop_duplicates().itertuples(index=False)
    return write_json(path, {json_key(fs, p): results_dict(table, fs, p) for fs, p in pairs}, allow_nan=False)


def short_name(feature_set: str, probe: str) -> str:
    """The console column of a (feature set, probe): the baseline's `Baseline.short`, "+T" for boosted trees."""
    baseline = BY_KEY.get(feature_set)
    name = baseline.short if baseline else EMBEDDING_SHORT if feature_set == EMBEDDING else feature_set
    return name + ("+T" if probe == "gbt" else "" if probe == "linear" or baseline or feature_set == EMBEDDING
                   else f"/{probe}")


def format_table(table: pd.DataFrame, split: str = "test") -> str:
    """A Markdown table of targets x (feature set / probe) on one split: R² for regression, accuracy for
    classification, "-" where nothing was scored. Columns carry `short_name`s."""
    part = table[(table["split"] == split)
                 & (table["metric"] == table["task"].map({REGRESSION: "r2", CLASSIFICATION: "accuracy"}))]
    if part.empty:
        return f"(no results on split {split!r})"
    part = part.assign(column=[short_name(f, p) for f, p in zip(part["feature_set"], part["probe"])],
                       row=part["target"] + " (" + part["metric"].str.replace("r2", "R²") + ")")
    order = list(dict.fromkeys(part["column"]))
    grid = part.pivot_table(index="row", columns="column", values="value", aggfunc="first", dropna=False, sort=False)
    grid = grid.reindex(columns=order).rename_axis(index="target")
    cells = grid.astype(object).where(grid.notna(), None)  # None: tabulate writes `missingval`, NaN it writes "nan"
    shown = set(part["feature_set"])
    about = dict.fromkeys(f"{b.short} {b.about}" for b in BASELINES if b.key in shown)
    legend = ", ".join([*about, f"{EMBEDDING_SHORT} the representation"] if EMBEDDING in shown else about)
    legend += "; +T boosted trees"
    return f"{split} split ({legend})\n" + cells.to_markdown(floatfmt=".3f", missingval="-")
