"""ZooSpec: what a zoo is made of, and how it splits into populations (shards).

A zoo's models are a hyperparameter grid crossed with seeds, as in the 2021 zoos, or configurations
drawn at random from a distribution per hyperparameter, as in the Small CNN Zoo (Unterthiner et al.
2020), or both (each drawn configuration crossed with the grid). A distribution is written as one of

    {"choice": [v1, v2, ...]}        each value equally likely
    {"uniform": [low, high]}         uniform on [low, high]
    {"log_uniform": [low, high]}     uniform in log space, 0 < low <= high

The draws are reproducible from the spec alone (`sample_seed` and the draw's index), so resuming an
interrupted generation, or generating again elsewhere, trains the same models.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from weightspace.zoo.activations import ACTIVATIONS
from weightspace.zoo.architectures import INITS, count_zoo_parameters, list_zoo_models
from weightspace.zoo.population import OPTIMIZERS, Member, PopulationConfig

# hyperparameters a grid may vary; the structural ones split the zoo into populations
STRUCTURAL_KEYS = ("activation", "dropout", "optimizer", "momentum", "train_fraction")
PER_MODEL_KEYS = ("lr", "weight_decay", "init", "init_std")
GRID_KEYS = STRUCTURAL_KEYS + PER_MODEL_KEYS
DEFAULT_HYPERPARAMETERS = {
    "activation": "tanh", "dropout": 0.0, "optimizer": "adam", "momentum": 0.9, "train_fraction": 1.0,
    "lr": 1e-3, "weight_decay": 0.0, "init": "kaiming_uniform", "init_std": None,
}
DISTRIBUTIONS = ("choice", "uniform", "log_uniform")
MAX_SEED = 2**63 - 1  # seeds (and sample_seed) seed torch and numpy generators, which take 64-bit values
# the largest zoo a spec may describe, checked from the counts alone before anything is listed or allocated
# (`zoo.generate.check_fits` then measures the weights against this machine)
MAX_EPOCHS = 100_000  # training epochs per model: each one pass over its train set
MAX_MODELS = 10_000_000  # models: grid settings x drawn configurations (samples) x seeds
# structural hyperparameters are shared by a population; drawn from a range, each model would train alone.
# dropout is the exception: drawn (`sample`), it is a per-model rate in its population
SAMPLED_PER_MODEL = ("dropout",)
# what each hyperparameter may be: a set of names, or a numeric interval (low, high, low open?, high open?)
_NAMES = {"activation": tuple(ACTIVATIONS), "init": tuple(INITS), "optimizer": OPTIMIZERS}
_RANGES = {"dropout": (0.0, 1.0, False, True), "momentum": (0.0, 1.0, False, True),
           "train_fraction": (0.0, 1.0, True, False), "lr": (0.0, math.inf, True, True),
           "weight_decay": (0.0, math.inf, False, True), "init_std": (0.0, math.inf, True, True)}


def _whole(value, low: int, high: int) -> bool:
    """Whether `value` is an int (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_value(key: str, value, where: str) -> None:
    """Raise ValueError unless `value` is one `key` can take (None: the init's default scale)."""
    if key in _NAMES:
        if value not in _NAMES[key]:
            raise ValueError(f"{where}: {key} {value!r} is not one of {sorted(_NAMES[key])}")
        return
    if key == "init_std" and value is None:
        return
    low, high, low_open, high_open = _RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value) \
            or value < low or value > high or (low_open and value == low) or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{where}: {key} must be a number in {interval}, got {value!r}")


def _finite(value: int | float) -> bool:
    """Whether `value` is a finite number a float can hold (an int of 400 digits is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_distribution(key: str, dist) -> None:
    """Raise ValueError unless `dist` is a distribution (module docstring) over values `key` can take."""
    where = f"sample[{key!r}]"
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ValueError(f"{where} must be one of {{'choice': [values]}}, {{'uniform': [low, high]}} or "
                         f"{{'log_uniform': [low, high]}}; got {dist!r}")
    (kind, args), = dist.items()
    if kind == "choice":
        if not isinstance(args, (list, tuple)) or not args:
            raise ValueError(f"{where}: choice needs a non-empty list of values, got {args!r}")
        for value in args:
            _check_value(key, value, where)
        return
    if key in _NAMES:
        raise ValueError(f"{where}: {key} takes names, not a range; use {{'choice': [...]}}")
    if key not in SAMPLED_PER_MODEL and key in STRUCTURAL_KEYS:
        raise ValueError(f"{where}: {key} is shared by the models of a population, so it cannot be drawn from a "
                         f"range (every model would train alone); use {{'choice': [...]}}")
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise ValueError(f"{where}: {kind} needs [low, high], got {args!r}")
    low, high = args
    for value in args:
        _check_value(key, value, where)
    if low > high:
        raise ValueError(f"{where}: {kind} range has low {low} > high {high}")
    if kind == "log_uniform" and low <= 0:
        raise ValueError(f"{where}: a log_uniform range must lie above 0, got [{low}, {high}]; "
                         "use uniform for a range that includes 0")


def draw(dist: dict, rng: np.random.Generator):
    """One value from a (checked) distribution."""
    (kind, args), = dist.items()
    if kind == "choice":
        value = args[int(rng.integers(len(args)))]
        return value.item() if isinstance(value, np.generic) else value
    low, high = float(args[0]), float(args[1])
    if kind == "uniform":
        return float(rng.uniform(low, high))
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


@dataclass(frozen=True)
class ZooSpec:
    """A zoo to generate: task, architecture, a hyperparameter grid crossed with seeds, and a schedule."""

    name: str
    task: str  # a name from weightspace.zoo.tasks.list_tasks()
    architecture: str  # a name from list_zoo_models()
    grid: dict = field(default_factory=dict)  # hyperparameter -> list of values (see GRID_KEYS)
    fixed: dict = field(default_factory=dict)  # hyperparameters held fixed (override DEFAULT_HYPERPARAMETERS)
    seeds: int | tuple[int, ...] = 10  # a count (seeds 0..n-1) or explicit seeds
    sample: dict = field(default_factory=dict)  # hyperparameter -> distribution (module docstring)
    samples: int = 0  # configurations drawn from `sample`, each crossed with the grid and the seeds
    sample_seed: int = 0  # the draws' seed
    epochs: int = 10
    batch_size: int = 32
    checkpoint_epochs: tuple[int, ...] | None = None  # default: every epoch, 0 (the init) included
    task_options: dict = field(default_factory=dict)  # passed to load_task
    arch_kwargs: dict = field(default_factory=dict)  # non-hyperparameter architecture arguments
    shard_size: int = 256  # most models trained together in one population
    notes: str = ""  # why the settings are what they are

    def __post_init__(self) -> None:
        unknown = sorted((set(self.grid) | set(self.fixed) | set(self.sample)) - set(GRID_KEYS))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown}; a zoo may vary {list(GRID_KEYS)}")
        for a, b in (("grid", "fixed"), ("grid", "sample"), ("fixed", "sample")):
            both = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if both:
                raise ValueError(f"{both} appear in both {a} and {b}; put each hyperparameter in one of them")
        for key, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
            for value in values:
                _check_value(key, value, f"grid[{key!r}]")
        for key, value in self.fixed.items():
            _check_value(key, value, f"fixed[{key!r}]")
        for key, dist in self.sample.items():
            _check_distribution(key, dist)
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ValueError(f"samples must be a count >= 0, got {self.samples!r}")
        if bool(self.sample) != (self.samples > 0):
            raise ValueError("sample (the distributions) and samples (how many configurations to draw) go together: "
                             f"got {len(self.sample)} distribution(s) and samples={self.samples}")
        if self.architecture not in list_zoo_models():
            raise ValueError(f"unknown zoo architecture {self.architecture!r}; choose one of {list_zoo_models()}")
        self._check_counts()
        if self.checkpoint_epochs is not None and not all(_whole(e, 0, self.epochs) for e in self.checkpoint_epochs):
            raise ValueError(f"checkpoint_epochs must lie in [0, {self.epochs}], got {self.checkpoint_epochs}")
        if not isinstance(self.arch_kwargs, dict):
            raise ValueError(f"arch_kwargs must be an object of architecture arguments, got {self.arch_kwargs!r}")
        # built on the meta device: a bad or huge layer stops the spec here, not in every shard
        count_zoo_parameters(self.architecture, **self.arch_kwargs)

    def _check_counts(self) -> None:
        """Refuse seeds, counts and sizes that are not whole numbers in range, naming the spec key and a fix."""
        if isinstance(self.seeds, (list, tuple)):
            if not self.seeds:
                raise ValueError("seeds is empty; give a count such as 10 (seeds 0..9) or a list such as [0, 1, 2]")
            bad = [s for s in self.seeds if not _whole(s, 0, MAX_SEED)]
            if bad:
                raise ValueError(f"seeds must be whole numbers from 0 to 2**63-1, got {bad[:3]}; "
                                 "give a list such as [0, 1, 2] or a count such as 10")
        elif not _whole(self.seeds, 1, MAX_SEED):
            raise ValueError(f"seeds must be a count of at least 1 (seeds 0..n-1) or a list of seeds, got "
                             f"{self.seeds!r}; give e.g. 10 or [0, 1, 2]")
        if not _whole(self.sample_seed, 0, MAX_SEED):
            raise ValueError(f"sample_seed must be a whole number from 0 to 2**63-1, got {self.sample_seed!r}; "
                             "set sample_seed to e.g. 0")
        if not _whole(self.epochs, 0, MAX_EPOCHS):
            raise ValueError(f"epochs must be a whole number from 0 to {MAX_EPOCHS:,}, got {self.epochs!r}; "
                             "a zoo trains each model for at most that many epochs")
        for key, low in (("batch_size", 1), ("shard_size", 1)):
            if not _whole(getattr(self, key), low, MAX_SEED):
                raise ValueError(f"{key} must be a whole number of at least {low}, got {getattr(self, key)!r}")
        if self.num_models > MAX_MODELS:
            raise ValueError(f"the zoo would hold {self.num_models:,} models (grid settings x samples x seeds), more "
                             f"than the {MAX_MODELS:,} a zoo may hold; lower seeds, samples or the grid")

    @property
    def num_models(self) -> int:
        """How many models `models` lists, counted without listing them."""
        settings = math.prod(len(values) for values in self.grid.values())
        return settings * max(1, self.samples) * (self.seeds if isinstance(self.seeds, int) else len(self.seeds))

    @property
    def num_checkpoints(self) -> int:
        """How many checkpoints each model keeps (`kept_epochs`), counted without listing them."""
        return self.epochs + 1 if self.checkpoint_epochs is None else len(set(self.checkpoint_epochs))

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else [int(s) for s in self.seeds]

    @property
    def kept_epochs(self) -> list[int]:
        return list(range(self.epochs + 1)) if self.checkpoint_epochs is None else sorted(set(self.checkpoint_epochs))

    def draws(self) -> list[dict]:
        """The configurations drawn from `sample` (``[{}]`` without one): draw j comes from a generator
        seeded by ``(sample_seed, j)``, keys in sorted order, so it does not depend on the count."""
        if not self.sample:
            return [{}]
        out = []
        for j in range(self.samples):
            rng = np.random.default_rng([self.sample_seed, j])
            out.append({key: draw(self.sample[key], rng) for key in sorted(self.sample)})
        return out

    @property
    def varied(self) -> list[str]:
        """The hyperparameters that take more than one value in this zoo, in `GRID_KEYS` order."""
        def varies(key):
            if key in self.grid:
                return len(self.grid[key]) > 1
            if key in self.sample:
                (kind, args), = self.sample[key].items()
                return len(args) > 1 if kind == "choice" else args[0] < args[1]
            return False
        return [k for k in GRID_KEYS if varies(k)]

    def models(self) -> list[dict]:
        """Every model of the zoo, in a fixed order: ``{"model_id", "seed", <hyperparameters>}``.

        Grid settings (outer) x drawn configurations x seeds (inner). In a sampled zoo the models of
        draw j train from seeds ``j * S + s`` (S: one more than the largest of `seeds`), so no two
        draws share an initialisation or a data order."""
        keys = sorted(self.grid)
        base = {**DEFAULT_HYPERPARAMETERS, **self.fixed}
        stride = max(self.seed_list, default=0) + 1
        out: list[dict[str, Any]] = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for j, drawn in enumerate(self.draws()):
                for seed in self.seed_list:
                    out.append({"model_id": len(out), "seed": seed + j * stride if self.sample else seed,
                                **base, **dict(zip(keys, values)), **drawn})
        return out

    @property
    def structural_keys(self) -> tuple[str, ...]:
        """The hyperparameters the models of one population share (a drawn dropout is per model)."""
        return tuple(k for k in STRUCTURAL_KEYS if not (k in SAMPLED_PER_MODEL and k in self.sample))

    def shards(self) -> list["Shard"]:
        """Split the models into populations of one structure, at most `shard_size` each, in a fixed order."""
        keys = self.structural_keys
        groups: dict[tuple, list[dict]] = {}
        for model in self.models():
            groups.setdefault(tuple(model[k] for k in keys), []).append(model)
        shards = []
        for g, (structure, models) in enumerate(groups.items()):
            for c in range(0, len(models), self.shard_size):
                shards.append(Shard(f"{g:04d}-{c // self.shard_size:04d}", dict(zip(keys, structure)),
                                    models[c:c + self.shard_size]))
        return shards

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "ZooSpec":
        data = dict(data)
        if isinstance(data.get("seeds"), list):
            data["seeds"] = tuple(data["seeds"])
        if data.get("checkpoint_epochs") is not None:
            data["checkpoint_epochs"] = tuple(data["checkpoint_epochs"])
        return cls(**data)

    def fingerprint(self) -> str:
        """A hash of everything that decides the zoo's content (not its name or notes)."""
        content = {k: v for k, v in self.to_dict().items() if k not in ("name", "notes", "shard_size")}
        if not self.sample:  # a grid zoo hashes as it did before sampling existed
            for key in ("sample", "samples", "sample_seed"):
                content.pop(key)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


# the rate the network's dropout layers are built with when each member brings its own (never used as such)
DROPOUT_LAYERS = 0.5


@dataclass(frozen=True)
class Shard:
    """One population: models that share structure and train together."""

    shard_id: str
    structure: dict  # the STRUCTURAL_KEYS values
    models: list[dict]

    def population(self, spec: ZooSpec, channels_in: int | None = None, num_classes: int | None = None
                   ) -> tuple[PopulationConfig, list[Member]]:
        kwargs = dict(spec.arch_kwargs)
        per_model_dropout = "dropout" not in self.structure
        # a per-model dropout needs the dropout layers in the network whenever any member drops
        dropout = (DROPOUT_LAYERS if any(m["dropout"] > 0 for m in self.models) else 0.0) if per_model_dropout \
            else self.structure["dropout"]
        kwargs.update(activation=self.structure["activation"], dropout=dropout)
        if channels_in is not None and spec.architecture in ("cnn_s", "cnn_unterthiner"):
            kwargs.setdefault("channels_in", channels_in)
        if num_classes is not None and spec.architecture in ("cnn_s", "cnn_unterthiner"):
            kwargs.setdefault("num_classes", num_classes)
        config = PopulationConfig(spec.architecture, kwargs, optimizer=self.structure["optimizer"],
                                  momentum=self.structure["momentum"], batch_size=spec.batch_size,
                                  train_fraction=self.structure["train_fraction"])
        members = [Member(m["model_id"], m["seed"], lr=m["lr"], weight_decay=m["weight_decay"], init=m["init"],
                          init_std=m["init_std"], dropout=m["dropout"] if per_model_dropout else None)
                   for m in self.models]
        return config, members
