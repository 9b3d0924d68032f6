"""``advrobust train``: train a model on your survey files (:class:`advrobust.train.Trainer`).

A classifier learns the integer labels of ``--target`` (cross-entropy); a photo-z model (inputs image
and E(B-V)) the spectroscopic redshifts of ``--target`` (cross-entropy on the redshift bin, Campagne
2021). A checkpoint ``OUT.checkpoint`` is written after every epoch: a killed run resumes when the
same command is run again, and a finished run trains further with a larger ``--epochs`` (delete the
checkpoint to start over). The model goes to ``--out`` (atomic: a failed run leaves the old file)::

    advrobust train --model morphology_small --data survey.h5 --target label --out model.safetensors \\
        --epochs 20 --defense adversarial --attack fgsm --eps-sky 2
    advrobust train --config train.toml --epochs 30      # options from a file, one overridden
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from advrobust.attacks.by_name import TRAINING_ATTACKS
from advrobust.cli.data import EBV, REDSHIFT, add_data_arguments, fields, input_config, open_survey
from advrobust.cli.device import add_device_argument, resolve_device
from advrobust.cli.eps import add_eps_arguments, resolve_eps
from advrobust.cli.errors import UsageError
from advrobust.cli.model import is_photoz, load_model
from advrobust.cli.parser import CommandParser

DEFENSES = ("none", "adversarial", "noisy", "mixed", "mmd")
#: options that may change between a run and its resumption (everything else must match)
_MAY_CHANGE = ("epochs", "device", "config", "config_tables", "no_progress", "out")


def build_parser(prog: str) -> CommandParser:
    parser = CommandParser(prog, __doc__, required=("data", "target", "out"), tables=("model",))
    parser.add_argument("--model", help="a model name (one of advrobust.models.available_models()) or a weight file "
                                        "to fine-tune; in a config, either `model = ...` or a [model] table with "
                                        "`name = ...` and the constructor's arguments")
    parser.add_argument("--out", help="model file to write (safetensors); the checkpoint is OUT.checkpoint")
    add_data_arguments(parser, target_help="catalogue column to learn: class labels 0..K-1 (classifier) "
                                                  "or spectroscopic redshifts (photo-z model)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    fit.add_argument("--batch-size", type=int, default=64, help="default 64")
    fit.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    fit.add_argument("--val-fraction", type=float, default=0.1,
                     help="fraction of the objects held out for validation, drawn with --seed (default 0.1)")
    fit.add_argument("--seed", type=int, default=0)
    add_device_argument(fit)
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    defense = parser.add_argument_group("defense")
    defense.add_argument("--defense", default="none", choices=DEFENSES,
                         help="adversarial: a fraction of each batch replaced by --attack samples (Campagne 2021); "
                              "noisy: Gaussian noise of --noise-sigma; mixed: thirds natural, PGD-L2, PGD-Linf; "
                              "mmd: + lambda MMD^2 to the latents of --mmd-target (Ciprijanovic et al. 2022)")
    defense.add_argument("--attack", default="fgsm", choices=TRAINING_ATTACKS, help="adversarial: the attack")
    add_eps_arguments(defense, default_sky=None)
    defense.add_argument("--eps-l2", type=float, help="mixed: PGD-L2 radius (image units; default: the L2 ball of "
                                                      "the L-inf ball's volume, advrobust.attacks.eps_l2_equal_volume)")
    defense.add_argument("--fraction", type=float, default=0.2,
                         help="adversarial: fraction of each batch (default 0.2)")
    defense.add_argument("--pgd-steps", type=int, default=7, help="PGD iterations (default 7)")
    defense.add_argument("--noise-sigma", type=float, help="noisy: noise sigma in image units")
    defense.add_argument("--mmd-target", help="mmd: image file of the unlabelled target domain")
    defense.add_argument("--mmd-key", help="mmd: array / dataset / HDU of the images in --mmd-target")
    defense.add_argument("--mmd-lambda", type=float, default=0.01, help="mmd: lambda (default 0.01)")
    return parser


def split(n: int, fraction: float, seed: int):
    """``(train rows, validation rows)`` of ``n`` objects: a permutation drawn with ``seed``, the
    first ``round(fraction * n)`` (at least 1 when ``fraction > 0``) for validation."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fraction * n))) if fraction > 0 else 0
    if n - n_val < 1:
        raise ValueError(f"--val-fraction {fraction} leaves no training object out of {n}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _defense(args, photoz: bool, train_images: np.ndarray):
    """``(batch_transform, extra_losses, description)`` of ``--defense``."""
    import torch

    from advrobust.attacks import eps_l2_equal_volume
    from advrobust.defenses import AdversarialTraining, MixedTraining, MMDAdaptation, NoisyTraining

    if args.defense == "none":
        return None, [], "none"
    if args.defense == "noisy":
        if args.noise_sigma is None:
            raise UsageError("--defense noisy needs --noise-sigma")
        return NoisyTraining(args.noise_sigma), [], f"noisy (sigma {args.noise_sigma:g})"
    if args.defense == "mmd":
        if args.mmd_target is None:
            raise UsageError("--defense mmd needs --mmd-target")
        if photoz:
            raise ValueError("--defense mmd needs a single-input model (the target latents are model.features(image)); "
                             "photo-z models also take E(B-V)")
        from advrobust.data import load_images

        if not os.path.exists(args.mmd_target):
            raise FileNotFoundError(f"--mmd-target {args.mmd_target}: no such file")
        target = torch.from_numpy(np.ascontiguousarray(load_images(args.mmd_target, args.mmd_key), dtype=np.float32))
        return (None, [MMDAdaptation(target, args.mmd_lambda)],
                f"mmd (lambda {args.mmd_lambda:g}, {len(target)} target images)")
    if args.eps is None and args.eps_sky is None:
        raise UsageError(f"--defense {args.defense} needs --eps or --eps-sky")
    eps, unit, sky = resolve_eps(args, train_images[:1024])
    if unit is not None:
        in_sky = f" sky sigmas in every band = [{', '.join(f'{eps * s:.3g}' for s in sky)}] image units"
    else:
        in_sky = f" = {eps / np.median(sky):.3g} median sky sigmas" if sky is not None else ""
    unit = None if unit is None else torch.tensor(unit)
    if args.defense == "adversarial":
        return (AdversarialTraining(args.attack, eps, fraction=args.fraction, steps=args.pgd_steps, unit=unit), [],
                f"adversarial ({args.attack}, eps {eps:.4g}{in_sky}, fraction {args.fraction:g})")
    eps_l2 = args.eps_l2 if args.eps_l2 is not None else eps_l2_equal_volume(eps, int(np.prod(train_images.shape[-2:])))
    return (MixedTraining(eps, eps_l2, steps=args.pgd_steps, unit=unit), [],
            f"mixed (eps {eps:.4g}{in_sky}, eps_l2 {eps_l2:.4g})")


def _photoz_scores(model, dataset, device, batch_size: int) -> dict:
    """bias, sigma_MAD and eta of the model's z_phot on ``dataset`` (Campagne 2021's metrics)."""
    import torch
    from torch.utils.data import DataLoader

    from advrobust.modes import eval_mode
    from advrobust.metrics import photoz_metrics

    z_phot, z_spec = [], []
    with torch.no_grad(), eval_mode(model):
        for items in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            z_phot.append(model.z_phot(items["image"].to(device), items[EBV].to(device)).cpu())
            z_spec.append(items[REDSHIFT])
    return photoz_metrics(torch.cat(z_phot), torch.cat(z_spec))


def _check_resumable(path: str, run: dict) -> None:
    """Refuse to resume a checkpoint written by a run with other options or over changed input files."""
    from advrobust.data.fingerprint import describe_change

    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        before = json.load(handle)
    differ = sorted(k for k in set(before) | set(run) if before.get(k) != run.get(k))
    if differ:
        raise ValueError(f"the checkpoint next to --out was written by a run with other options "
                         f"({'; '.join(describe_change(k, before.get(k), run.get(k)) for k in differ[:4])}); "
                         f"run the same command to resume it, or delete {path[:-len('.json')]} and its .json "
                         "to start over")


def run(args: argparse.Namespace, prog: str) -> None:
    model_kwargs = dict(args.config_tables.get("model", {}))
    name = model_kwargs.pop("name", None)  # TOML cannot hold both a key `model` and a table [model]
    if args.model is None:
        if name is None:
            raise UsageError("the following arguments are required (on the command line or in --config): --model "
                             "(or `name` in the config's [model] table)")
        args.model = name

    import torch
    from torch.utils.data import Subset

    from advrobust import models
    from advrobust.atomic import atomic_path
    from advrobust.train import Trainer

    dev = resolve_device(args.device)
    out = os.path.abspath(args.out)
    if not os.path.isdir(os.path.dirname(out)):
        raise FileNotFoundError(f"--out {args.out}: the folder {os.path.dirname(out)} does not exist")
    checkpoint = out + ".checkpoint"
    run = {k: v for k, v in vars(args).items() if k not in _MAY_CHANGE}
    run["model_kwargs"] = model_kwargs
    run.update({k: v for k, v in input_config(args).items() if k.endswith("_fingerprint")})
    _check_resumable(checkpoint + ".json", run)

    torch.manual_seed(args.seed)  # the initial weights of a model built by name
    model = load_model(args.model, dev, registry=True, kwargs=model_kwargs)
    photoz = is_photoz(model)
    dataset = open_survey(args, photoz=photoz, n_classes=None if photoz else model.n_outputs)
    train_rows, val_rows = split(len(dataset), args.val_fraction, args.seed)
    train_set, val_set = Subset(dataset, train_rows.tolist()), Subset(dataset, val_rows.tolist())
    first = dataset.read_images(0, min(len(dataset), 1024)) if args.defense not in ("none", "noisy", "mmd") else None
    transform, extra_losses, defense = _defense(args, photoz, first)

    trainer = Trainer(model, "photoz_ce" if photoz else "ce", lr=args.lr, seed=args.seed, device=dev,
                      checkpoint=checkpoint, batch_transform=transform, extra_losses=extra_losses,
                      fields=fields(photoz), progress=not args.no_progress)
    resumed = os.path.exists(checkpoint)
    with atomic_path(checkpoint + ".json") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(run, handle, indent=1, sort_keys=True, default=str)
    if resumed:
        trainer.load(checkpoint)
    start = trainer.epoch
    trainer.fit(train_set, args.epochs, batch_size=args.batch_size, val=val_set if len(val_set) else None,
                resume=False)  # loaded above
    models.save(model, out)

    scored, where = (val_set, "validation") if len(val_set) else (train_set, "training (no validation set)")
    scores = trainer.evaluate(scored, args.batch_size)
    if photoz:
        scores.update(_photoz_scores(model, scored, dev, args.batch_size))
    epochs = (f"epochs {start + 1}-{trainer.epoch}" if trainer.epoch > start else "no epoch left to run")
    print(f"{prog}: {epochs} of {args.epochs}" + (f" (resumed from the checkpoint at epoch {start})" if resumed else "")
          + f"; {len(train_set)} training objects; defense {defense}")
    print(f"{where} on {len(scored)} objects: " + " ".join(f"{k}={float(v):.6g}" for k, v in scores.items()))
    print(f"model -> {out}\ncheckpoint -> {checkpoint} (run the same command to resume or, with a larger --epochs, "
          "to train further; delete it to start over)")
