"""One training run of a learner over a zoo's splits, one evaluation at a time: what a ray.tune trial runs
(`weightspace.pipeline.tune`) and what `train_in_process` runs for the quality table, so both train, evaluate
and choose alike.

An iteration trains ``config.train.epochs_per_step`` epochs, then evaluates every split (losses,
reconstruction R²) and the probes of an ``evaluate_fn``. With ``untrained_first`` iteration 0 trains
nothing: the untrained encoder (its input scale fitted on the train split, as training's first step would)
is evaluated and may be chosen like any trained state (the random-init control). `pick_best` is the one rule
that chooses among evaluated states: the highest selection metric, the later state on ties.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import numpy as np
import pandas as pd

from weightspace.data.dataset import ZooDataset
from weightspace.data.splits import ModelSplit
from weightspace.downstream.probing import probe_scores
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.config import LearnerConfig
from weightspace.representation.learner import EvaluateFn, Learner
from weightspace.zoo.store import Zoo

T = TypeVar("T")


class TrainingSession:
    """A `Learner` over the splits of a zoo, stepped one evaluation at a time."""

    def __init__(self, config: LearnerConfig, datasets: dict[str, ZooDataset], *,
                 evaluate_fn: EvaluateFn | None = None, untrained_first: bool = False):
        if "train" not in datasets:
            raise ValueError(f"the zoo at {config.data.path} has no training samples with {config.data}")
        self.config = config
        self.datasets = datasets
        self.learner = Learner(config, datasets["train"].layout)
        self.evaluate_fn = evaluate_fn
        self.untrained_first = untrained_first
        self.train_seconds = 0.0  # time spent in training epochs (evaluations left out)

    def step(self, iteration: int) -> dict[str, Any]:
        """Iteration `iteration` (0-based): train (unless it is the untrained one), then evaluate."""
        row: dict[str, Any] = {}
        if self.untrained_first and iteration == 0:  # the random-init control: no training step
            train = self.datasets["train"]  # as training's first step does
            self.learner.model.fit_input_scale(train.weights, self.learner.row_networks(train))
        else:
            start = time.perf_counter()
            for _ in range(self.config.train.epochs_per_step):
                row = self.learner.train_epoch(self.datasets["train"])  # NonFiniteLossError stops the run
                if self.learner.finished:  # the rate reached TrainConfig.stop_lr: this evaluation is the last
                    row["done"] = True  # ray.tune ends a trial whose result says so
                    break
            self.train_seconds += time.perf_counter() - start
        row |= self.learner.evaluate(self.datasets, loss_splits=["val", "test"])
        if self.evaluate_fn is not None:
            row |= dict(self.evaluate_fn(self.learner.model, self.datasets))
        row["step"] = self.learner.step
        return row


def pick_best(candidates: Sequence[tuple[T, dict]], select: str) -> tuple[T, dict] | None:
    """The candidate whose metrics score highest on `select` (the later one on ties); None when none has
    a finite score. Candidates are ``(state, metrics)`` in the order they were evaluated."""
    scored = [(i, c) for i, c in enumerate(candidates) if np.isfinite(c[1].get(select, np.nan))]
    if not scored:
        return None
    return max(scored, key=lambda ic: (ic[1][1][select], ic[1][1].get("training_iteration", ic[0])))[1]


@dataclass
class InProcessRun:
    """A learner trained in this process (`train_in_process`)."""

    learner: Learner  # its model holds the chosen state
    history: pd.DataFrame  # one row per iteration; training_iteration 0 is the untrained encoder
    chosen: int  # the chosen training_iteration (0: the random init)
    control: dict  # the untrained encoder's state_dict (input scale fitted)
    minutes: float  # time spent training


def train_in_process(config: LearnerConfig, zoo: Zoo, split: ModelSplit, *, iterations: int, targets=None,
                     select: str) -> InProcessRun:
    """Train `config` on `zoo` for `iterations` evaluations in this process, exactly as one ray.tune trial of
    `weightspace.pipeline.tune` does (the untrained encoder first), and keep the state `pick_best` chooses.
    An evaluation whose row says ``done`` (the learning rate reached ``TrainConfig.stop_lr``) is the last.

    Args:
        config: the learner, its ``data`` naming the checkpoints (``data.epochs``) and its ``train`` the seed.
        split: the zoo's split by model.
        targets: the probes' targets (`probe_scores`); None: the defaults.
        select: the metric that chooses, a validation one (see `Experiment.select`).

    Raises:
        RuntimeError: no evaluation reported `select`.
    """
    datasets = ZooDataset.splits(config.data, zoo, model_split=split)
    session = TrainingSession(config, datasets, evaluate_fn=probe_scores(targets), untrained_first=True)
    rows, states = [], []
    for i in range(iterations + 1):
        row = session.step(i) | {"training_iteration": i}
        rows.append(row)
        states.append(copy.deepcopy(session.learner.model.state_dict()))
        if row.get("done"):
            break
    best = pick_best(list(zip(states, rows)), select)
    if best is None:
        raise RuntimeError(f"no evaluation reported the selection metric {select!r}; the evaluations reported "
                           f"{sorted(rows[0])}")
    state, metrics = best
    session.learner.model.load_state_dict(state)
    session.learner.model.eval()
    return InProcessRun(session.learner, pd.DataFrame(rows), int(metrics["training_iteration"]), states[0],
                        session.train_seconds / 60)


def untrained_model(config: LearnerConfig, zoo: Zoo, split: ModelSplit) -> Autoencoder:
    """The encoder of `config` at its random initialisation, its input scale fitted on the train split: what
    iteration 0 of every run of `config` evaluates (the control a report sets the trained encoder against)."""
    learner = Learner(config, zoo.layout, device="cpu")
    train = ZooDataset.from_config(config.data, "train", zoo, model_split=split)
    learner.model.fit_input_scale(train.weights, learner.row_networks(train))
    return learner.model.eval()


def control_model(run: InProcessRun) -> Autoencoder:
    """A copy of the run's encoder at its random initialisation (the control)."""
    model = copy.deepcopy(run.learner.model)
    model.load_state_dict(run.control)
    return model.eval()
