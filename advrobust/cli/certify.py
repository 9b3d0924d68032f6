"""``advrobust certify``: randomized-smoothing certificates of a classifier on your survey files
(:meth:`advrobust.defenses.Smooth.certify_batch`, Cohen, Rosenfeld and Kolter 2019).

One row per object in ``--out`` (CSV or Parquet, written atomically): ``id``, ``prediction`` (-1:
abstain), ``radius`` (certified L2 radius in image units, 0 where abstaining), ``abstain`` and, with
``--target``, ``label``. With labels it prints the certified accuracy at radii 0, 0.5, 1 and 2
sigma and the average certified radius. The noise comes from one generator seeded with ``--seed``,
drawn object after object, so the rows do not depend on ``--batch-size`` up to the model's own
batch-dependent rounding. Photo-z models are refused: smoothing certifies a class.

    advrobust certify --model model.safetensors --data survey.h5 --target label --sigma 0.002 \\
        --n0 100 --n 1000 --alpha 0.001 --out certify.parquet
"""
from __future__ import annotations

import argparse

import numpy as np

from advrobust.cli.data import LABEL, add_data_arguments, image_unit, open_survey, sky_sample
from advrobust.cli.device import add_device_argument, resolve_device
from advrobust.cli.errors import UsageError
from advrobust.cli.model import is_photoz, load_model
from advrobust.cli.parser import CommandParser

#: objects read and certified at a time (bounded memory on a large survey)
CHUNK = 1024


def build_parser(prog: str) -> CommandParser:
    parser = CommandParser(prog, __doc__, required=("model", "data", "out", "sigma"))
    parser.add_argument("--model", help="classifier file written by advrobust (safetensors)")
    parser.add_argument("--out", help="table of certificates: .csv or .parquet")
    add_data_arguments(parser, target_help="catalogue column of the class labels (optional: certified "
                                                  "accuracy and average certified radius)")
    smooth = parser.add_argument_group("smoothing")
    smooth.add_argument("--sigma", type=float, help="noise sigma in image units (required)")
    smooth.add_argument("--n0", type=int, default=100, help="draws selecting the top class (default 100)")
    smooth.add_argument("--n", type=int, default=1000, help="draws estimating its probability (default 1000)")
    smooth.add_argument("--alpha", type=float, default=0.001, help="failure probability (default 0.001)")
    smooth.add_argument("--batch-size", type=int, default=256, help="noisy images per forward pass (default 256)")
    smooth.add_argument("--seed", type=int, default=0)
    add_device_argument(smooth)
    return parser


def _in_sky(sigma: float, dataset) -> str:
    """`` = [...] sky sigmas per band (method)``: ``sigma`` against the sky sigma of the survey's first
    objects (:func:`advrobust.cli.data.sky_sample`), or "" where it cannot be measured."""
    from advrobust.data import sky_sigma
    from advrobust.data.sky import SKY_METHOD

    try:
        sky = sky_sigma(sky_sample(dataset))
    except ValueError:
        return ""
    return f" = [{', '.join(f'{sigma / s:.3g}' for s in sky)}] sky sigmas per band ({SKY_METHOD})"


def run(args: argparse.Namespace, prog: str) -> None:
    if not args.out.endswith((".csv", ".parquet")):
        raise UsageError(f"--out must end in .csv or .parquet, got {args.out!r}")

    import pandas as pd
    import torch

    from advrobust.atomic import atomic_path
    from advrobust.defenses import Smooth
    from advrobust.metrics import average_certified_radius, certified_accuracy

    dev = resolve_device(args.device)
    model = load_model(args.model, dev)
    if is_photoz(model):
        raise ValueError(f"--model {args.model}: a photo-z model; randomized smoothing certifies classifiers "
                         "(a class and its radius)")
    dataset = open_survey(args, photoz=False, n_classes=model.n_outputs)
    smooth = Smooth(model, model.n_outputs, args.sigma)
    generator = torch.Generator(device=dev).manual_seed(args.seed)
    predictions, radii = [], []
    for start in range(0, len(dataset), CHUNK):
        x = torch.from_numpy(dataset.read_images(start, min(start + CHUNK, len(dataset))))
        p, r = smooth.certify_batch(x, args.n0, args.n, args.alpha, args.batch_size, generator=generator)
        predictions.append(p.numpy())
        radii.append(r.numpy())
    if not predictions:
        raise ValueError("no objects to certify (empty data, or all rejected by --nan-policy)")
    prediction, radius = np.concatenate(predictions), np.concatenate(radii)
    rows = dataset.indices
    table = pd.DataFrame({"id": dataset.ids[rows] if dataset.ids is not None else rows.astype(np.int64),
                          "prediction": prediction, "radius": radius, "abstain": prediction == Smooth.ABSTAIN})
    if LABEL in dataset.values:
        table["label"] = dataset.values[LABEL][rows]
    with atomic_path(args.out) as tmp:
        if args.out.endswith(".csv"):
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    unit_name = image_unit(args, dataset)
    print(f"{prog}: {len(table)} objects, sigma {args.sigma:g} {unit_name}{_in_sky(args.sigma, dataset)}, n0 "
          f"{args.n0}, n {args.n}, alpha {args.alpha:g}: {int(table['abstain'].sum())} abstentions; rows -> {args.out}")
    if "label" in table:
        at = [0.0, 0.5 * args.sigma, args.sigma, 2 * args.sigma]
        accuracy = certified_accuracy(prediction, radius, table["label"].to_numpy(), at)
        print(f"certified accuracy at L2 radius ({unit_name}): "
              + ", ".join(f"{r:.4g}: {100 * a:.2f}%" for r, a in zip(at, accuracy)))
        print(f"average certified radius: {average_certified_radius(prediction, radius, table['label'].to_numpy()):.6g}"
              f" {unit_name}")
