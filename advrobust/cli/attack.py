"""``advrobust attack``: a model under the named attacks on your survey files
(:func:`advrobust.evaluate.evaluate_grid`).

Writes into ``--out``: ``report.md`` / ``report.html`` (clean vs each attack: accuracy and F1, or
photo-z bias / sigma_MAD / eta; success rates; one-pixel iterations; eps in image units and in sky
sigmas), ``results.json`` (every score of the grid) and ``adversarial.npz`` (the images, their ids
and each attack's adversarial images, :func:`advrobust.data.save_arrays`). Every file is written
atomically. Without ``--target`` the model's clean predictions stand in for the labels (success =
the prediction moves).

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
from advrobust.cli import common


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file written by advrobust (safetensors)")
    parser.add_argument("--out", help="report folder (created)")
    common.add_data_arguments(parser, target_help="catalogue column of the truth: class labels (classifier) or "
                                                  "spectroscopic redshifts (photo-z); default: the clean predictions")
    atk = parser.add_argument_group("attacks")
    atk.add_argument("--attacks", type=common.names, default=["fgsm", "pgd", "onepixel", "noise"],
                     help=f"comma-separated, among {','.join(ATTACK_NAMES)} (default: fgsm,pgd,onepixel,noise)")
    common.add_eps_arguments(atk, default_sky=2.0)
    atk.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations (default 10)")
    atk.add_argument("--pixels", type=int, default=1, help="one-pixel attack: pixels changed (default 1)")
    atk.add_argument("--population", type=int, default=100, help="one-pixel attack: DE population (default 100)")
    atk.add_argument("--generations", type=int, default=30, help="one-pixel attack: DE generations (default 30)")
    run = parser.add_argument_group("run")
    run.add_argument("--n", type=int, help="attack the first N objects (default: all)")
    run.add_argument("--batch-size", type=int, default=128, help="images per attack batch (default 128)")
    run.add_argument("--seed", type=int, default=0)
    common.add_device_argument(run)
    common.add_config_argument(parser)
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


def _tables(result, label: str, attacks: list, onepixel_max: int) -> list:
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
    tables.append(ReportTable("Attack success rate", {label: {a: scores[a]["success_rate"] for a in attacks}},
                              attacks, note="classifier: the predicted class changes; photo-z: |dz| > 0.05."))
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


def main(argv: list, prog: str) -> None:
    parser = build_parser(prog)
    args, _ = common.parse(parser, argv, required=("model", "data", "out"))
    unknown = [a for a in args.attacks if a not in ATTACK_NAMES]
    if unknown or not args.attacks:
        parser.error(f"unknown attacks {unknown}; choose among {','.join(ATTACK_NAMES)}")

    import torch

    from advrobust import redshift
    from advrobust.atomic import atomic_path
    from advrobust.attacks import eps_l2_equal_volume
    from advrobust.attacks.by_name import AttackSettings
    from advrobust.data import save_arrays
    from advrobust.evaluate import evaluate_grid, predict
    from advrobust.report import write_report

    t0 = time.perf_counter()
    dev = common.device(args.device)
    model = common.load_model(args.model, dev)
    photoz = common.is_photoz(model)
    task = "photoz" if photoz else "classifier"
    dataset = common.open_survey(args, photoz=photoz, n_classes=None if photoz else model.n_outputs)
    images, values, ids = common.read_rows(dataset, args.n)
    eps, unit, sky = common.resolve_eps(args, images)
    settings = AttackSettings(eps=eps, pgd_steps=args.pgd_steps, pixels=args.pixels,
                              population=args.population, generations=args.generations, unit=unit)
    x = torch.from_numpy(images)
    extra = (torch.from_numpy(values[common.EBV]),) if photoz else ()
    if args.target is not None:
        y = torch.from_numpy(values[common.REDSHIFT if photoz else common.LABEL])
    else:  # the clean predictions stand in for the truth
        logits = torch.cat([predict(model, x[i:i + args.batch_size].to(dev),
                                    tuple(e[i:i + args.batch_size].to(dev) for e in extra), latent=False)[0].cpu()
                            for i in range(0, len(x), args.batch_size)])
        y = redshift.z_phot(logits, model.bin_centres.cpu()) if photoz else logits.argmax(1)
    factories = build_attacks(args.attacks, settings, task=task, image_shape=tuple(images.shape[1:]), device=dev,
                              seed=args.seed, pixel_lo=torch.from_numpy(images.min(axis=(0, 2, 3))).to(dev),
                              pixel_hi=torch.from_numpy(images.max(axis=(0, 2, 3))).to(dev))
    kept = {a: [] for a in args.attacks}  # the adversarial batches, on the host

    label = os.path.basename(args.model)
    t1 = time.perf_counter()
    result = evaluate_grid({label: model}, factories, x, y, *extra, task=task, batch_size=args.batch_size,
                           on_adversarial=lambda _model, attack, x_adv: kept[attack].append(x_adv.detach().cpu()))
    t2 = time.perf_counter()

    out = args.out
    os.makedirs(out, exist_ok=True)
    arrays = {"images": images, "ids": ids, **{f"x_adv_{a}": torch.cat(kept[a]).numpy() for a in args.attacks}}
    save_arrays(os.path.join(out, "adversarial.npz"), arrays)
    with atomic_path(os.path.join(out, "results.json")) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"task": task, "eps": eps, "eps_unit": "sky sigma per band" if unit else "image units",
                   "sky_sigma": None if sky is None else sky.tolist(),
                   "scores": _plain(result.scores[label]), "seconds": result.seconds[label]}, handle, indent=1)
    eps_image = eps * np.asarray(unit) if unit is not None else eps  # per band with --eps-sky
    strengths = {a: eps_image for a in args.attacks if a in ("fgsm", "pgd", "noise")}  # L-inf, per pixel
    if "pgd2" in args.attacks and unit is None:  # with a unit the ball is ||delta / sky||_2 <= r: no image-unit radius
        strengths["pgd2 (L2 radius over a band's pixels)"] = eps_l2_equal_volume(eps, int(np.prod(images.shape[-2:])))
    tables = _tables(result, label, list(args.attacks), args.generations)
    config = {"model": os.path.abspath(args.model), "model_sha256": common.sha256(args.model),
              "data": os.path.abspath(args.data), "key": args.key, "catalog": args.catalog, "target": args.target,
              "objects": int(len(images)), "attacks": list(args.attacks), "settings": settings.as_dict(),
              "seed": args.seed, "batch_size": args.batch_size, "device": str(dev),
              "truth": "catalogue" if args.target is not None else "the clean predictions"}
    report = write_report(out, tables=tables, config=config, sky_sigma=sky, eps=strengths,
                          timings={"load": t1 - t0, "attacks": t2 - t1, "write": time.perf_counter() - t2},
                          title=f"advrobust attack: {label}")
    for table in tables:
        header, body = table.header_and_body()
        widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
        print(f"\n{table.title}")
        for row in [header] + body:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if unit is not None:
        strength = f"eps {eps:.4g} sky sigmas in every band = [{', '.join(f'{v:.3g}' for v in eps_image)}] image units"
    else:
        strength = f"eps {eps:.4g} image units" + (f" = {eps / np.median(sky):.3g} x the median sky sigma"
                                                   if sky is not None else "")
    print(f"\n{prog}: {len(images)} objects, {strength}; report -> {report['markdown']}, "
          f"adversarial images -> {os.path.join(out, 'adversarial.npz')}")
