"""`advrobust bench ops`: each fused op against its eager pure-PyTorch twin and torch.compile of it.

    advrobust bench ops                 # everything (about 10 minutes on 2 CPU cores)
    advrobust bench ops --quick         # small sizes, a smoke test
    advrobust bench ops --no-compile    # skip the torch.compile column
    advrobust bench ops --device cuda   # on the GPU (the default there when the CUDA kernels are built)
    advrobust bench --quick             # `advrobust bench [options]` is `advrobust bench ops [options]`

Every figure is the median of torch.utils.benchmark's blocked_autorange measurements
(spread: interquartile range), with all the machine's threads. Memory-bound ops are
also reported as achieved bandwidth (the op's minimal traffic: each input read once,
the output written once) and as a fraction of the bandwidth of a plain tensor copy of
the same size on the same device (device-to-device on CUDA), measured in the same run.
MMD cases run each in a child process so that their peak memory can be read (CPU: the
resident-set high-water mark; CUDA: torch.cuda.max_memory_allocated).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as tb

import advrobust
from advrobust import ops
from advrobust.bench import cases, harness
from advrobust.ops import reference as ref

OPS = torch.ops.advrobust
HELP = "each fused op against its eager pure-PyTorch twin and torch.compile of it (bench/RESULTS.md)"


def fmt_ms(m: tb.Measurement) -> str:
    return f"{m.median * 1e3:.3f} ± {m.iqr * 1e3:.3f}"


def compiled(fn, enabled: bool):
    return torch.compile(fn, dynamic=False) if enabled else None


def op_row(op: str, shape: str, kernel, eager, comp=None, traffic=None, copy_bw=None) -> dict:
    """One table row, printed as it is made. kernel, eager, comp: Measurements (comp None: not run);
    traffic: the op's minimal bytes moved and copy_bw: bytes/s of a copy, for memory-bound ops."""
    bw = traffic / kernel.median if traffic else None
    row = {"op": op, "shape": shape, "kernel": kernel, "eager": eager, "compiled": comp,
           "kernel_gbs": bw / 1e9 if bw else None, "copy_gbs": copy_bw / 1e9 if bw else None,
           "frac_copy": bw / copy_bw if bw else None,
           "compiled_frac_copy": traffic / comp.median / copy_bw if bw and comp else None}
    print(f"{op} {shape}: kernel {fmt_ms(kernel)} ms, eager {fmt_ms(eager)} ms"
          + (f", compiled {fmt_ms(comp)} ms" if comp else "")
          + (f"; {bw / 1e9:.1f} GB/s = {bw / copy_bw:.0%} of copy ({copy_bw / 1e9:.1f} GB/s)" if bw else ""),
          flush=True)
    return row


# ---------------------------------------------------------------------------- steps

def bench_steps(shapes, device: torch.device, use_compile: bool, min_run_time: float) -> list:
    """linf_step and l2_step on (B, C, H, W) float32 ``shapes``, per-sample alpha/eps, per-channel bounds."""
    rows = []
    for shape in shapes:
        g = torch.Generator(device).manual_seed(0)
        x_adv, grad, x_nat = (torch.randn(*shape, generator=g, device=device) for _ in range(3))
        B, C = shape[0], shape[1]
        alpha, eps = torch.full((B,), 0.01, device=device), torch.full((B,), 0.03, device=device)
        lo, hi = torch.full((C,), -3.0, device=device), torch.full((C,), 3.0, device=device)
        args = (x_adv, grad, x_nat, alpha, eps, lo, hi)
        traffic = 4 * x_adv.numel() * x_adv.element_size()  # three inputs read, one output written
        copy_bw = harness.copy_bandwidth(x_adv, min_run_time)
        for name, op, twin in (("linf_step", OPS.linf_step, ref.linf_step_reference),
                               ("l2_step", OPS.l2_step, ref.l2_step_reference)):
            kernel = harness.measure(lambda: op(*args), min_run_time, device)
            eager = harness.measure(lambda: twin(*args), min_run_time, device)
            comp_fn = compiled(twin, use_compile)
            comp = harness.measure(lambda: comp_fn(*args), min_run_time, device) if comp_fn else None
            rows.append(op_row(name, "x".join(map(str, shape)), kernel, eager, comp, traffic, copy_bw))
    return rows


# ---------------------------------------------------------------------------- DE

def bench_de_build(B, P, k, chw, device: torch.device, use_compile: bool, min_run_time: float) -> dict:
    """de_build of B images (C, H, W) x P candidates of k pixels. No bandwidth figure: the op writes
    B*P images from B cached ones, a copy is no fair yardstick."""
    g = torch.Generator(device).manual_seed(0)
    C, H, W = chw
    images = torch.randn(B, C, H, W, generator=g, device=device)
    cand = torch.cat([torch.rand(B, P, k, 1, generator=g, device=device) * H,
                      torch.rand(B, P, k, 1, generator=g, device=device) * W,
                      torch.randn(B, P, k, C, generator=g, device=device)], dim=-1)
    kernel = harness.measure(lambda: OPS.de_build(images, cand, False), min_run_time, device)
    eager = harness.measure(lambda: ref.de_build_reference(images, cand, False), min_run_time, device)
    comp_fn = compiled(ref.de_build_reference, use_compile)
    comp = harness.measure(lambda: comp_fn(images, cand, False), min_run_time, device) if comp_fn else None
    return op_row("de_build", f"B={B} P={P} k={k} {C}x{H}x{W}", kernel, eager, comp)


def bench_de_trial(B, P, D, device: torch.device, min_run_time: float) -> dict:
    """de_trial of B populations of P candidates with D genes in [0, 100], resampling out-of-bounds genes."""
    g = torch.Generator(device).manual_seed(0)
    pop = torch.rand(B, P, D, generator=g, device=device) * 100
    draws = ops.de_draws(B, P, D, device=device, generator=g)
    lower, upper = torch.zeros(D, device=device), torch.full((D,), 100.0, device=device)
    args = (pop, draws.donors, draws.cross_u, draws.cross_j, draws.resample_u, lower, upper, 0.5, 1.0, True)
    kernel = harness.measure(lambda: OPS.de_trial(*args), min_run_time, device)
    eager = harness.measure(lambda: ref.de_trial_reference(*args), min_run_time, device)
    return op_row("de_trial", f"B={B} P={P} D={D}", kernel, eager)


# ---------------------------------------------------------------------------- MMD (child processes)

def mmd_case(impl: str, n: int, d: int, K: int, repeats: int, device: torch.device) -> dict:
    """One MMD forward+backward configuration (n = m points of d features, K kernels), timed in this
    (child) process: seconds per step and the peak extra memory in MiB."""
    with harness.PeakMemory(device) as mem:
        g = torch.Generator(device).manual_seed(0)
        x0 = torch.randn(n, d, generator=g, device=device)
        y0 = torch.randn(n, d, generator=g, device=device) + 0.1
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
        times = sorted(harness.timed_call(step, device)[0] for _ in range(repeats))
    return {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "repeats": repeats,
            "peak_extra_mib": mem.extra_mib}


def run_mmd_case_in_child(impl, n, d, K, repeats, device: torch.device, timeout=900) -> dict:
    cmd = [sys.executable, "-m", "advrobust.bench.ops", impl, str(n), str(d), str(K), str(repeats), device.type]
    # the child imports the advrobust this process runs, wherever it was found
    path = os.pathsep.join(filter(None, [str(Path(advrobust.__file__).resolve().parent.parent),
                                         os.environ.get("PYTHONPATH")]))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True,
                             env={**os.environ, "PYTHONPATH": path})
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {timeout} s"}
    except subprocess.CalledProcessError as e:
        res = {"error": (e.stderr or "").strip().splitlines()[-1][:200] if e.stderr else f"exit {e.returncode}"}
    print(f"mk_mmd fwd+bwd {impl} n=m={n} d={d} K={K}: {res}", flush=True)
    return {"impl": impl, "n": n, "d": d, "K": K, **res}


def bench_mmd(configs, device: torch.device, use_compile: bool, repeats: int) -> list:
    """configs: (n, K, impls) tuples; d = 256."""
    rows = []
    for n, K, impls in configs:
        for impl in impls:
            if impl == "compiled" and not use_compile:
                continue
            rows.append(run_mmd_case_in_child(impl, n, 256, K, repeats, device))
    return rows


# ---------------------------------------------------------------------------- report

def ratio(a: tb.Measurement, b) -> str:
    return f"{b.median / a.median:.2f}x" if b is not None else "—"


def report_lines(info: dict, command: str, op_rows: list, mmd_rows: list) -> list:
    def pct(v):
        return format(v, ".0%") if v else "—"

    lines = [
        f"# advrobust kernel benchmarks ({harness.device_label(info)})", "",
        *harness.header_lines(info, command),
        "- times: median ± IQR of torch.utils.benchmark blocked_autorange, in ms; speed-up = twin time / kernel time",
        "- bandwidth: minimal traffic (inputs read once, output written once) / time; "
        f"copy = `dst.copy_(src)` of one tensor of the same size on the same device ({info['device']}), same run", "",
        "## Element-wise steps and DE", "",
        "| op | shape | kernel (ms) | eager twin (ms) | compiled twin (ms) | vs eager | vs compiled "
        "| kernel GB/s | % of copy | compiled % of copy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in op_rows:
        comp = r["compiled"]
        gbs = f"{r['kernel_gbs']:.1f}" if r["kernel_gbs"] is not None else "—"
        lines.append(
            f"| {r['op']} | {r['shape']} | {fmt_ms(r['kernel'])} | {fmt_ms(r['eager'])} | "
            f"{fmt_ms(comp) if comp else '—'} | {ratio(r['kernel'], r['eager'])} | {ratio(r['kernel'], comp)} | "
            f"{gbs} | {pct(r['frac_copy'])} | {pct(r['compiled_frac_copy'])} |")
    if op_rows and op_rows[0].get("copy_gbs"):
        lines += ["", f"Copy bandwidth at the first step shape: {op_rows[0]['copy_gbs']:.1f} GB/s "
                      "(read + write, counted once each)."]
    if mmd_rows:
        lines += ["", "## Multi-kernel MMD, forward + backward, d = 256, unbiased", "",
                  f"Each row ran in its own process; peak = {harness.PeakMemory.NOTE[info['device']]}.", "",
                  "| n = m | K | impl | median (s) | min–max (s) | repeats | peak extra memory (MiB) "
                  "| speed-up vs eager |",
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
    return lines


# ---------------------------------------------------------------------------- command line

def add_arguments(parser) -> None:
    harness.add_common_arguments(parser, "RESULTS.md")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile of the twins")
    parser.add_argument("--skip-mmd", action="store_true", help="skip the MMD cases (child processes)")


def run(args, command: str) -> None:
    """Run the benchmark that ``args`` (from :func:`add_arguments`) describe and write its report."""
    device, quick, use_compile = args.device, args.quick, not args.no_compile
    mrt = 0.2 if quick else 1.0
    tier = "quick" if quick else "full"
    op_rows = bench_steps([c.shape for c in cases.select(cases.STEPS, tier)], device, use_compile, mrt)
    builds = cases.select(cases.DE_BUILDS, tier) + ([] if quick else [cases.onepixel_chunk_case(device.type)])
    for c in builds:
        op_rows.append(bench_de_build(c.B, c.P, c.k, c.chw, device=device, use_compile=use_compile and c.compile,
                                      min_run_time=mrt))
    for c in cases.select(cases.DE_TRIALS, tier):
        op_rows.append(bench_de_trial(c.B, c.P, c.D, device=device, min_run_time=mrt))
    mmd_rows = []
    if not args.skip_mmd:
        mmd_rows = bench_mmd([(c.n, c.K, c.impls) for c in cases.select(cases.MMDS, tier)], device, use_compile,
                             repeats=3)
    out = args.out or harness.default_out("RESULTS.md", quick)
    harness.write_report(out, report_lines(harness.machine_info(device), command, op_rows, mmd_rows))


if __name__ == "__main__":  # one MMD case, in the child process that run_mmd_case_in_child starts
    impl, n, d, K, repeats, device = sys.argv[1:]
    print(json.dumps(mmd_case(impl, int(n), int(d), int(K), int(repeats), torch.device(device))))
