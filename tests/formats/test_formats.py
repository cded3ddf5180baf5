"""External zoo formats: exact recovery, a TF-equivalent Unterthiner conversion, safe unpickling, clear errors.

The legacy files are made here: 2021 pickles are written by test-local classes
that carry the legacy module paths (registered in sys.modules only while
writing), including pandas 1.x-shaped DataFrame/Series/Int64Index objects.
"""

import contextlib
import gzip
import hashlib
import io
import json
import os
import pathlib
import pickletools
import subprocess
import sys
import tarfile
import types
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from weightspace import WeightLayout, create_zoo_model
from weightspace.cli import main
from weightspace.formats import (
    DownloadError,
    LegacyPickleError,
    convert_unterthiner,
    convert_zenodo_2021,
    download,
    export_raytune,
    import_raytune,
    load_legacy_pickle,
    read_zenodo_2021,
    tf_to_torch,
    torch_to_tf,
)
from weightspace.formats.legacy import read_index_dict
from weightspace.zoo.store import Zoo


# ------------------------------------------------------- legacy stand-in classes
class SimCLRDataset:
    __module__ = "checkpoints_to_datasets.dataset_simclr"

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


class GoogleDatasetSimCLR(SimCLRDataset):
    __module__ = "checkpoints_to_datasets.dataset_google_simclr"


class RandomErasingVector(nn.Module):
    __module__ = "checkpoints_to_datasets.random_erasing"

    def __init__(self):
        super().__init__()
        self.p, self.scale = 0.5, (0.02, 0.33)


def _new_Index(cls, d):  # noqa: N802 - the pandas 1.x name
    raise AssertionError("only pickled, never called")


_new_Index.__module__ = "pandas.core.indexes.base"


class Index:
    __module__ = "pandas.core.indexes.base"

    def __init__(self, data):
        self.data = np.asarray(data)

    def __reduce__(self):
        return _new_Index, (type(self), {"data": self.data, "name": None})


class Int64Index(Index):
    __module__ = "pandas.core.indexes.numeric"


class BlockManager:
    __module__ = "pandas.core.internals.managers"

    def __init__(self, axes, blocks):  # blocks: [(values (k, n) or (n,), mgr_locs)]
        self.axes, self.blocks = axes, blocks

    def __getstate__(self):
        items = [Index(np.asarray(self.axes[0].data)[locs]) for _, locs in self.blocks]
        extra = {"0.14.1": {"axes": self.axes, "blocks": [{"values": v, "mgr_locs": m} for v, m in self.blocks]}}
        return self.axes, [v for v, _ in self.blocks], items, extra


class SingleBlockManager(BlockManager):
    __module__ = "pandas.core.internals.managers"


class DataFrame:
    __module__ = "pandas.core.frame"

    def __init__(self, columns: dict, index):
        """Consolidated like pandas 1.x: one block per dtype kind, (columns, rows) shaped."""
        names = list(columns)
        blocks = []
        for kind in ("f", "i", "O"):
            locs = np.array([i for i, c in enumerate(names) if np.asarray(columns[c]).dtype.kind == kind], np.int64)
            if len(locs):
                blocks.append((np.stack([np.asarray(columns[names[i]], dtype=object if kind == "O" else None)
                                         for i in locs]), locs))
        self._mgr = BlockManager([Index(np.array(names, dtype=object)), Int64Index(index)], blocks)

    def __getstate__(self):
        return {"_mgr": self._mgr, "_typ": "dataframe", "_metadata": [], "attrs": {}}


class Series:
    __module__ = "pandas.core.series"

    def __init__(self, values, index):
        values = np.asarray(values, dtype=object)
        self._mgr = SingleBlockManager([Int64Index(index)], [(values, slice(0, len(values), 1))])

    def __getstate__(self):
        return {"_mgr": self._mgr, "_typ": "series", "_metadata": ["name"], "attrs": {}, "name": None}


FAKE_MODULES = {
    "checkpoints_to_datasets": {},
    "checkpoints_to_datasets.dataset_simclr": {"SimCLRDataset": SimCLRDataset},
    "checkpoints_to_datasets.dataset_google_simclr": {"GoogleDatasetSimCLR": GoogleDatasetSimCLR},
    "checkpoints_to_datasets.random_erasing": {"RandomErasingVector": RandomErasingVector},
    "pandas.core.frame": {"DataFrame": DataFrame},
    "pandas.core.series": {"Series": Series},
    "pandas.core.internals.managers": {"BlockManager": BlockManager, "SingleBlockManager": SingleBlockManager},
    "pandas.core.indexes.base": {"Index": Index, "_new_Index": _new_Index},
    "pandas.core.indexes.numeric": {"Int64Index": Int64Index},
}


@contextlib.contextmanager
def legacy_modules():
    """Make the legacy dotted paths resolve to the test classes, only while writing."""
    with pytest.MonkeyPatch.context() as mp:
        for name, attrs in FAKE_MODULES.items():
            mp.setitem(sys.modules, name, types.SimpleNamespace(__name__=name, **attrs))
        yield


def save_legacy(obj, path):
    with legacy_modules():
        torch.save(obj, path)
    return path


# ------------------------------------------------------------- 2021 SimCLR files
TETRIS = WeightLayout.from_module(create_zoo_model("tetris_mlp"))


def simclr_split(models, epochs, rng, root="/ray/tetris"):
    paths, vectors, labels, eps = [], [], [], []
    props = {"test_acc": [], "training_iteration": [], "ggap": [], "model::nlin": [], "optim::lr": []}
    for m in models:
        path = pathlib.PosixPath(f"{root}/NN_tune_trainable_{m:05d}_{m}_seed={m}")
        for e in epochs:
            paths.append(path)
            vectors.append(torch.from_numpy(rng.normal(size=TETRIS.num_params).astype(np.float32)))
            labels.append(f"{path}#_#epoch_{e}#_#layer_[(0, 'fc'), (2, 'fc')]")
            eps.append(e)
            props["test_acc"].append(np.float64(rng.uniform()))  # numpy scalars, as list(series) gave
            props["training_iteration"].append(e)
            props["ggap"].append(float(rng.uniform(-0.1, 0.1)))
            props["model::nlin"].append(["tanh", "relu"][m % 2])
            props["optim::lr"].append([1e-3, 1e-4][m % 2])
    base = OrderedDict((f"module_list.{i}.weight", torch.zeros(s)) for i, s in [(0, (5, 16)), (2, (4, 5))])
    return SimCLRDataset(
        root=[pathlib.PosixPath(root)], layer_lst=[(0, "fc"), (2, "fc")], epoch_lst=list(epochs), mode="vector",
        use_bias=False, data_in=vectors, data_out=vectors, labels_in=labels, labels_out=labels, paths=paths,
        epochs=eps, properties=props, property_keys={"result_keys": ["test_acc", "training_iteration", "ggap"],
                                                     "config_keys": ["model::nlin", "optim::lr"]},
        checkpoint_base=base, permutations_number=3, permutation_index_list=[list(range(100))] * 3,
        erase_augment=RandomErasingVector(), ds_split=[0.7, 0.15, 0.15])


@pytest.fixture
def tetris_file(tmp_path):
    rng = np.random.default_rng(0)
    sets = {"trainset": simclr_split([0, 1, 2], [1, 2, 3], rng), "valset": simclr_split([3], [1, 2, 3], rng),
            "testset": simclr_split([4, 5], [1, 2, 3], rng)}
    return save_legacy(sets, tmp_path / "dataset_11_tetris_seed.pt"), sets


def test_zenodo_simclr_recovers_weights_properties_epochs_splits(tetris_file):
    path, sets = tetris_file
    zoo = read_zenodo_2021(path)
    assert zoo.info["architecture"]["name"] == "tetris_mlp" and zoo.layout.same_structure(TETRIS)
    expected = np.concatenate([np.stack([v.numpy() for v in ds.data_in]) for ds in sets.values()])
    np.testing.assert_array_equal(zoo.weights, expected)
    s = zoo.samples
    assert s["split"].tolist() == ["train"] * 9 + ["val"] * 3 + ["test"] * 6
    assert s["epoch"].tolist() == [1, 2, 3] * 6
    assert s["model_id"].iloc[0] == "NN_tune_trainable_00000_0_seed=0" and s["model_id"].nunique() == 6
    props = {k: sum((ds.properties[k] for ds in sets.values()), []) for k in sets["trainset"].properties}
    np.testing.assert_array_equal(s["test_acc"], np.array(props["test_acc"]))
    assert s["activation"].tolist() == props["model::nlin"] and s["lr"].tolist() == props["optim::lr"]
    assert set(zoo.hyperparameters) == {"activation", "lr"} and "test_acc" in zoo.metrics
    assert not s["diverged"].any()
    by_index_dict = read_zenodo_2021(path, index_dict=TETRIS.to_index_dict())
    assert by_index_dict.layout == zoo.layout and by_index_dict.info["architecture"]["name"] == "tetris_mlp"


def test_zenodo_convert_writes_zoo_and_refuses_existing(tetris_file, tmp_path):
    path, _ = tetris_file
    zoo = convert_zenodo_2021(path, tmp_path / "z")
    back = Zoo.load(tmp_path / "z")
    np.testing.assert_array_equal(np.asarray(back.weights), read_zenodo_2021(path).weights)
    assert back.samples["split"].tolist() == zoo.samples["split"].tolist()
    with pytest.raises(FileExistsError):
        convert_zenodo_2021(path, tmp_path / "z")
    convert_zenodo_2021(path, tmp_path / "z", overwrite=True)


def test_index_dict_b4_is_repaired_with_a_warning():
    layout = create_zoo_model("cnn_unterthiner")
    index_dict = WeightLayout.from_module(layout).to_index_dict()
    index_dict["idx_start"][2] = 2320  # the 41-44 index_dict
    with pytest.warns(UserWarning, match="B4"):
        fixed = read_index_dict(index_dict)
    assert fixed.layers[2].offset == 2480 and fixed.num_params == 4970


def google_2021_rows(torch_rows):
    """What GoogleDatasetSimCLR held (bug B5): per layer the TF-ordered kernel, then the bias."""
    out = []
    for row in torch_rows:
        sd = UNTERTHINER.devectorize(torch.from_numpy(row))
        parts = []
        for spec in UNTERTHINER.layers:
            w = sd[f"{spec.name}.weight"].numpy()
            parts += [(w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T).reshape(-1), sd[f"{spec.name}.bias"].numpy()]
        out.append(np.concatenate(parts))
    return np.stack(out)


def google_split(torch_rows, meta, idx, with_metrics):
    meta = [meta[i] for i in idx]
    acc = [0.1 + i / 100 for i in idx]
    gapped = [7 + 3 * i for i in idx]  # a filtered frame: gapped Int64Index labels (bug B7)
    attrs = dict(
        root=pathlib.PosixPath("/data/mnist"), layer_lst=[(0, "conv2d"), (2, "conv2d"), (4, "conv2d"), (7, "fc")],
        data=torch.from_numpy(google_2021_rows(torch_rows[idx])), path_list=np.array([f"/zoo/run_{m}" for m, _, _ in meta], dtype=object),
        labels=[f"model_id-{m}_step-{s}_path-/zoo/run_{m}" for m, s, _ in meta], permutation_index_list=[[0, 1]],
        checkpoint_base=OrderedDict({"module_list.0.weight": torch.zeros(16, 1, 3, 3)}), use_bias=True,
        properties={"acc": acc, "epochs": [s for _, s, _ in meta], "lr": [1e-3] * len(idx), "ggap": [0.05] * len(idx),
                    "activation": Series([a for _, _, a in meta], gapped), "init_method": Series(["glorot"] * len(idx), gapped)})
    if with_metrics:
        attrs["metrics"] = DataFrame({
            "config.activation": np.array([a for _, _, a in meta], dtype=object), "config.learning_rate": np.full(len(idx), 1e-3),
            "config.w_init": np.array(["glorot"] * len(idx), dtype=object), "modeldir": np.array([f"/zoo/run_{m}" for m, _, _ in meta], dtype=object),
            "step": np.array([s for _, s, _ in meta], np.int64), "test_accuracy": np.array(acc), "train_accuracy": np.array(acc) + 0.05,
        }, gapped)
    return GoogleDatasetSimCLR(**attrs)


@pytest.mark.parametrize("with_metrics", [True, False])
def test_zenodo_google_is_converted_to_the_torch_layout(tmp_path, with_metrics):
    rows, meta = unterthiner_models(3)  # 3 models x 3 steps
    splits = {"trainset": [0, 1, 2, 3, 4, 5], "valset": [6, 7, 8]}
    sets = {k: google_split(rows, meta, idx, with_metrics) for k, idx in splits.items()}
    path = save_legacy(sets, tmp_path / "dataset_41_mnist_hyp.pt")
    zoo = read_zenodo_2021(path)
    np.testing.assert_array_equal(zoo.weights, rows)  # B5 undone: true OIHW / [out, in] torch layout
    s = zoo.samples
    assert s["split"].tolist() == ["train"] * 6 + ["val"] * 3 and s["epoch"].tolist() == list(STEPS) * 3
    assert s["model_id"].tolist() == [f"/zoo/run_{m}" for m, _, _ in meta] and s["legacy_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert s["activation"].tolist() == [a for _, _, a in meta] and s["w_init"].tolist() == ["glorot"] * 9
    np.testing.assert_allclose(s["test_acc"], [0.1 + i / 100 for i in range(9)])
    assert s["learning_rate"].tolist() == [1e-3] * 9 and {"activation", "learning_rate", "w_init"} <= set(zoo.hyperparameters)
    assert zoo.info["architecture"]["name"] == "cnn_unterthiner"


# ---------------------------------------------------------------- malicious pickles
class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "eval", "Popen"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    fn, arg = {"os.system": (os.system, f"touch {marker}"),
               "eval": (eval, f"open({str(marker)!r}, 'w').close()"),
               "Popen": (subprocess.Popen, ["touch", str(marker)])}[kind]
    ds = simclr_split([0], [1], np.random.default_rng(0))
    ds.properties["payload"] = [Evil(fn, arg)]  # hidden deep inside an allowed object
    path = save_legacy({"trainset": ds}, tmp_path / "evil.pt")
    with zipfile.ZipFile(path) as z:  # the file really names the dangerous global
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    globals_ = [arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"]
    name = {"os.system": "system", "eval": "eval", "Popen": "Popen"}[kind]
    assert any(g.endswith(" " + name) for g in globals_)
    with pytest.raises(LegacyPickleError, match=rf"refusing to load the global '[\w.]+\.{name}'"):
        load_legacy_pickle(path)
    assert not marker.exists()


def test_corrupt_and_truncated_zips(tmp_path, tetris_file):
    path, _ = tetris_file
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    for bad in ("cut.pt", "junk.pt"):
        with pytest.raises(LegacyPickleError, match="not a readable torch zip"):
            read_zenodo_2021(tmp_path / bad)
    # a storage cut short inside an otherwise valid zip
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "short.pt", "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info, body[:2] if info.filename.endswith("/data/0") else body)
    with pytest.raises(LegacyPickleError, match="truncated or corrupt"):
        read_zenodo_2021(tmp_path / "short.pt")


# ---------------------------------------------------------------- Unterthiner zoo
UNTERTHINER = WeightLayout.from_module(create_zoo_model("cnn_unterthiner"))
# Google's boundaries (colab): per layer bias first, then the kernel
GOOGLE_LAYOUT = [("conv2d/bias:0", 0, 16, (16,)), ("conv2d/kernel:0", 16, 160, (3, 3, 1, 16)),
                 ("conv2d_1/bias:0", 160, 176, (16,)), ("conv2d_1/kernel:0", 176, 2480, (3, 3, 16, 16)),
                 ("conv2d_2/bias:0", 2480, 2496, (16,)), ("conv2d_2/kernel:0", 2496, 4800, (3, 3, 16, 16)),
                 ("dense/bias:0", 4800, 4810, (10,)), ("dense/kernel:0", 4810, 4970, (16, 10))]
STEPS = (0, 1, 86)


def unterthiner_models(n=4):
    gen = torch.Generator().manual_seed(0)
    rows, meta = [], []
    for m in range(n):
        act = ["relu", "tanh"][m % 2]
        for step in STEPS:
            model = create_zoo_model("cnn_unterthiner", activation=act, init="normal", init_std=0.3, generator=gen)
            rows.append(UNTERTHINER.vectorize(model.state_dict()).detach().numpy())
            meta.append((m, step, act))
    return np.stack(rows), meta


def write_unterthiner(folder, torch_rows, meta, *, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "weights.npy", torch_to_tf(torch_rows).astype(np.float32))
    metrics = pd.DataFrame({
        "config.activation": [a for _, _, a in meta], "config.dataset": "mnist",
        "config.learning_rate": [10.0 ** -(2 + m) for m, _, _ in meta], "config.w_init": "he_normal",
        "modeldir": [f"/zoo/run_{m}" for m, _, _ in meta], "step": [s for _, s, _ in meta],
        "test_accuracy": np.linspace(0.1, 0.9, len(meta)), "train_accuracy": np.linspace(0.2, 1.0, len(meta)),
        "test_loss": 1.0, "train_loss": 0.5,
    }, index=[f"/zoo/run_{m}/ckpt-{s}" for m, s, _ in meta])
    metrics.to_csv(folder / ("metrics.csv.gz" if gz else "metrics.csv"))
    pd.DataFrame([{"varname": f"sequential/{v}", "start_idx": a, "end_idx": b, "shape": str(s)}
                  for v, a, b, s in GOOGLE_LAYOUT]).to_csv(folder / "layout.csv", index=False)
    return folder


def tf_forward(row, x, act):
    """The TF network on Google's flat row: NHWC, HWIO kernels, "valid" padding (Keras' default), stride 2, GAP, dense."""
    parts = {v.split("/")[0] + "/" + v.split("/")[1][0]: row[a:b].reshape(s) for v, a, b, s in GOOGLE_LAYOUT}
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[act]
    h = x.astype(np.float64)
    for name in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = parts[name + "/k"].astype(np.float64), parts[name + "/b"]
        n, hh, ww, _ = h.shape
        oh, ow = (hh - 3) // 2 + 1, (ww - 3) // 2 + 1
        out = np.zeros((n, oh, ow, k.shape[3]))
        for i in range(3):
            for j in range(3):
                out += h[:, i:i + 2 * oh:2, j:j + 2 * ow:2, :] @ k[i, j]
        h = f(out + b)
    return h.mean(axis=(1, 2)) @ parts["dense/k"] + parts["dense/b"]


def test_unterthiner_conversion_recovers_weights_and_columns(tmp_path):
    rows, meta = unterthiner_models()
    rows[4, 100] = np.nan  # one diverged checkpoint
    zoo = convert_unterthiner(write_unterthiner(tmp_path / "mnist", rows, meta), tmp_path / "z")
    np.testing.assert_array_equal(np.asarray(zoo.weights), rows)
    s = zoo.samples
    assert s["epoch"].tolist() == list(STEPS) * 4 and s["model_id"].iloc[0] == "/zoo/run_0"
    assert s["diverged"].tolist() == [i == 4 for i in range(12)]
    assert s["activation"].tolist() == [a for _, _, a in meta]
    np.testing.assert_allclose(s["ggap"], s["train_acc"] - s["test_acc"])
    assert set(zoo.hyperparameters) == {"activation", "dataset", "learning_rate", "w_init"}
    assert {"test_acc", "train_acc", "ggap", "test_loss"} <= set(zoo.metrics)
    assert s["checkpoint"].iloc[0] == "/zoo/run_0/ckpt-0"
    np.testing.assert_array_equal(torch_to_tf(tf_to_torch(rows)), rows)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_converted_unterthiner_network_computes_what_tf_computed(tmp_path, act):
    rows, meta = unterthiner_models(2)
    zoo = convert_unterthiner(write_unterthiner(tmp_path / "d", rows, meta), tmp_path / "z")
    tf_rows = np.load(tmp_path / "d" / "weights.npy")
    x = np.random.default_rng(1).normal(size=(5, 32, 32, 1)).astype(np.float32)
    for i in np.flatnonzero(zoo.samples["activation"] == act):
        model = create_zoo_model("cnn_unterthiner", activation=act)
        vec = torch.from_numpy(np.array(zoo.weights[i]))
        model.load_state_dict(zoo.layout.devectorize(vec))
        with torch.no_grad():
            out = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
        np.testing.assert_allclose(out, tf_forward(tf_rows[i], x, act), atol=1e-5, rtol=0)


def test_unterthiner_bad_inputs(tmp_path):
    rows, meta = unterthiner_models(1)
    src = write_unterthiner(tmp_path / "ok", rows, meta, gz=False)

    def variant(name, edit):
        folder = tmp_path / name
        folder.mkdir()
        for f in src.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        edit(folder)
        return folder

    cases = {
        "rows": (lambda f: pd.read_csv(f / "metrics.csv").iloc[:-1].to_csv(f / "metrics.csv", index=False), "rows"),
        "layout": (lambda f: (f / "layout.csv").write_text((f / "layout.csv").read_text().replace("4970", "4971")),
                   "spans|4971"),
        "columns": (lambda f: pd.read_csv(f / "metrics.csv").drop(columns="test_accuracy").to_csv(f / "metrics.csv", index=False),
                    "lack the columns"),
        "npy": (lambda f: (f / "weights.npy").write_bytes((f / "weights.npy").read_bytes()[:-100]), "truncated"),
        "csv": (lambda f: (f / "metrics.csv").write_bytes((f / "metrics.csv").read_bytes()[:-7]), "truncated"),
        "gz": (lambda f: ((f / "metrics.csv.gz").write_bytes(gzip.compress((f / "metrics.csv").read_bytes())[:-30]),
                          (f / "metrics.csv").unlink()), "truncated or corrupt"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            convert_unterthiner(variant(name, edit), tmp_path / f"out_{name}")
        assert not (tmp_path / f"out_{name}").exists()
    convert_unterthiner(src, tmp_path / "z")
    with pytest.raises(FileExistsError):
        convert_unterthiner(src, tmp_path / "z")
    assert main(["zoo", "convert", "--from", "unterthiner", str(src), "--out", str(tmp_path / "z")]) == 2
    assert main(["zoo", "convert", "--from", "unterthiner", str(src), "--out", str(tmp_path / "z"), "--overwrite"]) == 0


# ---------------------------------------------------------------- ray.tune folders
def trained_tetris_zoo():
    """Three tetris MLPs trained 2 epochs on random data; the last one logged from epoch 1."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 4, 4, generator=gen), torch.randint(0, 4, (64,), generator=gen)
    rows, weights = [], []
    for m, (lr, act) in enumerate([(0.1, "tanh"), (0.01, "relu"), (0.05, "tanh")]):
        torch.manual_seed(m)  # the test's own model init; the library never seeds
        model = create_zoo_model("tetris_mlp", activation=act, init="normal", init_std=0.5, generator=gen)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for epoch in range(3):
            if epoch:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if m == 2 and epoch == 0:
                continue
            with torch.no_grad():
                logits = model(x)
            acc = float((logits.argmax(1) == y).float().mean())
            weights.append(TETRIS.vectorize(model.state_dict()).detach().numpy())
            rows.append({"model_id": m, "epoch": epoch, "seed": m, "test_acc": acc, "train_acc": acc + 0.01,
                         "train_loss": float(nn.functional.cross_entropy(logits, y)), "diverged": False,
                         "lr": lr, "activation": act})
    samples = pd.DataFrame(rows)
    info = {"name": "toy", "hyperparameters": ["lr", "activation", "seed"], "metrics": ["test_acc", "train_acc", "train_loss"],
            "architecture": {"name": "tetris_mlp", "kwargs": {}}, "task": {"name": "random"}}
    return Zoo(np.stack(weights).astype(np.float32), samples, TETRIS, info)


def test_raytune_export_import_is_identity(tmp_path):
    zoo = trained_tetris_zoo()
    zoo.save(tmp_path / "zoo")
    original = Zoo.load(tmp_path / "zoo")
    assert main(["zoo", "export", "--to", "raytune", str(tmp_path / "zoo"), str(tmp_path / "ray")]) == 0
    assert (tmp_path / "ray" / "2" / "checkpoint_000001" / "checkpoints").is_file()
    with pytest.raises(FileExistsError):
        export_raytune(original, tmp_path / "ray")
    assert set(torch.load(tmp_path / "ray" / "0" / "checkpoint_000000" / "checkpoints", weights_only=True)) == {
        "module_list.0.weight", "module_list.2.weight"}
    back = import_raytune(tmp_path / "ray")
    np.testing.assert_array_equal(back.weights, np.asarray(original.weights))
    assert back.layout == original.layout
    pd.testing.assert_frame_equal(back.samples[original.samples.columns], original.samples)
    assert back.hyperparameters == original.hyperparameters and back.metrics == original.metrics
    assert main(["zoo", "convert", "--from", "raytune", str(tmp_path / "ray"), "--out", str(tmp_path / "z2")]) == 0
    pd.testing.assert_frame_equal(Zoo.load(tmp_path / "z2").samples[original.samples.columns], original.samples)


def write_trial(folder, results, checkpoints):
    folder.mkdir(parents=True)
    (folder / "params.json").write_text('{"optim::lr": 0.1}')
    (folder / "result.json").write_text("".join(r if isinstance(r, str) else __import__("json").dumps(r) + "\n"
                                                for r in results))
    for name, state in checkpoints.items():
        (folder / name).mkdir()
        torch.save(state, folder / name / "checkpoints")


def tetris_state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"module_list.0.weight": torch.randn(5, 16, generator=g), "module_list.2.weight": torch.randn(4, 5, generator=g)}


def test_raytune_2021_folders_offset_rule_and_errors(tmp_path):
    cfg = {"optim::lr": 0.1, "model::nlin": "tanh"}
    # logs from epoch 1: line N-1 is training_iteration N
    write_trial(tmp_path / "exp" / "a", [{"training_iteration": i, "test_acc": i / 10, "config": cfg} for i in (1, 2)],
                {"checkpoint_1": tetris_state(1), "checkpoint_000002": tetris_state(2)})
    # logs the initialisation first: line N belongs to epoch N
    write_trial(tmp_path / "exp" / "b", [{"training_iteration": i + 1, "test_acc": i / 100, "config": cfg} for i in range(3)],
                {f"checkpoint_{i}": tetris_state(10 + i) for i in range(3)})
    zoo = import_raytune(tmp_path / "exp")
    s = zoo.samples
    assert s["epoch"].tolist() == [1, 2, 0, 1, 2] and s["model_id"].tolist() == ["a", "a", "b", "b", "b"]
    np.testing.assert_allclose(s["test_acc"], [0.1, 0.2, 0.0, 0.01, 0.02])
    assert s["activation"].tolist() == ["tanh"] * 5 and "lr" in zoo.hyperparameters
    np.testing.assert_array_equal(zoo.weights[1], TETRIS.vectorize({"fc1.weight": tetris_state(2)["module_list.0.weight"],
                                                                     "fc2.weight": tetris_state(2)["module_list.2.weight"]}))
    broken = tmp_path / "broken"
    write_trial(broken / "a", ['{"training_iteration": 1, "test_acc": 0.1}\n', '{"training_iter\n'], {"checkpoint_1": tetris_state(0)})
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        import_raytune(broken)
    for name, state in {"missing": {"module_list.0.weight": torch.zeros(5, 16)},
                        "extra": {**tetris_state(0), "module_list.4.weight": torch.zeros(1)}}.items():
        write_trial(tmp_path / name / "a", [{"training_iteration": 1, "test_acc": 0.1}], {"checkpoint_1": state})
        with pytest.raises(KeyError, match=r"missing \['module_list.2.weight'\]" if name == "missing" else "module_list.4.weight"):
            import_raytune(tmp_path / name, architecture="tetris_mlp")


# ------------------------------------------------------------------- download
def test_download_says_when_network_is_unreachable(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match="unreachable"):
        download("unterthiner_mnist", tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    assert main(["zoo", "download", "11_tetris_seed", "--root", str(tmp_path)]) == 3
    assert "unreachable" in capsys.readouterr().err


class FakeResponse(io.BytesIO):
    headers = {"Content-Length": None}


def test_download_fetches_and_converts(tmp_path, monkeypatch, tetris_file):
    path, _ = tetris_file
    record = {"files": [{"key": path.name, "checksum": "md5:" + hashlib.md5(path.read_bytes()).hexdigest()}]}
    bodies = {"https://zenodo.org/api/records/5645138": json.dumps(record).encode(),  # the MD5 comes with the record
              "https://zenodo.org/record/5645138/files/dataset_11_tetris_seed.pt?download=1": path.read_bytes()}
    seen = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: seen.append(url.full_url) or FakeResponse(bodies[url.full_url]))
    zoo = download("11_tetris_seed", tmp_path / "datasets")
    assert seen == list(bodies)
    assert zoo.path == tmp_path / "datasets" / "11_tetris_seed" and zoo.num_samples == 18
    sha = (tmp_path / "datasets" / "raw" / "dataset_11_tetris_seed.pt.sha256").read_text().split()[0]
    assert Zoo.load(zoo.path).info["provenance"]["sha256"] == sha


def test_download_unpacks_a_small_cnn_zoo_archive(tmp_path, monkeypatch):
    rows, meta = unterthiner_models(1)
    src = write_unterthiner(tmp_path / "build" / "mnist", rows, meta)
    with tarfile.open(tmp_path / "mnist.tar.xz", "w:xz") as tar:
        tar.add(src, arcname="mnist")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: FakeResponse((tmp_path / "mnist.tar.xz").read_bytes()))
    zoo = download("unterthiner_mnist", tmp_path / "datasets")
    np.testing.assert_array_equal(np.asarray(zoo.weights), rows)
    assert zoo.info["provenance"]["url"] == "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/mnist.tar.xz"
