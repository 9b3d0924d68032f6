"""``advrobust scan``: a survey robustness scan, one Parquet row per object (:mod:`advrobust.scan`).

Resumable (run the same command again after a kill) and shared by any number of processes, which
claim chunks through the output folder (a shared file system across machines)::

    advrobust scan --model model.safetensors --data survey.h5 --attacks fgsm,pgd,onepixel,noise \\
        --eps-sky 2 --out catalog.parquet
    torchrun --nproc-per-node 4 -m advrobust.cli scan ...   # same catalogue, 4 processes
    srun -n 64 advrobust scan ...                           # SLURM (or mpirun): ranks from the launcher
    advrobust scan ... --ra-column RA --dec-column DEC --hats catalog_hats/   # + a HATS catalog for LSDB
    advrobust scan --config scan.toml --seed 1              # options from a file, one overridden

The data options, ``--config`` and ``--device`` are those of the other commands that read a survey;
with ``--nan-policy reject`` the objects with NaN / Inf pixels are left out and every other object is
scanned exactly once (its ``id`` is still its row, or its ``--id-column`` value).

Photo-z models: ``--zspec-column z`` adds each p.d.f.'s PIT and CRPS (``pit``, ``crps``,
``<attack>_pit``, ``<attack>_crps``); ``--write-qp`` writes the clean and each perturbed p.d.f. as qp
ensembles (RAIL's format; ``pip install qp-prob``), one file per chunk and perturbation in
``OUT.parts/qp/<clean|attack>-<chunk>.hdf5`` (constant memory; ~8 x bins bytes per object each).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from advrobust.attacks.by_name import ATTACK_NAMES
from advrobust.cli.argtypes import floats, names
from advrobust.cli.data import EBV, REDSHIFT, add_data_arguments, image_unit, input_config, open_survey, sky_sample
from advrobust.cli.device import add_device_argument, resolve_device
from advrobust.cli.eps import add_eps_arguments, resolve_eps
from advrobust.cli.errors import UsageError
from advrobust.cli.model import is_photoz, load_model, sha256
from advrobust.cli.parser import CommandParser
from advrobust.cli.qp import require_qp


def build_parser(prog: str) -> CommandParser:
    parser = CommandParser(prog, __doc__, required=("model", "data", "out"))
    io = parser.add_argument_group("input and output")
    io.add_argument("--model", help="model file written by advrobust (safetensors)")
    io.add_argument("--out", help="output catalogue (.parquet); parts go to OUT.parts/")
    add_data_arguments(parser, target_help=None)
    pdf = parser.add_argument_group("photo-z p.d.f.s")
    pdf.add_argument("--zspec-column", help="catalogue column of spectroscopic redshifts (photo-z models): adds "
                     "the p.d.f.s' PIT and CRPS columns")
    pdf.add_argument("--write-qp", action="store_true", help="photo-z models: write the clean and each perturbed "
                     "p.d.f. as qp files, one per chunk and perturbation, in OUT.parts/qp/ (needs qp-prob)")
    atk = parser.add_argument_group("attacks")
    atk.add_argument("--attacks", type=names, default=["fgsm", "pgd", "onepixel", "noise"],
                     help=f"comma-separated, among {','.join(ATTACK_NAMES)} (default: fgsm,pgd,onepixel,noise)")
    add_eps_arguments(atk, default_sky=2.0, measured_on="the first 1024 objects")
    atk.add_argument("--pgd-steps", type=int, default=10)
    atk.add_argument("--pixels", type=int, default=1, help="one-pixel attack: pixels changed (default 1)")
    atk.add_argument("--population", type=int, default=100, help="one-pixel attack: DE population (default 100)")
    atk.add_argument("--generations", type=int, default=30, help="one-pixel attack: DE generations (default 30)")
    # (not --lo/--hi: torchrun would read --lo as an abbreviation of its own options)
    atk.add_argument("--valid-lo", type=floats, help="valid range of the pixels, per band (comma-separated) or "
                     "one value: the gradient attacks clamp to it and the one-pixel attack draws its values in "
                     "it; default: no clamp, and one-pixel values within the per-band minimum of the first chunk")
    atk.add_argument("--valid-hi", type=floats, help="as --valid-lo, the maximum")
    _add_certify_arguments(parser)
    run_ = parser.add_argument_group("run")
    run_.add_argument("--seed", type=int, default=0)
    run_.add_argument("--chunk-size", type=int, default=256, help="objects per part file (default 256)")
    run_.add_argument("--batch-size", type=int, default=128, help="images per attack batch (default 128)")
    add_device_argument(run_, note="; under torchrun, cuda is cuda:LOCAL_RANK")
    run_.add_argument("--no-progress", action="store_true")
    run_.add_argument("--claim-timeout", type=float, default=60.0,
                      help="seconds after which a chunk claimed by a process on another machine that stopped "
                           "touching its claim is taken over (a dead process of this machine: at once; default 60)")
    sky = parser.add_argument_group("sky positions and HATS output")
    sky.add_argument("--ra-column", help="catalogue column of right ascension (degrees), copied into the catalogue "
                                         "as 'ra' at full precision")
    sky.add_argument("--dec-column", help="catalogue column of declination (degrees), copied as 'dec'")
    sky.add_argument("--hats", metavar="DIR", help="also write the catalogue as a HATS catalog in DIR, for LSDB "
                                                   "(needs --ra-column, --dec-column and pip install 'advrobust[hats]')")
    return parser


def _add_certify_arguments(parser: CommandParser) -> None:
    """The optional certification columns (slow: up to --certify-n-max forward passes per object)."""
    cert = parser.add_argument_group("certification columns (optional, slow; advrobust.scan.certification)")
    cert.add_argument("--certify-radii", type=floats, help="also certify each object at these L2 radii (image "
                      "units, comma-separated): classifiers adaptively (certify_certified_at_<r>, certify_samples), "
                      "photo-z models by median smoothing at one radius (certify_median, certify_lo, certify_hi)")
    cert.add_argument("--certify-sigma", type=float, help="smoothing noise sigma, image units (with --certify-radii)")
    cert.add_argument("--certify-alpha", type=float, default=0.001, help="failure probability (default 0.001)")
    cert.add_argument("--certify-n-max", type=int, default=100_000,
                      help="classifier: most draws per object (default 100000)")
    cert.add_argument("--certify-n", type=int, default=1000, help="photo-z: draws per object (default 1000)")


def _certify_settings(args, photoz: bool):
    """The :class:`~advrobust.scan.certification.CertifySettings` of the --certify-* options, or None."""
    from advrobust.scan.certification import CertifySettings

    if args.certify_radii is None:
        if args.certify_sigma is not None:
            raise UsageError("--certify-sigma needs --certify-radii (the radii to certify at)")
        return None
    if args.certify_sigma is None or not args.certify_sigma > 0:
        raise UsageError(f"--certify-sigma: give the smoothing noise (> 0, image units) with --certify-radii, "
                         f"got {args.certify_sigma}")
    if photoz and len(args.certify_radii) != 1:
        raise UsageError(f"--certify-radii: a photo-z model is certified at one radius, got {args.certify_radii}")
    settings = CertifySettings(sigma=args.certify_sigma, alpha=args.certify_alpha, radii=tuple(args.certify_radii),
                               n_max=args.certify_n_max, radius=args.certify_radii[0] if photoz else None,
                               n=args.certify_n, batch_size=args.batch_size)
    try:
        settings.check("photoz" if photoz else "classifier")
    except ValueError as err:
        raise UsageError(f"--certify-radii: {err}") from None
    for flag, value in (("--certify-n-max", args.certify_n_max), ("--certify-n", args.certify_n)):
        if value < 1:
            raise UsageError(f"{flag} must be a positive integer, got {value}")
    if not 0 < args.certify_alpha < 1:
        raise UsageError(f"--certify-alpha must be in (0, 1), got {args.certify_alpha}")
    return settings


def _scan_device(name: str):
    """The device of ``--device``; under torchrun ``cuda`` is ``cuda:LOCAL_RANK``."""
    import torch

    from advrobust import distributed

    device = resolve_device(name)
    if device.type == "cuda" and distributed.launched_by_torchrun():
        device = torch.device("cuda", distributed.local_rank())
    return device


def _pixel_ranges(args, first: np.ndarray):
    """``(lo, hi, pixel_lo, pixel_hi)`` per band: ``--valid-lo`` / ``--valid-hi`` (None where not
    given), and the one-pixel value range (the valid range, or else that of ``first``, the first chunk)."""
    bands = first.shape[1]
    per_band = (lambda v: None if v is None else np.broadcast_to(np.asarray(v, float), (bands,)).tolist())
    lo, hi = per_band(args.valid_lo), per_band(args.valid_hi)
    pixel_lo = lo if lo is not None else np.nanmin(first, axis=(0, 2, 3)).tolist()
    pixel_hi = hi if hi is not None else np.nanmax(first, axis=(0, 2, 3)).tolist()
    return lo, hi, pixel_lo, pixel_hi


def _print_summary(prog: str, result: dict, eps: float, unit, sky, unit_name: str) -> None:
    from advrobust.data.sky import SKY_METHOD

    band_text = (lambda values: ", ".join(f"{v:.3g}" for v in values))
    if sky is None:  # --eps on stamps too small (or too flat) to measure the sky on: image units only
        eps_text, sky_text = f"eps = {eps:.4g} {unit_name}", "sky sigma not measurable on the first objects"
    else:
        eps_text = (f"eps = {eps:.4g} sky sigmas per band = [{band_text(eps * sky)}] {unit_name}"
                    if unit is not None else
                    f"eps = {eps:.4g} {unit_name} = [{band_text(eps / sky)}] sky sigmas per band")
        sky_text = f"sky sigma per band [{band_text(sky)}] {unit_name}"
    print(f"{prog}: {result['objects']} objects -> {result['out']} "
          f"({'resumed, ' if result['resumed'] else ''}{result['computed']} computed here in "
          f"{result['seconds']:.1f} s; {eps_text}; {sky_text})" + ("" if sky is None else f"\n{SKY_METHOD}"))


def _check_pdf_flags(args, photoz: bool) -> None:
    """``--zspec-column`` / ``--write-qp`` need a photo-z model, and ``--write-qp`` the qp package."""
    if not photoz and args.zspec_column:
        raise UsageError("--zspec-column applies to photo-z models (redshift p.d.f.s), not to a classifier")
    if args.write_qp:
        require_qp(photoz)


def _scan(args, prog: str, device) -> None:
    from advrobust import distributed
    from advrobust.attacks.by_name import AttackSettings
    from advrobust.scan.survey import scan_survey

    model = load_model(args.model, device)
    certify = _certify_settings(args, is_photoz(model))
    _check_pdf_flags(args, is_photoz(model))
    args.target = args.zspec_column  # open_survey's truth column (photo-z: item z_spec); input_config records it
    dataset = open_survey(args, photoz=is_photoz(model))
    first = dataset.read_images(0, min(len(dataset), args.chunk_size))
    eps, unit, sky = resolve_eps(args, sky_sample(dataset))  # the same sky whatever --chunk-size is
    unit_name = image_unit(args, dataset)
    lo, hi, pixel_lo, pixel_hi = _pixel_ranges(args, first)
    settings = AttackSettings(eps=eps, pgd_steps=args.pgd_steps, pixels=args.pixels,
                              population=args.population, generations=args.generations, unit=unit)
    carry = {name: dataset.carried[column] for name, column in (("ra", args.ra_column), ("dec", args.dec_column))
             if column is not None}
    result = scan_survey(
        model, dataset, args.out, attacks=args.attacks, settings=settings, seed=args.seed,
        chunk_size=args.chunk_size, batch_size=args.batch_size, lo=lo, hi=hi, pixel_lo=pixel_lo,
        pixel_hi=pixel_hi, ebv=EBV,
        config={"model": os.path.abspath(args.model), "model_sha256": sha256(args.model), **input_config(args),
                "ra_column": args.ra_column, "dec_column": args.dec_column, "image_unit": unit_name},
        progress=not args.no_progress, claim_timeout=args.claim_timeout, carry=carry, hats=args.hats,
        certify=certify, z_spec=REDSHIFT if args.zspec_column else None, qp=args.write_qp)
    if distributed.launcher_rank()[0] == 0:
        _print_summary(prog, result, eps, unit, sky, unit_name)


def run(args: argparse.Namespace, prog: str) -> None:
    from advrobust import distributed
    from advrobust.attacks.by_name import check_attack_names

    try:
        args.attacks = check_attack_names(args.attacks)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.hats is not None and (args.ra_column is None or args.dec_column is None):
        raise UsageError("--hats needs the objects' sky positions: give --ra-column and --dec-column")
    if not args.claim_timeout > 0:
        raise UsageError(f"--claim-timeout must be > 0 seconds, got {args.claim_timeout}")

    device = _scan_device(args.device)
    distributed.init_from_env(device)
    try:
        _scan(args, prog, device)
    finally:
        distributed.shutdown()
