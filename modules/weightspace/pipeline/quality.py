"""The quality table: learned representations of one zoo against the baselines, each seed chosen on validation.

For each encoder (the experiment's default learner, ``neuron_set``, and its ``2021`` variant; on request
the default learner with a function-space reconstruction target, `ENCODER_OVERRIDES`), taken exactly
as the experiment runs it, the encoder is trained self-supervised (no model property is seen) for its
stated budget with several training seeds, and linear probes (ridge, alpha chosen on validation) are fitted
on its embedding. Each seed keeps the embedding whose linear probes score best on the validation split
(mean over targets); the state at random initialisation is one of the candidates, so a seed whose training
never beats it on validation reports the untrained state (`chosen` = 0, counted in ``init_chosen``).
The test split chooses nothing. Beside them, the same probes on the baselines: B_W (raw weights), B_s (the
2021 layer statistics, also with boosted trees), the invariant statistics code (untrained, linear and
boosted trees), B_probe (the models' outputs on fixed data-free and task inputs, linear and boosted trees;
a row whose features cannot be had says why in its note), the hyperparameters alone, and a control row per
encoder at its random initialisation.

With ``label_scarce``, the probes also see the labels of only k training models (`label_scarce.py`),
while self-supervised training still reads every training model's weights; with ``every_label`` False,
only those rows (to add them to a table that holds the every-label ones: training chooses the same states).

`run_quality` returns the raw rows (one per seed, and per draw for label-scarce rows); `quality_table`
summarizes them and writes the CSV and markdown table. ray is not used here.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from weightspace.data.dataset import ZooDataset
from weightspace.downstream import LayerStatistics, evaluate
from weightspace.downstream.evaluate import ProbeWarning
from weightspace.downstream.features import Hyperparameters, InvariantCode, RawWeights
from weightspace.downstream.label_scarce import LabelScarceConfig, label_scarce_scores
from weightspace.downstream.model_outputs import VARIANTS, ProbeUnavailable, Unavailable, zoo_model_outputs
from weightspace.downstream.probing import SELECT_METRIC
from weightspace.downstream.probing import embedding_scores as selection_scores
from weightspace.downstream.targets import CLASSIFICATION, derive_targets
from weightspace.pipeline.experiment import Experiment
from weightspace.representation import Learner, LearnerConfig, embed, fit
from weightspace.representation.function_target import with_zoo_architecture
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset
from weightspace.zoo.store import Zoo

# table name -> the experiment's variant (None: its default learner); short name -> table name
ENCODER_VARIANTS = {"2021 transformer (cpu schedule)": "2021", "neuron_set": None,
                    "neuron_set, outputs target": None, "neuron_set, statistics + outputs target": None,
                    "neuron_set, function objective": None, "neuron_set, function objective, task queries": None}
SHORT_NAMES = {"2021": "2021 transformer (cpu schedule)", "neuron_set": "neuron_set",
               "outputs": "neuron_set, outputs target", "both": "neuron_set, statistics + outputs target",
               "function": "neuron_set, function objective",
               "function_task": "neuron_set, function objective, task queries"}


@dataclass(frozen=True)
class Override:
    """What a table row changes in its folder's (neuron_set) learner."""

    encoder: dict = field(default_factory=dict)  # NeuronSetConfig fields
    loss: dict = field(default_factory=dict)  # LossConfig fields
    train: dict = field(default_factory=dict)  # TrainConfig fields
    epochs: int = 1  # a multiple of the folder's training epochs (its evaluations stay as many)


# table name -> its changes to the folder's learner: the function-space targets. "function objective" is the
# variant research/function_objective_probe.py found on tetris_seed's validation split: the outputs target
# through a linear decoder (what it reads of the features, a linear probe can read), no contrastive term,
# three times the epochs at lr 3e-3; "task queries" asks for the outputs on K of the task's training inputs
# (without their labels) instead of uniform noise
ENCODER_OVERRIDES = {"neuron_set, outputs target": Override(encoder={"target": "outputs"}),
                     "neuron_set, statistics + outputs target": Override(encoder={"target": "both"}),
                     "neuron_set, function objective": Override(encoder={"target": "outputs", "decoder_hidden": 0},
                                                                loss={"gamma": 0.0}, train={"lr": 3e-3}, epochs=3),
                     "neuron_set, function objective, task queries": Override(
                         encoder={"target": "outputs", "decoder_hidden": 0, "queries": "task"}, loss={"gamma": 0.0},
                         train={"lr": 3e-3}, epochs=3)}
DEFAULT_ENCODERS = ("2021 transformer (cpu schedule)", "neuron_set")  # what runs unless encoders are named
INIT = ", random init"  # suffix of an encoder's control feature set
CODE, OUTPUTS = "code", {"free": "B_probe (data-free)", "task": "B_probe (task inputs)"}
# boosted trees read the code's entries before hinging, as the experiments' baselines do: the same splits, a fifth
# of the columns; their rows are named CODE
_CODE_TREES = "code, unhinged"
# the baseline feature sets of the table, each with its every-label probes
BASELINES = {"B_W": ("linear", "gbt"), "B_s": ("linear", "gbt"), CODE: ("linear", "gbt"),
             OUTPUTS["free"]: ("linear", "gbt"), OUTPUTS["task"]: ("linear", "gbt"), "hyperparameters": ("linear",)}
RAW_COLUMNS = ["zoo", "encoder", "feature_set", "probe", "target", "metric", "split", "k", "draw", "value", "seed",
               "minutes", "chosen", "note"]
Log = Callable[[str], None]


@dataclass
class Encoder:
    """One row group of the table: a learner configuration and its training budget."""

    name: str  # the table's name, a key of ENCODER_VARIANTS
    config: LearnerConfig
    epochs: int  # training epochs over the zoo's training split
    evaluations: int  # embeddings probed on validation during training (the best one, or the initial state, is kept)


@dataclass
class QualityConfig:
    """What `run_quality` runs."""

    seeds: int = 3  # training seeds per encoder (3 or more for the table)
    seed_ids: tuple[int, ...] | None = None  # only these of range(seeds): a run split over processes or machines
    encoders: tuple[str, ...] = DEFAULT_ENCODERS  # table names (or short names: "2021", "neuron_set")
    smoke: bool = False  # tiny encoders, one epoch, every checkpoint: seconds, not science
    label_scarce: bool = False  # also the label-scarce protocol (k labelled training models)
    every_label: bool = True  # False: the label-scarce rows only (needs label_scarce; a table keeps its other rows)
    baselines: bool | tuple[str, ...] = True  # False: only the encoders' rows; names: only these baselines
    encoder_trees: bool = True  # boosted trees on neuron_set embeddings too (most of a wide zoo's probing time)
    scarce: LabelScarceConfig = field(default_factory=LabelScarceConfig)  # its ks, draws and seed
    device: str = "cpu"  # where encoders train; probes run on the CPU
    outputs_device: str = "auto"  # where B_probe runs the zoo's models (auto: cuda when available)
    data_root: str | None = None  # where file-based task data lives, for B_probe's task inputs
    jobs: int = 1  # encoder x seed trainings at a time, each in its own process (needs a zoo on disk)
    threads: int | None = None  # threads per job process (default: cores / jobs)

    def __post_init__(self) -> None:
        self.encoders = tuple(SHORT_NAMES.get(e, e) for e in self.encoders)
        unknown = [e for e in self.encoders if e not in ENCODER_VARIANTS]
        if unknown or not (self.encoders or self.baselines):
            raise ValueError(f"unknown encoders {unknown}; choose from {sorted(SHORT_NAMES)} (table names "
                             f"{list(ENCODER_VARIANTS)}), or run the baselines")
        if not isinstance(self.baselines, bool):
            self.baselines = tuple(self.baselines)
            wrong = [b for b in self.baselines if b not in BASELINES]
            if wrong or not self.baselines:
                raise ValueError(f"unknown baselines {wrong}; choose from {list(BASELINES)}")
        if int(self.seeds) < 1 or int(self.jobs) < 1:
            raise ValueError(f"seeds and jobs must be at least 1, got seeds={self.seeds}, jobs={self.jobs}")
        if self.seed_ids is not None:
            self.seed_ids = tuple(int(s) for s in self.seed_ids)
            if not self.seed_ids or not set(self.seed_ids) <= set(range(int(self.seeds))):
                raise ValueError(f"seed_ids {self.seed_ids} must be some of the seeds 0 ... {int(self.seeds) - 1}")
        if not (self.every_label or self.label_scarce):
            raise ValueError("every_label=False leaves only the label-scarce rows; set label_scarce=True too")

    def runs_baseline(self, name: str) -> bool:
        """Whether baseline feature set `name` (a key of `BASELINES`) runs."""
        return self.baselines is True or (not isinstance(self.baselines, bool) and name in self.baselines)


def overridden(encoder: Encoder, override: Override, name: str | None = None) -> Encoder:
    """A copy of `encoder` with `override`'s changes (named `name`, default its own)."""
    rep = copy.deepcopy(encoder.config)
    rep.encoder = replace(rep.encoder, **override.encoder)
    rep.loss, rep.train = replace(rep.loss, **override.loss), replace(rep.train, **override.train)
    return Encoder(name or encoder.name, rep, epochs=encoder.epochs * override.epochs, evaluations=encoder.evaluations)


def encoders_of(experiment: Experiment, names, *, smoke: bool = False) -> list[Encoder]:
    """The encoders `names` (table names), as `experiment` runs them (`smoke`: tiny, one epoch)."""
    out = []
    for name in names:
        variant = ENCODER_VARIANTS[name]
        run = experiment.variant(variant) if variant is not None else experiment
        rep = copy.deepcopy(run.representation)
        encoder = Encoder(name, rep, epochs=run.iterations * rep.train.epochs_per_step, evaluations=run.iterations)
        if name in ENCODER_OVERRIDES:
            if rep.encoder.name != "neuron_set":
                raise ValueError(f"encoder {name!r} changes the neuron_set learner, but experiment "
                                 f"{experiment.name!r} learns with {rep.encoder.name!r}")
            encoder = overridden(encoder, ENCODER_OVERRIDES[name])
            rep = encoder.config
        if smoke:
            rep.train = replace(rep.train, batch_size=16)
            if rep.encoder.name == "neuron_set":
                rep.encoder = replace(rep.encoder, width=16)
            else:
                rep.encoder = replace(rep.encoder, d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8)
            encoder = Encoder(name, rep, epochs=1, evaluations=1)
        out.append(encoder)
    return out


def load_preset_zoo(name: str, datasets: str | os.PathLike, *, smoke: bool = False, progress: bool = True) -> Zoo:
    """The zoo at ``datasets/<name>`` (``<name>_smoke`` with `smoke`), generated from preset `name` when missing."""
    path = Path(datasets) / (f"{name}_smoke" if smoke else name)
    if (path / "zoo.json").is_file():
        return Zoo.load(path)
    spec = get_preset(name, smoke=smoke)
    if smoke:
        spec = replace(spec, seeds=4 if spec.grid else 40, shard_size=64)
    return generate(spec, path, progress=progress and not smoke, data_root=datasets)


def zoo_data(zoo: Zoo, epochs: tuple[int, ...] | None) -> dict[str, ZooDataset]:
    """The zoo's train, val and test splits at `epochs` (None: every checkpoint)."""
    return {s: ZooDataset(zoo, s, epochs=epochs) for s in ("train", "val", "test")}


def _scores(table: pd.DataFrame) -> pd.DataFrame:
    """R² (or accuracy) rows of an `evaluate` table, with their notes."""
    table = table[table.metric.isin(["r2", "accuracy"])]
    return table[["feature_set", "probe", "target", "metric", "split", "value", "note"]]


def _samples(data: dict[str, ZooDataset]) -> pd.DataFrame:
    return pd.concat([d.properties for d in data.values()], ignore_index=True)


def _selection(zoo: Zoo, data: dict[str, ZooDataset]) -> Zoo:
    """The rows of `data` (in its order) as a zoo of their own, so B_probe runs only the models probed."""
    samples = _samples(data)
    weights = np.concatenate([d.weights.numpy() for d in data.values()])
    return Zoo(weights, samples.drop(columns=["row", "split"]), zoo.layout, zoo.info, zoo.path)


def baseline_features(zoo: Zoo, data: dict[str, ZooDataset], config: QualityConfig) -> dict[str, object]:
    """Baseline name -> an unfitted feature extractor, a precomputed array, or an `Unavailable` saying why."""
    layout = data["train"].layout
    features = {"B_W": RawWeights(), "B_s": LayerStatistics(layout)}
    for name, hinged in ((CODE, True), (_CODE_TREES, False)):
        features[name] = InvariantCode(layout, hinged=hinged) if len(layout.layers) > 1 else Unavailable(
            "the invariant statistics code summarises hidden layers, and this zoo's networks have a single layer")
    selected = _selection(zoo, data)
    for variant, name in OUTPUTS.items():
        if not config.runs_baseline(name):
            continue  # running the zoo's networks costs minutes on a large zoo
        try:
            features[name] = zoo_model_outputs(selected, variant, data_root=config.data_root,
                                               device=config.outputs_device)
        except ProbeUnavailable as err:
            features[name] = Unavailable(f"{VARIANTS[variant]}: not available: {err}")
    if data["train"].hyperparameters:
        features["hyperparameters"] = Hyperparameters(data["train"].hyperparameters)
    return features


def baselines(features: dict[str, object], data: dict[str, ZooDataset], targets,
              names: Sequence[str] = tuple(BASELINES)) -> pd.DataFrame:
    """The probe scores on train, val and test of the baselines `names` (notes say why a row is NaN)."""
    pairs = [(_CODE_TREES if (name, probe) == (CODE, "gbt") else name, probe)
             for name in names for probe in BASELINES[name] if name in features]
    samples = _samples(data)
    weights = np.concatenate([d.weights.numpy() for d in data.values()])
    table = evaluate(weights, samples, feature_sets=features, probes=["linear", "gbt"], targets=targets,
                     pairs=pairs, splits=samples["split"].to_numpy(), hyperparameters=data["train"].hyperparameters)
    return _scores(table.replace({"feature_set": {_CODE_TREES: CODE}}))


def scarce_baselines(features: dict[str, object], data: dict[str, ZooDataset], targets,
                     config: LabelScarceConfig, names: Sequence[str] = tuple(BASELINES)) -> pd.DataFrame:
    """Label-scarce scores of B_s and the code (linear, boosted trees) and B_probe data-free (linear), of
    the probes that `config` names, among the baselines `names`."""
    weights = np.concatenate([d.weights.numpy() for d in data.values()])
    train = data["train"].weights.numpy()
    parts, notes = [], []
    for name, key, wanted in (("B_s", "B_s", ("linear", "gbt")), (CODE, CODE, ("linear",)),
                              (CODE, _CODE_TREES, ("gbt",)), (OUTPUTS["free"], OUTPUTS["free"], ("linear",))):
        probes = tuple(p for p in wanted if p in config.probes)
        if not probes or name not in names:
            continue
        extractor = features[key]
        if isinstance(extractor, Unavailable):
            notes.append((name, probes, extractor.reason))
            continue
        X = extractor if isinstance(extractor, np.ndarray) else extractor.fit(train).transform(weights)
        parts.append(label_scarce(data, {name: X}, targets, replace(config, probes=probes)))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RAW_COLUMNS)
    filler = [{"feature_set": name, "probe": probe, "target": t.name, "split": "test",
               "metric": "accuracy" if t.task == CLASSIFICATION else "r2",
               "k": str(k), "draw": 0, "value": np.nan, "note": reason}
              for name, probes, reason in notes for probe in probes for t in _targets(data, targets) for k in config.ks]
    return pd.concat([table, pd.DataFrame(filler)], ignore_index=True) if filler else table


def _targets(data: dict[str, ZooDataset], targets) -> list:
    found = derive_targets(_samples(data), targets, data["train"].hyperparameters)
    return [t for t in found if not t.note]


def label_scarce(data: dict[str, ZooDataset], features: dict[str, np.ndarray], targets,
                 config: LabelScarceConfig) -> pd.DataFrame:
    """`label_scarce_scores` of `features` (rows aligned with `data`), as raw quality rows (split "test")."""
    samples = _samples(data)
    table = label_scarce_scores(features, _targets(data, targets), samples["model_id"].to_numpy(),
                                samples["split"].to_numpy(), config)
    return table.rename(columns={"score": "value"}).assign(split="test", note="")[
        ["feature_set", "probe", "target", "metric", "split", "k", "draw", "value", "note"]]


@dataclass
class Trained:
    """One training seed of one encoder."""

    control: np.ndarray  # (S, L) embedding at random initialisation
    chosen: np.ndarray  # (S, L) embedding of the state chosen on validation (the control when `evaluation` is 0)
    evaluation: int  # which state was chosen: 0 the random init, i the i-th evaluation during training
    minutes: float  # training time
    model: torch.nn.Module | None = None  # the encoder at the end of training
    chosen_state: dict | None = None  # the chosen evaluation's state_dict (None when the random init was chosen)


def train_encoder(encoder: Encoder, data: dict[str, ZooDataset], seed: int, targets, device: str = "cpu") -> Trained:
    """Train `encoder` with `seed`, choosing on validation among its random init and its evaluations."""
    config = copy.deepcopy(encoder.config)
    config.train = replace(config.train, seed=seed, device=device)
    learner = Learner(config, data["train"].layout)
    learner.model.fit_input_scale(data["train"].weights)  # the control sees what training will fit
    every = torch.cat([d.weights for d in data.values()])

    def scored() -> tuple[np.ndarray, float]:  # one forward pass serves the selection probes and the row
        z = embed(learner.model, every).numpy()
        return z, selection_scores(z, data, targets).get(SELECT_METRIC, -np.inf)

    control, best_score = scored()
    best, chosen, seconds, state = control, 0, 0.0, None
    per_eval = max(1, encoder.epochs // encoder.evaluations)
    for i in range(encoder.evaluations):
        start = time.perf_counter()
        fit(config, data["train"], learner=learner, epochs=per_eval, evaluate_every=0, progress=False)
        seconds += time.perf_counter() - start
        z, score = scored()
        if score > best_score:
            best, best_score, chosen = z, score, i + 1
            state = copy.deepcopy(learner.model.state_dict())
    return Trained(control, best, chosen, seconds / 60, learner.model, state)


def embedding_scores(name: str, z: np.ndarray, data: dict[str, ZooDataset], targets, probes=("linear",)) -> pd.DataFrame:
    samples = _samples(data)
    table = evaluate(z, samples, feature_sets={name: z}, probes=list(probes), targets=targets,
                     splits=samples["split"].to_numpy(), hyperparameters=data["train"].hyperparameters)
    return _scores(table)


def encoder_rows(encoder: Encoder, seed: int, data: dict[str, ZooDataset], targets, config: QualityConfig,
                 log: Log | None = None) -> pd.DataFrame:
    """One training seed of one encoder: its control rows (random init) and its chosen rows."""
    run = train_encoder(encoder, data, seed, targets, config.device)
    if log:
        log(f"{encoder.name}, seed {seed}: {run.minutes:.1f} min, chose "
            + ("the random init" if run.evaluation == 0 else f"evaluation {run.evaluation}"))
    trees = config.encoder_trees and encoder.config.encoder.name == "neuron_set"
    probes = ("linear", "gbt") if trees else ("linear",)
    control_name = encoder.name + INIT
    rows = []
    if config.every_label:
        rows += [embedding_scores(control_name, run.control, data, targets).assign(minutes=0.0),
                 embedding_scores(encoder.name, run.chosen, data, targets, probes).assign(minutes=run.minutes,
                                                                                          chosen=run.evaluation)]
    if config.label_scarce:
        scarce = label_scarce(data, {control_name: run.control, encoder.name: run.chosen}, targets,
                              replace(config.scarce, probes=("linear",)))
        scarce.loc[scarce.feature_set == encoder.name, "chosen"] = run.evaluation
        rows.append(scarce.assign(minutes=np.where(scarce.feature_set == encoder.name, run.minutes, 0.0)))
    return pd.concat(rows, ignore_index=True).assign(seed=seed, encoder=encoder.name)


def _job(path: str, epochs, targets, encoder: Encoder, seed: int, config: QualityConfig, threads: int) -> pd.DataFrame:
    """`encoder_rows` in a worker process: the zoo is opened there (memory-mapped; no arrays travel)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore", ProbeWarning)
    with threadpool_limits(threads):
        return encoder_rows(encoder, seed, zoo_data(Zoo.load(path), epochs), targets, config)


def run_quality(zoo: Zoo, experiment: Experiment, config: QualityConfig, *, name: str | None = None,
                done: Callable[[pd.DataFrame], None] | None = None, log: Log | None = None) -> pd.DataFrame:
    """Every raw row of one zoo (columns `RAW_COLUMNS`): baselines (unless ``config.baselines`` is False),
    then each encoder x seed.

    Args:
        experiment: gives the encoders (its learner and its "2021" variant), checkpoints and targets.
        name: the zoo's name in the table (default: ``zoo.name``).
        done: called with each finished part's rows (baselines, each encoder x seed) as soon as it is done,
            e.g. to append them to a file that a run cut short keeps.
        log: where progress lines go (None: nowhere).

    Raises:
        ValueError: ``config.jobs > 1`` with a zoo that is not on disk.
    """
    if config.jobs > 1 and zoo.path is None:
        raise ValueError("jobs > 1 reopens the zoo in each process; save the zoo to a folder first or use jobs=1")
    name = name or zoo.name
    epochs = None if config.smoke else experiment.zoo_epochs
    targets = None if experiment.targets is None else list(experiment.targets)
    encoders = encoders_of(experiment, config.encoders, smoke=config.smoke)
    for encoder in encoders:  # a function-space target runs the zoo's networks: only zoo.json is read
        encoder.config.encoder = with_zoo_architecture(encoder.config.encoder, zoo)

    def finished(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.assign(zoo=name).reindex(columns=RAW_COLUMNS)
        if done is not None:
            done(rows)
        return rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        data = zoo_data(zoo, epochs)
        rows = []
        if config.baselines:
            names = [b for b in BASELINES if config.runs_baseline(b)]
            features = baseline_features(zoo, data, config)
            parts = [baselines(features, data, targets, names)] if config.every_label else []
            if config.label_scarce:
                parts.append(scarce_baselines(features, data, targets, config.scarce, names))
            rows.append(finished(pd.concat(parts, ignore_index=True).assign(seed=0, minutes=0.0, encoder="baselines")))
            if log:
                log("baselines done")
        seeds = range(config.seeds) if config.seed_ids is None else config.seed_ids
        work = [(encoder, seed) for encoder in encoders for seed in seeds]
        if config.jobs <= 1:
            rows += [finished(encoder_rows(e, seed, data, targets, config, log)) for e, seed in work]
        else:
            threads = config.threads or max(1, (os.cpu_count() or 1) // config.jobs)
            with ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_job, str(zoo.path), epochs, targets, e, seed, config, threads)
                           for e, seed in work]
                rows += [finished(f.result()) for f in as_completed(futures)]
    return pd.concat(rows, ignore_index=True)
