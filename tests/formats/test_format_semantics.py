"""Formats mean what they say when read by code we did not write.

- a ray.tune export read with the 2021 ``read_properties`` line-offset logic
  (re-implemented here from the reference description, not our importer)
  labels every checkpoint with its own epoch's result line;
- ``cnn_unterthiner`` is the published Keras network (valid-padded strided
  convolutions), checked against a NumPy reference;
- a Small CNN Zoo folder without layout.csv converts only with an explicit order;
- a ray.tune import keeps ``seed`` out of the hyperparameters and finds the task.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace import WeightLayout, create_zoo_model
from weightspace.cli import main
from weightspace.errors import InputError
from weightspace.formats import convert_unterthiner, export_raytune, import_raytune, torch_to_tf
from weightspace.formats.unterthiner import tf_layout_table, tf_variables
from weightspace.zoo.store import Zoo

TETRIS = WeightLayout.from_module(create_zoo_model("tetris_mlp"))


# ------------------------------------------------- ray.tune export, 2021 reader
def labelled_zoo() -> Zoo:
    """Tetris rows with a label unique to each (model, epoch); model 1 starts at epoch 1, model 2 skips epoch 1."""
    rng = np.random.default_rng(0)
    epochs = {0: [0, 1, 2, 3], 1: [1, 2, 3], 2: [0, 2, 3]}
    rows = [{"model_id": m, "epoch": e, "seed": 10 + m, "test_acc": m + e / 10, "train_acc": m + e / 10 + 0.05,
             "lr": [0.1, 0.01, 0.05][m], "diverged": False} for m, es in epochs.items() for e in es]
    info = {"name": "labelled", "hyperparameters": ["lr"], "metrics": ["test_acc", "train_acc"],
            "architecture": {"name": "tetris_mlp", "kwargs": {}}, "task": {"name": "tetris"}}
    weights = rng.normal(size=(len(rows), TETRIS.num_params)).astype(np.float32)
    return Zoo(weights, pd.DataFrame(rows), TETRIS, info)


def read_properties_2021(samples: list[tuple[Path, int]], result_keys: list[str], config_keys: list[str]) -> dict:
    """The 2021 ``read_properties``: line ``epoch - idx_offset`` of each model's result.json.

    ``idx_offset=1`` first (line 0 is training_iteration 1), checked on the first
    sample only; if ``epoch != training_iteration`` there, everything is re-read
    with ``idx_offset=0`` (iteration 0 logged for the initialisation), checked
    the same way. List indexing is Python's, so line -1 is the last line.
    ``ggap`` is computed as ``train_acc - test_acc``.
    """
    logs = {path: [json.loads(line) for line in (path / "result.json").read_text().splitlines() if line.strip()]
            for path, _ in samples}
    for idx_offset in (1, 0):
        path, epoch = samples[0]
        first = logs[path][epoch - idx_offset]
        if first["training_iteration"] == epoch:
            break
        if idx_offset == 0:
            raise AssertionError(f"training iteration {first['training_iteration']} and epoch {epoch} don't match")
    props: dict[str, list] = {k: [] for k in [*result_keys, *config_keys, "ggap"]}
    for path, epoch in samples:
        line = logs[path][epoch - idx_offset]
        for k in result_keys:
            props[k].append(line[k])
        for k in config_keys:
            props[k].append(line["config"][k])
        props["ggap"].append(line["train_acc"] - line["test_acc"])
    return props


def checkpoint_exists(model_dir: Path, epoch: int) -> bool:
    """The 2021 loader tries ``checkpoint_<N>`` then ``checkpoint_<N:06d>``; a missing one drops the sample."""
    return any((model_dir / name / "checkpoints").is_file() for name in (f"checkpoint_{epoch}", f"checkpoint_{epoch:06d}"))


def test_raytune_export_gives_each_epoch_its_own_labels_under_the_2021_reader(tmp_path):
    zoo = labelled_zoo()
    export_raytune(zoo, tmp_path / "ray")
    truth = zoo.samples.set_index(["model_id", "epoch"])
    model_dirs = sorted(d for d in (tmp_path / "ray").iterdir() if d.is_dir())
    pairs = [(d, e) for d in model_dirs for e in range(5) if checkpoint_exists(d, e)]
    assert len(pairs) == len(zoo.samples)
    # the 2021 reader decides the offset on whichever sample its shuffle put first: try every one
    for first in range(len(pairs)):
        order = pairs[first:] + pairs[:first]
        props = read_properties_2021(order, ["test_acc", "train_acc", "training_iteration"], ["lr"])
        for k, (path, epoch) in enumerate(order):
            row = truth.loc[(int(path.name), epoch)]
            assert props["training_iteration"][k] == epoch
            assert props["test_acc"][k] == row["test_acc"] and props["train_acc"][k] == row["train_acc"]
            assert props["ggap"][k] == row["train_acc"] - row["test_acc"] and props["lr"][k] == row["lr"]
    back = import_raytune(tmp_path / "ray")  # our importer reads the same labels
    pd.testing.assert_frame_equal(back.samples[zoo.samples.columns], zoo.samples)
    np.testing.assert_array_equal(back.weights, zoo.weights)


# ------------------------------------------- ray.tune import: seed, task name
def write_authors_trial(folder: Path, seed: int, lr: float, epochs: int = 2) -> None:
    """A trial as the authors' Trainable logs it: iteration 0 for the initialisation, then one per epoch."""
    folder.mkdir(parents=True)
    config = {"seed": seed, "optim::lr": lr, "model::nlin": "tanh", "dataset::dump": "/data/MNIST/dataset.pt"}
    (folder / "params.json").write_text(json.dumps(config))
    with open(folder / "result.json", "w") as f:
        for e in range(epochs + 1):
            f.write(json.dumps({"training_iteration": e, "test_acc": e / 10 + lr, "config": config}) + "\n")
    g = torch.Generator().manual_seed(seed)
    for e in range(epochs + 1):
        (folder / f"checkpoint_{e}").mkdir()
        torch.save({"module_list.0.weight": torch.randn(5, 16, generator=g),
                    "module_list.2.weight": torch.randn(4, 5, generator=g)}, folder / f"checkpoint_{e}" / "checkpoints")


def test_raytune_import_keeps_seed_out_of_hyperparameters_and_names_the_task(tmp_path):
    for k, lr in enumerate([0.1, 0.01, 0.1]):
        write_authors_trial(tmp_path / "tune_zoo_tetris_uniform" / f"NN_tune_trainable_{k:05d}_{k}_seed={k}", k, lr)
    zoo = import_raytune(tmp_path / "tune_zoo_tetris_uniform")
    assert zoo.samples["seed"].tolist() == [0] * 3 + [1] * 3 + [2] * 3  # kept as a column
    assert "seed" not in zoo.hyperparameters and "seed" not in zoo.metrics
    assert {"lr", "activation"} <= set(zoo.hyperparameters)
    np.testing.assert_allclose(zoo.samples["test_acc"], [0.1, 0.2, 0.3, 0.01, 0.11, 0.21, 0.1, 0.2, 0.3])
    assert zoo.info["task"]["name"] == "mnist"  # from the config's dataset path, before the folder name
    for d in (tmp_path / "tune_zoo_tetris_uniform").iterdir():  # without it, the experiment folder names the task
        text = (d / "result.json").read_text().replace("/data/MNIST/dataset.pt", "/data/x.pt")
        (d / "result.json").write_text(text)
    assert import_raytune(tmp_path / "tune_zoo_tetris_uniform").info["task"]["name"] == "tetris"
    (tmp_path / "tune_zoo_tetris_uniform").rename(tmp_path / "experiment")
    assert import_raytune(tmp_path / "experiment").info["task"]["name"] is None


# ------------------------------------------------------ cnn_unterthiner (Keras)
def conv2d_valid(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """Keras ``Conv2D(padding="valid", strides=stride)`` in NCHW / OIHW: no padding, windows from the top-left."""
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.empty((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]  # (N, C, kh, kw)
            out[:, :, i, j] = np.einsum("nchw,ochw->no", window, w) + b
    return out


def unterthiner_reference(params: dict[str, np.ndarray], x: np.ndarray, act) -> tuple[np.ndarray, list[np.ndarray]]:
    """The published network: 3 x (valid conv 3x3 stride 2, activation), global average pool, dense."""
    h, hidden = x, []
    for name in ("conv1", "conv2", "conv3"):
        h = act(conv2d_valid(h, params[f"{name}.weight"], params[f"{name}.bias"], 2))
        hidden.append(h)
    return h.mean(axis=(2, 3)) @ params["fc4.weight"].T + params["fc4.bias"], hidden


@pytest.mark.parametrize("size, spatial", [(28, [13, 6, 2]), (32, [15, 7, 3])])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_cnn_unterthiner_matches_the_valid_padding_reference(size, spatial, activation):
    gen = torch.Generator().manual_seed(size)
    model = create_zoo_model("cnn_unterthiner", activation=activation).double()
    with torch.no_grad():  # random biases too, so a bias or padding offset cannot hide
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    x = torch.randn(4, 1, size, size, generator=gen, dtype=torch.float64)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation]
    expected, hidden = unterthiner_reference(params, x.numpy(), act)
    got, h = [], x
    with torch.no_grad():  # the activation after each convolution, as the network computes it
        for name, module in model.named_children():
            h = module(h)
            if name.startswith("act"):
                got.append(h.numpy())
        out = model(x).numpy()
    assert [g.shape[-1] for g in got] == spatial and [g.shape[-2] for g in got] == spatial
    for g, ref in zip(got, hidden):
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)


# ----------------------------------------------- Small CNN Zoo without layout.csv
def small_cnn_folder(folder: Path, *, bias_first: bool, with_layout: bool) -> np.ndarray:
    """A 2-checkpoint Small CNN Zoo folder in TF order; returns the torch-ordered rows."""
    layout = WeightLayout.from_module(create_zoo_model("cnn_unterthiner"))
    rows = np.random.default_rng(0).normal(size=(2, layout.num_params)).astype(np.float32)
    variables = tf_variables(bias_first=bias_first)
    folder.mkdir(parents=True)
    np.save(folder / "weights.npy", torch_to_tf(rows, variables))
    pd.DataFrame({"modeldir": ["m0", "m0"], "step": [0, 1], "test_accuracy": [0.1, 0.2],
                  "train_accuracy": [0.2, 0.3], "config.learning_rate": 0.01}).to_csv(folder / "metrics.csv", index=False)
    if with_layout:
        tf_layout_table(variables).to_csv(folder / "layout.csv", index=False)
    return rows


def test_small_cnn_zoo_without_layout_csv_needs_the_order(tmp_path):
    rows = small_cnn_folder(tmp_path / "kb", bias_first=False, with_layout=False)
    with pytest.raises(InputError, match="no layout.csv.*--param-order"):
        convert_unterthiner(tmp_path / "kb", tmp_path / "z")
    assert not (tmp_path / "z").exists()
    assert main(["zoo", "convert", "--from", "unterthiner", str(tmp_path / "kb"), "--out", str(tmp_path / "z")]) == 2
    zoo = convert_unterthiner(tmp_path / "kb", tmp_path / "z", param_order="kernel-bias")
    np.testing.assert_array_equal(np.asarray(zoo.weights), rows)
    assert zoo.info["provenance"]["param_order"] == "kernel-bias (given)"
    bk = small_cnn_folder(tmp_path / "bk", bias_first=True, with_layout=False)
    assert main(["zoo", "convert", "--from", "unterthiner", str(tmp_path / "bk"), "--out", str(tmp_path / "z2"),
                 "--param-order", "bias-kernel"]) == 0
    np.testing.assert_array_equal(np.asarray(Zoo.load(tmp_path / "z2").weights), bk)
    # layout.csv decides; an order that contradicts it is refused
    small_cnn_folder(tmp_path / "with", bias_first=True, with_layout=True)
    with pytest.raises(InputError, match="layout.csv"):
        convert_unterthiner(tmp_path / "with", tmp_path / "z3", param_order="kernel-bias")
    with pytest.raises(ValueError, match="param_order"):
        convert_unterthiner(tmp_path / "bk", tmp_path / "z4", param_order="bias-first")
