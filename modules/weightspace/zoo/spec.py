"""ZooSpec: what a zoo is made of, and how it splits into populations (shards)."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field

from weightspace.zoo.architectures import list_zoo_models
from weightspace.zoo.population import Member, PopulationConfig

# hyperparameters a grid may vary; the structural ones split the zoo into populations
STRUCTURAL_KEYS = ("activation", "dropout", "optimizer", "momentum", "train_fraction")
PER_MODEL_KEYS = ("lr", "weight_decay", "init", "init_std")
GRID_KEYS = STRUCTURAL_KEYS + PER_MODEL_KEYS
DEFAULT_HYPERPARAMETERS = {
    "activation": "tanh", "dropout": 0.0, "optimizer": "adam", "momentum": 0.9, "train_fraction": 1.0,
    "lr": 1e-3, "weight_decay": 0.0, "init": "kaiming_uniform", "init_std": None,
}


@dataclass(frozen=True)
class ZooSpec:
    """A zoo to generate: task, architecture, a hyperparameter grid crossed with seeds, and a schedule."""

    name: str
    task: str  # a name from weightspace.zoo.tasks.list_tasks()
    architecture: str  # a name from list_zoo_models()
    grid: dict = field(default_factory=dict)  # hyperparameter -> list of values (see GRID_KEYS)
    fixed: dict = field(default_factory=dict)  # hyperparameters held fixed (override DEFAULT_HYPERPARAMETERS)
    seeds: int | tuple[int, ...] = 10  # a count (seeds 0..n-1) or explicit seeds
    epochs: int = 10
    batch_size: int = 32
    checkpoint_epochs: tuple[int, ...] | None = None  # default: every epoch, 0 (the init) included
    task_options: dict = field(default_factory=dict)  # passed to load_task
    arch_kwargs: dict = field(default_factory=dict)  # non-hyperparameter architecture arguments
    shard_size: int = 256  # most models trained together in one population
    notes: str = ""  # why the settings are what they are

    def __post_init__(self) -> None:
        unknown = sorted(set(self.grid) - set(GRID_KEYS)) + sorted(set(self.fixed) - set(GRID_KEYS))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown}; a zoo grid may vary {list(GRID_KEYS)}")
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise ValueError(f"{both} appear in both grid and fixed; put each hyperparameter in one of them")
        for key, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        if self.architecture not in list_zoo_models():
            raise ValueError(f"unknown zoo architecture {self.architecture!r}; choose one of {list_zoo_models()}")
        if self.epochs < 0 or self.batch_size < 1 or self.shard_size < 1:
            raise ValueError("epochs must be >= 0, batch_size and shard_size >= 1")
        if self.checkpoint_epochs is not None and not all(0 <= e <= self.epochs for e in self.checkpoint_epochs):
            raise ValueError(f"checkpoint_epochs must lie in [0, {self.epochs}], got {self.checkpoint_epochs}")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else [int(s) for s in self.seeds]

    @property
    def kept_epochs(self) -> list[int]:
        return list(range(self.epochs + 1)) if self.checkpoint_epochs is None else sorted(set(self.checkpoint_epochs))

    def models(self) -> list[dict]:
        """Every model of the zoo, in a fixed order: ``{"model_id", "seed", <hyperparameters>}``."""
        keys = sorted(self.grid)
        base = {**DEFAULT_HYPERPARAMETERS, **self.fixed}
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in self.seed_list:
                out.append({"model_id": len(out), "seed": seed, **base, **dict(zip(keys, values))})
        return out

    def shards(self) -> list["Shard"]:
        """Split the models into populations of one structure, at most `shard_size` each, in a fixed order."""
        groups: dict[tuple, list[dict]] = {}
        for model in self.models():
            groups.setdefault(tuple(model[k] for k in STRUCTURAL_KEYS), []).append(model)
        shards = []
        for g, (structure, models) in enumerate(groups.items()):
            for c in range(0, len(models), self.shard_size):
                shards.append(Shard(f"{g:04d}-{c // self.shard_size:04d}", dict(zip(STRUCTURAL_KEYS, structure)),
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
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Shard:
    """One population: models that share structure and train together."""

    shard_id: str
    structure: dict  # the STRUCTURAL_KEYS values
    models: list[dict]

    def population(self, spec: ZooSpec, channels_in: int | None = None, num_classes: int | None = None
                   ) -> tuple[PopulationConfig, list[Member]]:
        kwargs = dict(spec.arch_kwargs)
        kwargs.update(activation=self.structure["activation"], dropout=self.structure["dropout"])
        if channels_in is not None and spec.architecture in ("cnn_s", "cnn_unterthiner"):
            kwargs.setdefault("channels_in", channels_in)
        if num_classes is not None and spec.architecture in ("cnn_s", "cnn_unterthiner"):
            kwargs.setdefault("num_classes", num_classes)
        config = PopulationConfig(spec.architecture, kwargs, optimizer=self.structure["optimizer"],
                                  momentum=self.structure["momentum"], batch_size=spec.batch_size,
                                  train_fraction=self.structure["train_fraction"])
        members = [Member(m["model_id"], m["seed"], lr=m["lr"], weight_decay=m["weight_decay"], init=m["init"],
                          init_std=m["init_std"]) for m in self.models]
        return config, members
