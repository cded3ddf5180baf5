"""Tests for weightspace.zoo.tasks (no network: every download is monkeypatched)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from weightspace.errors import InputError
from weightspace.io import download as io_download
from weightspace.zoo import task_files, task_sources, tasks
from weightspace.zoo.tasks import TaskData, list_tasks, load_task


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(url, dest, **kwargs):
        raise AssertionError(f"tests must not touch the network (tried {url})")
    monkeypatch.setattr(io_download, "fetch_url", refuse)


# ----------------------------------------------------------------------------- registry
def test_list_tasks():
    assert list_tasks() == ["cifar10", "digits", "fashion_mnist", "mnist", "svhn", "synthetic", "tetris"]


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError) as info:
        load_task("imagenet")
    for name in list_tasks():
        assert name in str(info.value)


def test_unknown_option_names_valid_options():
    with pytest.raises(TypeError, match="placement.*n_train.*n_test.*flip_prob.*seed"):
        load_task("tetris", bogus=1)
    with pytest.raises(TypeError, match="grayscale"):
        load_task("svhn", colour=True)


def test_bad_option_values():
    with pytest.raises(ValueError, match="placement"):
        load_task("tetris", placement="random")
    with pytest.raises(ValueError, match="flip_prob"):
        load_task("tetris", flip_prob=1.5)
    with pytest.raises(ValueError, match="test_fraction"):
        load_task("digits", test_fraction=1.0)


def test_taskdata_validates_dtypes():
    x, y = torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError):
        TaskData("t", x.double(), y, x, y, 2)
    with pytest.raises(ValueError):
        TaskData("t", x, y[:1], x, y, 2)


# ----------------------------------------------------------------------------- tetris
def test_tetris_shapes_and_classes():
    data = load_task("tetris", n_train=300, n_test=200)
    assert data.name == "tetris" and data.num_classes == 4 and data.input_shape == (1, 4, 4)
    assert data.x_train.shape == (300, 1, 4, 4) and data.x_test.shape == (200, 1, 4, 4)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert set(data.x_train.unique().tolist()) <= {0.0, 1.0}
    assert set(data.y_train.tolist()) == {0, 1, 2, 3}


def test_tetris_fixed_noiseless_matches_templates():
    data = load_task("tetris", flip_prob=0.0, n_train=400)
    flat = data.x_train.reshape(len(data.x_train), 16)
    assert torch.unique(flat, dim=0).shape[0] == 4
    assert bool((flat.sum(1) == 4).all())  # each tetromino covers four cells
    for cls in range(4):  # one image per class
        assert torch.unique(flat[data.y_train == cls], dim=0).shape[0] == 1


def test_tetris_all_placements_has_more_images():
    fixed = load_task("tetris", placement="fixed", flip_prob=0.0, n_train=3000)
    every = load_task("tetris", placement="all", flip_prob=0.0, n_train=3000)
    n_fixed = torch.unique(fixed.x_train.reshape(-1, 16), dim=0).shape[0]
    n_all = torch.unique(every.x_train.reshape(-1, 16), dim=0).shape[0]
    assert n_fixed == 4
    assert n_all == 8 + 9 + 24 + 24  # I, O, T, L: rotations x translations


def test_tetris_deterministic_and_seed_dependent():
    before = torch.get_rng_state()
    a = load_task("tetris", seed=5)
    b = load_task("tetris", seed=5)
    c = load_task("tetris", seed=6)
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    n = min(len(a.x_train), len(a.x_test))
    assert not torch.equal(a.x_train[:n], a.x_test[:n])  # train and test differ
    assert torch.equal(load_task("tetris", seed=5, n_train=10).x_test, a.x_test)


def test_tetris_flip_rate():
    data = load_task("tetris", flip_prob=0.1, n_train=4000)
    clean = load_task("tetris", flip_prob=0.0, n_train=4000)
    rate = (data.x_train != clean.x_train).float().mean().item()  # same stream -> same shapes
    assert 0.08 < rate < 0.12


# ----------------------------------------------------------------------------- digits
def test_digits_shape_and_split():
    data = load_task("digits")
    assert data.x_train.shape == (1347, 1, 8, 8) and data.x_test.shape == (450, 1, 8, 8)
    assert data.num_classes == 10 and float(data.x_train.max()) == 1.0 and float(data.x_train.min()) == 0.0
    counts = torch.bincount(data.y_test, minlength=10)
    assert int(counts.min()) >= 43 and int(counts.max()) <= 46  # stratified: ~180 * 0.25 each
    again, other = load_task("digits"), load_task("digits", seed=1)
    assert torch.equal(data.x_test, again.x_test) and not torch.equal(data.x_test, other.x_test)
    assert load_task("digits", test_fraction=0.5).x_test.shape[0] in (898, 899)


# ----------------------------------------------------------------------------- IDX
def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def _write_mnist(directory, rng, n_train=6, n_test=4, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 5, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 5, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        raw = _idx_bytes(arr)
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("task, compress", [("mnist", True), ("mnist", False), ("fashion_mnist", True)])
def test_idx_roundtrip(tmp_path, task, compress):
    arrays = _write_mnist(tmp_path / task, np.random.default_rng(0), compress=compress)
    data = load_task(task, root=tmp_path)
    assert data.name == task and data.input_shape == (1, 5, 3) and data.num_classes == 10
    assert data.x_train.dtype == torch.float32
    assert np.array_equal((data.x_train[:, 0] * 255).round().numpy().astype(np.uint8),
                          arrays["train-images-idx3-ubyte"])
    assert np.array_equal((data.x_test[:, 0] * 255).round().numpy().astype(np.uint8),
                          arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(data.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_idx_other_dtypes(tmp_path):
    ints = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    floats = np.linspace(-1, 1, 5, dtype=np.float32)
    (tmp_path / "a").write_bytes(_idx_bytes(ints, 0x0B))
    (tmp_path / "b").write_bytes(gzip.compress(_idx_bytes(floats, 0x0D)))
    assert np.array_equal(task_files.read_idx(tmp_path / "a"), ints)
    assert np.array_equal(task_files.read_idx(tmp_path / "b"), floats)


def test_idx_truncated_and_corrupt(tmp_path):
    raw = _idx_bytes(np.zeros((4, 3, 3), np.uint8))
    cases = {
        "truncated": (raw[:-5], "truncated IDX data"),
        "header": (raw[:6], "truncated IDX header"),
        "trailing": (raw + b"xx", "trailing"),
        "magic": (b"\x01\x00" + raw[2:], "bad magic"),
        "dtype": (raw[:2] + b"\x07" + raw[3:], "dtype code"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            task_files.read_idx(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match="cut.gz.*gzip"):
        task_files.read_idx(tmp_path / "cut.gz")


def test_truncated_idx_in_task(tmp_path):
    _write_mnist(tmp_path / "mnist", np.random.default_rng(1), compress=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        load_task("mnist", root=tmp_path)


# ----------------------------------------------------------------------------- SVHN
def _write_svhn(directory, rng, n=(5, 3)):
    directory.mkdir(parents=True)
    out = {}
    for name, count in zip(("train_32x32.mat", "test_32x32.mat"), n):
        x = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        y = np.arange(1, count + 1, dtype=np.uint8).reshape(-1, 1) % 10 + 1  # 1..10
        y[0, 0] = 10
        savemat(directory / name, {"X": x, "y": y})
        out[name] = (x, y)
    return out


def test_svhn(tmp_path):
    files = _write_svhn(tmp_path / "svhn", np.random.default_rng(2))
    data = load_task("svhn", root=tmp_path)
    x, y = files["train_32x32.mat"]
    assert data.input_shape == (3, 32, 32) and data.x_train.shape[0] == 5 and data.x_test.shape[0] == 3
    assert np.array_equal((data.x_train * 255).round().numpy().astype(np.uint8), x.transpose(3, 2, 0, 1))
    assert data.y_train[0] == 0 and int(data.y_train.max()) <= 9
    assert np.array_equal(data.y_train.numpy(), y[:, 0] % 10)

    gray = load_task("svhn", root=tmp_path, grayscale=True)
    assert gray.input_shape == (1, 32, 32)
    rgb = data.x_train
    expected = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    torch.testing.assert_close(gray.x_train[:, 0], expected)


# ----------------------------------------------------------------------------- CIFAR-10
def _write_cifar(batch_dir, rng, n=3):
    batch_dir.mkdir(parents=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(batch_dir / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, fh)
        out[name] = (data, labels)
    return out


def test_cifar_roundtrip(tmp_path):
    batches = _write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", np.random.default_rng(3))
    data = load_task("cifar10", root=tmp_path)
    assert data.input_shape == (3, 32, 32) and data.x_train.shape[0] == 15 and data.x_test.shape[0] == 3
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal((data.x_train * 255).round().numpy().astype(np.uint8), train)
    assert data.y_train.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert data.y_test.tolist() == batches["test_batch"][1]
    gray = load_task("cifar10", root=tmp_path, grayscale=True)
    assert gray.input_shape == (1, 32, 32) and float(gray.x_train.max()) <= 1.0


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python-2 ``str`` opcodes, like the real CIFAR batch files."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def test_cifar_python2_style_pickle(tmp_path):
    batch_dir = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(batch_dir, np.random.default_rng(8))
    data = np.random.default_rng(9).integers(0, 256, (2, 3072), dtype=np.uint8)
    with open(batch_dir / "test_batch", "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump({b"data": data, b"labels": [4, 9]})
    loaded = load_task("cifar10", root=tmp_path)
    assert np.array_equal((loaded.x_test * 255).round().numpy().astype(np.uint8).reshape(2, -1), data)
    assert loaded.y_test.tolist() == [4, 9]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_malicious_pickle_refused(tmp_path):
    batch_dir = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(batch_dir, np.random.default_rng(4))
    marker = tmp_path / "marker"
    with open(batch_dir / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": _Evil(marker), b"labels": []}, fh)
    refused = r"data_batch_2.*refusing to load the global (os|posix)\.system"
    with pytest.raises(InputError, match=refused):  # a user error the command line reports in one line
        load_task("cifar10", root=tmp_path)
    assert not marker.exists()
    # sanity: an ordinary unpickler really would have run the payload
    with open(batch_dir / "data_batch_2", "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_cifar_builtin_globals_refused(tmp_path):
    batch_dir = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(batch_dir, np.random.default_rng(5))
    (batch_dir / "test_batch").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(InputError, match=r"builtins\.eval"):
        load_task("cifar10", root=tmp_path)


# ----------------------------------------------------------------------------- missing files
@pytest.mark.parametrize("task, names", [
    ("mnist", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    ("fashion_mnist", ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]),
    ("svhn", ["train_32x32.mat", "test_32x32.mat"]),
    ("cifar10", ["data_batch_1", "data_batch_5", "test_batch", "cifar-10-batches-py"]),
])
def test_missing_files(tmp_path, task, names):
    with pytest.raises(FileNotFoundError) as info:
        load_task(task, root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / task) in message and "download=True" in message
    for name in names:
        assert name in message


# ----------------------------------------------------------------------------- downloads
def test_checksum_mismatch_deletes_file(tmp_path, monkeypatch):
    calls = []

    def wrong_bytes(url, dest, **kwargs):
        calls.append(url)
        with open(dest, "wb") as fh:
            fh.write(b"not the real file")

    monkeypatch.setattr(io_download, "fetch_url", wrong_bytes)
    with pytest.raises(io_download.ChecksumError, match="train-images-idx3-ubyte.gz.*checksum mismatch"):
        load_task("mnist", root=tmp_path, download=True)
    assert len(calls) == 2  # both MNIST mirrors tried
    assert list((tmp_path / "mnist").iterdir()) == []  # nothing kept, no .part leftovers


def test_network_unreachable_names_files(tmp_path, monkeypatch):
    def offline(url, dest, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(io_download, "fetch_url", offline)
    with pytest.raises(io_download.DownloadError, match="unreachable") as info:
        load_task("svhn", root=tmp_path, download=True)
    assert not isinstance(info.value, io_download.ChecksumError)
    assert "train_32x32.mat" in str(info.value) and "test_32x32.mat" in str(info.value)
    assert str(tmp_path / "svhn") in str(info.value)


def test_download_falls_back_to_next_mirror(tmp_path, monkeypatch):
    payload = b"payload bytes"
    urls = ("http://a/f.bin", "http://b/f.bin")
    resource = io_download.Resource("f.bin", hashlib.md5(payload).hexdigest(), urls)

    def fetch(url, dest, **kwargs):
        if "//a/" in url:
            raise urllib.error.URLError("down")
        with open(dest, "wb") as fh:
            fh.write(payload)

    monkeypatch.setattr(io_download, "fetch_url", fetch)
    path = io_download.download_resource(resource, tmp_path / "d")
    assert path.read_bytes() == payload and sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.bin"]


def test_cifar_download_and_extract(tmp_path, monkeypatch):
    source = tmp_path / "src"
    batches = _write_cifar(source / "cifar-10-batches-py", np.random.default_rng(6))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = buffer.getvalue()
    md5 = hashlib.md5(archive).hexdigest()
    resource = io_download.Resource("cifar-10-python.tar.gz", md5, ("http://x/c.tgz",))
    monkeypatch.setitem(task_sources.RESOURCES, "cifar10", (resource,))
    monkeypatch.setattr(io_download, "fetch_url", lambda url, dest, **kw: Path(dest).write_bytes(archive))
    data = load_task("cifar10", root=tmp_path / "root", download=True)
    assert data.y_test.tolist() == batches["test_batch"][1]


def _tar_with(tmp_path, add):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        add(tar)
    return path


@pytest.mark.parametrize("member", ["../escape.txt", "/abs/escape.txt", "ok/../../escape.txt"])
def test_safe_extract_rejects_unsafe_paths(tmp_path, member):
    def add(tar):
        info = tarfile.TarInfo(member)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))

    dest = tmp_path / "out" / "deep"
    with pytest.raises(io_download.DownloadError, match="unsafe path"):
        io_download.safe_extract_tar(_tar_with(tmp_path, add), dest)
    assert not (tmp_path / "out" / "escape.txt").exists() and list(dest.iterdir()) == []


def test_safe_extract_rejects_links(tmp_path):
    def add(tar):
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    with pytest.raises(io_download.DownloadError, match="not a regular file"):
        io_download.safe_extract_tar(_tar_with(tmp_path, add), tmp_path / "out")


def test_verify_on_disk(tmp_path):
    _write_mnist(tmp_path / "mnist", np.random.default_rng(7))
    load_task("mnist", root=tmp_path)  # synthetic files: no verification by default
    with pytest.raises(io_download.ChecksumError, match="train-images-idx3-ubyte.gz"):
        load_task("mnist", root=tmp_path, verify=True)
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()  # user files are not deleted


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_deterministic_and_seed_dependent():
    before = torch.get_rng_state()
    a = load_task("synthetic", shape=(3, 12, 10), num_classes=5, n_train=40, n_test=30, seed=1)
    b = load_task("synthetic", shape=(3, 12, 10), num_classes=5, n_train=40, n_test=30, seed=1)
    c = load_task("synthetic", shape=(3, 12, 10), num_classes=5, n_train=40, n_test=30, seed=2)
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    assert a.name == "synthetic" and a.input_shape == (3, 12, 10) and a.num_classes == 5
    assert a.x_train.shape == (40, 3, 12, 10) and a.x_test.shape == (30, 3, 12, 10)
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1.0
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(load_task("synthetic", shape=(3, 12, 10), num_classes=5, n_train=7, n_test=30,
                                  seed=1).x_test, a.x_test)


def test_synthetic_labels_are_learnable_by_a_linear_model():
    from sklearn.linear_model import LogisticRegression

    data = load_task("synthetic", shape=(1, 8, 8), num_classes=10, n_train=600, n_test=300)
    counts = torch.bincount(data.y_train, minlength=10)
    assert int(counts.min()) > 0.2 * len(data.y_train) / 10  # no class starved
    probe = LogisticRegression(max_iter=2000).fit(data.x_train.flatten(1).numpy(), data.y_train.numpy())
    assert probe.score(data.x_test.flatten(1).numpy(), data.y_test.numpy()) > 0.6  # chance is 0.1


def test_synthetic_bad_options():
    with pytest.raises(ValueError, match="shape"):
        load_task("synthetic", shape=(28, 28))
    with pytest.raises(ValueError, match="num_classes"):
        load_task("synthetic", num_classes=1)


def test_synthetic_stand_in_for_missing_files(tmp_path):
    assert len(tasks.missing_task_files("mnist", tmp_path)) == 4
    assert tasks.missing_task_files("tetris", tmp_path) == []
    _write_mnist(tmp_path / "mnist", np.random.default_rng(0))
    assert tasks.missing_task_files("mnist", tmp_path) == []
    options = tasks.synthetic_options("svhn", n_train=8, n_test=4, grayscale=True)
    assert options["shape"] == (1, 32, 32) and options["num_classes"] == 10
    assert load_task("synthetic", **options).input_shape == (1, 32, 32)
    assert tasks.synthetic_options("cifar10", n_train=8, n_test=4)["shape"] == (3, 32, 32)
    with pytest.raises(ValueError, match="no synthetic stand-in"):
        tasks.synthetic_options("digits", n_train=8, n_test=4)
