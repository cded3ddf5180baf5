"""Experiments: the numbered folders' pipeline (zoo -> baselines -> representation -> results -> report).

An `Experiment` is the one config object of an experiment folder. Its steps
write into ``<folder>/<name>/``:

- ``baselines.csv``, ``baseline_predictions.csv.gz``, ``baseline_performance.json``   (`compute_baselines`)
- ``tune/`` (ray.tune storage), ``history.csv``, ``embeddings.npy``, ``embedding_samples.csv``,
  ``embedding_2d.csv`` (its PCA / UMAP projection), ``results.csv``, ``predictions.csv.gz``,
  ``results.json``  (`train_representation`)
- ``experiment.json`` (the resolved config, zoo source and timings), ``report.md`` + PNGs
  (`weightspace.report`, drawn from these files alone).

The ``*predictions.csv.gz`` tables hold every probe's prediction of every sample
(`downstream.evaluate.PREDICTION_COLUMNS`), at full precision so that they reproduce
the scores; gzip matters at a million rows (a 12 000-sample zoo, 10 targets, 8 probes:
68 MiB as CSV, 19 MiB gzipped).

ray is imported lazily inside `train_representation`; this module never calls
``ray.init`` (the script edge, `weightspace.cli.experiment_run`, does).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from weightspace.data.rows import usable_rows
from weightspace.data.splits import ModelSplit, names_test_split
from weightspace.downstream.baselines import EMBEDDING, BaselineConfig, run_baselines
from weightspace.downstream.evaluate import evaluate, write_results_json
from weightspace.downstream.features import Precomputed
from weightspace.downstream.probing import SELECT_METRIC, probe_scores
from weightspace.downstream.training_gain import training_gain
from weightspace.io.atomic import atomic_file, write_csv
from weightspace.pipeline.ablation import resolve_search_space, shrink_search_space
from weightspace.pipeline.learners import LearnerSpec, create_learner
from weightspace.pipeline.output_folder import tune_run
from weightspace.pipeline.progress import stage
from weightspace.pipeline.projection import project_embedding
from weightspace.pipeline.training import pick_best, untrained_model
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.config import LearnerConfig, config_to_dict
from weightspace.representation.function_target import with_zoo_architecture
from weightspace.representation.learner import Learner, embed
from weightspace.representation.registry import create_autoencoder
from weightspace.zoo.store import Zoo


@dataclass
class Experiment:
    """One experiment folder's settings (and `weightspace run`'s on any zoo, `zoo_experiment`)."""

    name: str  # output subfolder and tune experiment name, e.g. "tetris_seed"
    preset: str  # zoo preset generated when datasets/ holds no zoo for this experiment
    learner: str = "neuron_set"  # a registered learner (`weightspace.pipeline.learners.list_learners`)
    # this folder's options of any learner it may run, by name: builder options and schedule, e.g.
    # {"2021": {"size": "mnist_seed", "schedule": "2021"}}; a learner not named here runs with its defaults
    learner_options: dict[str, dict] = field(default_factory=dict)
    schedule: str | None = None  # the learner's schedule (--schedule); None: this folder's, else the learner's default
    precision: str | None = None  # training precision instead of the learner's (--precision)
    seed: int | None = None  # training seed instead of the learner's (--seed): initialisation, views, batches
    smoke_test: bool = False  # the learner shrunk to seconds (`LearnerSpec.shrunk`), see `smoke`
    zenodo: str | None = None  # name of the converted 2021 dataset in datasets/, e.g. "11_tetris_seed"
    external: tuple[str, ...] = ()  # other converted external zoos in datasets/, tried after zenodo
    zoo_epochs: tuple[int, ...] | None = None  # checkpoints used by baselines and representation; None: all
    targets: tuple[str, ...] | None = None  # probe targets; None: accuracies, ggap, epoch, varied hyperparameters
    baseline_extras: bool = False  # the 2021 Tetris extras (kernel PCA, UMAP) among the baselines
    search_space: dict | None = None  # ray.tune grid over config fields (ablations; see weightspace.pipeline.ablation)
    # which checkpoint gives the embedding: "probe_mean_val" (the iteration whose linear probes score
    # best on the validation split, averaged over targets; the test split plays no part), any other
    # reported metric where higher is better, or "last"
    select: str = SELECT_METRIC
    notes: str = ""  # the zoo and checkpoints, and what this folder gives up compared with 2021
    extra: dict = field(default_factory=dict)  # free-form settings recorded in experiment.json
    umap_projection: bool = True  # save a UMAP projection of the embedding for the report (PCA is always saved)
    embedding_trees: bool = False  # also probe the final embedding with boosted trees (minutes on a wide embedding)
    # the untrained encoder (iteration 0) is evaluated and may be chosen like any trained iteration: the
    # random-init control goes through the same selection, and the report says when it won
    untrained_candidate: bool = True

    def __post_init__(self) -> None:
        if names_test_split(self.select):
            raise ValueError(f"Experiment.select {self.select!r} is a test-split metric, and nothing may be chosen "
                             f"on the test split; use {SELECT_METRIC!r}, another validation metric, or 'last'")
        _ = self.spec  # an unknown learner, schedule or option fails here, listing the valid ones

    @property
    def spec(self) -> LearnerSpec:
        """The learner this experiment trains, resolved from the registry with this folder's options."""
        options = dict(self.learner_options.get(self.learner, {}))
        if self.schedule is not None:
            options["schedule"] = self.schedule
        spec = create_learner(self.learner, **options)
        if self.precision is not None:
            spec = spec.with_precision(self.precision)
        if self.seed is not None:
            spec = spec.with_seed(self.seed)
        return spec.shrunk() if self.smoke_test else spec

    @property
    def representation(self) -> LearnerConfig:
        """The learner's config (a fresh copy)."""
        return self.spec.config

    @property
    def iterations(self) -> int:
        """Evaluations on validation during training, each ``representation.train.epochs_per_step`` epochs."""
        return self.spec.iterations

    def with_learner_options(self, options: Mapping[str, Mapping]) -> "Experiment":
        """The same experiment with `options` (by learner name) laid over this folder's own options of each
        learner: ``{"behaviour": {"beta": 0}}`` keeps the folder's other `behaviour` options (an ablation)."""
        merged = {name: dict(given) for name, given in self.learner_options.items()}
        for name, given in options.items():
            merged[name] = {**merged.get(name, {}), **given}
        return replace(self, learner_options=merged)

    def variant(self, name: str) -> "Experiment":
        """The same experiment with learner `name` (any registered one), writing into ``<name>_<learner>``.

        Raises:
            ValueError: an unknown learner (the message lists them).
        """
        if name == self.learner:
            return self
        return replace(self, name=f"{self.name}_{name}", learner=name)

    def smoke(self) -> "Experiment":
        """The same experiment shrunk to seconds: its own learner shrunk, every checkpoint of a tiny zoo."""
        return replace(self, name=f"{self.name}_smoke", smoke_test=True, zoo_epochs=None, baseline_extras=False,
                       search_space=shrink_search_space(self.search_space), umap_projection=False)

    def with_precision(self, precision: str) -> "Experiment":
        """The same experiment training its representation in `precision` ("fp32", "bf16" or "fp16")."""
        return replace(self, precision=precision)

    def record(self) -> dict:
        """What experiment.json records of the experiment: its name, learner, resolved config and notes."""
        spec = self.spec
        return {"name": self.name, "learner": spec.title,
                "config": {"learner": spec.name, "schedule": spec.schedule,
                           "representation": config_to_dict(spec.config), "iterations": spec.iterations,
                           "targets": self.targets, "search_space": str(self.search_space or ""),
                           "select": self.select},
                "notes": " ".join(n for n in (self.notes, spec.notes) if n)}


RUN_EPOCHS = 6  # checkpoints per model `zoo_experiment` uses by default, as the experiment folders


def zoo_experiment(zoo: Zoo, *, epochs: tuple[int, ...] | str | None = None) -> Experiment:
    """The experiment `weightspace run` and `weightspace quality` run on a zoo that has no experiment folder.

    Named after the zoo, default targets (accuracies, ggap, epoch, varied hyperparameters), the default
    learner (`neuron_set`); ``variant(NAME)`` gives any other registered learner with its defaults.

    Args:
        epochs: the checkpoints used by baselines and representation: "all", explicit epochs, or None:
            all of a zoo with at most `RUN_EPOCHS` epochs, else `RUN_EPOCHS` evenly spaced ones, the
            first and the last included (0, 5, ..., 25 of 0..25, as 11_tetris_seed).

    Raises:
        ValueError: an epoch the zoo has no checkpoints of.
    """
    held = zoo.epochs
    if epochs == "all" or (epochs is None and len(held) <= RUN_EPOCHS):
        chosen = None
    elif epochs is None:
        chosen = tuple(held[i] for i in np.linspace(0, len(held) - 1, RUN_EPOCHS).round().astype(int))
    elif isinstance(epochs, str):
        raise ValueError(f"epochs must be 'all', explicit epochs or None; got {epochs!r}")
    else:
        missing = sorted(set(epochs) - set(held))
        if missing:
            raise ValueError(f"zoo '{zoo.path}' has no checkpoints at epochs {missing}; it holds epochs {held}")
        chosen = tuple(sorted(epochs))
    used = f"epochs {', '.join(map(str, chosen))}" if chosen else f"all {len(held)} checkpoints"
    return Experiment(name=zoo.name, preset="", zoo_epochs=chosen,
                      notes=f"`weightspace run` on zoo {zoo.name}, {used} per model.")


# ------------------------------------------------------------------ the zoo
def select_epochs(zoo: Zoo, epochs: tuple[int, ...] | None) -> Zoo:
    """The zoo restricted to some checkpoints (a new in-memory Zoo; all of it when `epochs` is None)."""
    if epochs is None:
        return zoo
    keep = zoo.samples["epoch"].isin(epochs).to_numpy()
    return Zoo(np.asarray(zoo.weights[keep]), zoo.samples.loc[keep].reset_index(drop=True), zoo.layout,
               zoo.info, zoo.path)


def experiment_split(experiment: Experiment, zoo: Zoo) -> ModelSplit:
    """The experiment's split by model: drawn over every model of `zoo`, before `zoo_epochs` selects rows."""
    data = experiment.representation.data
    return ModelSplit.of_zoo(zoo, data.fractions, data.seed)


# -------------------------------------------------------------- baselines
def compute_baselines(experiment: Experiment, zoo: Zoo, out_dir: str | os.PathLike, *,
                      model_split: ModelSplit | None = None) -> pd.DataFrame:
    """Baselines B_W, B_s (linear and boosted trees) and hyperparameters on the experiment's zoo.

    `model_split` is the split the representation uses too (default: `experiment_split`).
    """

    data = experiment.representation.data
    config = BaselineConfig(split_seed=data.seed, fractions=data.fractions, targets=experiment.targets,
                            extras=experiment.baseline_extras)
    return run_baselines(select_epochs(zoo, experiment.zoo_epochs), out_dir, config,
                         split=model_split or experiment_split(experiment, zoo))


# --------------------------------------------------------- representation
def train_representation(experiment: Experiment, zoo: Zoo, out_dir: str | os.PathLike, *, resume: bool = True,
                         cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, device: str = "auto",
                         verbose: int = 1, model_split: ModelSplit | None = None,
                         storage: str | None = None, trial_resources: dict[str, float] | None = None,
                         record: str | os.PathLike | None = None, progress: bool = False) -> pd.DataFrame:
    """Train the representation with ray.tune, then embed the zoo, project it to 2-D and probe it.

    One split by model (`model_split`, default `experiment_split`) serves the encoder's training,
    the probes during training and the final probes of the embedding. The ray.tune run lives where
    `tune_run` says (``<out_dir>/tune``, or ``<storage>/<out_dir's name>`` for a folder or URI that
    every node of a cluster reaches); trials get the zoo through ray's object store. `record` is the
    run's record in the output folder (`weightspace.pipeline.run_record`): what `resume` verifies.
    `progress`: a bar over the training iterations and one per step after them.

    Returns:
        the tidy results table (feature set "embedding", linear probes, and boosted trees when
        ``experiment.embedding_trees``).

    Raises:
        RunInterrupted: ray stopped the run before its last iteration (Ctrl-C); nothing is written
            but what the run saved, and `resume` continues it.
    """
    from weightspace.pipeline.tune import CHECKPOINT_FILE, run_tuner  # lazy: it imports ray (seconds)

    out = Path(out_dir).resolve()
    config = resolved_config(experiment, zoo, device=device)
    targets = experiment.targets
    split = model_split or experiment_split(experiment, zoo)
    storage_path, name = tune_run(out, storage)
    grid = run_tuner(config, name=name, storage_path=storage_path, iterations=experiment.iterations,
                     search_space=resolve_search_space(experiment.search_space, config_to_dict(config)),
                     cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, trial_resources=trial_resources,
                     resume=resume, verbose=verbose, evaluate_fn=probe_scores(targets), zoo=zoo,
                     model_split=None if "data" in (experiment.search_space or {}) else split, record=record,
                     progress=progress, untrained_candidate=experiment.untrained_candidate)
    offset = int(experiment.untrained_candidate)  # ray's iteration 1 is then the untrained encoder
    # ResultGrid iterates through __getitem__ and __len__; ray's stub has no __iter__
    errors = [r for r in grid if r.error]  # type: ignore[attr-defined]
    if errors:
        first = str(errors[0].error).strip().splitlines()
        raise RuntimeError(f"{len(errors)} trial(s) failed, the first with: {first[-1] if first else 'no message'}; "
                           "fix the cause and rerun (--resume continues from the last checkpoint)")
    unfinished = [r for r in grid  # type: ignore[attr-defined]  # ResultGrid, as above
                  if (r.metrics or {}).get("training_iteration", 0) < experiment.iterations + offset]
    if unfinished:  # ray stops a run on Ctrl-C, saves it and returns as if it had finished
        raise RunInterrupted(f"{len(unfinished)} of {len(grid)} trial(s) stopped before iteration "
                             f"{experiment.iterations}")
    if experiment.search_space:
        return summarize_trials(grid, out)
    result = grid[0]
    history = result.metrics_dataframe
    assert history is not None  # a trial that reached its last iteration reported every one
    history["training_iteration"] -= offset  # training iterations done: 0 is the untrained encoder
    write_csv(history, out / "history.csv")
    checkpoint, iteration, selected_by = selected_checkpoint(result, experiment.select)
    iteration = None if iteration is None else iteration - offset
    with checkpoint.as_directory() as folder:  # fetched when the run lives in remote storage
        learner = Learner(config, zoo.layout, device="cpu").load(Path(folder) / CHECKPOINT_FILE)
    table, no_umap = _embed_and_probe(learner.model, select_epochs(zoo, experiment.zoo_epochs), split, out,
                                      targets=targets, umap=experiment.umap_projection,
                                      batch_size=config.train.eval_batch_size, trees=experiment.embedding_trees,
                                      progress=progress, control=untrained_model(config, zoo, split))
    chosen = history[history["training_iteration"] == iteration].iloc[-1] if iteration is not None else history.iloc[-1]
    extra: dict[str, Any] = {k: float(chosen[k]) for k in ("loss_train", "loss_test", "rsq_train", "rsq_val", "rsq_test")
             if k in chosen and pd.notna(chosen[k])}
    extra |= {"selected_iteration": int(chosen["training_iteration"]), "selected_by": selected_by,
              "reconstruction_kind": learner.model.reconstruction_kind,  # what the rsq_* numbers score
              "untrained_candidate": experiment.untrained_candidate,  # iteration 0, untrained, could be chosen
              "selected_untrained": experiment.untrained_candidate and int(chosen["training_iteration"]) == 0}
    if no_umap:
        extra["projection_note"] = no_umap  # why embedding_2d.csv holds no UMAP projection
    write_results_json(table, out / "results.json", extra=extra)
    return table


def resolved_config(experiment: Experiment, zoo: Zoo, *, device: str = "auto") -> LearnerConfig:
    """The experiment's learner config as it trains on `zoo`: the zoo's architecture filled in (a function-space
    target runs the zoo's networks), its path and checkpoints, the device; checked against the zoo's layout.

    Raises:
        ValueError: an encoder that cannot take this zoo's layout (its message says why).
    """
    config = experiment.representation
    config.encoder = with_zoo_architecture(config.encoder, zoo)
    # an encoder that cannot take this zoo's layout stops here, with its message, not inside a ray trial
    create_autoencoder(config.encoder, zoo.layout, generator=torch.Generator().manual_seed(0))
    config.data.path = str(Path(zoo.path).resolve()) if zoo.path is not None else ""
    config.data.epochs = experiment.zoo_epochs
    config.train.device = device
    return config


def probe_embedding(z: np.ndarray, samples: pd.DataFrame, splits: np.ndarray, *, targets, hyperparameters,
                    probes: tuple[str, ...] = ("linear",), out_predictions: Path | None = None,
                    reads: Sequence[str] = ()) -> pd.DataFrame:
    """The final probes of an embedding `z` of `samples` (feature set "embedding"): what `weightspace run`
    reports and the quality table collects. Targets among `reads` (the samples' columns the encoder's
    training read, `Autoencoder.reads`) are shown as read, not predicted."""
    return evaluate(z, samples, feature_sets={EMBEDDING: Precomputed(z, reads)}, probes=probes, targets=targets,
                    splits=splits, hyperparameters=hyperparameters, out_predictions=out_predictions)


class RunInterrupted(KeyboardInterrupt):
    """ray stopped a run before its last iteration (it was interrupted); the run is saved and can resume."""


def check_trainable(experiment: Experiment, zoo: Zoo, split: ModelSplit) -> None:
    """Refuse, before any trial starts, a zoo whose train split cannot fill one batch of finite weights.

    Raises:
        ValueError: too few usable train samples (diverged and non-finite rows do not count).
    """
    config = experiment.representation
    samples = zoo.samples
    keep = split.column(samples["model_id"].to_numpy()) == "train"
    if experiment.zoo_epochs is not None:
        keep &= samples["epoch"].isin(list(experiment.zoo_epochs)).to_numpy()
    rows = np.flatnonzero(keep)
    usable = len(rows)
    if config.data.exclude_diverged:
        usable = int(usable_rows(samples.iloc[rows], zoo.weights[rows]).sum())
    batch = config.train.batch_size
    if usable < batch:
        dropped = f" ({len(rows) - usable} more have NaN or infinite weights)" if usable < len(rows) else ""
        raise ValueError(f"the train split of zoo '{zoo.path}' holds {usable} usable samples{dropped}, fewer than "
                         f"one batch of {batch}; use a zoo with more models or checkpoints (or `--epochs all`), "
                         "or a learner with a smaller TrainConfig.batch_size")


def _embed_and_probe(model, zoo: Zoo, split: ModelSplit, out: Path, *, targets, umap: bool,
                     batch_size: int, trees: bool = False, progress: bool = False,
                     control: Autoencoder | None = None) -> tuple[pd.DataFrame, str]:
    """Embed `zoo`, project the embedding to 2-D, probe it, and write all of it to `out`.

    Writes ``embeddings.npy``, ``embedding_samples.csv`` (with each sample's split), ``embedding_2d.csv``,
    ``predictions.csv.gz`` and ``results.csv``; with `control` (the same encoder at its random init) also
    ``predictions_init.csv.gz`` and ``training_gain.csv``: what training added, with its interval.

    Returns:
        The results table, and why ``embedding_2d.csv`` holds no UMAP projection ("" when it does).
    """

    with stage("embedding", enabled=progress):
        weights = np.array(zoo.weights, dtype=np.float32)  # a writable copy: the zoo may be memory-mapped
        z = embed(model, weights, batch_size=batch_size).numpy()  # (S, latent)
        samples = zoo.samples.copy()
        samples["split"] = split.column(samples["model_id"].to_numpy())
        with atomic_file(out / "embeddings.npy") as tmp:
            np.save(tmp, z.astype(np.float32), allow_pickle=False)
        write_csv(samples, out / "embedding_samples.csv")
    with stage("final probes", enabled=progress) as bar:
        probes = ("linear", "gbt") if trees else ("linear",)
        bar.set_postfix_str(f"{' and '.join(probes)} on {z.shape[1]} features")
        table = probe_embedding(z, zoo.samples, samples["split"].to_numpy(), targets=targets,
                                hyperparameters=zoo.hyperparameters, probes=probes,
                                out_predictions=out / "predictions.csv.gz", reads=model.reads)
        write_csv(table, out / "results.csv")
    if control is not None:
        with stage("what training added", enabled=progress):
            write_csv(_training_gain(model, control, zoo, samples, table, out, targets=targets,
                                     batch_size=batch_size), out / "training_gain.csv")
    with stage("projection", enabled=progress):
        projection, no_umap = project_embedding(z, umap=umap)
        write_csv(projection, out / "embedding_2d.csv")
    return table, no_umap


def _training_gain(model: Autoencoder, control: Autoencoder, zoo: Zoo, samples: pd.DataFrame, table: pd.DataFrame,
                   out: Path, *, targets, batch_size: int) -> pd.DataFrame:
    """The linear probes of the random init's embedding (``predictions_init.csv.gz``) set against the trained
    one's (``predictions.csv.gz``): `training_gain` per target."""
    z0 = embed(control, np.array(zoo.weights, dtype=np.float32), batch_size=batch_size).numpy()
    probe_embedding(z0, zoo.samples, samples["split"].to_numpy(), targets=targets, hyperparameters=zoo.hyperparameters,
                    out_predictions=out / "predictions_init.csv.gz", reads=model.reads)
    tasks = dict(zip(table.target, table.task))
    return training_gain(pd.read_csv(out / "predictions.csv.gz"), pd.read_csv(out / "predictions_init.csv.gz"),
                         {t: task for t, task in tasks.items() if t not in model.reads})


def selected_checkpoint(result, select: str):
    """``(checkpoint, training_iteration, how)`` of a trial's result chosen by `select` (see `Experiment.select`).

    "last" gives the final checkpoint; a metric that no checkpoint reported is an error; a metric
    name gives the checkpoint where it is highest (the later one on ties). `how` is the rule applied:
    `select`, or "last".
    """
    last = (result.checkpoint, result.metrics.get("training_iteration") if result.metrics else None, "last")
    if select == "last":
        return last
    best = pick_best(result.best_checkpoints or [], select)
    if best is None:  # choosing the last one silently would hide a broken evaluation
        reported = sorted({k for _, m in (result.best_checkpoints or []) for k in m})
        raise RuntimeError(f"no checkpoint reported the selection metric {select!r}, so none can be chosen by it; "
                           f"the checkpoints reported {reported or 'nothing'}. Check the probes' evaluation, or set "
                           "Experiment.select to one of those metrics or to 'last'")
    checkpoint, metrics = best
    return checkpoint, metrics.get("training_iteration"), select


def summarize_trials(grid, out: Path) -> pd.DataFrame:
    """Write ``trials.csv``: one row per trial of a grid search, its config values (dotted keys such as
    ``encoder.name``; lists left out) and its last reported numeric metrics."""

    trials = grid.get_dataframe()  # last reported metrics and "config/<section>/<field>" columns
    config = [c for c in trials if c.startswith("config/")]
    settings = trials[config].rename(columns=lambda c: c.removeprefix("config/").replace("/", "."))
    settings = settings.loc[:, [not settings[c].map(lambda v: isinstance(v, (list, dict))).any() for c in settings]]
    metrics = trials.drop(columns=config).select_dtypes(include=["number", "bool"])
    table = pd.concat([settings, metrics], axis=1)
    write_csv(table, out / "trials.csv")
    return table


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
