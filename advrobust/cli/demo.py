"""``advrobust demo``: the main job on its embedded default (:mod:`advrobust.demo`).

Simulates a photo-z survey and a morphology survey (GalSim, LSST Y10 and Y1 depth), trains the
baselines and the defended models (adversarial training, MMD domain adaptation, noisy training +
randomized smoothing), attacks them (uniform noise, FGSM, PGD-Linf, PGD-L2, Y1 noise, one-pixel),
and compares the defenses of Mallam Garba, Susini and Kayo (basic, noisy, PGD-L2 / PGD-Linf / mixed
adversarial training, randomized smoothing) and a sensitivity-trained model (Wang et al. 2018) on
the morphology survey; writes the report to --out and prints the headline table. Parts: photoz,
morphology, defenses (--only runs one or more of them). Each model is trained once per training seed
(--seeds N, or --seeds PART=N for some parts; default per part from the preset) and every number is
reported as mean ± spread over the seeds.
9 min 23 s on 2 CPU cores (measured: the README says where); --quick (2 min 17 s there) is a smoke
run (its photo-z baseline and its defense models are under-trained and its report says so).
"""
from __future__ import annotations

import argparse
import os

from advrobust.cli.device import add_device_argument, resolve_device
from advrobust.cli.errors import UsageError
from advrobust.demo.config import PARTS


def _seed_count(token: str):
    """``"3"`` -> 3; ``"defenses=3"`` -> ``("defenses", 3)`` (one ``--seeds`` word)."""
    part, sep, count = token.rpartition("=")
    if sep and part not in PARTS:
        raise argparse.ArgumentTypeError(f"unknown part {part!r} in {token!r}; the parts are {', '.join(PARTS)}")
    try:
        n = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{token!r} is neither N nor PART=N with N a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{token!r}: the number of training seeds must be >= 1")
    return (part, n) if sep else n


def _seeds_argument(words):
    """The parsed ``--seeds`` words as :func:`~advrobust.demo.run_demo` takes them: one N -> N, PART=N words
    -> ``{part: N}``, nothing -> None.

    Raises:
        UsageError: N mixed with PART=N, several N, or a part named twice.
    """
    if not words:
        return None
    if all(isinstance(w, int) for w in words):
        if len(words) > 1:
            raise UsageError(f"--seeds takes one N or PART=N words, got {len(words)} numbers")
        return words[0]
    if any(isinstance(w, int) for w in words):
        raise UsageError("--seeds takes either one N (every part) or PART=N words, not both")
    parts = [p for p, _ in words]
    if len(set(parts)) < len(parts):
        raise UsageError(f"--seeds names a part twice: {' '.join(f'{p}={n}' for p, n in words)}")
    return dict(words)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="the small preset (a smoke run, ~2.5 minutes on 2 CPU cores)")
    size.add_argument("--scale", choices=("default", "paper"), default="default",
                      help="default: ~9.5 minutes on 2 CPU cores (measured, see the README); paper: the "
                           "papers' sizes (100k photo-z galaxies, the Inception net and ResNet18, one-pixel "
                           "population 400 x 80 generations on 150 images), for a GPU")
    parser.add_argument("--out", default="advrobust-demo", help="report folder (default: ./advrobust-demo/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated data and the first training seed "
                                                            "(default 0)")
    parser.add_argument("--seeds", nargs="+", type=_seed_count, default=None, metavar="N|PART=N",
                        help="train every model N times (training seeds SEED, SEED+1, ...) and report mean ± std; "
                             "PART=N for some parts only, e.g. --seeds defenses=3 (default: the preset's, per part)")
    add_device_argument(parser, note="; where to train and attack")
    parser.add_argument("--only", nargs="+", choices=PARTS, metavar="PART",
                        help=f"run only these parts, one or more of {', '.join(PARTS)} (e.g. --only photoz morphology)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace, prog: str) -> None:
    from advrobust.demo import headline_table, run_demo

    preset = "quick" if args.quick else args.scale
    result = run_demo(preset, out=args.out, seed=args.seed, seeds=_seeds_argument(args.seeds),
                      device=resolve_device(args.device), progress=not args.no_progress,
                      parts=tuple(args.only) if args.only else None)
    print(f"\nadvrobust demo ({preset}, seed {args.seed}, {result['seconds']:.0f} s) -- measured in this run:")
    print(headline_table(result))
    report = result["report"]
    print(f"\nreport: {os.path.abspath(report['html'])}\n        {os.path.abspath(report['markdown'])}")
