"""ray.tune around the representation learner: a `Trainable` and `run_tuner`.

ray is imported here and nowhere else in the library (``import weightspace``
never loads it). Trials read no file of the driver: the zoo travels to them through ray's object
store (`tune.with_parameters`), and results and checkpoints go to the run's storage, a local folder
or a URI (`weightspace.pipeline.storage`), so a trial on a node that cannot see the driver's disk
runs the same. Configs cross the ray boundary as the nested dict of
`config_to_dict` (the ``param_space``; search spaces sit at the same nested
keys) and are rebuilt with `config_from_dict` inside the trial, which rejects
unknown keys. The library never calls ``ray.init``; the script does, or
`Tuner.fit` starts a local instance.

One tune iteration = ``TrainConfig.epochs_per_step`` training epochs, then an
evaluation on every split (losses, reconstruction R²) and the metrics of an
``evaluate_fn`` (by default the linear-probe scores of `probe_scores`). A
checkpoint holds the model, projection head, optimizer, scheduler, grad scaler
and generator states, so a restored trial continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import ray
import torch
from ray import tune

from weightspace.data.dataset import ZooDataset
from weightspace.data.splits import ModelSplit, names_test_split
from weightspace.downstream.probing import SELECT_METRIC, probe_scores
from weightspace.errors import OutputError
from weightspace.pipeline import storage
from weightspace.pipeline.run_record import CHECKPOINT_FILE, Recorder, check_latest_checkpoints, run_id_at, verify
from weightspace.pipeline.training import TrainingSession
from weightspace.representation.config import LearnerConfig, config_from_dict, config_to_dict
from weightspace.representation.learner import EvaluateFn
from weightspace.zoo.store import Zoo

if TYPE_CHECKING:
    from tqdm.auto import tqdm


class WeightspaceTrainable(tune.Trainable):
    """One trial: a `Learner` over the splits of a zoo.

    `zoo` is the zoo itself, handed over by `run_tuner` through ray's object store; None: the trial
    loads the zoo named in ``config["data"]["path"]`` (which then must be readable where it runs).
    `model_split` is the zoo's split, drawn once by `run_tuner` and shared by every trial; None: drawn
    here over all rows of the zoo with ``config["data"]``'s fractions and seed. `untrained_first`: the
    first iteration trains nothing, so the untrained encoder is evaluated and checkpointed like any
    other iteration (a candidate of the validation choice: the random-init control).
    """

    def setup(self, config: dict, evaluate_fn: EvaluateFn | None = None, model_split: ModelSplit | None = None,
              zoo: Zoo | None = None, untrained_first: bool = False) -> None:
        self.learner_config = config_from_dict(LearnerConfig, config)
        if zoo is None and not Path(self.learner_config.data.path).is_absolute():
            raise ValueError(f"data.path {self.learner_config.data.path!r} must be absolute inside a ray trial "
                             "(trials run in their own directory); run_tuner resolves it for you")
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            torch.set_num_threads(max(1, int(cpus)))
        datasets = ZooDataset.splits(self.learner_config.data, zoo, model_split=model_split)
        self.session = TrainingSession(self.learner_config, datasets, evaluate_fn=evaluate_fn,
                                       untrained_first=untrained_first)
        self.learner = self.session.learner

    def step(self) -> dict[str, Any]:
        return self.session.step(self.iteration)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.learner.save(Path(checkpoint_dir) / CHECKPOINT_FILE)

    # ray's stub declares dict | None, but the class API passes the checkpoint directory a save_checkpoint filled
    def load_checkpoint(self, checkpoint: str) -> None:  # type: ignore[override]
        self.learner.load(Path(checkpoint) / CHECKPOINT_FILE)


class RecordSaves(tune.Callback):
    """Keeps a run's record (`weightspace.pipeline.run_record`) up to date: after every controller step, when
    ray may have saved its state to the driver's staging folder (from where it is uploaded to the run's
    location), and at the end. It records what the driver staged, never what others put at the location.

    ray pickles it into ``tuner.pkl`` with the run's configuration; it travels as the record's path alone
    and reads the record anew. Unpickled while `run_tuner` restores a run, it keeps the record that run was
    verified against (the output folder may have been moved or copied since).
    """

    def __init__(self, record: str | Path):
        self.record = str(record)
        self._recorder: Recorder | None = None

    def __getstate__(self) -> dict:
        return {"record": self.record}

    def __setstate__(self, state: dict) -> None:
        type(self).__init__(self, _RESTORING.get("record") or state["record"])

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if trials:
            _STAGING[self.record] = trials[0].storage.experiment_driver_staging_path
        if self._recorder is None:
            self._recorder = Recorder.load(self.record)
        staging = _STAGING.get(self.record)
        if self._recorder is not None and staging is not None and Path(staging).is_dir():
            self._recorder.scan_local(staging)

    def on_experiment_end(self, trials: list, **info) -> None:
        self.on_step_end(0, trials)


_STAGING: dict[str, str] = {}  # record path -> the driver's staging folder of its run, once a trial exists
_RESTORING: dict[str, str] = {}  # "record": the record of the run `run_tuner` is restoring


class TrainingProgress(tune.Callback):
    """One progress bar over a run's training iterations, with each iteration's loss and validation probe score
    (the bar of every trial of a grid advances together; the postfix shows the latest result)."""

    def __init__(self, iterations: int):
        self.iterations = iterations
        self.bar: tqdm | None = None  # made at the first result
        self.done: dict[str, int] = {}  # trial id -> iterations reported

    def __getstate__(self) -> dict:  # ray pickles callbacks with the run; a bar does not travel
        return {"iterations": self.iterations}

    def __setstate__(self, state: dict) -> None:
        type(self).__init__(self, state["iterations"])

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.iterations * len(trials), desc="training", unit="it",
                            bar_format="{desc:<16} {bar:10} {n_fmt}/{total_fmt} it {elapsed}<{remaining}{postfix}")
        self.bar.total = max(self.bar.total, self.iterations * len(trials))
        reported = self.iterations if result.get("done") else int(result.get("training_iteration", 0))  # stop_lr
        self.done[trial.trial_id] = min(reported, self.iterations)
        self.bar.update(sum(self.done.values()) - self.bar.n)
        shown = {"loss": result.get("loss_train"), "probe val": result.get(SELECT_METRIC)}
        self.bar.set_postfix_str(", ".join(f"{k} {v:.3f}" for k, v in shown.items() if isinstance(v, float)))

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.bar is not None:
            self.bar.close()


def merge_search_space(base: dict, search: dict | None, _path: str = "") -> dict:
    """`base` (a `config_to_dict` dict) with the entries of `search` put at the same nested keys.

    Raises:
        ValueError: a key of `search` that the config does not have.
    """
    out = copy.deepcopy(base)
    for key, value in (search or {}).items():
        where = f"{_path}{key}"
        if key not in out:
            raise ValueError(f"search space key {where!r} is not a config field; valid here: {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict) and not _is_search(value):
            out[key] = merge_search_space(out[key], value, f"{where}.")
        else:
            out[key] = value
    return out


def _is_search(value: dict) -> bool:
    return set(value) == {"grid_search"}


def run_tuner(config: LearnerConfig, *, name: str, storage_path: str | Path, iterations: int,
              search_space: dict | None = None, num_samples: int = 1, cpus_per_trial: float = 1.0,
              gpus_per_trial: float = 0.0, trial_resources: dict[str, float] | None = None,
              checkpoint_frequency: int = 1, num_to_keep: int | None = None,
              metric: str | None = None, mode: str = "min", max_failures: int = 0,
              evaluate_fn: EvaluateFn | None = probe_scores(), model_split: ModelSplit | None = None,
              zoo: Zoo | None = None, trainable: type[WeightspaceTrainable] = WeightspaceTrainable,
              resume: bool = True, verbose: int = 1, record: str | os.PathLike | None = None,
              progress: bool = False, untrained_candidate: bool = False) -> tune.ResultGrid:
    """Run (or continue) a tune experiment of the representation learner.

    Args:
        config: the base configuration; ``config.data.path`` is made absolute.
        name: experiment name; results go to ``<storage_path>/<name>``.
        storage_path: where experiments live: a local folder (made absolute) or a URI that ``pyarrow.fs``
            understands (``file://``, ``s3://``, ``gs://``; passed to ray unchanged, query included).
            On a cluster whose nodes share no disk it must be a location every node reaches.
        iterations: tune iterations per trial (each ``config.train.epochs_per_step`` epochs).
        search_space: nested dict of ray search objects at config keys, e.g.
            ``{"loss": {"gamma": tune.grid_search([0.0, 0.5, 1.0])}}``.
        cpus_per_trial, gpus_per_trial: resources per trial (fractions of a GPU allowed).
        trial_resources: custom ray resources per trial, e.g. ``{"trainer": 1}`` to place trials only on
            nodes started with ``--resources '{"trainer": N}'``.
        checkpoint_frequency: checkpoint every this many iterations (and at the end).
        metric, mode: what "best" means for checkpoints kept and ``ResultGrid.get_best_result``;
            default ``loss_val``, none without a val split (then `num_to_keep` keeps the latest
            checkpoints). A metric of the test split is refused: nothing is chosen on it.
        evaluate_fn: extra metrics per iteration, ``evaluate_fn(model, datasets) -> dict``; by default
            the linear-probe scores of every target (`probe_scores`); None for none.
        model_split: the zoo's split by model (`ModelSplit.of_zoo`), shared by every trial; None: drawn
            here, once, over all rows of the zoo with ``config.data``'s fractions and seed. Trials of a
            search space over ``data`` draw their own.
        zoo: the zoo at ``config.data.path``, if the caller has it open; None: loaded here. Either way it
            reaches the trials through ray's object store (once per node), never through the driver's
            files; only a search space over ``data.path`` leaves each trial to load its own zoo.
        trainable: a `WeightspaceTrainable` subclass.
        resume: if ``<storage_path>/<name>`` holds an interrupted run, continue it with
            `Tuner.restore` (unfinished and errored trials resume from their last checkpoint).
        record: the file where the run's identity and the digests of the files ray may unpickle are kept
            (`weightspace.pipeline.run_record`): a new run starts a new record there, and a run is resumed
            only when that record vouches for every such file. None: no record, and `resume` trusts the
            storage as ray does.
        progress: show one bar over the training iterations (`TrainingProgress`); with `verbose` 0, it is
            all a run prints.
        untrained_candidate: each trial's first iteration trains nothing: the untrained encoder is evaluated
            and checkpointed, a candidate of every choice among checkpoints; ``iterations`` training
            iterations follow (ray counts ``iterations + 1``).

    Raises:
        UntrustedRunError: `record` is given and does not vouch for the run to resume.
        CheckpointError: resuming, a trial's latest ``learner.pt`` is not a checkpoint weightspace wrote.
        OutputError: `record` is given and another run started at the same location meanwhile (possible only
            on an object store, which has no lock: `weightspace.pipeline.storage.lock`).

    Returns:
        the `ResultGrid`.
    """
    storage_path = storage.normalize(storage_path)
    config = copy.deepcopy(config)
    config.data.path = str(Path(config.data.path).expanduser().resolve())
    if metric is None:
        metric = "loss_val" if config.data.fractions[1] > 0 else None
    elif names_test_split(metric):
        raise ValueError(f"metric {metric!r} is measured on the test split, and nothing may be chosen on it; "
                         "pass a validation metric such as 'loss_val', or give DataConfig.fractions a val share")
    if "path" in (search_space or {}).get("data", {}):
        zoo = None  # each trial loads the zoo its config names
    else:
        zoo = shipped(zoo if zoo is not None else Zoo.load(config.data.path))
    if "data" in (search_space or {}):
        if model_split is not None:
            raise ValueError("a search space over 'data' draws a split per trial; pass model_split=None")
    elif model_split is None:
        assert zoo is not None  # only a search space over data.path leaves it unloaded
        model_split = ModelSplit.of_zoo(zoo, config.data.fractions, config.data.seed)
    resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial, **(trial_resources or {})}
    wrapped = tune.with_resources(tune.with_parameters(trainable, evaluate_fn=evaluate_fn, model_split=model_split,
                                                       zoo=zoo, untrained_first=untrained_candidate), resources)
    iterations += int(untrained_candidate)
    experiment_dir = storage.join(storage_path, name)
    recorder = None
    record = None if record is None else str(Path(record).resolve())
    param_space = merge_search_space(config_to_dict(config), search_space)
    with _remember_ctrl_c() as interrupted:
        if resume and tune.Tuner.can_restore(experiment_dir):
            if record is not None:
                recorder = Recorder.load(record)
                verify(recorder, experiment_dir)  # before ray unpickles anything there
            check_latest_checkpoints(experiment_dir)  # before a trial loads one and fails on every resume
            if record is not None:
                _RESTORING["record"] = record
            with interrupted.held():  # tuner.pkl rewritten and recorded, or neither
                try:  # the param space again: a run stopped before ray saved its trials has none but tuner.pkl's
                    tuner = tune.Tuner.restore(experiment_dir, trainable=wrapped, resume_unfinished=True,
                                               resume_errored=True, param_space=param_space)
                finally:
                    _RESTORING.clear()
                if recorder is not None:
                    recorder.scan_file(storage.TUNER_FILE)  # the restore writes tuner.pkl anew
        else:
            if record is not None:
                recorder = Recorder.start(record, experiment_dir)
            # the run's id before ray writes anything: a run stopped at any moment from here on can be resumed
            storage.write_json(storage.join(experiment_dir, storage.CONFIG_FILE),
                               {"config": param_space, "iterations": iterations,
                                "run_id": recorder.run_id if recorder is not None else None})
            # tuner.pkl written and recorded, or neither: a Ctrl-C that cut the digest short would leave a file the
            # record lacks, which every resume refuses
            with interrupted.held():
                try:
                    tuner = tune.Tuner(
                        wrapped,
                        param_space=param_space,
                        tune_config=tune.TuneConfig(num_samples=num_samples, metric=metric, mode=mode if metric else None),
                        run_config=tune.RunConfig(
                            name=name,
                            storage_path=storage_path,
                            stop={"training_iteration": iterations},
                            checkpoint_config=tune.CheckpointConfig(
                                checkpoint_frequency=checkpoint_frequency, checkpoint_at_end=True, num_to_keep=num_to_keep,
                                checkpoint_score_attribute=metric if num_to_keep else None, checkpoint_score_order=mode),
                            failure_config=tune.FailureConfig(max_failures=max_failures),
                            callbacks=[*([RecordSaves(record)] if record is not None else []),
                                       *([TrainingProgress(iterations)] if progress else [])],
                            verbose=verbose,
                        ),
                    )
                finally:
                    if recorder is not None and storage.exists(storage.join(experiment_dir, storage.TUNER_FILE)):
                        recorder.scan_file(storage.TUNER_FILE)  # written by the Tuner, straight to the run's location
        if interrupted:
            raise KeyboardInterrupt
        try:
            grid = tuner.fit()
        finally:
            if record is not None and record in _STAGING:
                with interrupted.held():  # a second Ctrl-C (ray's "skip the final save") must not cut it short
                    RecordSaves(record).on_step_end(0, [])  # what ray saved last, also when it stopped on Ctrl-C
                del _STAGING[record]
        if interrupted:  # a Ctrl-C that came while ray was not listening, and that ray swallowed
            raise KeyboardInterrupt
    found = run_id_at(experiment_dir) if recorder is not None else None
    if recorder is not None and found is not None and found != recorder.run_id:
        # an object store has no lock: another run started at the same location while this one ran
        raise OutputError(f"another run took over the run location '{experiment_dir}' while this one ran (its "
                          f"{storage.CONFIG_FILE} names another run id), so neither run's results there can be "
                          "trusted; start over with a --storage or output folder name of its own")
    return grid


class CtrlC:
    """The Ctrl-Cs (SIGINT) seen in a `_remember_ctrl_c` block: true once one came. Each raises
    KeyboardInterrupt as usual, except inside `held`, where it is only remembered (the block checks it after)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._holds = 0

    def __bool__(self) -> bool:
        return bool(self.seen)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A section that a Ctrl-C must not cut in two (ray writes tuner.pkl, the run's record takes its
        digest): a Ctrl-C in it is remembered, and raised by whoever checks after it."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def handle(self, signum: int, frame: Any) -> None:
        self.seen.append(signum)
        if not self._holds:
            raise KeyboardInterrupt


@contextmanager
def _remember_ctrl_c() -> Iterator[CtrlC]:
    """Yield a `CtrlC` that records each Ctrl-C (SIGINT) of the block, besides raising KeyboardInterrupt as
    usual outside its held sections.

    ``Tuner.fit`` installs its own handler (which stops the run and saves it) only once it is under way;
    a Ctrl-C before that may be swallowed inside ray, and the run would then go on as if nothing happened.
    """
    seen = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.signal(signal.SIGINT, seen.handle)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def shipped(zoo: Zoo) -> Zoo:
    """`zoo` as it travels to trials: its weights a plain array (a memory-mapped file's pages are copied
    into the object store once; the trial holds no handle on the driver's file)."""
    return dataclasses.replace(zoo, weights=np.asarray(zoo.weights))
