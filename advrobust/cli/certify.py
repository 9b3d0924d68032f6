"""``advrobust certify``: certificates of a model on your survey files.

Three modes, by the model and ``--adaptive``:

* classifier, fixed n (default): Cohen, Rosenfeld and Kolter 2019's procedure
  (:meth:`advrobust.defenses.Smooth.certify_batch`). One row per object in ``--out`` (CSV or Parquet,
  written atomically at the end): ``id``, ``prediction`` (-1: abstain), ``radius`` (certified L2 radius
  in image units, 0 where abstaining), ``abstain`` and, with ``--target``, ``label``. With labels it
  prints the certified accuracy at radii 0, 0.5, 1 and 2 sigma and the average certified radius. The
  noise comes from one generator seeded with ``--seed``, drawn object after object, so the rows do
  not depend on ``--batch-size`` up to the model's own batch-dependent rounding.
* classifier, ``--adaptive --radii r1,r2,... --n-max N``: :meth:`advrobust.defenses.Smooth.certify_adaptive`
  (the same guarantee, each object sampled only until certified-or-not is settled at every radius).
  Columns ``id``, ``prediction``, ``abstain``, ``certified_at_<r>`` per radius, ``radius``, ``p_lower``,
  ``samples`` (model evaluations) and, with ``--target``, ``label``. ``radius`` is the bound reached
  when the object stopped, not the largest radius it could certify: certified accuracy comes from
  the ``certified_at_<r>`` columns (printed with labels), never from an average of ``radius``.
* photo-z model, ``--radius r``: median smoothing (:meth:`advrobust.defenses.SmoothRegression.certify`,
  Chiang et al. 2020) with ``--n`` draws: ``id``, ``median`` (smoothed z_phot), ``lo``, ``hi`` (the
  smoothed z_phot of every input within L2 distance r lies in ``[lo, hi]`` with probability >=
  1 - alpha), ``samples`` and, with ``--target`` (z_spec), ``z_spec`` and ``non_outlier``
  (``|dz| <= --outlier-threshold`` over the whole interval).

The last two are resumable exactly-once Parquet output like ``advrobust scan``
(:mod:`advrobust.scan.parts`): chunks of ``--chunk-size`` objects go to ``OUT.parts/`` as they are
done; killed and run again with the same settings, the command goes on where it stopped, and several
processes may run it on the same ``--out`` at once. Chunk i's noise comes from a generator seeded with
``chunk_seed(--seed, chunk i)``.

    advrobust certify --model model.safetensors --data survey.h5 --target label --sigma 0.002 \\
        --n0 100 --n 1000 --alpha 0.001 --out certify.parquet
    advrobust certify --model model.safetensors --data survey.h5 --target label --sigma 0.002 \\
        --adaptive --radii 0.001,0.002,0.004 --n-max 100000 --out certify.parquet
    advrobust certify --model photoz.safetensors --data survey.h5 --target z --sigma 0.002 \\
        --radius 0.002 --n 1000 --out certify.parquet
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from advrobust.cli.argtypes import floats
from advrobust.cli.data import EBV, LABEL, REDSHIFT, add_data_arguments, image_unit, open_survey, sky_sample
from advrobust.cli.device import add_device_argument, resolve_device
from advrobust.cli.errors import UsageError
from advrobust.cli.model import is_photoz, load_model, sha256
from advrobust.cli.parser import CommandParser

#: objects read and certified at a time in the fixed-n mode (bounded memory on a large survey)
CHUNK = 1024


def build_parser(prog: str) -> CommandParser:
    parser = CommandParser(prog, __doc__, required=("model", "data", "out", "sigma"))
    parser.add_argument("--model", help="classifier or photo-z model file written by advrobust (safetensors)")
    parser.add_argument("--out", help="table of certificates: .csv or .parquet (adaptive and photo-z: .parquet, "
                                      "parts in OUT.parts/)")
    add_data_arguments(parser, target_help="catalogue column of the class labels or z_spec (optional: certified "
                                                  "accuracy / certified non-outliers)")
    smooth = parser.add_argument_group("smoothing")
    smooth.add_argument("--sigma", type=float, help="noise sigma in image units (required)")
    smooth.add_argument("--n0", type=int, default=100, help="fixed n: draws selecting the top class (default 100)")
    smooth.add_argument("--n", type=int, default=1000, help="fixed n: draws estimating its probability; photo-z: "
                                                            "draws per object (default 1000)")
    smooth.add_argument("--alpha", type=float, default=0.001, help="failure probability (default 0.001)")
    smooth.add_argument("--batch-size", type=int, default=256, help="noisy images per forward pass (default 256)")
    smooth.add_argument("--seed", type=int, default=0)
    add_device_argument(smooth)
    adaptive = parser.add_argument_group("adaptive (classifiers) and photo-z certification")
    adaptive.add_argument("--adaptive", action="store_true", help="classifier: sequential certification at --radii")
    adaptive.add_argument("--radii", type=floats, help="--adaptive: L2 radii in image units, comma-separated")
    adaptive.add_argument("--n-max", type=int, default=100_000, help="--adaptive: most draws per object "
                                                                     "(default 100000)")
    adaptive.add_argument("--radius", type=float, help="photo-z: L2 radius of the certified interval (image units)")
    adaptive.add_argument("--outlier-threshold", type=float, default=0.05,
                          help="photo-z: certified non-outlier when |dz| <= this over the interval (default 0.05)")
    adaptive.add_argument("--chunk-size", type=int, default=256, help="objects per part file (default 256)")
    adaptive.add_argument("--no-progress", action="store_true")
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
    dev = resolve_device(args.device)
    model = load_model(args.model, dev)
    photoz = is_photoz(model)
    _check_mode(args, photoz)
    if photoz or args.adaptive:
        _run_resumable(args, prog, model, dev, photoz)
    else:
        _run_fixed(args, prog, model, dev)


def _check_mode(args: argparse.Namespace, photoz: bool) -> None:
    """UsageError for flags of another mode, or missing ones."""
    if photoz:
        if args.adaptive or args.radii is not None:
            raise UsageError(f"--model {args.model}: a photo-z model is certified by median smoothing at one "
                             "--radius with --n draws; --adaptive and --radii are for classifiers")
        if args.radius is None:
            raise UsageError(f"--radius: a photo-z model ({args.model}) is certified at one L2 radius (image units); "
                             "give --radius")
    elif args.radius is not None:
        raise UsageError("--radius is for photo-z models; a classifier is certified at --radii with --adaptive "
                         "(or for its largest radius with the default fixed n)")
    elif args.radii is not None and not args.adaptive:
        raise UsageError("--radii needs --adaptive (the fixed-n mode reports each object's certified radius)")
    elif args.adaptive and args.radii is None:
        raise UsageError("--adaptive needs --radii r1,r2,... (L2 radii in image units)")
    if (photoz or args.adaptive) and not args.out.endswith(".parquet"):
        raise UsageError(f"--out must be a .parquet file for {'photo-z' if photoz else 'adaptive'} certification "
                         f"(resumable: parts go to OUT.parts/), got {args.out!r}")
    if args.radii is not None and (not args.radii or not all(np.isfinite(args.radii)) or min(args.radii) < 0
                                   or len({f"{r:g}" for r in args.radii}) != len(args.radii)):
        raise UsageError(f"--radii must be distinct finite L2 radii >= 0 in image units, got {args.radii}")
    if args.radius is not None and not (np.isfinite(args.radius) and args.radius >= 0):
        raise UsageError(f"--radius must be a finite L2 radius >= 0 in image units, got {args.radius}")
    for flag, value in (("--chunk-size", args.chunk_size), ("--n-max", args.n_max), ("--n", args.n),
                        ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{flag} must be a positive integer, got {value}")
    if not args.sigma > 0 or not np.isfinite(args.sigma):
        raise UsageError(f"--sigma must be a positive noise level in image units, got {args.sigma}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    if not args.outlier_threshold > 0:
        raise UsageError(f"--outlier-threshold must be > 0, got {args.outlier_threshold}")


def _run_resumable(args: argparse.Namespace, prog: str, model, dev, photoz: bool) -> None:
    """Adaptive (classifier) or median-smoothing (photo-z) certification, chunk by chunk into part files."""
    import pandas as pd
    import torch

    from advrobust.scan.certification import CertifySettings, certify_rows
    from advrobust.scan.parts import ChunkClaims, PartStore, assemble_once, chunk_seed, plan_chunks, run_chunks

    dataset = open_survey(args, photoz=photoz, n_classes=None if photoz else model.n_outputs)
    if len(dataset) == 0:
        raise ValueError("no objects to certify (empty data, or all rejected by --nan-policy)")
    settings = CertifySettings(sigma=args.sigma, alpha=args.alpha, radii=tuple(args.radii or ()), n_max=args.n_max,
                               radius=args.radius, n=args.n, threshold=args.outlier_threshold,
                               batch_size=args.batch_size)
    task = "photoz" if photoz else "classifier"
    store = PartStore(args.out)
    resumed = store.open({
        "command": "certify", "task": task, **settings.as_dict(), "seed": args.seed, "chunk_size": args.chunk_size,
        "objects": len(dataset), "model": os.path.abspath(args.model), "model_sha256": sha256(args.model),
        "data": os.path.abspath(args.data), "key": args.key, "catalog": args.catalog, "id_column": args.id_column,
        "target": args.target, "nan_policy": args.nan_policy, "device": dev.type})
    chunks = plan_chunks(len(dataset), args.chunk_size)
    truth = REDSHIFT if photoz else LABEL

    def compute(chunk):
        rows = dataset.indices[chunk.start:chunk.stop]
        x = torch.from_numpy(dataset.read_images(chunk.start, chunk.stop)).to(dev)
        extra = (torch.from_numpy(dataset.values[EBV][rows]).to(dev),) if photoz else ()
        known = dataset.values[truth][rows] if truth in dataset.values else None
        columns = {"id": dataset.ids[rows] if dataset.ids is not None else rows.astype(np.int64)}
        columns.update(certify_rows(model, x, extra, task=task, settings=settings, seed=chunk_seed(args.seed, chunk),
                                    z_spec=known if photoz else None))
        if known is not None:
            columns[truth] = known
        return columns

    claims = ChunkClaims(store)
    computed = run_chunks(store, chunks, compute, progress=not args.no_progress, desc="certify", claims=claims)
    assemble_once(store, chunks, claims)
    table = pd.read_parquet(args.out)
    print(f"{prog}: {len(table)} objects -> {args.out} ({'resumed, ' if resumed else ''}{computed} certified "
          f"here); sigma {args.sigma:g} image units, alpha {args.alpha:g}")
    (_summary_photoz if photoz else _summary_adaptive)(table, settings)


def _summary_adaptive(table, settings) -> None:
    from advrobust.scan.certification import certified_accuracy_at, certified_column

    samples = table["samples"].to_numpy()
    print(f"model evaluations per object: median {np.median(samples):.0f}, mean {samples.mean():.0f}, max "
          f"{samples.max()} ({int((samples == settings.n_max).sum())} objects ran to --n-max {settings.n_max}); "
          f"{int(table['abstain'].sum())} abstentions")
    certified = table[[certified_column(r) for r in settings.radii]].to_numpy()
    which, values = ("certified fraction", certified.mean(0))
    if LABEL in table:
        which, values = "certified accuracy", certified_accuracy_at(certified, table["prediction"].to_numpy(),
                                                                     table[LABEL].to_numpy())
    print(f"{which} at L2 radius (image units): "
          + ", ".join(f"{r:.4g}: {100 * a:.2f}%" for r, a in zip(settings.radii, values)))
    print("(the 'radius' column is the bound reached when each object stopped sampling, not the largest radius it "
          "could certify: use the certified_at_<r> columns)")


def _summary_photoz(table, settings) -> None:
    width = (table["hi"] - table["lo"]).to_numpy()
    finite = np.isfinite(width)
    text = (f"median certified interval width {np.median(width[finite]):.4g} in z" if finite.any()
            else "no finite interval: --n too small for this --radius and --alpha")
    print(f"median smoothing at L2 radius {settings.radius:g} (image units), n {settings.n}: {text} "
          f"({int((~finite).sum())} unbounded)")
    if "non_outlier" in table:
        print(f"certified non-outliers (|dz| <= {settings.threshold:g} over the interval): "
              f"{100 * table['non_outlier'].mean():.2f}%")


def _run_fixed(args: argparse.Namespace, prog: str, model, dev) -> None:
    """Cohen et al.'s fixed n for every object (:meth:`Smooth.certify_batch`), one table written at the end."""
    import pandas as pd
    import torch

    from advrobust.atomic import atomic_path
    from advrobust.defenses import Smooth
    from advrobust.metrics import average_certified_radius, certified_accuracy

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
