"""`advrobust bench attacks`: advrobust.attacks vs torchattacks, same model, inputs and settings, in one run.

    pip install --no-deps torchattacks      # the peer library; --no-deps: its dependencies pull torchvision
    advrobust bench attacks                 # full run (several minutes on 2 CPU cores)
    advrobust bench attacks --quick         # small sizes, a smoke test
    advrobust bench attacks --parts onepixel --onepixel-iters 10 --device cuda

Model: the ConvNet of Ćiprijanović et al. 2022 (DeepAdversaries), ``advrobust.models.create("convnet")``,
3x100x100 -> 3 classes, trained for a few dozen steps on synthetic 3-class blob images in [0, 1] (round /
elongated / two blobs; torchattacks requires [0, 1] inputs and always clamps to it, so our
attacks get lo=0, hi=1 too). Attacks run on test images the model classifies correctly.

* FGSM, PGD-Linf (10 steps, alpha = eps/10, no random start) and PGD-L2 (10 steps) on
  ``--n-grad`` images: median wall time over ``--repeats`` interleaved runs
  (torch.utils.benchmark.Timer, CUDA synchronised), success rate, and the share of time
  outside the model's forward/backward (``1 - T(fwd+bwd loop) / T(attack)``, the loop doing
  the same forwards and input gradients in the attack's input memory format).
* OnePixel (k=1, P=400) for each of ``--onepixel-iters`` on ``--n-onepixel`` images: wall time,
  success rate, images evaluated by the model, and the share of time outside the model's
  forward (measured by a timing wrapper around the model, for both libraries).
"""
from __future__ import annotations

import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import advrobust.attacks as A
from advrobust.bench import cases, harness
from advrobust.models import create

HELP = "advrobust.attacks against torchattacks, end to end (bench/RESULTS_attacks.md)"

#: option -> (full run, --quick) value, for the options not given on the command line
SIZES = {"n_grad": (64, 8), "n_onepixel": (16, 2), "onepixel_iters": ([10, 80], [2]), "population": (400, 20),
         "repeats": (3, 1), "train_steps": (60, 4), "n_test": (512, 64)}


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


def trained_convnet(steps: int, n_test: int, device: torch.device, seed: int = 0):
    """ConvNet after ``steps`` Adam steps on batches of 32 synthetic images; ``n_test`` test images
    (n_test, 3, 100, 100), their labels and the model's predictions, all on ``device``."""
    torch.manual_seed(seed)
    model = create("convnet").to(device)
    x, y = (t.to(device) for t in synthetic_morphology(steps * 32, seed=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for i in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x[i * 32:(i + 1) * 32]), y[i * 32:(i + 1) * 32]).backward()
        opt.step()
    model.eval()
    xt, yt = (t.to(device) for t in synthetic_morphology(n_test, seed=2))
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 128]).argmax(1) for i in range(0, n_test, 128)])
    return model, xt, yt, pred


class TimedModel(nn.Module):
    """Wraps a model; accumulates the wall time (device synchronised) and number of images of its forwards."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.reset()

    def reset(self):
        self.seconds, self.images = 0.0, 0

    def forward(self, x):
        seconds, out = harness.timed_call(lambda: self.model(x), x.device)
        self.seconds += seconds
        self.images += x.shape[0]
        return out


def fb_loop(model, x, y, steps, channels_last: bool = False):
    """The model work of a gradient attack without the attack: ``steps`` forwards + input gradients,
    the input leaf in channels_last when asked (the model work of our attacks on the CPU)."""
    xa = x.contiguous(memory_format=torch.channels_last) if channels_last else x.clone()
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
    return g


def fooled(model, x_adv, y) -> float:
    """Share of ``x_adv`` the model does not classify as ``y``."""
    with torch.no_grad():
        return float((model(x_adv).argmax(1) != y).float().mean())


# --------------------------------------------------------------------------- sections
def grad_section(args, ta, model, xt, yt, ok, emit):
    """FGSM, PGD-Linf-10, PGD-L2-10 of both libraries and the reference loops, repeats interleaved."""
    x, y = xt[ok[:args.n_grad]].contiguous(), yt[ok[:args.n_grad]].contiguous()
    eps = args.eps
    eps2 = A.eps_l2_equal_volume(eps, 100 * 100)
    emit(f"## Gradient attacks: {x.shape[0]} images 3x100x100, Linf eps={eps}, alpha=eps/10, "
         f"L2 eps={eps2:.3f} (eps_l2_equal_volume(eps, 100*100)), alpha=eps/10, 10 steps, no random start, "
         f"clamp [0, 1]; median of {args.repeats} runs")
    emit()
    emit("| attack | library | median s | min-max s | success | time outside fwd/bwd | speed-up vs torchattacks |")
    emit("|---|---|---|---|---|---|---|")
    # our attacks feed the model channels_last on the CPU and contiguous images on a GPU (Attack's default)
    on_cpu = x.device.type == "cpu"
    fb_loop(model, x[:8], y[:8], 1)  # warm-up
    for case in cases.GRAD_ATTACKS:
        name, steps = case.name, case.steps
        variants = [("plain fwd+bwd loop", lambda: fb_loop(model, x, y, steps)),
                    ("same, channels_last input", lambda: fb_loop(model, x, y, steps, channels_last=True))]
        atk_ours, atk_theirs = case.ours(A, model, eps), case.theirs(ta, model, eps)
        variants.append(("advrobust", lambda: atk_ours(x, y)))
        base = {"advrobust": "same, channels_last input" if on_cpu else "plain fwd+bwd loop",
                "torchattacks": "plain fwd+bwd loop"}
        if name == "PGD-Linf-10" and on_cpu:
            atk_nocl = A.PGD(model, eps=eps, alpha=eps / 10, steps=10, lo=0.0, hi=1.0, channels_last=False)
            variants.append(("advrobust, channels_last=False", lambda: atk_nocl(x, y)))
            base["advrobust, channels_last=False"] = "plain fwd+bwd loop"
        variants.append(("torchattacks", lambda: atk_theirs(x, y)))
        # interleaved repeats: load changes on a shared machine hit every variant alike
        times = {v: [] for v, _ in variants}
        outs = {}
        for _ in range(args.repeats):
            for v, fn in variants:
                seconds, outs[v] = harness.timeit_once(fn)
                times[v].append(seconds)
        med = {v: statistics.median(t) for v, t in times.items()}
        for v, _ in variants:
            t = times[v]
            row = f"| {name} | {v} | {med[v]:.3f} | {min(t):.3f}-{max(t):.3f} |"
            if v in base:
                sp = f"{med['torchattacks'] / med[v]:.2f}x" if v != "torchattacks" else ""
                row += f" {fooled(model, outs[v], y):.3f} | {1 - med[base[v]] / med[v]:.1%} | {sp} |"
            else:
                row += " | | |"
            emit(row)
        diff = float((outs["advrobust"] - outs["torchattacks"]).abs().max())
        emit(f"| {name} | max abs diff of x_adv, ours vs torchattacks: {diff:.2e} | | | | | |")
    emit()
    emit("Time outside fwd/bwd = 1 - T(loop of the same forwards and input gradients) / T(attack); the loop "
         "uses the same input memory format as the attack (channels_last for advrobust on CPU, contiguous for "
         "torchattacks, channels_last=False and on GPUs). Negative = faster than the reference loop (timing noise).")
    emit()


def onepixel_section(args, ta, model, xt, yt, ok, emit):
    """OnePixel of both libraries for each iteration count, model time measured by :class:`TimedModel`."""
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
                atk = ta.OnePixel(tm, pixels=1, steps=iters, popsize=args.population)
            times, fwd, imgs = [], [], []
            for r in range(args.onepixel_repeats):
                tm.reset()
                torch.manual_seed(r)
                np.random.seed(r)
                call = atk.run if lib == "advrobust" else atk  # ours: the result with iterations and success
                seconds, out = harness.timed_call(lambda: call(xo, yo), xo.device)
                times.append(seconds)
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


# --------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    harness.add_common_arguments(parser, "RESULTS_attacks.md")
    sizes = lambda k: harness.size_help(SIZES, k)  # noqa: E731
    parser.add_argument("--n-grad", type=int, help=f"images for the gradient attacks {sizes('n_grad')}")
    parser.add_argument("--n-onepixel", type=int, help=f"images for OnePixel {sizes('n_onepixel')}")
    parser.add_argument("--onepixel-iters", type=int, nargs="+",
                        help=f"OnePixel generation counts, one run each {sizes('onepixel_iters')}")
    parser.add_argument("--n-onepixel-long", type=int, default=None,
                        help="images for runs of more than 10 iterations (default: --n-onepixel)")
    parser.add_argument("--onepixel-repeats", type=int, default=1, help="runs per OnePixel setting (default 1)")
    parser.add_argument("--population", type=int, help=f"OnePixel population {sizes('population')}")
    parser.add_argument("--repeats", type=int, help=f"runs per gradient attack {sizes('repeats')}")
    parser.add_argument("--train-steps", type=int, help=f"ConvNet training steps of 32 images {sizes('train_steps')}")
    parser.add_argument("--n-test", type=int, help=f"test images, attacked where classified right {sizes('n_test')}")
    parser.add_argument("--eps", type=float, default=0.03, help="Linf budget (default 0.03; L2: the equal-volume one)")
    parser.add_argument("--parts", nargs="+", default=["grad", "onepixel"], choices=["grad", "onepixel"],
                        help="which sections to run (default: both)")


def run(args, command: str) -> None:
    """Run the benchmark that ``args`` (from :func:`add_arguments`) describe and write its report."""
    try:
        import torchattacks
    except ImportError:
        sys.exit("advrobust bench attacks: torchattacks, the library it compares against, is not installed: "
                 "pip install --no-deps torchattacks (--no-deps: its dependencies would pull torchvision "
                 "and another torch)")
    harness.apply_sizes(args, SIZES)
    device, info = args.device, harness.machine_info(args.device)
    lines = harness.ReportLines([f"# advrobust.attacks vs torchattacks ({harness.device_label(info)})", "",
             *harness.header_lines(info, command), f"- torchattacks {torchattacks.__version__}", ""])

    emit = lines.emit

    t0 = time.perf_counter()
    model, xt, yt, pred = trained_convnet(args.train_steps, args.n_test, device)
    ok = (pred == yt).nonzero().squeeze(1)
    if ok.numel() == 0:
        sys.exit(f"advrobust bench attacks: the ConvNet classifies none of the {args.n_test} test images right, "
                 "nothing to attack; train longer (--train-steps) or test more images (--n-test)")
    emit(f"ConvNet trained {args.train_steps} steps x 32 synthetic images in {time.perf_counter() - t0:.0f} s; "
         f"test accuracy {float((pred == yt).float().mean()):.3f} on {args.n_test} images")
    emit()
    if "grad" in args.parts:
        grad_section(args, torchattacks, model, xt, yt, ok, emit)
    if "onepixel" in args.parts:
        onepixel_section(args, torchattacks, model, xt, yt, ok, emit)
    emit(f"total bench time {time.perf_counter() - t0:.0f} s")
    harness.write_report(args.out or harness.default_out("RESULTS_attacks.md", args.quick), lines)
