"""The quality table: learned representations of one zoo against the baselines, each seed chosen on validation.

The table is the experiment pipeline run over training seeds, learners and k labelled models, its rows
collected: each learner (a registered name, `weightspace.pipeline.learners`) is resolved as
`weightspace run --learner NAME` resolves it on this zoo (`Experiment.variant`), trained with
`train_in_process` (the same steps, evaluations and choice as a ray.tune trial), and its chosen embedding
probed by `probe_embedding` (the same probes as the run's final ones). Each seed keeps the state whose linear
probes score best on the validation split (mean over targets); the random init is a candidate, so a seed
whose training never beats it reports the untrained state (`chosen` = 0, counted in ``init_chosen``). The
test split chooses nothing. Beside them, the baselines of the registry (`weightspace.downstream.baselines`),
computed as the run computes them, under their quality-table names, and a control row per learner at its
random initialisation.

With ``label_scarce``, the probes also see the labels of only k training models (`label_scarce.py`),
while self-supervised training still reads every training model's weights; with ``every_label`` False,
only those rows (to add them to a table that holds the every-label ones: training chooses the same states).

`run_quality` returns the raw rows (one per seed, and per draw for label-scarce rows); `quality_table`
summarizes them and writes the CSV and markdown table. ray is not used here.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from weightspace.data.rows import usable_rows
from weightspace.downstream.baselines import BASELINES, BY_KEY, BaselineConfig, baseline_table
from weightspace.downstream.evaluate import ProbeWarning
from weightspace.downstream.features import Precomputed
from weightspace.downstream.label_scarce import LabelScarceConfig, label_scarce_scores
from weightspace.downstream.model_outputs import OutputsConfig, Unavailable
from weightspace.downstream.targets import CLASSIFICATION, derive_targets
from weightspace.pipeline.experiment import (
    Experiment,
    experiment_split,
    probe_embedding,
    resolved_config,
    select_epochs,
)
from weightspace.pipeline.learners import create_learner, list_learners
from weightspace.pipeline.training import control_model, train_in_process
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.config import LearnerConfig
from weightspace.representation.learner import embed
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset
from weightspace.zoo.store import Zoo

DEFAULT_ENCODERS = ("neuron_set", "2021")  # the learners that run unless others are named
INIT = ", random init"  # suffix of a learner's control feature set
TABLE_BASELINES = tuple(dict.fromkeys(b.table for b in BASELINES))  # the baselines' names in the table
RAW_COLUMNS = ["zoo", "encoder", "feature_set", "probe", "target", "metric", "split", "k", "draw", "value", "seed",
               "minutes", "chosen", "note"]
Log = Callable[[str], None]


@dataclass
class QualityConfig:
    """What `run_quality` runs."""

    seeds: int = 3  # training seeds per learner (3 or more for the table)
    seed_ids: tuple[int, ...] | None = None  # only these of range(seeds): a run split over processes or machines
    encoders: tuple[str, ...] = DEFAULT_ENCODERS  # registered learner names
    schedule: str | None = None  # every learner's schedule (--schedule); None: the folder's, else the learner's first
    smoke: bool = False  # each learner shrunk (`LearnerSpec.shrunk`), every checkpoint: seconds, not science
    label_scarce: bool = False  # also the label-scarce protocol (k labelled training models)
    every_label: bool = True  # False: the label-scarce rows only (needs label_scarce; a table keeps its other rows)
    baselines: bool | tuple[str, ...] = True  # False: only the learners' rows; names: only these (table names)
    encoder_trees: bool = True  # boosted trees on neuron_set embeddings too (most of a wide zoo's probing time)
    scarce: LabelScarceConfig = field(default_factory=LabelScarceConfig)  # its ks, draws and seed
    device: str = "cpu"  # where learners train; probes run on the CPU
    outputs_device: str = "auto"  # where B_probe runs the zoo's models (auto: cuda when available)
    data_root: str | None = None  # where file-based task data lives, for B_probe's task inputs
    jobs: int = 1  # learner x seed trainings at a time, each in its own process (needs a zoo on disk)
    threads: int | None = None  # threads of each training process (default: cores / jobs; with jobs 1 as they are)

    def __post_init__(self) -> None:
        self.encoders = tuple(self.encoders)
        unknown = [e for e in self.encoders if e not in list_learners()]
        if unknown or not (self.encoders or self.baselines):
            raise ValueError(f"unknown learners {unknown}; choose from {list_learners()}, or run the baselines")
        if not isinstance(self.baselines, bool):
            self.baselines = tuple(self.baselines)
            wrong = [b for b in self.baselines if b not in TABLE_BASELINES]
            if wrong or not self.baselines:
                raise ValueError(f"unknown baselines {wrong}; choose from {list(TABLE_BASELINES)}")
        if int(self.seeds) < 1 or int(self.jobs) < 1:
            raise ValueError(f"seeds and jobs must be at least 1, got seeds={self.seeds}, jobs={self.jobs}")
        if self.seed_ids is not None:
            self.seed_ids = tuple(int(s) for s in self.seed_ids)
            if not self.seed_ids or not set(self.seed_ids) <= set(range(int(self.seeds))):
                raise ValueError(f"seed_ids {self.seed_ids} must be some of the seeds 0 ... {int(self.seeds) - 1}")
        if self.schedule is not None:
            _ = self.titles  # a learner without this schedule fails here, listing its schedules
        if not (self.every_label or self.label_scarce):
            raise ValueError("every_label=False leaves only the label-scarce rows; set label_scarce=True too")

    @property
    def titles(self) -> list[str]:
        """The table's names of the learners that run."""
        return [create_learner(e, schedule=self.schedule).title for e in self.encoders]

    def runs_baseline(self, name: str) -> bool:
        """Whether the baseline called `name` in the table runs."""
        return self.baselines is True or (not isinstance(self.baselines, bool) and name in self.baselines)


def learner_experiment(experiment: Experiment, name: str, *, seed: int, smoke: bool = False,
                       schedule: str | None = None) -> Experiment:
    """`experiment` as `weightspace run --learner NAME --seed SEED` (``--schedule``, ``--smoke``) runs it."""
    run = replace(experiment.variant(name), seed=seed, schedule=schedule or experiment.schedule)
    return replace(run, smoke_test=True, zoo_epochs=None) if smoke else run


def load_preset_zoo(name: str, datasets: str | os.PathLike, *, smoke: bool = False, progress: bool = True) -> Zoo:
    """The zoo at ``datasets/<name>`` (``<name>_smoke`` with `smoke`), generated from preset `name` when missing."""
    path = Path(datasets) / (f"{name}_smoke" if smoke else name)
    if (path / "zoo.json").is_file():
        return Zoo.load(path)
    spec = get_preset(name, smoke=smoke)
    if smoke:
        spec = replace(spec, seeds=4 if spec.grid else 40, shard_size=64)
    return generate(spec, path, progress=progress and not smoke, data_root=datasets)


@dataclass
class Rows:
    """The zoo's rows the table probes: the experiment's checkpoints, usable rows only, with their split."""

    zoo: Zoo  # the selected rows as a zoo (its weights in memory)
    splits: np.ndarray  # (S,) "train" / "val" / "test"

    @classmethod
    def of(cls, zoo: Zoo, experiment: Experiment) -> "Rows":
        selected = select_epochs(zoo, experiment.zoo_epochs)
        keep = usable_rows(selected.samples, selected.weights)
        rows = Zoo(np.asarray(selected.weights[keep]), selected.samples.loc[keep].reset_index(drop=True),
                   zoo.layout, zoo.info, zoo.path)
        split = experiment_split(experiment, zoo)
        return cls(rows, split.column(rows.samples["model_id"].to_numpy()))

    def targets(self, targets) -> list:
        return [t for t in derive_targets(self.zoo.samples, targets, self.zoo.hyperparameters) if not t.note]


def _scores(table: pd.DataFrame) -> pd.DataFrame:
    """R² (or accuracy) rows of an `evaluate` table, with their notes."""
    table = table[table.metric.isin(["r2", "accuracy"])]
    return table[["feature_set", "probe", "target", "metric", "split", "value", "note"]]


def baseline_config(experiment: Experiment, config: QualityConfig) -> BaselineConfig:
    """The baselines as the experiment computes them, B_probe with boosted trees, on the quality run's devices."""
    data = experiment.representation.data
    return BaselineConfig(split_seed=data.seed, fractions=data.fractions, targets=experiment.targets,
                          outputs=OutputsConfig(trees=True, device=config.outputs_device, data_root=config.data_root))


def _wanted(config: QualityConfig) -> list[str]:
    return [b.key for b in BASELINES if config.runs_baseline(b.table)]


def baselines(rows: Rows, experiment: Experiment, config: QualityConfig) -> pd.DataFrame:
    """Every-label scores on train, val and test of the baselines, under their table names."""
    split = experiment_split(experiment, rows.zoo)
    table = baseline_table(rows.zoo, baseline_config(experiment, config), split, names=_wanted(config))
    return _scores(table.assign(feature_set=table.feature_set.map(lambda k: BY_KEY[k].table)))


def scarce_baselines(rows: Rows, experiment: Experiment, config: QualityConfig) -> pd.DataFrame:
    """Label-scarce scores of the baselines that declare label-scarce probes (`Baseline.scarce`)."""
    settings = baseline_config(experiment, config)
    train = rows.zoo.weights[rows.splits == "train"]
    parts, notes = [], []
    for baseline in BASELINES:
        probes = tuple(p for p in baseline.scarce if p in config.scarce.probes)
        if not probes or baseline.key not in _wanted(config):
            continue
        extractor = baseline.features(rows.zoo, settings)
        if isinstance(extractor, Unavailable):
            notes.append((baseline.table, probes, extractor.reason))
            continue
        if isinstance(extractor, (np.ndarray, Precomputed)):
            X = np.asarray(extractor)
        else:
            X = extractor.fit(train).transform(rows.zoo.weights)
        scores = label_scarce(rows, {baseline.table: X}, experiment.targets, replace(config.scarce, probes=probes))
        parts.append(scores[~scores.target.isin(getattr(extractor, "columns", None) or ())])  # read, not predicted
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RAW_COLUMNS)
    filler = [{"feature_set": name, "probe": probe, "target": t.name, "split": "test",
               "metric": "accuracy" if t.task == CLASSIFICATION else "r2",
               "k": str(k), "draw": 0, "value": np.nan, "note": reason}
              for name, probes, reason in notes for probe in probes for t in rows.targets(experiment.targets)
              for k in config.scarce.ks]
    return pd.concat([table, pd.DataFrame(filler)], ignore_index=True) if filler else table


def label_scarce(rows: Rows, features: dict[str, np.ndarray], targets, config: LabelScarceConfig) -> pd.DataFrame:
    """`label_scarce_scores` of `features` (aligned with `rows`), as raw quality rows (split "test")."""
    table = label_scarce_scores(features, rows.targets(targets), rows.zoo.samples["model_id"].to_numpy(),
                                rows.splits, config)
    return table.rename(columns={"score": "value"}).assign(split="test", note="")[
        ["feature_set", "probe", "target", "metric", "split", "k", "draw", "value", "note"]]


@dataclass
class Trained:
    """One training seed of one learner, its embeddings of the table's rows."""

    control: np.ndarray  # (S, L) embedding at random initialisation
    chosen: np.ndarray  # (S, L) embedding of the state chosen on validation (the control when `evaluation` is 0)
    evaluation: int  # which state was chosen: 0 the random init, i the i-th evaluation during training
    minutes: float  # training time
    model: Autoencoder  # the encoder in its chosen state
    evaluations: int  # evaluations after training began (fewer than the schedule's where TrainConfig.stop_lr ended it)
    epochs: int  # epochs trained


def train_learner(run: Experiment, zoo: Zoo, rows: Rows, device: str = "cpu") -> Trained:
    """Train `run`'s learner as `weightspace run` trains it (in this process), and embed `rows` with its random
    init and its chosen state."""
    return train_config(resolved_config(run, zoo, device=device), run, zoo, rows)


def train_config(config: LearnerConfig, run: Experiment, zoo: Zoo, rows: Rows) -> Trained:
    """Train `config` (resolved for `zoo`) on `run`'s split, iterations, targets and choice rule, and embed `rows`
    with its random init and its chosen state (`train_learner` with a config changed by hand, e.g. research)."""
    trained = train_in_process(config, zoo, experiment_split(run, zoo), iterations=run.iterations,
                               targets=run.targets, select=run.select)
    batch = config.train.eval_batch_size
    control = embed(control_model(trained), rows.zoo.weights, batch_size=batch).numpy()
    chosen = embed(trained.learner.model, rows.zoo.weights, batch_size=batch).numpy()
    return Trained(control, chosen, trained.chosen, trained.minutes, trained.learner.model,
                   len(trained.history) - 1, trained.learner.epoch)


def embedding_scores(name: str, z: np.ndarray, rows: Rows, targets, probes=("linear",),
                     reads: Sequence[str] = ()) -> pd.DataFrame:
    """The probes' scores of embedding `z` of `rows`, as `weightspace run`'s final probes score it (targets
    among `reads`, the columns the encoder's training read, shown as read)."""
    table = probe_embedding(z, rows.zoo.samples, rows.splits, targets=targets,
                            hyperparameters=rows.zoo.hyperparameters, probes=probes, reads=reads)
    return _scores(table.assign(feature_set=name))


def encoder_rows(experiment: Experiment, name: str, seed: int, zoo: Zoo, rows: Rows, config: QualityConfig,
                 log: Log | None = None) -> pd.DataFrame:
    """One training seed of one learner: its control rows (random init) and its chosen rows."""
    run = learner_experiment(experiment, name, seed=seed, smoke=config.smoke, schedule=config.schedule)
    title = replace(run, smoke_test=False).spec.title
    trained = train_learner(run, zoo, rows, config.device)
    if log:
        ended = (f", ended by TrainConfig.stop_lr after {trained.evaluations} of {run.iterations} evaluations"
                 if trained.evaluations < run.iterations else "")
        log(f"{title}, seed {seed}: {trained.minutes:.1f} min for {trained.epochs} epochs{ended}, chose "
            + ("the random init" if trained.evaluation == 0 else f"evaluation {trained.evaluation}"))
    trees = config.encoder_trees and run.representation.encoder.name == "neuron_set"
    probes = ("linear", "gbt") if trees else ("linear",)
    control_name = title + INIT
    parts = []
    reads = trained.model.reads  # what its training read beside the weights: shown as read, not predicted
    if config.every_label:
        parts += [embedding_scores(control_name, trained.control, rows, run.targets, reads=reads).assign(minutes=0.0),
                  embedding_scores(title, trained.chosen, rows, run.targets, probes, reads=reads).assign(
                      minutes=trained.minutes, chosen=trained.evaluation)]
    if config.label_scarce:
        scarce = label_scarce(rows, {control_name: trained.control, title: trained.chosen}, run.targets,
                              replace(config.scarce, probes=("linear",)))
        scarce = scarce[~scarce.target.isin(reads)].copy()  # a target the training read is not predicted
        scarce.loc[scarce.feature_set == title, "chosen"] = trained.evaluation
        parts.append(scarce.assign(minutes=np.where(scarce.feature_set == title, trained.minutes, 0.0)))
    return pd.concat(parts, ignore_index=True).assign(seed=seed, encoder=title)


def _job(path: str, experiment: Experiment, name: str, seed: int, config: QualityConfig,
         threads: int) -> tuple[pd.DataFrame, list[str]]:
    """`encoder_rows` in a worker process, and the lines it logged: the zoo is opened there (memory-mapped; no
    arrays travel)."""
    warnings.simplefilter("ignore", ProbeWarning)
    lines: list[str] = []
    with _threads(threads):
        zoo = Zoo.load(path)
        rows = encoder_rows(experiment, name, seed, zoo, Rows.of(zoo, _smoke(experiment, config)), config,
                            lines.append)
    return rows, lines


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Training and probes of this process on `threads` threads (None: as they are), restored afterwards."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def _smoke(experiment: Experiment, config: QualityConfig) -> Experiment:
    return replace(experiment, zoo_epochs=None) if config.smoke else experiment


def run_quality(zoo: Zoo, experiment: Experiment, config: QualityConfig, *, name: str | None = None,
                done: Callable[[pd.DataFrame], None] | None = None, log: Log | None = None) -> pd.DataFrame:
    """Every raw row of one zoo (columns `RAW_COLUMNS`): baselines (unless ``config.baselines`` is False),
    then each encoder x seed.

    Args:
        experiment: the zoo's experiment: checkpoints, targets, split and its folder's learner options.
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
    experiment = _smoke(experiment, config)

    def finished(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.assign(zoo=name).reindex(columns=RAW_COLUMNS)
        if done is not None:
            done(rows)
        return rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        rows = Rows.of(zoo, experiment)
        out = []
        if config.baselines:
            parts = [baselines(rows, experiment, config)] if config.every_label else []
            if config.label_scarce:
                parts.append(scarce_baselines(rows, experiment, config))
            out.append(finished(pd.concat(parts, ignore_index=True).assign(seed=0, minutes=0.0, encoder="baselines")))
            if log:
                log("baselines done")
        seeds = range(config.seeds) if config.seed_ids is None else config.seed_ids
        work = [(learner, seed) for learner in config.encoders for seed in seeds]
        if config.jobs <= 1:
            with _threads(config.threads):
                out += [finished(encoder_rows(experiment, learner, seed, zoo, rows, config, log))
                        for learner, seed in work]
        else:
            threads = config.threads or max(1, (os.cpu_count() or 1) // config.jobs)
            with ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_job, str(zoo.path), experiment, learner, seed, config, threads)
                           for learner, seed in work]
                for future in as_completed(futures):
                    rows_of_job, lines = future.result()
                    if log is not None:
                        for line in lines:
                            log(line)
                    out.append(finished(rows_of_job))
    return pd.concat(out, ignore_index=True)
