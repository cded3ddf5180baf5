"""`neuron_set`, the folders' default learner, and the function-space learners built on it.

neuron_set: the permutation-invariant encoder of `weightspace.representation.encoders.neuron_set`
(`config_neuron_set`), 4 evaluations x 2 epochs at batch 200, lr 1e-3. The function-space learners
change what it reconstructs: the networks' logits on query inputs (`outputs`), those beside the weight
statistics (`both`), and the "function objective" found on tetris_seed's validation split by
research/function_objective_probe.py: the logits through a linear decoder, no contrastive term, three
times the epochs at lr 3e-3 (`function`), on the task's own inputs without labels (`function_task`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from weightspace.pipeline.learners.registry import LearnerSpec, register_learner
from weightspace.representation.presets import config_neuron_set

ITERATIONS = 4  # evaluations on validation; each `config_neuron_set`'s 2 epochs
GPU_BATCH = 1000  # a GPU takes larger batches at the same learning rate in far fewer steps


def _neuron_set(name: str, title: str, schedule: str, notes: str, *, width: int, gamma: float = 0.5,
                target: str = "statistics", epochs_factor: int = 1, lr: float | None = None,
                **encoder: Any) -> LearnerSpec:
    config = config_neuron_set(width=width, gamma=gamma, target=target)
    config.encoder = replace(config.encoder, **encoder)
    train: dict[str, Any] = {"epochs_per_step": config.train.epochs_per_step * epochs_factor} | ({"lr": lr} if lr else {})
    if schedule == "gpu":
        train |= {"batch_size": GPU_BATCH, "precision": "bf16"}
    config.train = replace(config.train, **train)
    return LearnerSpec(name, title, config, iterations=ITERATIONS, notes=notes)


@register_learner("neuron_set", schedules=("cpu", "gpu"))
def neuron_set(schedule: str = "cpu", *, width: int = 1024, gamma: float = 0.5) -> LearnerSpec:
    return _neuron_set("neuron_set", "neuron_set", schedule, width=width, gamma=gamma, notes=(
        f"neuron_set: a per-neuron tanh MLP of width {width} over each hidden neuron's incoming weights, bias, "
        "outgoing weights and summaries, pooled by mean / max / min; NT-Xent (tau 0.1) on erased views mixed at "
        f"gamma {gamma} with the reconstruction of invariant weight statistics; {ITERATIONS} x 2 epochs at batch "
        "200, lr 1e-3. The untrained encoder is a candidate of the validation choice."))


@register_learner("outputs", schedules=("cpu", "gpu"))
def outputs(schedule: str = "cpu", *, width: int = 1024) -> LearnerSpec:
    return _neuron_set("outputs", "neuron_set, outputs target", schedule, width=width, target="outputs",
                       notes="neuron_set reconstructing the networks' logits on 64 data-free queries instead of "
                             "the weight statistics.")


@register_learner("both", schedules=("cpu", "gpu"))
def both(schedule: str = "cpu", *, width: int = 1024) -> LearnerSpec:
    return _neuron_set("both", "neuron_set, statistics + outputs target", schedule, width=width, target="both",
                       notes="neuron_set reconstructing the weight statistics and the networks' logits on 64 "
                             "data-free queries (weighed 0.5).")


@register_learner("function", schedules=("cpu", "gpu"))
def function(schedule: str = "cpu", *, width: int = 1024) -> LearnerSpec:
    return _neuron_set("function", "neuron_set, function objective", schedule, width=width, target="outputs",
                       decoder_hidden=0, gamma=0.0, epochs_factor=3, lr=3e-3,
                       notes="neuron_set with the function objective: the logits on 64 data-free queries through "
                             "a linear decoder, no contrastive term, 3 x the epochs at lr 3e-3.")


@register_learner("function_task", schedules=("cpu", "gpu"))
def function_task(schedule: str = "cpu", *, width: int = 1024) -> LearnerSpec:
    return _neuron_set("function_task", "neuron_set, function objective, task queries", schedule, width=width,
                       target="outputs", decoder_hidden=0, queries="task", gamma=0.0, epochs_factor=3, lr=3e-3,
                       notes="the function objective on 64 of the task's training inputs (without labels) as "
                             "queries instead of uniform noise.")
