"""`advrobust bench defenses`: randomized-smoothing certification and the training cost of each defense.

    advrobust bench defenses            # full run (a few minutes on 2 CPU cores)
    advrobust bench defenses --quick    # small sizes, a smoke test

* Certification: :meth:`advrobust.defenses.Smooth.certify_batch` on ``--n-images`` images against a
  loop in the style of the reference code (Cohen, Rosenfeld and Kolter 2019, locuslab/smoothing:
  one image at a time, its n0 selection draws and its n estimation draws each in passes of at most
  ``batch_size`` copies of that image) with the same model, n0, n and batch size, for each
  ``--certify`` setting; median wall time over ``--repeats`` interleaved runs, and the ratio.
* Training: the time of one epoch of :class:`advrobust.train.Trainer` with each defense against
  standard training, same model, data and batch size (median over ``--repeats``).

Model: a ConvNet of Ciprijanovic et al. 2022's design on 3x32x32 images (``create("convnet",
image_size=32, channels=(8, 16), kernel_sizes=(3, 3), latent_dim=32)``), untrained for the
certification timing (the time does not depend on the weights) and trained from scratch per run
for the epoch timing; images are standard-normal noise (the timing does not depend on them).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

from advrobust.bench import cases, harness
from advrobust.defenses import (
    AdversarialTraining, MixedTraining, MMDAdaptation, NoisyTraining, SensitivityLoss, Smooth,
    WeightedAdversarialTraining, lower_confidence_bound,
)
from advrobust.defenses.smoothing import certified_radius
from advrobust.models import create
from advrobust.train import Trainer

HELP = ("randomized-smoothing certification (batched vs per image) and epoch time per defense "
        "(bench/RESULTS_defenses.md)")

#: option -> (full run, --quick) value, for the options not given on the command line
SIZES = {"n_images": (32, 4), "repeats": (3, 1), "n_train": (1024, 64), "train_batch": (64, 32),
         "certify": tuple([(c.n0, c.n, c.batch) for c in cases.select(cases.CERTIFY, tier)]
                          for tier in ("full", "quick"))}


def convnet(device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    return create("convnet", image_size=32, channels=(8, 16), kernel_sizes=(3, 3), latent_dim=32).to(device)


# --------------------------------------------------------------------------- certification
def reference_style_certify(model, x, n0: int, n: int, alpha: float, batch_size: int, sigma: float, num_classes: int):
    """The reference code's certify, one image at a time: ``(predictions, radii)`` lists."""
    def sample_noise(image, num):
        counts = torch.zeros(num_classes, dtype=torch.long, device=image.device)
        remaining = num
        while remaining > 0:
            this_batch = min(batch_size, remaining)
            remaining -= this_batch
            batch = image.repeat((this_batch, 1, 1, 1))
            noise = torch.randn_like(batch) * sigma
            counts += torch.bincount(model(batch + noise).argmax(1), minlength=num_classes)
        return counts.cpu()

    preds, radii = [], []
    with torch.no_grad():
        for image in x:
            c_a = int(sample_noise(image, n0).argmax())
            p_a = lower_confidence_bound(int(sample_noise(image, n)[c_a]), n, alpha)
            preds.append(-1 if p_a < 0.5 else c_a)
            radii.append(0.0 if p_a < 0.5 else certified_radius(p_a, sigma))
    return preds, radii


def certification_section(args, device, emit) -> None:
    model = convnet(device).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.n_images, 3, 32, 32, generator=g).to(device)
    sigma, alpha = 0.25, 0.001
    smooth = Smooth(model, 3, sigma)
    emit(f"## Certification of {args.n_images} images (sigma={sigma}, alpha={alpha})")
    emit()
    emit("| n0 | n | batch_size | loop passes | certify_batch passes | loop (s) | certify_batch (s) | "
         "speed-up |")
    emit("|---|---|---|---|---|---|---|---|")
    for n0, n, bs in args.certify:
        batched = lambda: smooth.certify_batch(x, n0, n, alpha, bs)  # noqa: E731
        loop = lambda: reference_style_certify(model, x, n0, n, alpha, bs, sigma, 3)  # noqa: E731
        batched(), loop()  # warm-up
        times = {"batched": [], "loop": []}
        for _ in range(args.repeats):  # interleaved
            times["loop"].append(harness.timed_call(loop, device)[0])
            times["batched"].append(harness.timed_call(batched, device)[0])
        med = {k: statistics.median(v) for k, v in times.items()}
        passes_loop = args.n_images * (-(-n0 // bs) + -(-n // bs))
        passes_batch = -(-args.n_images * (n0 + n) // bs)
        emit(f"| {n0} | {n} | {bs} | {passes_loop} | {passes_batch} | {med['loop']:.3f} | {med['batched']:.3f} | "
             f"{med['loop'] / med['batched']:.2f}x |")
    emit()


# --------------------------------------------------------------------------- training
def defenses(eps: float, target):
    return {
        "standard": {},
        "adversarial FGSM, f_a=0.5 (Campagne 2021)":
            {"batch_transform": AdversarialTraining("fgsm", eps, fraction=0.5)},
        "adversarial PGD-7, f_a=0.5": {"batch_transform": AdversarialTraining("pgd", eps, fraction=0.5, steps=7)},
        "FGSM random start, f_a=1 (Wong et al. 2020)":
            {"batch_transform": AdversarialTraining("fgsm_rs", eps, fraction=1.0)},
        "alpha J(x) + (1-alpha) J(x_adv), FGSM":
            {"batch_transform": WeightedAdversarialTraining("fgsm", eps, alpha=0.5)},
        "mixed: natural, PGD-L2-7, PGD-Linf-7": {"batch_transform": MixedTraining(eps, 10 * eps, steps=7)},
        "noisy (Gaussian)": {"batch_transform": NoisyTraining(eps)},
        "MMD domain adaptation (19 widths)": {"extra_losses": [MMDAdaptation(target, 0.01)]},
        "sensitivity (interval bounds)": {"extra_losses": [SensitivityLoss(eps, 0.01)]},
    }


def training_section(args, device, emit) -> None:
    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(args.n_train, 3, 32, 32, generator=g),
                         torch.randint(0, 3, (args.n_train,), generator=g))
    target = torch.randn(args.n_train, 3, 32, 32, generator=g) * 1.1
    eps = 0.05
    emit(f"## Training: one epoch of {args.n_train} images, batch {args.train_batch}, eps={eps}")
    emit()
    emit("| defense | median epoch time (s) | vs standard |")
    emit("|---|---|---|")
    base = None
    for name, kwargs in defenses(eps, target).items():
        def epoch():
            trainer = Trainer(convnet(device), "ce", progress=False, device=device, **kwargs)
            trainer.fit(data, 1, batch_size=args.train_batch)
        epoch()  # warm-up
        t = statistics.median(harness.timed_call(epoch, device)[0] for _ in range(args.repeats))
        base = base or t
        emit(f"| {name} | {t:.3f} | {t / base:.2f}x |")
    emit()


def add_arguments(parser) -> None:
    harness.add_common_arguments(parser, "RESULTS_defenses.md")
    sizes = lambda k: harness.size_help(SIZES, k)  # noqa: E731
    parser.add_argument("--n-images", type=int, help=f"images to certify {sizes('n_images')}")
    parser.add_argument("--certify", type=_triple, nargs="+", metavar="N0,N,BATCH",
                        help="certification settings: selection draws, estimation draws, noisy copies per "
                             "forward pass (default 100,1000,1000 100,1000,100 10,100,1000; --quick: 20,100,100)")
    parser.add_argument("--repeats", type=int, help=f"runs per measurement {sizes('repeats')}")
    parser.add_argument("--n-train", type=int, help=f"training images per epoch {sizes('n_train')}")
    parser.add_argument("--train-batch", type=int, help=f"training batch size {sizes('train_batch')}")
    parser.add_argument("--parts", nargs="+", default=["certify", "train"], choices=["certify", "train"],
                        help="which sections to run (default: both)")


def _triple(text: str):
    try:
        n0, n, bs = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N0,N,BATCH (three integers)") from None
    if min(n0, n, bs) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: N0, N and BATCH must be >= 1")
    return n0, n, bs


def run(args, command: str) -> None:
    """Run the benchmark that ``args`` (from :func:`add_arguments`) describe and write its report."""
    harness.apply_sizes(args, SIZES)
    device, info = args.device, harness.machine_info(args.device)
    lines = harness.ReportLines([f"# advrobust.defenses: certification and training cost ({harness.device_label(info)})", "",
             *harness.header_lines(info, command), ""])

    emit = lines.emit

    t0 = time.perf_counter()
    if "certify" in args.parts:
        certification_section(args, device, emit)
    if "train" in args.parts:
        training_section(args, device, emit)
    emit(f"total bench time {time.perf_counter() - t0:.0f} s")
    harness.write_report(args.out or harness.default_out("RESULTS_defenses.md", args.quick), lines)
