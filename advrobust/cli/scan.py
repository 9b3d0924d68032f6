"""``advrobust scan``: a survey robustness scan, one Parquet row per object (:mod:`advrobust.scan`).

Resumable (run the same command again after a kill) and sharded under ``torchrun``::

    advrobust scan --model model.safetensors --data survey.h5 --attacks fgsm,pgd,onepixel,noise \\
        --eps-sky 2 --out catalog.parquet
    torchrun --nproc-per-node 4 -m advrobust.cli scan ...   # same catalogue, 4 processes
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from advrobust.attacks.by_name import ATTACK_NAMES, check_attack_names
from advrobust.cli.common import add_eps_arguments, floats, resolve_eps, sha256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("input and output")
    io.add_argument("--model", required=True, help="model file written by advrobust (safetensors)")
    io.add_argument("--data", required=True, help="image cube: .npy, .npz, HDF5 or FITS (streamed)")
    io.add_argument("--key", help="array / dataset / HDU of the images in --data")
    io.add_argument("--catalog", help="catalogue (FITS, CSV, Parquet, npz, HDF5); default: the --data file")
    io.add_argument("--catalog-key", help="FITS table or HDF5 group of the catalogue")
    io.add_argument("--id-column", help="catalogue column of object ids, joined exactly to --image-ids "
                    "(default: rows are joined by position and the id is the row number)")
    io.add_argument("--image-ids", help="array of the images' ids in --data (default: --id-column's name)")
    io.add_argument("--ebv-column", default="ebv", help="catalogue column of E(B-V), for photo-z models (default: ebv)")
    io.add_argument("--out", required=True, help="output catalogue (.parquet); parts go to OUT.parts/")
    atk = parser.add_argument_group("attacks")
    atk.add_argument("--attacks", default="fgsm,pgd,onepixel,noise",
                     help=f"comma-separated, among {','.join(ATTACK_NAMES)} (default: fgsm,pgd,onepixel,noise)")
    add_eps_arguments(atk, default_sky=2.0, measured_on="the first chunk")
    atk.add_argument("--pgd-steps", type=int, default=10)
    atk.add_argument("--pixels", type=int, default=1, help="one-pixel attack: pixels changed (default 1)")
    atk.add_argument("--population", type=int, default=100, help="one-pixel attack: DE population (default 100)")
    atk.add_argument("--generations", type=int, default=30, help="one-pixel attack: DE generations (default 30)")
    # (not --lo/--hi: torchrun would read --lo as an abbreviation of its own options)
    atk.add_argument("--valid-lo", type=floats, help="valid range of the pixels, per band (comma-separated) or "
                     "one value: the gradient attacks clamp to it and the one-pixel attack draws its values in "
                     "it; default: no clamp, and one-pixel values within the per-band minimum of the first chunk")
    atk.add_argument("--valid-hi", type=floats, help="as --valid-lo, the maximum")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--chunk-size", type=int, default=256, help="objects per part file (default 256)")
    run.add_argument("--batch-size", type=int, default=128, help="images per attack batch (default 128)")
    run.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    run.add_argument("--no-progress", action="store_true")


def main(argv: list, prog: str) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)

    import torch

    from advrobust import distributed, models
    from advrobust.attacks.by_name import AttackSettings
    from advrobust.data import load_survey
    from advrobust.models.base import PhotozModel
    from advrobust.scan.survey import scan_survey

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    try:
        attacks = check_attack_names(attacks)
    except ValueError as err:
        parser.error(str(err))
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible")
        if distributed.launched_by_torchrun():
            device = torch.device("cuda", distributed.local_rank())
    distributed.init_from_env(device)
    try:
        model = models.load(args.model, device=str(device))
        photoz = isinstance(model, PhotozModel)
        columns = {"ebv": args.ebv_column} if photoz else {}
        dataset = load_survey(args.data, args.catalog, columns=columns, image_key=args.key,
                              catalogue_key=args.catalog_key, id_column=args.id_column, image_ids=args.image_ids)
        first = dataset.images.read(0, min(len(dataset.images), args.chunk_size))
        eps, unit, sky = resolve_eps(args, first)
        bands = first.shape[1]
        per_band = (lambda v: None if v is None else np.broadcast_to(np.asarray(v, float), (bands,)).tolist())
        lo, hi = per_band(args.valid_lo), per_band(args.valid_hi)
        pixel_lo = lo if lo is not None else np.nanmin(first, axis=(0, 2, 3)).tolist()
        pixel_hi = hi if hi is not None else np.nanmax(first, axis=(0, 2, 3)).tolist()
        settings = AttackSettings(eps=eps, pgd_steps=args.pgd_steps, pixels=args.pixels,
                                  population=args.population, generations=args.generations, unit=unit)
        result = scan_survey(
            model, dataset, args.out, attacks=attacks, settings=settings, seed=args.seed,
            chunk_size=args.chunk_size, batch_size=args.batch_size, lo=lo, hi=hi, pixel_lo=pixel_lo,
            pixel_hi=pixel_hi, ebv="ebv",
            config={"model": os.path.abspath(args.model), "model_sha256": sha256(args.model),
                    "data": os.path.abspath(args.data), "key": args.key, "catalog": args.catalog,
                    "id_column": args.id_column},
            progress=not args.no_progress)
        if distributed.is_main():
            band_text = (lambda values: ", ".join(f"{v:.3g}" for v in values))
            eps_text = (f"eps = {eps:.4g} sky sigmas per band = [{band_text(eps * sky)}] image units"
                        if unit is not None else
                        f"eps = {eps:.4g} image units = [{band_text(eps / sky)}] sky sigmas per band")
            print(f"{prog}: {result['objects']} objects -> {result['out']} "
                  f"({'resumed, ' if result['resumed'] else ''}{result['computed']} computed here in "
                  f"{result['seconds']:.1f} s; {eps_text}; sky sigma per band [{band_text(sky)}])")
    finally:
        distributed.shutdown()
