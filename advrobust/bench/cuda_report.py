"""The GPU check's report: bench/RESULTS_cuda.md from saved pytest-benchmark JSON files (a CPU run's
JSON gives the same tables under a CPU title).

    python -m advrobust.bench.cuda_report preflight        # exit 2, saying why, without a usable GPU
    python -m advrobust.bench.cuda_report report --json bench/out/gpu_check/ops.json [more.json ...] \\
        [--tests bench/out/gpu_check/tests.txt] [--driver 550.54] --out bench/RESULTS_cuda.md

scripts/gpu_check.sh runs both. The report reads the benchmark groups the suites in bench/ write
(each member's ``extra_info["impl"]``) and writes, per family: the times (median, ms), the speed-up
of advrobust's kernel over its eager and ``torch.compile``'d twins, the element-wise ops' bandwidth
as a share of a plain device copy of the same tensor (both from their ``traffic_bytes``), the gradient
attacks against torchattacks and the model-bound loop, OnePixel, certification, and the scan's
throughput against its model-bound time. Nothing here needs a GPU except ``preflight``'s answer.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import torch


# ---------------------------------------------------------------------------- preflight

def gpu_problems() -> list:
    """Why this process cannot run the GPU check (empty when it can): no CUDA torch, no visible GPU."""
    if torch.version.cuda is None:
        return [f"torch {torch.__version__} is built without CUDA: install a CUDA build of torch"]
    if not torch.cuda.is_available():
        return [f"no CUDA GPU is visible to torch {torch.__version__} (CUDA {torch.version.cuda}): "
                "torch.cuda.is_available() is False (check nvidia-smi and CUDA_VISIBLE_DEVICES)"]
    return []


def missing_tools() -> list:
    """What the GPU check needs besides the GPU and is not installed (pytest-benchmark)."""
    import importlib.util
    if importlib.util.find_spec("pytest_benchmark") is None:
        return ["pytest-benchmark is not installed: pip install --no-build-isolation -e '.[bench]'"]
    return []


def driver_version() -> str:
    """The NVIDIA driver version nvidia-smi reports, or ``"unknown"``."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


# ---------------------------------------------------------------------------- reading

def load_runs(paths) -> tuple:
    """``(info, groups)`` of pytest-benchmark JSON files: the first file's ``advrobust`` record and
    ``{group: {impl: median seconds, ..., "_extra": {impl: extra_info}}}`` over all files."""
    info, groups = None, defaultdict(dict)
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:  # e.g. a run killed before pytest-benchmark wrote it
            raise ValueError(f"{path}: not JSON ({err}); was its run stopped early?") from None
        if "benchmarks" not in data:
            raise ValueError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks')")
        info = info or data.get("advrobust") or data.get("machine_info", {}).get("advrobust") or {}
        for b in data["benchmarks"]:
            impl = b.get("extra_info", {}).get("impl")
            if impl is None or b.get("group") is None:
                continue  # not one of bench/'s suites
            groups[b["group"]][impl] = b["stats"]["median"]
            groups[b["group"]].setdefault("_extra", {})[impl] = b["extra_info"]
    return info, dict(groups)


def ms(seconds) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.3f}"


def speedup(slow, fast) -> str:
    return "—" if slow is None or fast is None else f"{slow / fast:.2f}x"


def copy_share(group: dict, impl: str):
    """The bandwidth of ``impl`` over that of the group's ``copy``, from their traffic_bytes; None if absent."""
    extra = group["_extra"]
    if impl not in group or "copy" not in group or "traffic_bytes" not in extra.get(impl, {}):
        return None
    op_bw = extra[impl]["traffic_bytes"] / group[impl]
    return op_bw / (extra["copy"]["traffic_bytes"] / group["copy"])


# ---------------------------------------------------------------------------- sections

def ops_lines(groups: dict) -> list:
    """The ops whose group has a ``kernel`` member: times, speed-ups, bandwidth share of a copy."""
    rows = [(name, g) for name, g in groups.items() if "kernel" in g]
    if not rows:
        return []
    lines = ["## Ops: advrobust kernel vs its eager and torch.compile'd twins", "",
             "| op and case | kernel (ms) | direct call (ms) | eager (ms) | compiled (ms) | vs eager | vs compiled "
             "| kernel GB/s | kernel % of copy | compiled % of copy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in rows:
        share, comp_share = copy_share(g, "kernel"), copy_share(g, "compiled")
        traffic = g["_extra"]["kernel"].get("traffic_bytes")
        gbs = f"{traffic / g['kernel'] / 1e9:.1f}" if traffic else "—"
        lines.append(f"| {name} | {ms(g['kernel'])} | {ms(g.get('direct call'))} | {ms(g.get('eager'))} | "
                     f"{ms(g.get('compiled'))} | {speedup(g.get('eager'), g['kernel'])} | "
                     f"{speedup(g.get('compiled'), g['kernel'])} | {gbs} | "
                     f"{'—' if share is None else format(share, '.0%')} | "
                     f"{'—' if comp_share is None else format(comp_share, '.0%')} |")
    return lines + ["", "% of copy: the op's minimal traffic (inputs read once, output written once) per second "
                        "over that of `dst.copy_(src)` of one image tensor on the same device, same run.", ""]


def peers_lines(groups: dict, title: str, ours: tuple, peers: tuple) -> list:
    """One row per group that has a member of ``ours``: each member's time and ours' speed-ups over ``peers``."""
    rows = [(name, g) for name, g in groups.items() if any(o in g for o in ours)]
    if not rows:
        return []
    lines = [f"## {title}", "", "| case | member | median (ms) | objects/s | " + " | ".join(f"vs {p}" for p in peers)
             + " |", "|---|---|---|---|" + "---|" * len(peers)]
    for name, g in rows:
        for impl, t in g.items():
            if impl == "_extra":
                continue
            objects = g["_extra"][impl].get("objects")
            rate = f"{objects / t:.1f}" if objects else "—"
            cells = [speedup(g.get(p), t) if impl in ours else "" for p in peers]
            lines.append(f"| {name} | {impl} | {ms(t)} | {rate} | " + " | ".join(cells) + " |")
    return lines + [""]


def scan_lines(groups: dict) -> list:
    """The scan's time against its model-bound time ``2 T(forward) + passes T(forward+backward)``."""
    rows = [(name, g) for name, g in groups.items() if "scan" in g and "forward" in g and "forward+backward" in g]
    if not rows:
        return []
    lines = ["## Scan throughput vs the model-bound limit", "",
             "| case | scan (ms) | objects/s | model-bound (ms) | share of the scan's time in the model |",
             "|---|---|---|---|---|"]
    for name, g in rows:
        passes = g["_extra"]["scan"]["scan_model_passes"]
        bound = passes["forward"] * g["forward"] + passes["forward+backward"] * g["forward+backward"]
        objects = g["_extra"]["scan"]["objects"]
        lines.append(f"| {name} | {ms(g['scan'])} | {objects / g['scan']:.1f} | {ms(bound)} | "
                     f"{bound / g['scan']:.0%} |")
    return lines + ["", "Model-bound: the scan's model passes (2 forwards, the attack's forward+backward passes) timed "
                        "alone on the same objects in the same batches.", ""]


def header_lines(info: dict, driver: str, sources) -> list:
    """Title and bullets: the GPU (a CUDA run) or the CPU, versions, commit, command, files."""
    if info.get("device") == "cuda":
        gpu = info.get("gpu", "unknown GPU")
        lines = [f"# advrobust on {gpu}: the GPU check", "",
                 f"- GPU: {gpu}, {info.get('gpu_mem_gib', float('nan')):.0f} GiB; driver {driver}; "
                 f"CUDA {info.get('cuda', 'unknown')}"]
    else:
        lines = [f"# advrobust benchmarks on the CPU ({info.get('cpu', 'unknown CPU')})", ""]
    return lines + [
        f"- torch {info.get('torch', 'unknown')}, Python {info.get('python', 'unknown')}, advrobust commit "
        f"{info.get('commit', 'unknown')}, {info.get('date', 'unknown date')}",
        f"- host CPU: {info.get('cpu', 'unknown')}, {info.get('cores', '?')} cores, "
        f"{info.get('threads', '?')} torch threads; device {info.get('device', 'unknown')}",
        f"- benchmarks: `{info.get('command', 'unknown')}` (tier {info.get('tier', '?')}); JSON: "
        + ", ".join(f"`{p}`" for p in sources),
        "- times: medians of pytest-benchmark rounds (CUDA synchronised after each call)", ""]


def report(paths, driver: str, tests_text: str | None = None) -> list:
    """The Markdown lines of the report on the saved runs ``paths``."""
    info, groups = load_runs(paths)
    lines = header_lines(info, driver, paths)
    if tests_text is not None:
        lines += ["## Tests", "", "```", tests_text.strip(), "```", ""]
    lines += ops_lines(groups)
    lines += peers_lines(groups, "Gradient attacks vs torchattacks", ("advrobust",),
                         ("torchattacks", "model fwd+bwd loop"))
    lines += peers_lines(groups, "OnePixel: full forwards, incremental scoring, torchattacks",
                         ("advrobust full", "advrobust incremental"), ("torchattacks",))
    lines += peers_lines(groups, "Certification with fixed n", ("certify_batch",), ("per-image loop",))
    lines += scan_lines(groups)
    return lines


# ---------------------------------------------------------------------------- command line

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m advrobust.bench.cuda_report",
                                     description="The GPU check's preflight and report (scripts/gpu_check.sh).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("preflight", help="exit 2, saying why, when no CUDA GPU is usable or pytest-benchmark is missing")
    rep = sub.add_parser("report", help="write the Markdown report from saved pytest-benchmark JSON files")
    rep.add_argument("--json", nargs="+", required=True, help="pytest-benchmark JSON files (--benchmark-json)")
    rep.add_argument("--out", required=True, help="Markdown file to write, e.g. bench/RESULTS_cuda.md")
    rep.add_argument("--tests", help="a text file with the test runs' summaries, quoted in the report")
    rep.add_argument("--driver", help="NVIDIA driver version (default: asked of nvidia-smi)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "preflight":
        problems = gpu_problems() + missing_tools()
        for p in problems:
            print(f"gpu_check: refused: {p}", file=sys.stderr)
        return 2 if problems else 0
    missing = [p for p in args.json if not Path(p).is_file()]
    if missing:
        print(f"cuda_report: no such benchmark JSON: {', '.join(missing)}", file=sys.stderr)
        return 2
    tests = Path(args.tests).read_text() if args.tests and Path(args.tests).is_file() else None
    readable = []
    for path in args.json:
        try:
            load_runs([path])
            readable.append(path)
        except ValueError as err:
            print(f"cuda_report: left out: {err}", file=sys.stderr)
    if not readable:
        print("cuda_report: no readable benchmark JSON, no report", file=sys.stderr)
        return 2
    lines = report(readable, args.driver or driver_version(), tests)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
