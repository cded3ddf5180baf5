"""Shared test settings: the thread count (WEIGHTSPACE_TEST_THREADS), the float_equivalence marker, float64."""

import os

import pytest
import torch

THREADS_ENV = "WEIGHTSPACE_TEST_THREADS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "float_equivalence: compares two floating-point computations of one result; "
                   "CI runs these at 1 and 2 threads (see .ci/run)")
    config.addinivalue_line(
        "markers", "cluster: starts a local multi-node ray cluster and an S3 server on 127.0.0.1 (about 3 minutes)")
    threads = os.environ.get(THREADS_ENV)
    if threads is None:
        return
    if not threads.isdigit() or int(threads) < 1:
        raise pytest.UsageError(f"{THREADS_ENV} must be a positive integer, got {threads!r}")
    torch.set_num_threads(int(threads))
    # subprocesses (a killed generation, ray workers) start their own torch: the same count for them
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads


def pytest_report_header(config: pytest.Config) -> str:
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads (set {THREADS_ENV} to change)"


@pytest.fixture
def float64():
    """Make float64 torch's default dtype for one test, so that new modules and tensors are float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)
