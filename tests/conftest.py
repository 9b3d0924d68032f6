"""Shared test set-up: the `needs_cuda` mark and RNG hygiene."""
import pytest
import torch

import advrobust


def cuda_ready() -> bool:
    return torch.cuda.is_available() and advrobust.has_cuda_kernels()


def pytest_collection_modifyitems(config, items):
    if cuda_ready():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and advrobust built with its CUDA kernels")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


#: Parametrise a test over devices: CPU always, CUDA marked (skipped without a GPU).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Each test may seed or draw freely; the global RNG state is restored afterwards."""
    cpu_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    yield
    torch.random.set_rng_state(cpu_state)
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)
