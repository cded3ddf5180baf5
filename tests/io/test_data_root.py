"""Data folders come from the caller (or $WEIGHTSPACE_DATA), never from the current directory (no network)."""

import urllib.request

import numpy as np
import pytest

from tests.zoo.test_tasks import _write_mnist
from weightspace.formats import download
from weightspace.io.data_root import DATA_ENV
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset
from weightspace.zoo.tasks import load_task, missing_task_files


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A working directory holding ``datasets/mnist`` (which no library call may read), no $WEIGHTSPACE_DATA."""
    folder = tmp_path / "cwd"
    _write_mnist(folder / "datasets" / "mnist", np.random.default_rng(0))
    monkeypatch.chdir(folder)
    monkeypatch.delenv(DATA_ENV, raising=False)

    def offline(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return folder


def _tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_tasks_without_files_need_no_root_and_write_nothing_here(cwd, tmp_path):
    before = _tree(cwd)
    assert load_task("tetris", n_train=8, n_test=8).x_train.shape == (8, 1, 4, 4)
    assert load_task("digits").num_classes == 10
    assert load_task("synthetic", n_train=4, n_test=4).x_test.shape[0] == 4
    assert all(missing_task_files(name) == [] for name in ("tetris", "digits", "synthetic"))
    generate(get_preset("tetris_seed", smoke=True), tmp_path / "zoo", progress=False, device="cpu")
    assert (tmp_path / "zoo" / "zoo.json").is_file() and _tree(cwd) == before


@pytest.mark.parametrize("call", ["load_task", "missing_task_files", "generate", "download"])
def test_a_file_task_without_a_root_says_what_to_pass(cwd, tmp_path, call):
    before = _tree(cwd)
    run = {"load_task": lambda: load_task("mnist"),
           "missing_task_files": lambda: missing_task_files("mnist"),
           "generate": lambda: generate(get_preset("mnist_seed", smoke=True), tmp_path / "zoo", progress=False),
           "download": lambda: download("21_mnist_seed")}[call]
    with pytest.raises(ValueError, match=f"needs a data folder and none was given: pass it .* {DATA_ENV}=DIR"):
        run()  # ./datasets/mnist holds the files, and is not read
    assert _tree(cwd) == before and not (tmp_path / "zoo").exists()


def test_the_environment_variable_names_the_data_folder(cwd, tmp_path, monkeypatch):
    arrays = _write_mnist(tmp_path / "data" / "mnist", np.random.default_rng(1))
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    data = load_task("mnist")
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert missing_task_files("svhn") == [tmp_path / "data" / "svhn" / name
                                          for name in ("train_32x32.mat", "test_32x32.mat")]
    given = load_task("mnist", root=cwd / "datasets")  # the caller's folder comes first
    assert given.y_train.tolist() != data.y_train.tolist()
