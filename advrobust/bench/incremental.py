"""`advrobust bench incremental`: incremental scoring of one-pixel candidates against full forward passes,
and the whole OnePixel with it against torchattacks.OnePixel, in one run.

    advrobust bench incremental             # full run (several minutes on 2 CPU cores)
    advrobust bench incremental --quick     # small sizes, a smoke test

* Scoring: P candidates (one random pixel each, values in [0, 1]) per image on 3x100x100 images,
  :class:`advrobust.attacks.incremental.IncrementalScorer` against the full forward of the same
  candidate images (``de_build`` then the model, in chunks of 100 images as OnePixel's default CPU
  memory budget), for the ConvNet of Ćiprijanović et al. 2022 (trained as in ``bench attacks``) and
  ResNet18 (random weights, eval mode). Median of ``--repeats`` interleaved runs; the set-up (trace and
  clean pass, once per batch of images) is timed separately. Also: the largest difference of the
  outputs relative to their largest magnitude, and the memory kept per image.
* OnePixel (k=1, population ``--population``, ``--iters`` generations, values in [0, 1]) on the
  ConvNet: ``incremental=True``, ``incremental=False`` and torchattacks.OnePixel, one run each.
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

import advrobust.attacks as A
from advrobust.attacks.incremental import IncrementalScorer
from advrobust.bench import harness
from advrobust.bench.attacks import fooled, synthetic_morphology, trained_convnet
from advrobust.models import create
from advrobust.ops import de_build

HELP = "incremental one-pixel scoring vs full forward passes, OnePixel vs torchattacks (bench/RESULTS_incremental.md)"

#: option -> (full run, --quick) value, for the options not given on the command line
SIZES = {"n_score": (4, 1), "candidates": (400, 400), "repeats": (3, 1), "n_onepixel": (4, 2),
         "population": (400, 100), "iters": (80, 5), "train_steps": (60, 4), "n_test": (256, 64)}


def _candidates(n: int, P: int, seed: int) -> torch.Tensor:
    """(n, P, 1, 5) genes: one uniformly random pixel of a 100x100 image, values in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    cand = torch.rand((n, P, 1, 5), generator=g)
    cand[..., :2] *= 100
    return cand


def _full_scores(model, x, cand, chunk: int = 100):
    """The model's outputs of all candidate images, built and run ``chunk`` images at a time."""
    n, P = cand.shape[:2]
    outs = []
    for i in range(n):
        for a in range(0, P, chunk):
            outs.append(model(de_build(x[i:i + 1], cand[i:i + 1, a:a + chunk].contiguous()).flatten(0, 1)))
    return torch.cat(outs)


def scoring_section(args, models, emit):
    emit(f"## Scoring {args.candidates} candidates per image, {args.n_score} image(s) 3x100x100, "
         f"median of {args.repeats} interleaved run(s)")
    emit()
    emit("| model | full forward s/image | incremental s/image | speed-up | set-up s/image | "
         "max rel. diff | kept MiB/image | conv multiply-adds kept |")
    emit("|---|---|---|---|---|---|---|---|")
    for name, model, x in models:
        cand = _candidates(x.shape[0], args.candidates, seed=3)
        rows = torch.arange(x.shape[0])
        with torch.no_grad():
            setup, scorer = harness.timed_call(lambda: IncrementalScorer(model, x), x.device)
            times = {"full": [], "inc": []}
            outs = {}
            for _ in range(args.repeats):
                for key, fn in (("full", lambda: _full_scores(model, x, cand)),
                                ("inc", lambda: scorer.score(rows, cand))):
                    seconds, outs[key] = harness.timeit_once(fn)
                    times[key].append(seconds)
        med = {k: statistics.median(v) / x.shape[0] for k, v in times.items()}
        diff = float((outs["inc"] - outs["full"]).abs().max() / outs["full"].abs().max())
        emit(f"| {name} | {med['full']:.3f} | {med['inc']:.3f} | {med['full'] / med['inc']:.1f}x | "
             f"{setup / x.shape[0]:.3f} | {diff:.1e} | {scorer.bytes_per_image / 2**20:.2f} | "
             f"{scorer.cost_ratio:.1%} |")
    emit()
    emit("Set-up: trace (make_fx) and the clean pass, once per batch of images (not in the per-image times). "
         "Kept MiB: clean activations the layers gather from and their padded copies. Conv multiply-adds kept: "
         "IncrementalScorer.cost_ratio, the convolutions' and pools' work on the windows over a full pass's.")
    emit()


def onepixel_section(args, ta, model, x, y, emit):
    emit(f"## OnePixel on the ConvNet: k=1, P={args.population}, {args.iters} generations, values in [0, 1], "
         f"{x.shape[0]} images; one run each")
    emit()
    emit("| attack | wall s | success | mean generations | speed-up vs torchattacks |")
    emit("|---|---|---|---|---|")
    res = {}
    variants = [
        ("advrobust, incremental=True", lambda: A.OnePixel(model, pixels=1, population=args.population,
                                                           max_iter=args.iters, lo=0.0, hi=1.0, seed=0,
                                                           incremental=True).run(x, y)),
        ("advrobust, incremental=False", lambda: A.OnePixel(model, pixels=1, population=args.population,
                                                            max_iter=args.iters, lo=0.0, hi=1.0, seed=0,
                                                            incremental=False).run(x, y)),
        ("torchattacks", lambda: ta.OnePixel(model, pixels=1, steps=args.iters, popsize=args.population)(x, y)),
    ]
    torch.manual_seed(0)
    np.random.seed(0)
    for name, fn in variants:
        seconds, out = harness.timed_call(fn, x.device)
        res[name] = (seconds, out)
    t_ta = res["torchattacks"][0]
    for name, (seconds, out) in res.items():
        if name.startswith("advrobust"):
            xa, gens = out.x_adv, f"{out.iterations.float().mean():.1f}"
        else:
            xa, gens = out, "n/a"
        emit(f"| {name} | {seconds:.1f} | {fooled(model, xa, y):.3f} | {gens} | {t_ta / seconds:.1f}x |")
    a, b = res["advrobust, incremental=True"][1], res["advrobust, incremental=False"][1]
    same = bool(torch.equal(a.pixels, b.pixels) and torch.equal(a.iterations, b.iterations))
    emit()
    emit(f"incremental=True and False found the same pixels and generations: {same}")
    emit()


def add_arguments(parser) -> None:
    harness.add_common_arguments(parser, "RESULTS_incremental.md")
    sizes = lambda k: harness.size_help(SIZES, k)  # noqa: E731
    parser.add_argument("--n-score", type=int, help=f"images for the scoring section {sizes('n_score')}")
    parser.add_argument("--candidates", type=int, help=f"candidates per image {sizes('candidates')}")
    parser.add_argument("--repeats", type=int, help=f"runs per scoring measurement {sizes('repeats')}")
    parser.add_argument("--n-onepixel", type=int, help=f"images for OnePixel {sizes('n_onepixel')}")
    parser.add_argument("--population", type=int, help=f"OnePixel population {sizes('population')}")
    parser.add_argument("--iters", type=int, help=f"OnePixel generations {sizes('iters')}")
    parser.add_argument("--train-steps", type=int, help=f"ConvNet training steps of 32 images {sizes('train_steps')}")
    parser.add_argument("--n-test", type=int, help=f"test images {sizes('n_test')}")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's default, all cores)")
    parser.add_argument("--parts", nargs="+", default=["score", "onepixel"], choices=["score", "onepixel"],
                        help="which sections to run (default: both)")


def run(args, command: str) -> None:
    """Run the benchmark that ``args`` (from :func:`add_arguments`) describe and write its report."""
    harness.apply_sizes(args, SIZES)
    if args.device.type != "cpu":
        sys.exit("advrobust bench incremental: only the CPU is measured so far (--device cpu)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ta = None
    if "onepixel" in args.parts:
        try:
            import torchattacks as ta
        except ImportError:
            sys.exit("advrobust bench incremental: torchattacks is not installed: pip install --no-deps torchattacks")
    info = harness.machine_info(args.device)
    lines = harness.ReportLines([f"# Incremental one-pixel scoring ({harness.device_label(info)})", "",
             *harness.header_lines(info, command), f"- torch CPU threads: {torch.get_num_threads()}"])
    if ta is not None:
        lines.append(f"- torchattacks {ta.__version__}")
    lines.append("")

    emit = lines.emit

    t0 = time.perf_counter()
    model, xt, yt, pred = trained_convnet(args.train_steps, args.n_test, args.device)
    ok = (pred == yt).nonzero().squeeze(1)
    if ok.numel() < args.n_onepixel:
        sys.exit(f"advrobust bench incremental: the ConvNet classifies {ok.numel()} of {args.n_test} test images "
                 "right, fewer than --n-onepixel; train longer or test more images")
    emit(f"ConvNet trained {args.train_steps} steps x 32 synthetic images; test accuracy "
         f"{float((pred == yt).float().mean()):.3f} on {args.n_test} images")
    emit()
    if "score" in args.parts:
        torch.manual_seed(0)
        resnet = create("resnet18").eval()
        xs = synthetic_morphology(args.n_score, seed=5)[0]
        scoring_section(args, [("ConvNet", model, xs), ("ResNet18", resnet, xs)], emit)
    if "onepixel" in args.parts:
        xo, yo = xt[ok[:args.n_onepixel]].contiguous(), yt[ok[:args.n_onepixel]].contiguous()
        onepixel_section(args, ta, model, xo, yo, emit)
    emit(f"total bench time {time.perf_counter() - t0:.0f} s")
    harness.write_report(args.out or harness.default_out("RESULTS_incremental.md", args.quick), lines)
