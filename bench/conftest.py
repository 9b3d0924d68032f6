"""pytest-benchmark suites of advrobust: ``pytest bench --benchmark-only`` (see the README).

The cases are :mod:`advrobust.bench.cases`, the list ``advrobust bench`` uses too. Options:

* ``--bench-tier {quick,default,full}`` -- case sizes (default: ``default``, a few minutes on 2 CPU cores);
* ``--bench-device {cpu,cuda}`` -- default: cuda when a GPU is visible and the CUDA kernels are built;
* ``--bench-threads N`` -- torch CPU threads (default: torch's, i.e. ``OMP_NUM_THREADS`` or all cores).

Every benchmark of one case shares a benchmark group (advrobust's op or attack beside its eager
twin, ``torch.compile``'d twin, torchattacks peer or the model-bound limit); ``extra_info`` holds
``impl`` (which member of the group it is) and, where it applies, ``traffic_bytes`` (the op's
minimal memory traffic) or ``objects``. The saved JSON's ``machine_info.advrobust`` records the
device, torch threads, torch and CUDA versions, GPU, commit and tier; ``advrobust`` at its top
level the same plus the command line.
"""
from __future__ import annotations

import os
import shlex
import sys

import pytest
import torch

try:
    import pytest_benchmark  # noqa: F401
except ImportError:
    raise pytest.UsageError("bench/ needs pytest-benchmark: pip install --no-build-isolation -e '.[bench]'") from None

from advrobust.bench import cases, harness


INFO = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("advrobust benchmarks")
    group.addoption("--bench-tier", default="default", choices=cases.TIERS,
                    help="case sizes of advrobust.bench.cases (default: default)")
    group.addoption("--bench-device", default=None, choices=("cpu", "cuda"),
                    help="cpu or cuda (default: cuda when a GPU is visible and the CUDA kernels are built)")
    group.addoption("--bench-threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own, OMP_NUM_THREADS or all cores)")


def bench_device(config) -> torch.device:
    """The device the suites run on, checked usable (a clear error otherwise)."""
    name = config.getoption("--bench-device") or harness.default_device()
    try:
        return harness.device_arg(name, "--bench-device")
    except Exception as err:  # argparse.ArgumentTypeError: the message says what to do
        raise pytest.UsageError(str(err)) from None


def pytest_configure(config):
    bench_device(config)  # an unusable device stops the run before collection, saying why
    threads = config.getoption("--bench-threads")
    if threads is not None:
        torch.set_num_threads(threads)
    config.stash[INFO] = advrobust_info(config)  # the commit and date of the run's start


def pytest_generate_tests(metafunc):
    """Parametrize the fixtures named after a case list with the chosen tier's cases."""
    tier = metafunc.config.getoption("--bench-tier")
    lists = {"step_case": cases.STEPS, "de_build_case": cases.DE_BUILDS, "de_trial_case": cases.DE_TRIALS,
             "mmd_case": cases.MMDS, "certify_case": cases.CERTIFY, "scan_case": cases.SCANS}
    for name, case_list in lists.items():
        if name in metafunc.fixturenames:
            chosen = cases.select(case_list, tier)
            metafunc.parametrize(name, chosen, ids=[c.label.replace(" ", "_") for c in chosen], scope="module")


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    return bench_device(pytestconfig)


@pytest.fixture(scope="session")
def tier(pytestconfig) -> str:
    return pytestconfig.getoption("--bench-tier")


@pytest.fixture
def measure(benchmark, device):
    """``measure(fn, group=..., impl=..., rounds=None, **extra_info)``: benchmark ``fn`` in ``group``
    after one warm-up call (compilation, caches), the device synchronised after each call.
    ``rounds``: a fixed number of single calls (long cases) instead of pytest-benchmark's calibration."""
    def run(fn, *, group: str, impl: str, rounds: int | None = None, **extra_info):
        benchmark.group = group
        benchmark.extra_info.update(impl=impl, **extra_info)

        def call():
            out = fn()
            harness.synchronize(device)
            return out

        call()  # warm-up
        if rounds is None:
            return benchmark(call)
        return benchmark.pedantic(call, rounds=rounds, iterations=1)
    return run


def advrobust_info(config) -> dict:
    """What the saved JSON records about this run beside pytest-benchmark's own machine info."""
    device = bench_device(config)
    info = harness.machine_info(device)
    info.update(tier=config.getoption("--bench-tier"), cuda=torch.version.cuda,
                omp_num_threads=os.environ.get("OMP_NUM_THREADS"), command=shlex.join(["pytest", *sys.argv[1:]]))
    return info


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["advrobust"] = config.stash[INFO]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["advrobust"] = config.stash[INFO]
