"""Shared test settings: the thread count (WEIGHTSPACE_TEST_THREADS), the markers (slow, long, float_equivalence,
cluster), float64, and the toy zoos that many tests build (`make_zoo`)."""

import copy
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace import WeightLayout, create_zoo_model
from weightspace.zoo.store import Zoo

THREADS_ENV = "WEIGHTSPACE_TEST_THREADS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: starts ray, a subprocess, the local cluster or a whole experiment; left out by default "
                   "(pyproject's addopts), run with -m slow")
    config.addinivalue_line(
        "markers", "float_equivalence: compares two floating-point computations of one result; "
                   "CI runs these at 1 and 2 threads (see .ci/run)")
    config.addinivalue_line(
        "markers", "long: a slow test that .ci/run leaves out to stay within 15 minutes (every folder's smoke run "
                   "but the first, the quality benchmark, the local cluster, UMAP); -m slow runs it")
    config.addinivalue_line(
        "markers", "cluster: starts a local multi-node ray cluster and an S3 server on 127.0.0.1 (about 3 minutes); "
                   "also slow")
    threads = os.environ.get(THREADS_ENV)
    if threads is None:
        return
    if not threads.isdigit() or int(threads) < 1:
        raise pytest.UsageError(f"{THREADS_ENV} must be a positive integer, got {threads!r}")
    torch.set_num_threads(int(threads))
    # subprocesses (a killed generation, ray workers) start their own torch: the same count for them
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads


@pytest.fixture(autouse=True)
def _no_ray_left_behind():
    """A test that started ray in this process shuts it down after itself: a later test that starts its own
    cluster (tests/pipeline/test_cluster.py) or ray instance must not find this one."""
    yield
    if "ray" in sys.modules:
        ray = sys.modules["ray"]
        if ray.is_initialized():
            ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    check_long_is_slow(items)


def check_long_is_slow(items) -> None:
    """A test marked long but not slow would run in the fast set, the README's test command."""
    unmarked = [item.nodeid for item in items if item.get_closest_marker("long") and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError(f"marked long but not slow (mark them slow as well): {', '.join(unmarked)}")


def pytest_report_header(config: pytest.Config) -> str:
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads (set {THREADS_ENV} to change)"


@pytest.fixture
def float64():
    """Make float64 torch's default dtype for one test, so that new modules and tensors are float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _toy_zoo(models: int, epochs: tuple, seed: int, init: str | None, hyper: bool, diverged: tuple) -> Zoo:
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    rng = np.random.default_rng(seed)
    mids, epoch = np.repeat(np.arange(models), len(epochs)), np.tile(np.asarray(epochs), models)
    if init is None:
        base = rng.normal(size=(len(mids), layout.num_params))
    else:  # each model's initialisation, the same at every epoch
        gen = torch.Generator().manual_seed(seed)
        nets = [create_zoo_model("tetris_mlp", init=init, generator=gen) for _ in range(models)]
        with torch.no_grad():
            base = torch.stack([layout.vectorize(net.state_dict()) for net in nets]).numpy()[mids]
    weights = (base * (1 + 0.3 * epoch[:, None])).astype(np.float32)
    test_acc = 0.6 + 0.02 * weights[:, :4].sum(1) + rng.normal(0, 0.002, len(mids))
    act = np.array(["tanh", "relu"])[rng.integers(0, 2, models)]
    samples = pd.DataFrame({
        "model_id": mids, "epoch": epoch, "seed": mids, "test_acc": test_acc,
        "train_acc": test_acc + 0.02 * epoch, "activation": act[mids],
        "lr": rng.choice([1e-3, 3e-3, 1e-2], models)[mids], "diverged": np.isin(mids, diverged),
    })
    info = {"name": "toy", "hyperparameters": ["activation", "lr"] if hyper else [],
            "metrics": ["test_acc", "train_acc"]}
    return Zoo(weights, samples, layout, info)


@pytest.fixture(scope="session")
def make_zoo():
    """``make_zoo(models=20, epochs=(0, 1), seed=0, *, init=None, hyper=True, diverged=())`` -> an in-memory
    `Zoo` of tetris_mlp weights, built once per session for each set of arguments (each call
    returns its own copy, free to change).

    Row (m, e) holds model m at epoch e: standard normal weights (``init=None``) or tetris_mlp's
    initialisation `init` drawn from `seed`, scaled by ``1 + 0.3 e``. ``test_acc`` is linear in the first
    four weights (plus noise 0.002), ``train_acc = test_acc + 0.02 e``; each model draws an activation (tanh or
    relu) and an lr; the models in `diverged` are marked diverged. `hyper` lists activation and lr as the zoo's
    hyperparameters."""
    built = {}

    def make(models: int = 20, epochs: tuple = (0, 1), seed: int = 0, *, init: str | None = None, hyper: bool = True,
             diverged: tuple = ()) -> Zoo:
        key = (models, tuple(epochs), seed, init, hyper, tuple(diverged))
        if key not in built:
            built[key] = _toy_zoo(*key)
        zoo = built[key]
        return Zoo(zoo.weights.copy(), zoo.samples.copy(), zoo.layout, copy.deepcopy(zoo.info))

    return make
