import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Run the ops tests single-threaded: their tensors are tiny, and on small VMs every
    OpenMP parallel region (torch's triu, sum, ...) can cost milliseconds to wake the pool,
    which multiplied by thousands of small calls dominates the suite's runtime."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
