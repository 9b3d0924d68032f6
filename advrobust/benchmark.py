"""`advrobust bench`: each fused op against its eager pure-PyTorch twin and torch.compile of it.

    advrobust bench                 # everything (about 10 minutes on 2 cores), writes a Markdown report
    advrobust bench --quick         # small sizes, a smoke test
    advrobust bench --no-compile    # skip the torch.compile column
    python bench/bench_ops.py       # the same, from the repository: writes bench/RESULTS.md

Every figure is the median of torch.utils.benchmark's blocked_autorange measurements
(spread: interquartile range), with all the machine's threads. Memory-bound ops are
also reported as achieved bandwidth (the op's minimal traffic: each input read once,
the output written once) and as a fraction of the bandwidth of a plain tensor copy of
the same size, measured in the same run. MMD cases run each in a child process so that
their peak resident memory can be read (ru_maxrss, minus the child's baseline).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch
import torch.utils.benchmark as tb

import advrobust
from advrobust import ops
from advrobust.ops import reference as ref

OPS = torch.ops.advrobust


def measure(fn, min_run_time: float, min_repeats: int = 5) -> tb.Measurement:
    """blocked_autorange of ``fn`` after a warm-up; calls of a second or more (one block fills
    ``min_run_time``) are topped up with single-call repeats, so no median rests on one sample."""
    fn()  # warm-up (and compilation, for compiled callables)
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    if len(m.times) < min_repeats:  # single calls timed by hand (Timer.timeit adds warm-up calls)
        extra = []
        for _ in range(min_repeats - len(m.times)):
            start = time.perf_counter()
            fn()
            extra.append(time.perf_counter() - start)
        m = tb.Measurement.merge([m, tb.Measurement(1, extra, m.task_spec)])[0]
    return m


def fmt_ms(m: tb.Measurement) -> str:
    return f"{m.median * 1e3:.3f} ± {m.iqr * 1e3:.3f}"


def compiled(fn, enabled: bool):
    return torch.compile(fn, dynamic=False) if enabled else None


# ---------------------------------------------------------------------------- steps

def bench_steps(shapes, use_compile: bool, min_run_time: float) -> list:
    rows = []
    for shape in shapes:
        g = torch.Generator().manual_seed(0)
        x_adv, grad, x_nat = (torch.randn(*shape, generator=g) for _ in range(3))
        B, C = shape[0], shape[1]
        alpha, eps = torch.full((B,), 0.01), torch.full((B,), 0.03)
        lo, hi = torch.full((C,), -3.0), torch.full((C,), 3.0)
        args = (x_adv, grad, x_nat, alpha, eps, lo, hi)
        nbytes = x_adv.numel() * x_adv.element_size()
        dst = torch.empty_like(x_adv)
        copy = measure(lambda: dst.copy_(x_adv), min_run_time)
        copy_bw = 2 * nbytes / copy.median
        for name, op, twin in (("linf_step", OPS.linf_step, ref.linf_step_reference),
                               ("l2_step", OPS.l2_step, ref.l2_step_reference)):
            kernel = measure(lambda: op(*args), min_run_time)
            eager = measure(lambda: twin(*args), min_run_time)
            comp_fn = compiled(twin, use_compile)
            comp = measure(lambda: comp_fn(*args), min_run_time) if comp_fn else None
            bw = 4 * nbytes / kernel.median
            rows.append({
                "op": name, "shape": "x".join(map(str, shape)), "kernel": kernel, "eager": eager, "compiled": comp,
                "kernel_gbs": bw / 1e9, "copy_gbs": copy_bw / 1e9, "frac_copy": bw / copy_bw,
                "compiled_frac_copy": (4 * nbytes / comp.median) / copy_bw if comp else None,
            })
            print(f"{name} {shape}: kernel {fmt_ms(kernel)} ms, eager {fmt_ms(eager)} ms"
                  + (f", compiled {fmt_ms(comp)} ms" if comp else "")
                  + f"; {bw / 1e9:.1f} GB/s = {bw / copy_bw:.0%} of copy ({copy_bw / 1e9:.1f} GB/s)", flush=True)
    return rows


# ---------------------------------------------------------------------------- DE

def bench_de_build(B, P, k, chw, use_compile: bool, min_run_time: float) -> dict:
    g = torch.Generator().manual_seed(0)
    C, H, W = chw
    images = torch.randn(B, C, H, W, generator=g)
    cand = torch.cat([torch.rand(B, P, k, 1, generator=g) * H, torch.rand(B, P, k, 1, generator=g) * W,
                      torch.randn(B, P, k, C, generator=g)], dim=-1)
    kernel = measure(lambda: OPS.de_build(images, cand, False), min_run_time)
    eager = measure(lambda: ref.de_build_reference(images, cand, False), min_run_time)
    comp_fn = compiled(ref.de_build_reference, use_compile)
    comp = measure(lambda: comp_fn(images, cand, False), min_run_time) if comp_fn else None
    print(f"de_build B={B} P={P} k={k} {chw}: kernel {fmt_ms(kernel)} ms, eager {fmt_ms(eager)} ms"
          + (f", compiled {fmt_ms(comp)} ms" if comp else ""), flush=True)
    # No bandwidth figure: the op writes B*P images from B cached ones; a copy is no fair yardstick.
    return {"op": "de_build", "shape": f"B={B} P={P} k={k} {C}x{H}x{W}", "kernel": kernel, "eager": eager,
            "compiled": comp, "kernel_gbs": None, "copy_gbs": None, "frac_copy": None, "compiled_frac_copy": None}


def bench_de_trial(B, P, D, min_run_time: float) -> dict:
    g = torch.Generator().manual_seed(0)
    pop = torch.rand(B, P, D, generator=g) * 100
    draws = ops.de_draws(B, P, D, generator=g)
    lower, upper = torch.zeros(D), torch.full((D,), 100.0)
    args = (pop, draws.donors, draws.cross_u, draws.cross_j, draws.resample_u, lower, upper, 0.5, 1.0, True)
    kernel = measure(lambda: OPS.de_trial(*args), min_run_time)
    eager = measure(lambda: ref.de_trial_reference(*args), min_run_time)
    print(f"de_trial B={B} P={P} D={D}: kernel {fmt_ms(kernel)} ms, eager {fmt_ms(eager)} ms", flush=True)
    return {"op": "de_trial", "shape": f"B={B} P={P} D={D}", "kernel": kernel, "eager": eager, "compiled": None,
            "kernel_gbs": None, "copy_gbs": None, "frac_copy": None, "compiled_frac_copy": None}


# ---------------------------------------------------------------------------- MMD (child processes)

def peak_rss_kib() -> int:
    """This process's resident-set high-water mark (VmHWM), in KiB.

    Not ru_maxrss: Linux carries that over from the parent through fork and exec, so a child
    started by a process that once held a lot would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def mmd_case(impl: str, n: int, d: int, K: int, repeats: int) -> dict:
    """One MMD forward+backward configuration, timed in this (child) process."""
    base_rss = peak_rss_kib()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, d, generator=g)
    y0 = torch.randn(n, d, generator=g) + 0.1
    sigmas = ops.dan_sigmas(x0, y0, kernel_num=K) if K == 5 else \
        [s * ops.dan_sigmas(x0, y0, kernel_num=1)[0] for s in ops.sigmas_from_variances()[:K]]
    fn = {"kernel": lambda a, b: ops.mk_mmd(a, b, sigmas, unbiased=True),
          "eager": lambda a, b: ref.mk_mmd_reference(a, b, sigmas, True)}.get(impl)
    if impl == "compiled":
        fn = torch.compile(lambda a, b: ref.mk_mmd_reference(a, b, sigmas, True), dynamic=False)

    def step():
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        loss = fn(x, y)
        loss.backward()
        return loss

    step()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    peak = peak_rss_kib()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "repeats": repeats,
            "peak_extra_mib": (peak - base_rss) / 1024.0}


def run_mmd_case_in_child(impl, n, d, K, repeats, timeout=900) -> dict:
    cmd = [sys.executable, "-m", "advrobust.benchmark", "--mmd-case", impl, str(n), str(d), str(K), str(repeats)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {timeout} s"}
    except subprocess.CalledProcessError as e:
        res = {"error": (e.stderr or "").strip().splitlines()[-1][:200] if e.stderr else f"exit {e.returncode}"}
    print(f"mk_mmd fwd+bwd {impl} n=m={n} d={d} K={K}: {res}", flush=True)
    return {"impl": impl, "n": n, "d": d, "K": K, **res}


def bench_mmd(configs, use_compile: bool, repeats: int) -> list:
    rows = []
    for n, K, impls in configs:
        for impl in impls:
            if impl == "compiled" and not use_compile:
                continue
            rows.append(run_mmd_case_in_child(impl, n, 256, K, repeats))
    return rows


# ---------------------------------------------------------------------------- report

def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "commit": commit,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cuda_kernels": advrobust.has_cuda_kernels()}


def ratio(a: tb.Measurement, b) -> str:
    return f"{b.median / a.median:.2f}x" if b is not None else "—"


def write_report(path, info, command, op_rows, mmd_rows) -> None:
    lines = [
        "# advrobust kernel benchmarks (CPU)", "",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads",
        f"- torch {info['torch']}, Python {info['python']}, advrobust commit {info['commit']}, {info['date']}",
        f"- command: `{command}`",
        "- times: median ± IQR of torch.utils.benchmark blocked_autorange, in ms; speed-up = twin time / kernel time",
        "- bandwidth: minimal traffic (inputs read once, output written once) / time; "
        "copy = `dst.copy_(src)` of one tensor of the same size, same run", "",
        "## Element-wise steps and DE", "",
        "| op | shape | kernel (ms) | eager twin (ms) | compiled twin (ms) | vs eager | vs compiled "
        "| kernel GB/s | % of copy | compiled % of copy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in op_rows:
        comp = r["compiled"]
        lines.append(
            f"| {r['op']} | {r['shape']} | {fmt_ms(r['kernel'])} | {fmt_ms(r['eager'])} | "
            f"{fmt_ms(comp) if comp else '—'} | {ratio(r['kernel'], r['eager'])} | {ratio(r['kernel'], comp)} | "
            f"{r['kernel_gbs']:.1f} | {r['frac_copy']:.0%} | "
            f"{(format(r['compiled_frac_copy'], '.0%') if r['compiled_frac_copy'] else '—')} |"
            if r["kernel_gbs"] is not None else
            f"| {r['op']} | {r['shape']} | {fmt_ms(r['kernel'])} | {fmt_ms(r['eager'])} | "
            f"{fmt_ms(comp) if comp else '—'} | {ratio(r['kernel'], r['eager'])} | {ratio(r['kernel'], comp)} "
            "| — | — | — |")
    if op_rows and op_rows[0].get("copy_gbs"):
        lines += ["", f"Copy bandwidth at the first step shape: {op_rows[0]['copy_gbs']:.1f} GB/s "
                      "(read + write, counted once each)."]
    lines += ["", "## Multi-kernel MMD, forward + backward, d = 256, unbiased", "",
              "Each row ran in its own process; peak = growth of the process's maximum resident set.", "",
              "| n = m | K | impl | median (s) | min–max (s) | repeats | peak extra memory (MiB) | speed-up vs eager |",
              "|---|---|---|---|---|---|---|---|"]
    by_key = {(r["n"], r["K"], r["impl"]): r for r in mmd_rows}
    for r in mmd_rows:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['K']} | {r['impl']} | not run: {r['error']} | | | | |")
            continue
        e = by_key.get((r["n"], r["K"], "eager"))
        sp = f"{e['median_s'] / r['median_s']:.2f}x" if e and "median_s" in e else "—"
        lines.append(f"| {r['n']} | {r['K']} | {r['impl']} | {r['median_s']:.4f} | {r['min_s']:.4f}–{r['max_s']:.4f} "
                     f"| {r['repeats']} | {r['peak_extra_mib']:.0f} | {sp} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main(argv=None, prog="advrobust bench") -> None:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the twins")
    p.add_argument("--skip-mmd", action="store_true")
    p.add_argument("--out", default="advrobust_bench.md", help="Markdown report to write")
    p.add_argument("--mmd-case", nargs=5, metavar=("IMPL", "N", "D", "K", "REPEATS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mmd_case:
        impl, n, d, K, reps = args.mmd_case
        print(json.dumps(mmd_case(impl, int(n), int(d), int(K), int(reps))))
        return
    if not advrobust.has_cpu_kernels():
        sys.exit("advrobust._C is not built: pip install --no-build-isolation -e .")
    use_compile = not args.no_compile
    mrt = 0.2 if args.quick else 1.0
    step_shapes = [(8, 3, 16, 16)] if args.quick else [(64, 5, 64, 64), (256, 3, 100, 100)]
    op_rows = bench_steps(step_shapes, use_compile, mrt)
    de_cfg = (4, 50, 1, (3, 20, 20)) if args.quick else (64, 400, 1, (3, 100, 100))
    op_rows.append(bench_de_build(*de_cfg, use_compile=use_compile and not args.quick, min_run_time=mrt))
    if not args.quick:  # one chunk of OnePixel on a CPU: 16 MiB of 3x100x100 images = 139 candidates
        op_rows.append(bench_de_build(1, 139, 1, (3, 100, 100), use_compile=False, min_run_time=mrt))
    op_rows.append(bench_de_trial(*(4, 50, 5) if args.quick else (64, 400, 5), min_run_time=mrt))
    mmd_rows = []
    if not args.skip_mmd:
        if args.quick:
            cfgs = [(128, 5, ("kernel", "eager"))]
        else:
            cfgs = [(512, 5, ("kernel", "eager", "compiled")), (512, 19, ("kernel", "eager")),
                    (2048, 5, ("kernel", "eager", "compiled")), (2048, 19, ("kernel", "eager")),
                    (8192, 5, ("kernel", "eager")), (8192, 19, ("kernel",))]
        mmd_rows = bench_mmd(cfgs, use_compile, repeats=3)
    command = "advrobust bench " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(args.out, machine_info(), command.strip(), op_rows, mmd_rows)


if __name__ == "__main__":
    main()
