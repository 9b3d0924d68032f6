"""Shared test set-up: the `needs_cuda` mark, RNG hygiene and the `one_torch_thread` fixture.

`needs_cuda` tests are skipped on a machine without a CUDA device, and fail (with how to
rebuild) on a machine with one whose advrobust build lacks the CUDA kernels: a GPU run that
silently skips every CUDA test would pass without testing anything.
"""
import pytest
import torch

import advrobust
from advrobust.ops._backend import CUDA_REBUILD_HINT

NO_CUDA_KERNELS = ("a CUDA device is visible but advrobust was built without its CUDA kernels, "
                   f"so the CUDA tests cannot run; {CUDA_REBUILD_HINT}")


def cuda_test_policy(cuda_available: bool, has_kernels: bool) -> str:
    """What happens to a `needs_cuda` test: 'run', 'skip' (no CUDA device) or 'fail' (a device
    but a build without CUDA kernels)."""
    if not cuda_available:
        return "skip"
    return "run" if has_kernels else "fail"


def _policy() -> str:
    return cuda_test_policy(torch.cuda.is_available(), advrobust.has_cuda_kernels())


def pytest_collection_modifyitems(config, items):
    if _policy() != "skip":
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fail_cuda_tests_without_cuda_kernels(request):
    if "needs_cuda" in request.node.keywords and _policy() == "fail":
        pytest.fail(NO_CUDA_KERNELS, pytrace=False)


#: Parametrise a test over devices: CPU always, CUDA marked (skipped without a GPU).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Each test starts from the same seed (draws without a generator replay run after run) and
    may seed or draw freely; the global RNG state is restored afterwards."""
    cpu_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(cpu_state)
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (restored after): smoke runs and small trainings check behaviour,
    not speed, and on a shared, loaded machine a second OpenMP thread waits for a core. Modules opt in
    with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
