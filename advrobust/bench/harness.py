"""What every benchmark shares: device choice, timing, peak memory, copy bandwidth, machine info, reports.

Timing: :class:`torch.utils.benchmark.Timer` synchronises CUDA before it reads the clock;
calls timed by hand go through :func:`timed_call`, which synchronises around the call.
Memory: :class:`PeakMemory` (CPU: the process's resident-set high-water mark; CUDA:
``torch.cuda.max_memory_allocated``). Bandwidth yardstick: :func:`copy_bandwidth`, a plain
``dst.copy_(src)`` on the benchmark's device (device-to-device on CUDA).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.utils.benchmark as tb

import advrobust
from advrobust.checks import check_device
from advrobust.machine import cpu_model

_MiB = float(1 << 20)


# ---------------------------------------------------------------------------- device

def apply_sizes(args: argparse.Namespace, sizes: dict) -> None:
    """Fill each size option left unset: ``sizes[name] = (full, quick)`` by ``args.quick``."""
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def size_help(sizes: dict, name: str) -> str:
    """The help text's default part for the size option ``name``."""
    return f"(default {sizes[name][0]}; --quick: {sizes[name][1]})"


class ReportLines(list):
    """The lines of a results file; :meth:`emit` prints a line and keeps it."""

    def emit(self, line: str = "") -> None:
        print(line, flush=True)
        self.append(line)


def default_device() -> str:
    """``"cuda"`` when a GPU is visible and advrobust was built with its CUDA kernels, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() and advrobust.has_cuda_kernels() else "cpu"


def device_arg(name: str, option: str = "--device") -> torch.device:
    """argparse ``type`` of ``--device``: ``"cpu"`` or ``"cuda"``, checked usable with advrobust's kernels;
    ``option`` starts the message (``--bench-device`` for the pytest suites)."""
    if name not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{name!r} is not a device: cpu or cuda")
    if not advrobust.has_cpu_kernels():
        raise argparse.ArgumentTypeError(
            "advrobust._C is not built, nothing to benchmark: pip install --no-build-isolation -e .")
    try:
        device = check_device(option, name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (torch {torch.__version__})") from None
    if name == "cuda" and not advrobust.has_cuda_kernels():
        raise argparse.ArgumentTypeError(
            "cuda: advrobust was built without its CUDA kernels; rebuild on the GPU machine "
            "(pip install --no-build-isolation -e ., FORCE_CUDA=1 without a visible GPU)")
    return device


def add_common_arguments(parser: argparse.ArgumentParser, results: str) -> None:
    """``--device``, ``--quick`` and ``--out`` (report ``results`` by default, see :func:`default_out`)."""
    parser.add_argument("--device", type=device_arg, default=default_device(), metavar="{cpu,cuda}",
                        help="cpu or cuda (default: cuda when a GPU is visible and the CUDA kernels are built, "
                             "else cpu)")
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke test of the benchmark)")
    parser.add_argument("--out", help=f"Markdown report to write (default: bench/{results} when run inside the "
                                      f"source checkout, bench/out/{results} with --quick; elsewhere "
                                      f"./advrobust_{results})")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- timing

def timed_call(fn, device: torch.device):
    """``(seconds, result)`` of one call of ``fn``, with the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def measure(fn, min_run_time: float, device: torch.device, min_repeats: int = 5) -> tb.Measurement:
    """blocked_autorange of ``fn`` (seconds per call) after a warm-up; calls of a second or more (one
    block fills ``min_run_time``) are topped up with single-call repeats, so no median rests on one sample."""
    fn()  # warm-up (and compilation, for compiled callables)
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    if len(m.times) < min_repeats:  # single calls timed by hand (Timer.timeit adds warm-up calls)
        extra = [timed_call(fn, device)[0] for _ in range(min_repeats - len(m.times))]
        m = tb.Measurement.merge([m, tb.Measurement(1, extra, m.task_spec)])[0]
    return m


def timeit_once(fn):
    """``(seconds, result)`` of one call of ``fn`` timed by ``Timer.timeit(1)``, which first makes two
    warm-up calls of its own; ``result`` is the timed call's."""
    out = {}

    def call():
        out["result"] = fn()

    seconds = tb.Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads()).timeit(1).median
    return seconds, out["result"]


def copy_bandwidth(x: torch.Tensor, min_run_time: float) -> float:
    """Bytes per second of ``dst.copy_(x)`` into a tensor like ``x``, read and write counted once each:
    the yardstick of memory-bound ops (a device-to-device copy on CUDA)."""
    dst = torch.empty_like(x)
    m = measure(lambda: dst.copy_(x), min_run_time, x.device)
    return 2 * x.numel() * x.element_size() / m.median


# ---------------------------------------------------------------------------- memory

def _resident_high_water_bytes() -> int:
    """This process's resident-set high-water mark (VmHWM), in bytes.

    Not ru_maxrss where /proc is there: Linux carries that over from the parent through fork
    and exec, so a child started by a process that once held a lot would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager; ``extra_mib`` afterwards: the block's peak memory growth, in MiB.

    CPU: growth of the process's resident-set high-water mark, which never comes down, so run
    the block in a fresh process. CUDA: ``torch.cuda.max_memory_allocated`` during the block
    minus the memory allocated at its start.
    """

    NOTE = {"cpu": "growth of the process's maximum resident set",
            "cuda": "torch.cuda.max_memory_allocated minus the memory allocated at the case's start"}

    def __init__(self, device: torch.device):
        self.device = device
        self.extra_mib = float("nan")

    def _peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return _resident_high_water_bytes()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)  # also starts CUDA, which the allocator's statistics need
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._peak()
        return self

    def __exit__(self, *exc) -> None:
        self.extra_mib = (self._peak() - self._base) / _MiB


# ---------------------------------------------------------------------------- machine and report

def machine_info(device: torch.device) -> dict:
    """CPU model, cores and threads, the GPU when ``device`` is CUDA, versions, commit, date."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    info = {"device": device.type, "cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "commit": commit,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu_kernels": advrobust.has_cpu_kernels(), "cuda_kernels": advrobust.has_cuda_kernels()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_mem_gib=props.total_memory / 2 ** 30, cuda=torch.version.cuda)
    return info


def device_label(info: dict) -> str:
    """``"CPU"`` or ``"CUDA, <GPU name>"``, for report titles."""
    return f"CUDA, {info['gpu']}" if info["device"] == "cuda" else "CPU"


def header_lines(info: dict, command: str) -> list:
    """The Markdown bullets every report starts with: machine, versions, kernels, command."""
    gpu = (f"; GPU: {info['gpu']}, {info['gpu_mem_gib']:.0f} GiB, CUDA {info['cuda']}"
           if info["device"] == "cuda" else "")
    return [
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads{gpu}",
        f"- torch {info['torch']}, Python {info['python']}, advrobust commit {info['commit']}, {info['date']}",
        f"- device: {info['device']}; advrobust kernels built: CPU {info['cpu_kernels']}, "
        f"CUDA {info['cuda_kernels']}",
        f"- command: `{command}`",
    ]


def default_out(results: str, quick: bool) -> str:
    """Where a report goes without ``--out``.

    Run from inside the source checkout that holds this package: bench/``results``, or, for
    ``--quick`` runs, bench/out/``results`` (git-ignored), so a smoke run never replaces the
    recorded results. Elsewhere: ./advrobust_``results``.
    """
    checkout = Path(advrobust.__file__).resolve().parent.parent
    in_checkout = (checkout / "bench").is_dir() and (checkout / "setup.py").is_file() \
        and Path.cwd().resolve().is_relative_to(checkout)
    if not in_checkout:
        return f"advrobust_{results}"
    return str(checkout / "bench" / "out" / results if quick else checkout / "bench" / results)


def write_report(path: str, lines: list) -> None:
    """Write ``lines`` to ``path`` (its folder created if need be)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")
