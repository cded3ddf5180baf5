"""The learner registry: one name per learner, with its config, its schedules and its smoke copy.

A *learner* is everything a command needs to train a representation: a `LearnerConfig` (encoder, head,
losses, augmentations, optimiser) and a schedule (how many evaluations on validation, how many epochs
each). The same names serve every command and folder: ``weightspace run --learner NAME``, the folders'
``--variant NAME``, ``weightspace quality --encoders NAME`` and ``Experiment.learner``. Registering one::

    @register_learner("my_learner", schedules=("cpu", "gpu"))
    def my_learner(schedule: str = "cpu", *, width: int = 64) -> LearnerSpec:
        return LearnerSpec("my_learner", "my learner", config=..., iterations=4, notes="...")

in a new module of ``weightspace/pipeline/learners/`` (every module there is imported with the package).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple

from weightspace.representation.config import HeadConfig, LearnerConfig

# what a smoke copy sets on any encoder config that has the field: every learner shrinks alike
SMOKE_ENCODER = {"width": 16, "d_model": 16, "n_heads": 2, "n_blocks": 1, "d_ff": 32, "latent_dim": 8,
                 "hidden_layers": 2}
SMOKE_ITERATIONS = 2  # evaluations of a smoke copy, one epoch each


@dataclass
class LearnerSpec:
    """A named learner, ready to train: its config and its schedule."""

    name: str  # the registered name (`list_learners`)
    title: str  # what the quality table, the report and experiment.json call it
    config: LearnerConfig  # encoder, head, losses, augmentations, optimiser, precision
    iterations: int  # evaluations on validation during training, each `config.train.epochs_per_step` epochs
    notes: str = ""  # what it is and what its schedule gives up
    schedule: str = "cpu"  # the registered schedule it was made with
    smoke: bool = False  # a shrunken copy (`shrunk`)

    def __post_init__(self) -> None:
        if int(self.iterations) < 1:
            raise ValueError(f"learner {self.name!r}: iterations must be at least 1, got {self.iterations}")

    @property
    def epochs(self) -> int:
        """Training epochs in all."""
        return self.iterations * self.config.train.epochs_per_step

    def shrunk(self) -> "LearnerSpec":
        """The same learner shrunk to seconds: the same encoder kind, losses and augmentations at a tiny width,
        a tiny head, batch 16, two evaluations of one epoch."""
        config = copy.deepcopy(self.config)
        fields = {f.name for f in dataclasses.fields(config.encoder)}
        small: dict[str, Any] = {k: v for k, v in SMOKE_ENCODER.items() if k in fields}
        if "latent_dim" in small and "d_model" in fields:
            small["latent_dim"] = min(small["latent_dim"], small["d_model"])
        config.encoder = replace(config.encoder, **small)
        if config.head.layers:
            config.head = HeadConfig(layers=min(config.head.layers, 2), hidden=16, out_dim=8,
                                     batch_norm=config.head.batch_norm)
        config.train = replace(config.train, batch_size=16, epochs_per_step=1)
        return replace(self, config=config, iterations=SMOKE_ITERATIONS, smoke=True,
                       title=f"{self.title} (smoke)", notes=f"a smoke copy of {self.name}: seconds, not science")

    def with_precision(self, precision: str) -> "LearnerSpec":
        """The same learner training in `precision` ("fp32", "bf16" or "fp16")."""
        config = copy.deepcopy(self.config)
        config.train = replace(config.train, precision=precision)  # replace validates the value
        return replace(self, config=config)

    def with_seed(self, seed: int) -> "LearnerSpec":
        """The same learner with training seed `seed` (initialisation, views, batch order)."""
        config = copy.deepcopy(self.config)
        config.train = replace(config.train, seed=int(seed))
        return replace(self, config=config)


Builder = Callable[..., LearnerSpec]


class _Entry(NamedTuple):
    build: Builder
    schedules: tuple[str, ...]


_LEARNERS: dict[str, _Entry] = {}


def register_learner(name: str, *, schedules: tuple[str, ...] = ("cpu",)) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(schedule, **options) -> LearnerSpec`` under `name`; its first schedule is
    the default.

    Raises:
        ValueError: `name` is taken, or no schedule is given.
    """
    if name in _LEARNERS:
        raise ValueError(f"a learner named {name!r} is already registered; pick another name")
    if not schedules:
        raise ValueError(f"learner {name!r}: give at least one schedule")

    def register(build: Builder) -> Builder:
        _LEARNERS[name] = _Entry(build, tuple(schedules))
        return build

    return register


def list_learners() -> list[str]:
    """The registered learner names, in the order they were registered."""
    return list(_LEARNERS)


def learner_schedules(name: str) -> tuple[str, ...]:
    """The schedules learner `name` knows, its default first."""
    return _entry(name).schedules


def learner_options(name: str) -> list[str]:
    """The keyword options learner `name`'s builder takes (besides `schedule`, `iterations`, `epochs_per_step`)."""
    params = inspect.signature(_entry(name).build).parameters
    return [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]


def create_learner(name: str, *, schedule: str | None = None, iterations: int | None = None,
                   epochs_per_step: int | None = None, **options: Any) -> LearnerSpec:
    """The learner `name` on `schedule` (default: its first), with its builder's `options`.

    Args:
        iterations, epochs_per_step: change the schedule's length (a folder that trains shorter or longer).

    Raises:
        ValueError: an unknown name, schedule or option (the message lists the valid ones).
    """
    entry = _entry(name)
    schedule = schedule or entry.schedules[0]
    if schedule not in entry.schedules:
        raise ValueError(f"learner {name!r} has no schedule {schedule!r}; choose one of {list(entry.schedules)}")
    unknown = sorted(set(options) - set(learner_options(name)))
    if unknown:
        raise ValueError(f"learner {name!r} takes no option {unknown}; its options are {learner_options(name)}")
    spec = entry.build(schedule, **options)
    if epochs_per_step is not None:
        spec.config.train = replace(spec.config.train, epochs_per_step=int(epochs_per_step))
    if iterations is not None:
        spec = replace(spec, iterations=int(iterations))
    return replace(spec, schedule=schedule)


def _entry(name: str) -> _Entry:
    if name not in _LEARNERS:
        raise ValueError(f"unknown learner {name!r}; choose one of {list_learners()}")
    return _LEARNERS[name]
