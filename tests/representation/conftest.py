"""The representation tests run on one thread: their tensors are tiny, and threads only add synchronisation,
which is slow on shared cores."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
