"""Named zoo specs: the seed and hyperparameter zoos of the 2021 paper, Model Zoos and Unterthiner et al.

Every preset says in its `notes` why its schedule is what it is. ``smoke=True``
shrinks any preset to a run of seconds (few seeds, one or two grid values per
hyperparameter, two epochs, a small task) for tests and quick checks.
"""

from __future__ import annotations

from dataclasses import replace

from weightspace.zoo.spec import ZooSpec

PRESETS: dict[str, ZooSpec] = {}


def _register(spec: ZooSpec) -> None:
    PRESETS[spec.name] = spec


_register(ZooSpec(
    name="tetris_seed",
    task="tetris",
    task_options={"placement": "fixed", "flip_prob": 0.02, "n_train": 200, "n_test": 1000, "seed": 0},
    architecture="tetris_mlp",
    fixed={"activation": "tanh", "init": "kaiming_uniform", "optimizer": "adam", "lr": 1e-3},
    seeds=1000, epochs=25, batch_size=32, shard_size=1000,
    notes="One setting, 1000 init seeds, as the 2021 Tetris-SEED zoo (16-5-4 MLP, no bias). 25 epochs of "
          "Adam at lr 1e-3, batch 32 on 200 noisy fixed-placement shapes (2% pixel flips). Measured on 300 "
          "seeds: final test accuracy 0.45 / 0.69 / 0.91 at the 10th / 50th / 90th percentile, and the curves "
          "still climb at epoch 25 (lr 2e-3 or 50 epochs push the median to 0.94 and flatten the spread). "
          "A checkpoint every epoch (26 per model, epoch 0 = init).",
))

_register(ZooSpec(
    name="tetris_hyp",
    task="tetris",
    task_options={"placement": "fixed", "flip_prob": 0.02, "n_train": 200, "n_test": 1000, "seed": 0},
    architecture="tetris_mlp",
    grid={"activation": ["tanh", "relu", "sigmoid", "gelu"], "init": ["uniform", "normal", "kaiming_uniform",
          "kaiming_normal"], "dropout": [0.0, 0.2], "lr": [1e-3, 3e-3], "weight_decay": [0.0, 1e-3]},
    fixed={"optimizer": "adam"},
    seeds=8, epochs=25, batch_size=32, shard_size=512,
    notes="The 2021 Tetris-HYP property set (nlin, init, dropout, lr, wd) as a full grid: 4 x 4 x 2 x 2 x 2 = "
          "128 settings x 8 seeds = 1024 models, the schedule of tetris_seed. Offline, so predicting categorical "
          "hyperparameters can be shown without any download.",
))

_MODEL_ZOOS_CNN_NOTE = (
    "cnn_s (2464 parameters) as in the 2021 MNIST/F-MNIST seed zoos and Model Zoos: one setting (tanh, "
    "kaiming_uniform, Adam lr 3e-4, no weight decay), 1000 seeds, 25 epochs at batch 64 with a checkpoint every "
    "epoch. Model Zoos trained 50 epochs at batch 10; batch 64 keeps a 1000-model CPU run within hours and, "
    "with 25 epochs, still ends before the curves flatten, so accuracy and epoch vary across the zoo. "
    "Not yet measured here (MNIST cannot be downloaded on the build machine)."
)
_register(ZooSpec(
    name="mnist_seed", task="mnist", architecture="cnn_s",
    fixed={"activation": "tanh", "init": "kaiming_uniform", "optimizer": "adam", "lr": 3e-4},
    seeds=1000, epochs=25, batch_size=64, shard_size=250, notes=_MODEL_ZOOS_CNN_NOTE,
))
_register(ZooSpec(
    name="fashion_seed", task="fashion_mnist", architecture="cnn_s",
    fixed={"activation": "tanh", "init": "kaiming_uniform", "optimizer": "adam", "lr": 3e-4},
    seeds=1000, epochs=25, batch_size=64, shard_size=250, notes=_MODEL_ZOOS_CNN_NOTE.replace("MNIST/F-MNIST", "F-MNIST"),
))

_register(ZooSpec(
    name="mnist_hyp", task="mnist", architecture="cnn_s",
    grid={"activation": ["tanh", "relu", "sigmoid", "gelu"], "dropout": [0.0, 0.5],
          "init": ["uniform", "normal", "kaiming_uniform", "kaiming_normal"], "optimizer": ["adam", "sgd"],
          "lr": [1e-3, 1e-4], "weight_decay": [1e-3, 1e-4]},
    seeds=10, epochs=50, batch_size=10, shard_size=160,
    notes="The Model Zoos hyperparameter grid (256 settings x 10 seeds = 2560 models), 50 epochs at batch 10 "
          "with a checkpoint every epoch, as published. SGD uses momentum 0.9.",
))

_register(ZooSpec(
    name="svhn_unterthiner", task="svhn", task_options={"grayscale": True}, architecture="cnn_unterthiner",
    grid={"activation": ["relu", "tanh"], "init": ["normal", "uniform", "xavier_normal", "kaiming_uniform"],
          "init_std": [0.01, 0.1], "dropout": [0.0, 0.2, 0.45], "weight_decay": [1e-8, 1e-4],
          "lr": [5e-4, 5e-3], "optimizer": ["adam", "sgd", "rmsprop"], "train_fraction": [0.1, 0.25, 0.5, 1.0]},
    seeds=1, epochs=86, batch_size=32,
    checkpoint_epochs=(0, 1, 2, 3, 20, 40, 60, 80, 86), shard_size=128,
    notes="After the Small CNN Zoo (Unterthiner et al. 2020) on grayscale SVHN: a grid over activation, w_init, "
          "init std (used by the normal/uniform inits), dropout, l2 reg (as weight decay), learning rate, "
          "optimizer and train fraction {0.1, 0.25, 0.5, 1.0} (2 x 4 x 2 x 3 x 2 x 2 x 3 x 4 = 2304 models; "
          "Unterthiner sampled 30k configurations at random from wider ranges). 86 epochs with their checkpoint "
          "epochs 0, 1, 2, 3, 20, 40, 60, 80, 86.",
))

_register(ZooSpec(
    name="digits_seed", task="digits", architecture="mlp",
    arch_kwargs={"in_dim": 64, "hidden": [16], "out_dim": 10},
    fixed={"activation": "tanh", "init": "kaiming_uniform", "optimizer": "adam", "lr": 1e-3},
    seeds=500, epochs=20, batch_size=32, shard_size=500,
    notes="A real-data seed zoo that needs no download: a 64-16-10 MLP (1210 parameters) on scikit-learn's 8x8 "
          "digits (1347 train / 450 test images), 500 seeds, 20 epochs of Adam at lr 1e-3, batch 32. Measured: "
          "mean test accuracy 0.10 at init, 0.49 after 2 epochs, 0.82 after 6, 0.94 after 20 (0.91-0.96 "
          "across seeds), so the early checkpoints spread accuracy and the later ones the seed effect; "
          "about 25 s on 2 CPU cores.",
))

_register(ZooSpec(
    name="digits_hyp", task="digits", task_options={"size": 28}, architecture="cnn_unterthiner",
    sample={"activation": {"choice": ["relu", "tanh"]},
            "init": {"choice": ["normal", "uniform", "xavier_normal", "kaiming_uniform"]},
            "init_std": {"log_uniform": [1e-2, 0.5]},
            "optimizer": {"choice": ["sgd", "adam", "rmsprop"]},
            "lr": {"log_uniform": [1e-3, 3e-2]},
            "weight_decay": {"log_uniform": [1e-8, 1e-3]},
            "dropout": {"uniform": [0.0, 0.7]},
            "train_fraction": {"choice": [0.1, 0.25, 0.5, 1.0]}},
    samples=2000, seeds=1, epochs=6, batch_size=8, checkpoint_epochs=(0, 1, 2, 3, 4, 6), shard_size=128,
    notes="The Small CNN Zoo (Unterthiner et al. 2020) in miniature, offline: its network (three 3x3 stride-2 "
          "convolutions of 16 filters, valid padding, global average pooling, dense; 4970 parameters) on "
          "scikit-learn's digits resized to 28x28 (MNIST's geometry, 28 -> 13 -> 6 -> 2), 2000 configurations "
          "drawn at random as Unterthiner did: activation, init and its scale (init_std, used by normal and "
          "uniform), optimizer, learning rate, l2 (weight decay), dropout and train fraction. The ranges are "
          "narrower than theirs (lr 1e-3..3e-2, init_std 1e-2..0.5, l2 up to 1e-3), because with 6 epochs "
          "instead of 86 their low ends leave most models at chance; batch 8 gives 6 epochs enough steps. "
          "Checkpoints at epochs 0, 1, 2, 3, 4 and 6. Measured: 594 s on 2 quiet CPU cores (bench/bench_zoo.py), 74 s "
          "on an H200; final test accuracy 0.07 to 0.94 (median 0.11, 75th percentile 0.53, 90th 0.72; 47% of the "
          "models above 0.15), none diverged. Adam's models train best (median 0.48); RMSprop, which shares SGD's "
          "momentum 0.9 here (Keras' RMSprop has none), mostly stays at chance (median 0.10).",
))


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str, *, smoke: bool = False) -> ZooSpec:
    """A preset spec by name; `smoke` shrinks it to seconds.

    Raises:
        ValueError: unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown zoo preset {name!r}; choose one of {list_presets()}")
    spec = PRESETS[name]
    if not smoke:
        return spec
    grid = {k: list(v[:2]) for k, v in spec.grid.items()}
    # keep at most 8 grid settings: two values for the first three varied keys, one for the rest
    for key in list(grid)[3:]:
        grid[key] = grid[key][:1]
    epochs = 2
    ckpts = None if spec.checkpoint_epochs is None else tuple(e for e in (0, 1, 2) if e <= epochs)
    task_options = dict(spec.task_options)
    if spec.task == "tetris":
        task_options.update(n_train=64, n_test=64)
    if spec.task == "digits" and task_options.get("size", 8) > 16:  # 16x16 still leaves the CNNs room
        task_options.update(size=16)
    # a sampled zoo keeps its distributions and draws 12 configurations, one seed each
    seeds = 1 if spec.sample else 3 if grid else 6
    return replace(spec, name=f"{spec.name}_smoke", grid=grid, seeds=seeds, samples=min(spec.samples, 12),
                   epochs=epochs, checkpoint_epochs=ckpts, task_options=task_options, shard_size=4 if grid else 3,
                   batch_size=max(spec.batch_size, 32),
                   notes=f"smoke version of {spec.name}: seconds, not science")


def describe_presets() -> str:
    lines = []
    for name in list_presets():
        spec = PRESETS[name]
        n_models = len(spec.models())
        lines.append(f"{name:18s} {spec.architecture:16s} on {spec.task:14s} {n_models:5d} models x "
                     f"{len(spec.kept_epochs)} checkpoints")
        lines.append(f"{'':18s} {spec.notes}")
    return "\n".join(lines)
