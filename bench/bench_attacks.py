"""advrobust.attacks vs torchattacks, same model, inputs and settings, in one run.

Model: 002's ConvNet (``advrobust.models.create("convnet")``, 3x100x100 -> 3 classes), trained
for a few dozen steps on synthetic 3-class blob images in [0, 1] (round / elongated / two blobs;
torchattacks requires [0, 1] inputs and always clamps to it, so our attacks get lo=0, hi=1 too).
Attacks run on test images the model classifies correctly.

* FGSM, PGD-Linf (10 steps, alpha = eps/10, no random start) and PGD-L2 (10 steps) on
  ``--n-grad`` images: median wall time over ``--repeats`` runs (torch.utils.benchmark.Timer),
  success rate, and the share of time outside the model's forward/backward
  (``1 - T(fwd+bwd loop) / T(attack)``, the loop doing the same forwards and input-gradients).
* OnePixel (k=1, P=400) for each of ``--onepixel-iters`` on ``--n-onepixel`` images: wall time,
  success rate, images evaluated by the model, and the share of time outside the model's
  forward (measured by a timing wrapper around the model, for both libraries).

Usage:
    pip install --no-deps torchattacks      # benchmark-only extra
    python bench/bench_attacks.py --out bench/RESULTS_attacks.md
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import advrobust.attacks as A  # noqa: E402
from advrobust.models import create  # noqa: E402


# --------------------------------------------------------------------------- data and model
def synthetic_morphology(n: int, seed: int):
    """n images 3x100x100 in [0, 1]: class 0 round blob, 1 elongated blob, 2 two blobs; labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(100.0), torch.arange(100.0), indexing="ij")

    def blob(cx, cy, sx, sy, theta, amp):
        dx, dy = xx - cx.view(-1, 1, 1), yy - cy.view(-1, 1, 1)
        c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
        u, v = c * dx + s * dy, -s * dx + c * dy
        return amp.view(-1, 1, 1) * torch.exp(-0.5 * ((u / sx.view(-1, 1, 1)) ** 2 + (v / sy.view(-1, 1, 1)) ** 2))

    r = lambda a, b: a + (b - a) * torch.rand(n, generator=g)  # noqa: E731
    cx, cy, th, amp = r(40, 60), r(40, 60), r(0, math.pi), r(0.5, 0.9)
    round_ = blob(cx, cy, r(6, 10), r(6, 10), th, amp)
    long_ = blob(cx, cy, r(12, 16), r(3, 5), th, amp)
    sep = r(10, 16)
    two = blob(cx - sep * torch.cos(th), cy - sep * torch.sin(th), r(4, 7), r(4, 7), th, amp) + \
        blob(cx + sep * torch.cos(th), cy + sep * torch.sin(th), r(4, 7), r(4, 7), th, 0.8 * amp)
    img = torch.where((y == 0).view(-1, 1, 1), round_, torch.where((y == 1).view(-1, 1, 1), long_, two))
    colour = torch.tensor([0.7, 1.0, 0.85]).view(1, 3, 1, 1) * (1 + 0.2 * torch.randn(n, 3, 1, 1, generator=g))
    x = 0.1 + img.unsqueeze(1) * colour + 0.03 * torch.randn(n, 3, 100, 100, generator=g)
    return x.clamp(0, 1), y


def trained_convnet(steps: int, seed: int = 0):
    torch.manual_seed(seed)
    model = create("convnet")
    x, y = synthetic_morphology(steps * 32, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for i in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x[i * 32:(i + 1) * 32]), y[i * 32:(i + 1) * 32]).backward()
        opt.step()
    model.eval()
    xt, yt = synthetic_morphology(512, seed=2)
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 128]).argmax(1) for i in range(0, 512, 128)])
    return model, xt, yt, pred


class TimedModel(nn.Module):
    """Wraps a model; accumulates the wall time and number of images of its forward calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.reset()

    def reset(self):
        self.seconds, self.images = 0.0, 0

    def forward(self, x):
        t = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - t
        self.images += x.shape[0]
        return out


# ------------------------------------------------------------------------------------ timing
def timed(fn, repeats: int):
    """Median and spread of wall time over `repeats` runs (after one warm-up), and the last result."""
    out = {}

    def run():
        out["r"] = fn()

    t = Timer("run()", globals={"run": run}, num_threads=torch.get_num_threads())
    times = [t.timeit(1).median for _ in range(repeats)]
    return statistics.median(times), min(times), max(times), out["r"]


def fb_loop(model, x, y, steps):
    """The model work of a gradient attack without the attack: `steps` forwards + input gradients."""
    xa = x.clone()
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
    return g


def fb_loop_channels_last(model, x, y, steps):
    """As fb_loop, with the input leaf already in channels_last (the model work of our attacks on CPU)."""
    xa = x.contiguous(memory_format=torch.channels_last)
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
    return g


def fooled(model, x_adv, y):
    with torch.no_grad():
        return float((model(x_adv).argmax(1) != y).float().mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-grad", type=int, default=64)
    ap.add_argument("--n-onepixel", type=int, default=16)
    ap.add_argument("--onepixel-iters", type=int, nargs="+", default=[10, 80])
    ap.add_argument("--n-onepixel-long", type=int, default=None,
                    help="images for runs of more than 10 iterations (default: --n-onepixel)")
    ap.add_argument("--onepixel-repeats", type=int, default=1)
    ap.add_argument("--population", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--eps", type=float, default=0.03)
    ap.add_argument("--out", default=None, help="write the Markdown results here")
    ap.add_argument("--parts", nargs="+", default=["grad", "onepixel"], choices=["grad", "onepixel"])
    args = ap.parse_args(argv)

    import torchattacks

    lines = []

    def emit(s=""):
        print(s, flush=True)
        lines.append(s)

    t0 = time.perf_counter()
    model, xt, yt, pred = trained_convnet(args.train_steps)
    ok = (pred == yt).nonzero().squeeze(1)
    acc = float((pred == yt).float().mean())
    emit(f"ConvNet trained {args.train_steps} steps x 32 synthetic images in {time.perf_counter() - t0:.0f} s; "
         f"test accuracy {acc:.3f} on 512 images")

    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                   .stdout.splitlines() if l.startswith("Model name"))
    except Exception:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(__file__)).stdout.strip()
    import advrobust
    emit(f"machine: {cpu}, {os.cpu_count()} logical CPUs ({platform.machine()}); torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads; torchattacks {torchattacks.__version__}; advrobust compiled kernels: "
         f"{advrobust.has_cpu_kernels()}; commit {commit}; {datetime.datetime.now():%Y-%m-%d %H:%M}")
    emit(f"command: python bench/bench_attacks.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    emit()

    # -------------------------------------------------------------------- gradient attacks
    if "grad" in args.parts:
        grad_section(args, model, xt, yt, ok, emit)
    if "onepixel" in args.parts:
        onepixel_section(args, model, xt, yt, ok, emit)
    emit(f"total bench time {time.perf_counter() - t0:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


def grad_section(args, model, xt, yt, ok, emit):
    import torchattacks
    x, y = xt[ok[:args.n_grad]].contiguous(), yt[ok[:args.n_grad]].contiguous()
    eps = args.eps
    eps2 = A.eps_l2_equal_volume(eps, 100 * 100)
    emit(f"## Gradient attacks: {x.shape[0]} images 3x100x100, Linf eps={eps}, alpha=eps/10, "
         f"L2 eps={eps2:.3f} (eps_l2_equal_volume(eps, 100*100)), alpha=eps/10, 10 steps, no random start, "
         f"clamp [0, 1]; median of {args.repeats} runs")
    emit()
    emit("| attack | library | median s | min-max s | success | time outside fwd/bwd | speed-up vs torchattacks |")
    emit("|---|---|---|---|---|---|---|")
    cases = [
        ("FGSM", 1, lambda: A.FGSM(model, eps=eps, lo=0.0, hi=1.0),
         lambda: torchattacks.FGSM(model, eps=eps)),
        ("PGD-Linf-10", 10, lambda: A.PGD(model, eps=eps, alpha=eps / 10, steps=10, lo=0.0, hi=1.0),
         lambda: torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=10, random_start=False)),
        ("PGD-L2-10", 10, lambda: A.PGDL2(model, eps=eps2, alpha=eps2 / 10, steps=10, lo=0.0, hi=1.0),
         lambda: torchattacks.PGDL2(model, eps=eps2, alpha=eps2 / 10, steps=10, random_start=False)),
    ]
    fb_loop(model, x[:8], y[:8], 1)  # warm-up
    for name, steps, ours, theirs in cases:
        variants = [("plain fwd+bwd loop", lambda: fb_loop(model, x, y, steps)),
                    ("same, channels_last input", lambda: fb_loop_channels_last(model, x, y, steps))]
        atk_ours, atk_theirs = ours(), theirs()
        variants.append(("advrobust", lambda: atk_ours(x, y)))
        if name == "PGD-Linf-10":
            atk_nocl = A.PGD(model, eps=eps, alpha=eps / 10, steps=10, lo=0.0, hi=1.0, channels_last=False)
            variants.append(("advrobust, channels_last=False", lambda: atk_nocl(x, y)))
        variants.append(("torchattacks", lambda: atk_theirs(x, y)))
        # interleaved repeats: load changes on a shared machine hit every variant alike
        times = {v: [] for v, _ in variants}
        outs = {}
        for _ in range(args.repeats):
            for v, fn in variants:
                med, _, _, outs[v] = timed(fn, 1)
                times[v].append(med)
        med = {v: statistics.median(t) for v, t in times.items()}
        base = {"advrobust": med["same, channels_last input"],
                "advrobust, channels_last=False": med["plain fwd+bwd loop"],
                "torchattacks": med["plain fwd+bwd loop"]}
        for v, _ in variants:
            t = times[v]
            row = f"| {name} | {v} | {med[v]:.3f} | {min(t):.3f}-{max(t):.3f} |"
            if v in base:
                sp = f"{med['torchattacks'] / med[v]:.2f}x" if v != "torchattacks" else ""
                row += f" {fooled(model, outs[v], y):.3f} | {1 - base[v] / med[v]:.1%} | {sp} |"
            else:
                row += " | | |"
            emit(row)
        diff = float((outs["advrobust"] - outs["torchattacks"]).abs().max())
        emit(f"| {name} | max abs diff of x_adv, ours vs torchattacks: {diff:.2e} | | | | | |")
    emit()
    emit("Time outside fwd/bwd = 1 - T(loop of the same forwards and input gradients) / T(attack); the loop "
         "uses the same input memory format as the attack (channels_last for advrobust on CPU, contiguous for "
         "torchattacks and channels_last=False). Negative = faster than the reference loop (timing noise).")
    emit()



def onepixel_section(args, model, xt, yt, ok, emit):
    import torchattacks
    xo, yo = xt[ok[:args.n_onepixel]].contiguous(), yt[ok[:args.n_onepixel]].contiguous()
    tm = TimedModel(model).eval()
    emit(f"## OnePixel: k=1, P={args.population}, values in [0, 1]; "
         f"{args.onepixel_repeats} run(s) each (after no warm-up: each run is long)")
    emit()
    emit("| iterations | images | library | wall s | success | mean generations | images evaluated | "
         "time outside model forward | speed-up |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for iters in args.onepixel_iters:
        n = args.n_onepixel if iters <= 10 or args.n_onepixel_long is None else args.n_onepixel_long
        xo, yo = xt[ok[:n]].contiguous(), yt[ok[:n]].contiguous()
        res = {}
        for lib in ("advrobust", "torchattacks"):
            if lib == "advrobust":
                atk = A.OnePixel(tm, pixels=1, population=args.population, max_iter=iters, lo=0.0, hi=1.0, seed=0)
            else:
                atk = torchattacks.OnePixel(tm, pixels=1, steps=iters, popsize=args.population)
            times, fwd, imgs = [], [], []
            for r in range(args.onepixel_repeats):
                tm.reset()
                torch.manual_seed(r)
                np.random.seed(r)
                t = time.perf_counter()
                out = atk(xo, yo)
                times.append(time.perf_counter() - t)
                fwd.append(tm.seconds)
                imgs.append(tm.images)
            med = statistics.median(times)
            overhead = 1 - statistics.median(fwd) / med
            if lib == "advrobust":
                xa, gens = out.x_adv, f"{out.iterations.float().mean():.1f}"
                assert abs(fooled(model, xa, yo) - out.success_rate) < 1e-6
            else:
                xa, gens = out, "n/a"
            res[lib] = med
            sp = f"{res['torchattacks'] / res['advrobust']:.2f}x" if lib == "torchattacks" else ""
            emit(f"| {iters} | {n} | {lib} | {med:.1f} | {fooled(model, xa, yo):.3f} | {gens} | "
                 f"{statistics.median(imgs)} | {overhead:.1%} | {sp} |")
    emit()


if __name__ == "__main__":
    main()
