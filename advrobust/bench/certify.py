"""Adaptive certification (:meth:`advrobust.defenses.Smooth.certify_adaptive`) against Cohen et al.
2019's fixed n = 100,000 (:meth:`advrobust.defenses.Smooth.certify_batch`, n0 = 100), same alpha and
radii, on the demo's morphology classifier (bench/RESULTS_certify.md).

    python -m advrobust.bench.certify            # full run (a few minutes on one CPU thread)
    python -m advrobust.bench.certify --quick    # small sizes, a smoke test

Model: ``morphology_small`` trained as :mod:`advrobust.demo.morphology` trains its noise-trained
classifier (the one it smooths): simulated Y10 gri stamps preprocessed to [0, 1], Gaussian noise of
the smoothing sigma during training, Adam at 1e-3, batch 32, seed 0; fewer images and epochs, and
``--size`` pixels a side (32 by default, the demo's 64 costs ~4x more per evaluation; below 64 pixels
the galaxies' median half-light radius shrinks from 1.5 to size * 0.2 / 6.4 arcsec to fit the stamp).

Measured: model evaluations per object (the ``samples`` of each certificate; Cohen's is n0 + n for
every object) with their quantiles, wall time per object (adaptive: the whole batch / objects;
Cohen: measured on ``--n-cohen`` objects only, the evaluation count being fixed), and the
certified-at-r decisions of both on those objects, chosen from the median to the hardest by adaptive samples.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from advrobust.bench import harness
from advrobust.data import SurveyDataset, simulate_morphology
from advrobust.defenses import NoisyTraining, Smooth
from advrobust.models import create
from advrobust.train import Trainer

HELP = ("adaptive certification vs Cohen et al.'s n = 100,000: evaluations and time per object "
        "(bench/RESULTS_certify.md)")

#: option -> (full run, --quick) value, for the options not given on the command line
SIZES = {"n_objects": (60, 12), "n_cohen": (4, 2), "n_train": (1000, 200), "epochs": (3, 1),
         "cohen_n": (100_000, 10_000)}
SIGMA, ALPHA, N0, RADII_SIGMA, QUANTILES = 0.1, 0.001, 100, (0.0, 0.5, 1.0, 1.5, 2.0), (0.0, 0.1, 0.25, 0.5, 0.75,
                                                                                         0.9, 1.0)


def trained_model(args, device: torch.device):
    """``(model, test images (n_objects, 3, size, size))``: morphology_small trained with noise as the demo."""
    # the simulator draws radii up to a sixth of the stamp: smaller stamps get proportionally smaller galaxies
    sim = simulate_morphology(args.n_train + args.n_objects, seed=1, size=args.size, preprocess=True,
                              median_radius=min(1.5, args.size * 0.2 / 6.4))
    x, y = torch.from_numpy(sim["images_y10"]), torch.from_numpy(sim["labels"]).long()
    torch.manual_seed(0)
    model = create("morphology_small", image_size=args.size)
    Trainer(model, "ce", lr=1e-3, batch_transform=NoisyTraining(SIGMA), seed=0, progress=False, device=device,
            fields=("image", "label")).fit(SurveyDataset(x[:args.n_train], {"label": y[:args.n_train]}, augment=True),
                                           args.epochs, batch_size=32)
    return model.eval(), x[args.n_train:].to(device)


def spread_by_samples(samples: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` distinct objects at evenly spaced quantiles (from the median up to the maximum) of
    the adaptive samples: easy and hard objects alike, not the first ones only."""
    order = np.argsort(samples, kind="stable")
    ranks = np.unique(np.round(np.linspace(0.5, 1.0, k) * (len(order) - 1)).astype(int))
    return order[ranks]


def quantile_row(name: str, values: np.ndarray) -> str:
    cells = " | ".join(f"{q:,.0f}" for q in np.quantile(values, QUANTILES))
    return f"| {name} | {cells} | {values.mean():,.0f} |"


def run(args, command: str) -> None:
    """Train, certify adaptively and with Cohen's fixed n, write the report (``args`` from :func:`add_arguments`)."""
    harness.apply_sizes(args, SIZES)
    torch.set_num_threads(args.threads)
    device, info = args.device, harness.machine_info(args.device)
    lines = harness.ReportLines([f"# Adaptive certification vs Cohen et al.'s fixed n ({harness.device_label(info)})",
                                 "", *harness.header_lines(info, command), ""])
    emit = lines.emit
    t0 = time.perf_counter()
    model, x = trained_model(args, device)
    print(f"trained in {time.perf_counter() - t0:.0f} s; certifying", flush=True)
    smooth, radii = Smooth(model, 3, SIGMA), [r * SIGMA for r in RADII_SIGMA]
    gen = lambda seed: torch.Generator(device=device).manual_seed(seed)  # noqa: E731
    t_adaptive, adaptive = harness.timed_call(lambda: smooth.certify_adaptive(
        x, radii, alpha=ALPHA, n_max=args.cohen_n, batch_size=args.batch_size, generator=gen(1)), device)
    print(f"adaptive: {t_adaptive:.0f} s, {int(adaptive.samples.sum()):,} evaluations", flush=True)
    chosen = spread_by_samples(adaptive.samples.numpy(), args.n_cohen)
    t_cohen, (pred, radius) = harness.timed_call(lambda: smooth.certify_batch(
        x[torch.from_numpy(chosen).to(x.device)], N0, args.cohen_n, ALPHA, args.batch_size, generator=gen(2)), device)
    cohen = (pred[:, None] >= 0) & (radius[:, None] >= torch.tensor(radii, dtype=torch.float64)[None, :])
    samples = adaptive.samples.numpy()
    _emit_counts(emit, args, x, radii, samples, (t_adaptive, t_cohen), len(chosen))
    _emit_decisions(emit, args, x, radii, adaptive, chosen, (pred, radius, cohen))
    emit(f"total bench time {time.perf_counter() - t0:.0f} s")
    harness.write_report(args.out or harness.default_out("RESULTS_certify.md", args.quick), lines)


def _emit_counts(emit, args, x, radii, samples: np.ndarray, times: tuple, k: int) -> None:
    """The set-up, the evaluations per object and the wall times of the report."""
    t_adaptive, t_cohen = times
    emit(f"Model: morphology_small on {args.size}x{args.size} gri stamps, trained {args.epochs} epochs on "
         f"{args.n_train} simulated Y10 galaxies with Gaussian noise sigma = {SIGMA} (preprocessed units), as the "
         f"demo's noise-trained classifier. Smoothing sigma {SIGMA}, alpha {ALPHA}, radii "
         f"{', '.join(f'{r:g}' for r in radii)} (0 to 2 sigma, L2, preprocessed image units); "
         f"{x.shape[0]} test objects; forward passes of {args.batch_size} rows; {torch.get_num_threads()} torch "
         "thread(s). The machine is shared with other jobs (contended): wall times are indicative, evaluation "
         "counts are exact.")
    emit()
    emit(f"## Model evaluations per object ({x.shape[0]} objects)")
    emit()
    emit("| procedure | " + " | ".join(f"q{q:g}" for q in QUANTILES) + " | mean |")
    emit("|---|" + "---|" * (len(QUANTILES) + 1))
    emit(quantile_row(f"adaptive (n_max = {args.cohen_n:,})", samples))
    emit(quantile_row(f"Cohen et al. (n0 = {N0}, n = {args.cohen_n:,})", np.full(len(samples), N0 + args.cohen_n)))
    emit()
    emit(f"Median ratio: {(N0 + args.cohen_n) / np.median(samples):,.1f}x fewer evaluations; mean ratio "
         f"{(N0 + args.cohen_n) / samples.mean():,.1f}x; {np.mean(samples < args.cohen_n):.0%} of the objects stopped "
         f"before n_max.")
    emit()
    emit("## Wall time per object")
    emit()
    emit("| procedure | objects timed | seconds per object | evaluations per second |")
    emit("|---|---|---|---|")
    emit(f"| adaptive | {x.shape[0]} (one batch) | {t_adaptive / x.shape[0]:.3f} | {samples.sum() / t_adaptive:,.0f} |")
    emit(f"| Cohen et al. | {k} | {t_cohen / k:.3f} | {k * (N0 + args.cohen_n) / t_cohen:,.0f} |")
    emit()


def _emit_decisions(emit, args, x, radii, adaptive, chosen: np.ndarray, cohen_result: tuple) -> None:
    """The certified fractions, and Cohen's decisions beside the adaptive ones on the ``chosen`` objects."""
    pred, radius, cohen = cohen_result
    samples = adaptive.samples.numpy()
    emit("## Decisions")
    emit()
    emit(f"Certified fraction at each radius, adaptive, {x.shape[0]} objects: " + ", ".join(
        f"r = {r:g}: {f:.0%}" for r, f in zip(radii, adaptive.certified.double().mean(0).tolist()))
        + f"; abstained {float((adaptive.prediction < 0).double().mean()):.0%}.")
    emit()
    emit(f"Side by side on {len(chosen)} objects certified by both procedures (Cohen's at n0 = {N0}, n = {args.cohen_n:,}), "
         "chosen at evenly spaced quantiles of the adaptive samples from the median to the maximum:")
    emit()
    emit("| object | Cohen prediction, radius | Cohen certified at r | adaptive prediction, radius | "
         "adaptive certified at r | adaptive samples |")
    emit("|---|---|---|---|---|---|")
    bits = lambda c: "".join("1" if v else "0" for v in c.tolist())  # noqa: E731
    for i, j in enumerate(chosen):
        emit(f"| {j} | {int(pred[i])}, {float(radius[i]):.4f} | {bits(cohen[i])} | {int(adaptive.prediction[j])}, "
             f"{float(adaptive.radius[j]):.4f} | {bits(adaptive.certified[j])} | {int(samples[j]):,} |")
    same = bool(torch.equal(adaptive.certified[torch.from_numpy(chosen)] & cohen, cohen))
    emit()
    emit(f"Every certified-at-r decision of Cohen's on these objects is also the adaptive one's: {same} "
         "(bits: certified at each radius, in order).")
    emit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    harness.add_common_arguments(parser, "RESULTS_certify.md")
    sizes = lambda k: harness.size_help(SIZES, k)  # noqa: E731
    parser.add_argument("--n-objects", type=int, help=f"test objects certified adaptively {sizes('n_objects')}")
    parser.add_argument("--n-cohen", type=int, help="of them, certified by Cohen's fixed n too, spread over the "
                                                    f"adaptive samples' quantiles {sizes('n_cohen')}")
    parser.add_argument("--cohen-n", type=int, help=f"Cohen's n, and the adaptive n_max {sizes('cohen_n')}")
    parser.add_argument("--n-train", type=int, help=f"training galaxies {sizes('n_train')}")
    parser.add_argument("--epochs", type=int, help=f"training epochs {sizes('epochs')}")
    parser.add_argument("--size", type=int, default=32, help="stamp side in pixels (default 32; the demo's is 64)")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per forward pass (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m advrobust.bench.certify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args(argv), command=f"python -m advrobust.bench.certify {shlex.join(argv)}")


if __name__ == "__main__":
    main()
