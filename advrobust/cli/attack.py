"""``advrobust attack``: a model under the named attacks on your survey files
(:func:`advrobust.evaluate.evaluate_grid`).

Writes into ``--out``: ``report.md`` / ``report.html`` (clean vs each attack: accuracy and F1, or
photo-z bias / sigma_MAD / eta; the shares *flipped* (prediction differs from the clean one) and
*misclassified* (differs from the label, with ``--target``), :mod:`advrobust.cli.outcomes`; one-pixel
iterations; every attack's radius in image units and in sky sigmas; figures: a perturbation map of
a few objects, accuracy or sigma_MAD against the strength), ``results.json`` (every score of the
grid, ``outcomes``, the image unit and the sky sigma with its method) and ``adversarial.npz`` (the
images, their ids and each attack's adversarial images, :func:`advrobust.data.save_arrays`). Every
file is written atomically. Without ``--target`` the model's clean predictions stand in for the
labels. The image unit is ``--unit``, else the file's (FITS ``BUNIT``), else "image units"; the sky
sigma is measured on the first 1024 objects whatever ``--n`` is.

Photo-z models with ``--target`` (z_spec) also get the "p.d.f. under attack" tables (RAIL's PIT
statistics, CRPS, CDE loss, n(z) shift; RAIL's point metrics beside Campagne's) and the PIT / n(z)
figures; ``--write-qp`` writes the clean and each perturbed p.d.f. as qp ensembles (RAIL's format,
``pip install qp-prob``): ``pdf_clean.hdf5`` and ``pdf_<attack>.hdf5``, with the ids (and z_spec).

    advrobust attack --model model.safetensors --data survey.h5 --target label \\
        --attacks fgsm,pgd,onepixel,noise --eps-sky 2 --n 500 --out attack_report/
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from advrobust.attacks.by_name import ATTACK_NAMES
from advrobust.cli.argtypes import names
from advrobust.cli.data import EBV, LABEL, REDSHIFT, add_data_arguments, image_unit, open_survey, read_rows, sky_sample
from advrobust.cli.device import add_device_argument, resolve_device
from advrobust.cli.eps import add_eps_arguments, resolve_eps
from advrobust.cli.errors import UsageError
from advrobust.cli.model import is_photoz, load_model, sha256
from advrobust.cli.outcomes import (curve_attack, flipped, outcome_table, outcomes, perturbation_figures,
                                    plot_strength_curve, strength_curve)
from advrobust.cli.parser import CommandParser
from advrobust.cli.qp import require_qp


def build_parser(prog: str) -> CommandParser:
    parser = CommandParser(prog, __doc__, required=("model", "data", "out"))
    parser.add_argument("--model", help="model file written by advrobust (safetensors)")
    parser.add_argument("--out", help="report folder (created)")
    add_data_arguments(parser, target_help="catalogue column of the truth: class labels (classifier) or "
                                                  "spectroscopic redshifts (photo-z); default: the clean predictions")
    atk = parser.add_argument_group("attacks")
    atk.add_argument("--attacks", type=names, default=["fgsm", "pgd", "onepixel", "noise"],
                     help=f"comma-separated, among {','.join(ATTACK_NAMES)} (default: fgsm,pgd,onepixel,noise)")
    add_eps_arguments(atk, default_sky=2.0)
    atk.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations (default 10)")
    atk.add_argument("--pixels", type=int, default=1, help="one-pixel attack: pixels changed (default 1)")
    atk.add_argument("--population", type=int, default=100, help="one-pixel attack: DE population (default 100)")
    atk.add_argument("--generations", type=int, default=30, help="one-pixel attack: DE generations (default 30)")
    atk.add_argument("--write-qp", action="store_true", help="photo-z models: write the clean and each perturbed "
                     "p.d.f. as qp files pdf_clean.hdf5, pdf_<attack>.hdf5 in --out (needs qp-prob)")
    run = parser.add_argument_group("run")
    run.add_argument("--n", type=int, help="attack the first N objects (default: all)")
    run.add_argument("--batch-size", type=int, default=128, help="images per attack batch (default 128)")
    run.add_argument("--seed", type=int, default=0)
    add_device_argument(run)
    return parser


def build_attacks(names, settings, *, task: str, image_shape, device, seed: int, pixel_lo, pixel_hi) -> dict:
    """``{name: factory}`` for :func:`~advrobust.evaluate.evaluate_grid`: one generator seeded with
    ``seed`` (on ``device``) shared by the attacks in turn, the one-pixel attack seeded with ``seed``
    and drawing its values in ``[pixel_lo, pixel_hi]`` per band."""
    import torch

    from advrobust.attacks.by_name import attack_by_name

    generator = torch.Generator(device=device).manual_seed(int(seed))

    def factory(name):
        return lambda model: attack_by_name(name, model, settings, task=task, image_shape=image_shape,
                                            generator=generator, seed=int(seed), pixel_lo=pixel_lo,
                                            pixel_hi=pixel_hi)
    return {name: factory(name) for name in names}


def _tables(result, label: str, attacks: list, onepixel_max: int, rates: dict, threshold: float) -> list:
    from advrobust.report import ReportTable

    scores = result.scores[label]
    columns = ["natural"] + attacks
    if result.task == "photoz":
        tables = [ReportTable("Photo-z under attack: bias / sigma_MAD / eta (Campagne 2021)",
                              {label: {c: scores[c] for c in columns}}, columns,
                              note="eta: fraction with |dz| > 0.05, dz = (z_phot - z) / (1 + z).")]
    else:
        tables = [ReportTable("Accuracy and weighted F1 under attack",
                              {"accuracy": {c: scores[c]["accuracy"] for c in columns},
                               "F1 (weighted)": {c: scores[c]["f1"] for c in columns}}, columns)]
    tables.append(outcome_table(rates, label, attacks, result.task, threshold))
    if "onepixel" in attacks:
        it = scores["onepixel"].get("iterations", {})
        tables.append(ReportTable("One-pixel attack: generations needed by the successful attacks",
                                  {label: {k: it.get(k) for k in ("n_success", "mean", "median", "min", "max")}},
                                  percent=False, note=f"cap: {onepixel_max} generations."))
    return tables


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _truth(args, model, x, extra: tuple, dev, photoz: bool, values: dict):
    """The truth ``y``: the catalogue's ``--target`` column, or else the model's clean predictions."""
    import torch

    from advrobust import redshift
    from advrobust.evaluate import predict

    if args.target is not None:
        return torch.from_numpy(values[REDSHIFT if photoz else LABEL])
    logits = torch.cat([predict(model, x[i:i + args.batch_size].to(dev),
                                tuple(e[i:i + args.batch_size].to(dev) for e in extra), latent=False)[0].cpu()
                        for i in range(0, len(x), args.batch_size)])
    return redshift.z_phot(logits, model.bin_centres.cpu()) if photoz else logits.argmax(1)


def _attack(args, model, images: np.ndarray, values: dict, settings, dev, task: str):
    """``(grid result, {attack: kept adversarial images}, perf_counter when the grid started, truth
    y, extra inputs)`` of the attacks on ``images``."""
    import torch

    from advrobust.evaluate import evaluate_grid

    photoz = task == "photoz"
    x = torch.from_numpy(images)
    extra = (torch.from_numpy(values[EBV]),) if photoz else ()
    y = _truth(args, model, x, extra, dev, photoz, values)
    factories = build_attacks(args.attacks, settings, task=task, image_shape=tuple(images.shape[1:]), device=dev,
                              seed=args.seed, pixel_lo=torch.from_numpy(images.min(axis=(0, 2, 3))).to(dev),
                              pixel_hi=torch.from_numpy(images.max(axis=(0, 2, 3))).to(dev))
    kept = {a: [] for a in args.attacks}  # the adversarial batches, on the host

    started = time.perf_counter()
    result = evaluate_grid({os.path.basename(args.model): model}, factories, x, y, *extra, task=task,
                           batch_size=args.batch_size, keep_predictions=True,
                           on_adversarial=lambda _model, attack, x_adv: kept[attack].append(x_adv.detach().cpu()))
    return result, kept, started, y, extra


def _print_tables(tables: list) -> None:
    for table in tables:
        header, body = table.header_and_body()
        widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
        print(f"\n{table.title}")
        for row in [header] + body:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def _strength_text(eps: float, unit, sky, eps_image, unit_name: str) -> str:
    if unit is not None:
        return f"eps {eps:.4g} sky sigmas in every band = [{', '.join(f'{v:.3g}' for v in eps_image)}] {unit_name}"
    return f"eps {eps:.4g} {unit_name}" + (f" = {eps / np.median(sky):.3g} x the median sky sigma"
                                           if sky is not None else "")


def _measured(args, model, result, adversarial: dict, images: np.ndarray, y, extra: tuple, settings, dev,
              unit) -> tuple:
    """``(rates, figures)``: flipped / misclassified of each column (also put into the grid's scores),
    and the report's figures: a perturbation map of a few objects and the strength curve."""
    import torch

    label, task, threshold = os.path.basename(args.model), result.task, settings.threshold
    predictions = result.predictions[label]
    truth = y.numpy() if args.target is not None and task != "photoz" else None
    rates = outcomes(predictions, truth, task=task, threshold=threshold)
    for column, values in rates.items():
        result.scores[label][column].update(values)
    figures = perturbation_figures(images, adversarial, lambda a: flipped(predictions, a, task=task,
                                                                          threshold=threshold), args.image_unit)
    attack = curve_attack(args.attacks)
    if attack is not None:
        strengths, values, what, n = strength_curve(model, torch.from_numpy(images), extra, y, settings, task=task,
                                                    device=dev, seed=args.seed, batch_size=args.batch_size,
                                                    attack=attack)
        unit_label = "sky sigmas per band" if unit is not None else args.image_unit
        truth_text = "labels" if args.target is not None else "clean predictions"
        figures[f"{what} under {attack} against its radius, first {n} objects (truth: {truth_text})"] = \
            plot_strength_curve(strengths, values, what, attack=attack, unit_label=unit_label)
    return rates, figures


def _pdf_part(args, model, images: np.ndarray, values: dict, ids: np.ndarray, kept: dict, dev) -> tuple:
    """Photo-z: ``(tables, figures)`` of the p.d.f.s under attack (with ``--target``; else none) and,
    with ``--write-qp``, their qp files in ``--out``."""
    import torch

    from advrobust.data import write_qp
    from advrobust.report import PdfUnderAttack, pdf_figures, pdf_tables

    label = os.path.basename(args.model)
    z = torch.from_numpy(values[REDSHIFT]) if args.target is not None else None
    if z is None and not args.write_qp:
        return [], {}
    pdfs = PdfUnderAttack({label: model}, z, torch.from_numpy(values[EBV]), keep_pdfs=args.write_qp)
    pdfs.add_clean(torch.from_numpy(images), batch_size=args.batch_size)
    for attack, batches in kept.items():
        for xb in batches:
            pdfs.add_images(label, attack, xb.to(dev))
    if args.write_qp:
        os.makedirs(args.out, exist_ok=True)
        for column, pdf in pdfs.pdfs(label).items():
            name = "clean" if column == "natural" else column
            write_qp(os.path.join(args.out, f"pdf_{name}.hdf5"), pdf, pdfs.edges(label), ids=ids, z_spec=z)
    if z is None:
        return [], {}
    results = pdfs.results()
    return pdf_tables(results, objects=len(images)), pdf_figures(results, {label: pdfs.edges(label)})


def _write(args, result, adversarial: dict, images: np.ndarray, ids: np.ndarray, eps_sky: tuple, settings,
           run: dict, times: tuple, prog: str, rates: dict, figures: dict, extra_tables=()) -> None:
    """Write ``adversarial.npz``, ``results.json`` and the report into ``--out``, and print the tables.
    ``times``: ``perf_counter`` at the start, before the attacks, after them and after the figures;
    ``extra_tables``: further report tables (the p.d.f.s under attack, :func:`_pdf_part`)."""
    from advrobust.atomic import atomic_path
    from advrobust.attacks.by_name import image_unit_radii
    from advrobust.data import save_arrays
    from advrobust.data.sky import SKY_METHOD
    from advrobust.report import write_report

    eps, unit, sky = eps_sky
    (t0, t1, t2, t3), label, out = times, os.path.basename(args.model), args.out
    os.makedirs(out, exist_ok=True)
    arrays = {"images": images, "ids": ids, **{f"x_adv_{a}": x for a, x in adversarial.items()}}
    save_arrays(os.path.join(out, "adversarial.npz"), arrays)
    with atomic_path(os.path.join(out, "results.json")) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"task": result.task, "eps": eps, "eps_unit": "sky sigma per band" if unit else args.image_unit,
                   "image_unit": args.image_unit, "sky_sigma": None if sky is None else sky.tolist(),
                   "sky_method": SKY_METHOD, "outcomes": rates,
                   "scores": _plain(result.scores[label]), "seconds": result.seconds[label]}, handle, indent=1)
    eps_image = eps * np.asarray(unit) if unit is not None else eps  # per band with --eps-sky
    strengths = image_unit_radii(args.attacks, settings, images.shape[1:])
    tables = _tables(result, label, list(args.attacks), args.generations, rates, settings.threshold) + list(extra_tables)
    report = write_report(out, tables=tables, figures=figures, config=run, sky_sigma=sky, eps=strengths,
                          image_unit=args.image_unit, sky_method=SKY_METHOD,
                          timings={"load": t1 - t0, "attacks": t2 - t1, "figures": t3 - t2,
                                   "write": time.perf_counter() - t3},
                          title=f"advrobust attack: {label}")
    _print_tables(tables)
    if sky is not None:
        print(f"\n{SKY_METHOD}: [{', '.join(f'{v:.4g}' for v in sky)}] {args.image_unit}")
    print(f"\n{prog}: {len(images)} objects, {_strength_text(eps, unit, sky, eps_image, args.image_unit)}; report -> "
          f"{report['markdown']}, adversarial images -> {os.path.join(out, 'adversarial.npz')}")


def run(args: argparse.Namespace, prog: str) -> None:
    import torch

    from advrobust.attacks.by_name import AttackSettings, check_attack_names

    try:
        args.attacks = check_attack_names(args.attacks)
    except ValueError as err:
        raise UsageError(str(err)) from None

    t0 = time.perf_counter()
    dev = resolve_device(args.device)
    model = load_model(args.model, dev)
    photoz = is_photoz(model)
    if args.write_qp:
        require_qp(photoz)
    task = "photoz" if photoz else "classifier"
    dataset = open_survey(args, photoz=photoz, n_classes=None if photoz else model.n_outputs)
    images, values, ids = read_rows(dataset, args.n)
    eps, unit, sky = resolve_eps(args, sky_sample(dataset))  # the same sky whatever --n is
    args.image_unit = image_unit(args, dataset)
    settings = AttackSettings(eps=eps, pgd_steps=args.pgd_steps, pixels=args.pixels,
                              population=args.population, generations=args.generations, unit=unit)
    result, kept, t1, y, extra = _attack(args, model, images, values, settings, dev, task)
    t2 = time.perf_counter()
    adversarial = {a: torch.cat(kept[a]).numpy() for a in args.attacks}
    rates, figures = _measured(args, model, result, adversarial, images, y, extra, settings, dev, unit)
    pdf_tables, pdf_figures = _pdf_part(args, model, images, values, ids, kept, dev) if photoz else ((), {})
    figures.update(pdf_figures)
    t3 = time.perf_counter()
    run_config = {"model": os.path.abspath(args.model), "model_sha256": sha256(args.model),
                  "data": os.path.abspath(args.data), "key": args.key, "catalog": args.catalog, "target": args.target,
                  "objects": int(len(images)), "attacks": list(args.attacks), "settings": settings.as_dict(),
                  "seed": args.seed, "batch_size": args.batch_size, "device": str(dev),
                  "truth": "catalogue" if args.target is not None else "the clean predictions"}
    _write(args, result, adversarial, images, ids, (eps, unit, sky), settings, run_config, (t0, t1, t2, t3), prog,
           rates, figures, pdf_tables)
