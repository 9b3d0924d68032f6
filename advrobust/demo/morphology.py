"""The demo's morphology part (Ciprijanovic et al. 2022, DeepAdversaries; Cohen et al. 2019).

Simulate spirals, ellipticals and mergers (gri, each at LSST Y10 and Y1 depth), preprocess them as
the paper does (percentile clip + arcsinh, so every image lies in [0, 1]), and train three
classifiers on the labelled Y10 images: a baseline, one with MMD domain adaptation towards the
unlabelled Y1 images, and one with Gaussian noise (the base of randomized smoothing). Then measure:
accuracy on Y10 and on the Y1 twins (observational noise), FGSM and PGD, the one-pixel attack
(success rate and iterations needed, with and without domain adaptation; a changed pixel stays in
[0, 1], the data's range), latent distances, isomaps, a church window, and certified accuracy of
the smoothed classifier (fixed n, and adaptive with the samples it spends).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from advrobust.attacks.by_name import AttackSettings, attack_by_name
from advrobust.data import MORPHOLOGY_BANDS, MORPHOLOGY_CLASSES, SurveyDataset, simulate_morphology, sky_sigma
from advrobust.defenses import MMDAdaptation, NoisyTraining, Smooth, latent_mmd
from advrobust.demo.config import MorphologyConfig
from advrobust.demo.seeds import difference
from advrobust.demo.stage import StageResult, sky_label
from advrobust.evaluate import NATURAL, church_window, evaluate_grid, predict
from advrobust.metrics import average_certified_radius, certified_accuracy, latent_distances
from advrobust.models import create, model_arguments, save
from advrobust.plots import plot_certified_accuracy, plot_church_window, plot_distance_histograms, plot_isomap
from advrobust.report import Num, ReportTable, Spread
from advrobust.scan.certification import certified_accuracy_at
from advrobust.train import Trainer

#: radii at which certified accuracy is tabulated, in units of the smoothing sigma
CERTIFY_RADII_SIGMA = (0.0, 0.5, 1.0, 1.5, 2.0)
#: adaptive certification's n_max: this many times the fixed procedure's n0 + n, at most Cohen et al.'s 100,000
ADAPTIVE_BUDGET, ADAPTIVE_N_MAX_CAP = 10, 100_000


@dataclass
class Survey:
    """The simulated morphology survey, preprocessed (values in [0, 1]).

    Attributes:
        x10, x1: ``(N, 3, size, size)`` gri stamps at Y10 and at Y1 depth (CPU).
        labels: ``(N,)`` int64 classes (0 spiral, 1 elliptical, 2 merger).
        train, test: the slices of the training and the test galaxies.
        sky: ``(3,)`` per-band sky sigma of the preprocessed Y10 training stamps (NumPy).
        unit: ``sky`` as a float32 tensor on the device (the attacks' unit).
        config: the part's settings it was simulated with (the models trained on it use them too).
    """

    x10: Tensor
    x1: Tensor
    labels: Tensor
    train: slice
    test: slice
    sky: np.ndarray
    unit: Tensor
    config: MorphologyConfig


@dataclass
class _Measured:
    """What the three models do on the test set.

    Attributes:
        on_y10, on_y1: clean grids (with predictions) on the Y10 images and on their Y1 twins.
        grad: FGSM and PGD-Linf grid on the first ``n_attack`` Y10 test images.
        latents: ``{model: (Y10 latents, Y1 latents)}``, each ``(n_test, latent_dim)``.
        mmd: ``{model: MMD^2 between its Y10 and Y1 latents}``.
        scale: ``{model: median norm of its clean Y10 latents}``, the unit of its latent distances.
    """

    on_y10: Any  # advrobust.evaluate grid results (their .scores and .predictions are read)
    on_y1: Any
    grad: Any
    latents: Dict[str, Tuple[Tensor, Tensor]]
    mmd: Dict[str, float]
    scale: Dict[str, float]


def run_morphology(cfg: MorphologyConfig, survey: Survey, *, seed: int, device: torch.device, progress: bool,
                   models_dir: str, first: bool = True) -> StageResult:
    """Train the three classifiers from ``seed``, perturb, tabulate; certify when ``first``.

    The trained models are written to ``models_dir`` (``morphology_<baseline|mmd|noisy>.safetensors``, with
    ``_seed<seed>`` before the suffix unless ``first``). The one-model stages (isomaps, histograms,
    church window, randomized smoothing, adaptive certification) run only when ``first``. Findings and
    headline come from the facts of every seed (:func:`morphology_findings`, :func:`morphology_headline`).

    Args:
        survey: :func:`simulate_survey`'s data (the same for every seed).
        seed: the training seed (initial weights, sample order, attacks' random draws).
        first: this is the first seed: save the models under the plain names, run the one-model stages.

    Returns:
        :class:`StageResult`; ``models`` is ``{"basic": baseline, "noisy": noisy training}``; ``facts``
        (:class:`Num`) holds per model ``morphology/<model>/Y10``, ``.../Y1``, ``.../<attack>`` accuracies,
        ``.../mmd``, ``.../latent_distance``, and for the baseline and domain adaptation
        ``.../onepixel_success``, ``.../onepixel_median_iterations``, ``.../onepixel_images``; when ``first``
        also ``morphology/certified_acr`` and ``morphology/adaptive_median_samples``.
    """
    out = StageResult()
    models = _train(out, cfg, survey, seed=seed, device=device, progress=progress, models_dir=models_dir,
                    suffix="" if first else f"_seed{seed}")
    base, da, noisy = models  # the three names, in training order
    out.models = {"basic": models[base], "noisy": models[noisy]}
    x10_t, x1_t, y_t = (t[survey.test].to(device) for t in (survey.x10, survey.x1, survey.labels))
    settings = AttackSettings(eps=cfg.eps_sky, pgd_steps=cfg.pgd_steps, unit=survey.unit, population=cfg.population,
                              generations=cfg.generations)

    def factory(kind: str):
        return lambda m: attack_by_name(kind, m, settings, task="classifier", image_shape=tuple(survey.x10.shape[1:]),
                                        generator=torch.Generator(device=device).manual_seed(seed), seed=seed,
                                        lo=0.0, hi=1.0)

    measured = _measure(out, cfg, models, x10_t, x1_t, y_t, factory, progress)
    out.tables.append(_accuracy_table(out, cfg, models, measured, survey.sky))
    onepixel, chosen = _one_pixel(out, cfg, models, (base, da), x10_t, y_t, measured.on_y10, factory("onepixel"),
                                  measured.scale)
    if first:
        out.figures.update(_latent_figures((base, da), measured.latents, measured.scale, y_t, onepixel))
        if onepixel is not None:
            out.figures.update(_church(models[base], base, x10_t[chosen], y_t[chosen], factory("onepixel"), seed))
        fixed = _certify(out, cfg, models[noisy], noisy, x10_t, y_t, seed, device)
        _certify_adaptive(out, cfg, models[noisy], noisy, x10_t, y_t, seed, device, fixed)
    return out


def model_names(cfg: MorphologyConfig) -> tuple:
    """``(baseline, MMD domain adaptation, noisy training)``: the three models' names in tables and facts."""
    return ("baseline", f"MMD domain adaptation (lambda = {cfg.mmd_lambda:g})",
            f"noisy training (sigma = {cfg.noise_sigma:g})")


def _attack_names(cfg: MorphologyConfig) -> tuple:
    """``(FGSM, PGD-Linf)`` column names at the configured strength."""
    return f"FGSM {sky_label(cfg.eps_sky)}", f"PGD-Linf {sky_label(cfg.eps_sky)}"


def _shift(facts: Mapping[str, Spread], m: str) -> str:
    """Accuracy Y10 -> Y1 of model ``m``, e.g. ``"91.0% -> 84.5%"`` (from the combined facts)."""
    return f"{facts[f'morphology/{m}/Y10']} -> {facts[f'morphology/{m}/Y1']}"


def _count(spread: Spread) -> str:
    """A count as text: ``"100"`` when every seed has the same, else its mean ± std."""
    return f"{spread.mean:.0f}" if spread.std == 0 else str(spread)


def morphology_headline(cfg: MorphologyConfig, facts: Mapping[str, Spread]) -> list:
    """The morphology ``(what, measured)`` lines of the demo's closing table, from the facts of every seed."""
    base, da, _ = model_names(cfg)
    fgsm, _ = _attack_names(cfg)
    lines = [("morphology baseline accuracy Y10 -> Y1", _shift(facts, base)),
             ("morphology with MMD domain adaptation Y10 -> Y1", _shift(facts, da)),
             (f"morphology baseline accuracy under {fgsm}", str(facts[f"morphology/{base}/{fgsm}"]))]
    if f"morphology/{base}/onepixel_success" in facts:
        lines.append((f"morphology one-pixel success ({_count(facts[f'morphology/{base}/onepixel_images'])} images): "
                       "baseline / domain adaptation", f"{facts[f'morphology/{base}/onepixel_success']} / "
                                                       f"{facts[f'morphology/{da}/onepixel_success']}"))
    return lines


def morphology_findings(cfg: MorphologyConfig, facts: Mapping[str, Spread]) -> list:
    """The morphology sentences of the report's findings (observational noise, FGSM / PGD, one-pixel), from
    the facts of every seed: an effect is claimed only where :func:`advrobust.demo.seeds.difference` allows it."""
    base, da, _ = model_names(cfg)
    fgsm, pgd = _attack_names(cfg)
    k = min(cfg.n_attack, cfg.n_test)

    def f(m: str, key: str) -> Spread:
        return facts[f"morphology/{m}/{key}"]

    seeds = f(base, "Y10").seeds
    gaps = difference(f(base, "Y10") - f(base, "Y1"), f(da, "Y10") - f(da, "Y1"))
    findings = [
        f"Observational noise: accuracy Y10 -> Y1 twins ({cfg.n_test} test galaxies"
        f"{f', means over {seeds} training seeds' if seeds > 1 else ''}) is {_shift(facts, base)} for the baseline "
        f"and {_shift(facts, da)} with MMD domain adaptation: " + gaps.verdict(
            "domain adaptation narrowed the Y10 -> Y1 gap", "domain adaptation widened the Y10 -> Y1 gap",
            "the run cannot tell whether domain adaptation changed the Y10 -> Y1 gap")
        + _accuracy_clauses(f(da, "Y10"), f(base, "Y10"), f(da, "Y1"), f(base, "Y1"))
        + f". The MMD^2 between the Y10 and Y1 latents is {f(base, 'mmd')} (baseline) and {f(da, 'mmd')} (domain "
        f"adaptation), each in its model's latent units. Under {fgsm} the baseline keeps {f(base, fgsm)}, under "
        f"{pgd} {f(base, pgd)} ({k} images)."]
    if f"morphology/{base}/onepixel_success" in facts:
        findings.append(
            f"One-pixel attack on {_count(f(base, 'onepixel_images'))} test images both models classify correctly: success "
            f"{f(base, 'onepixel_success')} for the baseline (median {f(base, 'onepixel_median_iterations')} "
            f"generations when it succeeds) and {f(da, 'onepixel_success')} with domain adaptation (median "
            f"{f(da, 'onepixel_median_iterations')}): " + difference(
                f(base, "onepixel_success"), f(da, "onepixel_success")).verdict(
                "one-pixel success is lower with domain adaptation", "one-pixel success is higher with domain "
                "adaptation", "the run cannot tell whether one-pixel success differs with and without domain "
                "adaptation") + ".")
    else:
        findings.append("One-pixel attack: skipped, no test image is classified correctly by both models.")
    return findings


def _accuracy_clauses(da_y10: Spread, base_y10: Spread, da_y1: Spread, base_y1: Spread) -> str:
    """What a narrower gap is made of: Y1 accuracy with vs without domain adaptation (Ciprijanovic et al.
    2022 find it higher with), and Y10 accuracy where the rule tells the two apart (a gap can narrow by
    losing Y10 accuracy)."""
    text = "; " + difference(da_y1, base_y1).verdict(
        "on Y1 domain adaptation is more accurate", "on Y1 domain adaptation is less accurate",
        "on Y1 the run cannot tell the two models apart")
    y10 = difference(da_y10, base_y10)
    if y10.claimed:
        text += "; " + y10.verdict("on Y10 domain adaptation is more accurate",
                                   "on Y10 domain adaptation is less accurate", "")
    return text


def simulate_survey(out: StageResult, cfg: MorphologyConfig, seed: int, device: torch.device) -> Survey:
    """Simulate and preprocess ``n_train + n_test`` galaxies at Y10 and Y1 depth; measure the Y10 sky."""
    n = cfg.n_train + cfg.n_test
    with out.timed(f"morphology: simulate and preprocess {n:,} galaxies at Y10 and Y1 depth"):
        sim = simulate_morphology(n, seed=seed + 1, size=cfg.size, preprocess=True)
    train = slice(0, cfg.n_train)
    sky = sky_sigma(sim["images_y10"][train])
    return Survey(x10=torch.from_numpy(sim["images_y10"]), x1=torch.from_numpy(sim["images_y1"]),
                   labels=torch.from_numpy(sim["labels"]).long(), train=train, test=slice(cfg.n_train, n),
                   sky=sky, unit=torch.tensor(sky, dtype=torch.float32, device=device), config=cfg)


def training_set(survey: Survey, n: Optional[int] = None) -> SurveyDataset:
    """The labelled Y10 training images of ``survey`` (all, or the first ``n``), with the flips and
    rotations of ``augment``."""
    x, y = survey.x10[survey.train][:n], survey.labels[survey.train][:n]
    return SurveyDataset(x, {"label": y}, augment=True)


def _train(out: StageResult, cfg: MorphologyConfig, survey: Survey, *, seed: int, device: torch.device,
           progress: bool, models_dir: str, suffix: str) -> dict:
    """``{baseline, MMD domain adaptation, noisy training}`` classifiers trained on the labelled Y10
    images from the same seed, saved to ``models_dir`` (``morphology_<baseline|mmd|noisy><suffix>.safetensors``)
    and returned in eval mode."""
    train_set = training_set(survey)
    base, da, noisy = model_names(cfg)
    adaptation = MMDAdaptation(survey.x1[survey.train].to(device), lam=cfg.mmd_lambda)
    fit = functools.partial(train_classifier, out, cfg, train_set, seed=seed, device=device, progress=progress,
                            models_dir=models_dir)
    return {base: fit(base, "baseline" + suffix),
            da: fit(da, "mmd" + suffix, extra=(adaptation,)),
            noisy: fit(noisy, "noisy" + suffix, NoisyTraining(cfg.noise_sigma))}


def train_classifier(out: StageResult, cfg: MorphologyConfig, train_set, label: str, file: str, transform=None,
                     extra=(), *, seed: int, device: torch.device, progress: bool, models_dir: str) -> torch.nn.Module:
    """A ``cfg.model`` classifier trained from seed ``seed`` (Adam, ``cfg.lr``, ``cfg.epochs`` epochs of
    ``cfg.batch_size``) on ``train_set`` with the trainer's ``batch_transform`` ``transform`` and
    ``extra_losses`` ``extra``, timed as ``label``, saved to ``models_dir/morphology_<file>.safetensors``
    and returned in eval mode."""
    torch.manual_seed(seed)
    # ResNet18 pools globally and takes no image size
    sized = {"image_size": cfg.size} if "image_size" in model_arguments(cfg.model) else {}
    model = create(cfg.model, **sized)
    with out.timed(f"morphology: train {label} ({len(train_set):,} Y10 images, {cfg.epochs} epochs)"):
        Trainer(model, "ce", lr=cfg.lr, batch_transform=transform, extra_losses=extra, seed=seed,
                progress=progress, device=device, fields=("image", "label")).fit(
            train_set, cfg.epochs, batch_size=cfg.batch_size)
    save(model, os.path.join(models_dir, f"morphology_{file}.safetensors"))
    return model.eval()


def _measure(out: StageResult, cfg: MorphologyConfig, models: dict, x10, x1, y, factory, progress: bool) -> _Measured:
    """Clean accuracy on Y10 and Y1, FGSM and PGD on the first ``n_attack`` images, the latents and
    their Y10-Y1 MMD^2."""
    k = min(cfg.n_attack, cfg.n_test)
    fgsm, pgd = _attack_names(cfg)
    with out.timed(f"morphology: accuracy on Y10 and Y1 ({cfg.n_test} test galaxies), FGSM and PGD on {k}"):
        on_y10 = evaluate_grid(models, {}, x10, y, n_classes=3, keep_predictions=True)
        on_y1 = evaluate_grid(models, {}, x1, y, n_classes=3, keep_predictions=True)
        grad = evaluate_grid(models, {fgsm: factory("fgsm"), pgd: factory("pgd")}, x10[:k], y[:k], n_classes=3,
                             progress=progress)
        latents = {m: (predict(model, x10)[1], predict(model, x1)[1]) for m, model in models.items()}
        mmd = {m: latent_mmd(*latents[m]) for m in models}  # as domain_mmd, on the latents just computed
    # each model's latent space has its own scale: distances are given in units of the median norm of
    # the model's clean Y10 latents, so that models can be compared
    scale = {m: float(latents[m][0].norm(dim=1).median()) for m in models}
    return _Measured(on_y10=on_y10, on_y1=on_y1, grad=grad, latents=latents, mmd=mmd, scale=scale)


def _accuracy_table(out: StageResult, cfg: MorphologyConfig, models: dict, measured: _Measured,
                    sky: np.ndarray) -> ReportTable:
    """Accuracy and F1 on Y10 and Y1, under FGSM and PGD, and the Y10-Y1 latent shift of every model;
    the accuracies, latent distances and MMD^2 go into ``out.facts``."""
    k = min(cfg.n_attack, cfg.n_test)
    fgsm, pgd = _attack_names(cfg)
    rows = {}
    for m in models:
        y10, y1 = measured.on_y10.scores[m][NATURAL], measured.on_y1.scores[m][NATURAL]
        d = latent_distances(*measured.latents[m]) / measured.scale[m]
        acc = {"Y10": Num(y10["accuracy"], ".1%", cfg.n_test), "Y1": Num(y1["accuracy"], ".1%", cfg.n_test),
               fgsm: Num(measured.grad.scores[m][fgsm]["accuracy"], ".1%", k),
               pgd: Num(measured.grad.scores[m][pgd]["accuracy"], ".1%", k)}
        latent = {"latent_distance": Num(np.median(d), ".3g"), "mmd": Num(measured.mmd[m], ".3g")}
        rows[m] = {"Y10": acc["Y10"], "Y1": acc["Y1"], "F1 Y10": Num(y10["f1"], ".1%"), "F1 Y1": Num(y1["f1"], ".1%"),
                   fgsm: acc[fgsm], pgd: acc[pgd], "latent distance Y10-Y1 (median, relative)": latent["latent_distance"],
                   "MMD^2 Y10-Y1 latents": latent["mmd"]}
        out.facts.update({f"morphology/{m}/{key}": v for key, v in {**acc, **latent}.items()})
    return ReportTable(
        f"Morphology: accuracy on Y10, on their Y1 twins, and under attack ({cfg.n_test} test galaxies; "
        f"FGSM / PGD on {k})", rows=rows,
        note=(f"{cfg.model} on {cfg.size}x{cfg.size} gri stamps preprocessed as Ciprijanovic et al. 2022 "
              "(percentile clip + arcsinh, values in [0, 1]); F1 weighted by true counts. FGSM / PGD strength: "
              f"{cfg.eps_sky:g} sky sigma of the preprocessed Y10 images per band ("
              + ", ".join(f"{b} {s:.3g}" for b, s in zip(MORPHOLOGY_BANDS, sky)) + "; one value per band pooled over "
              "the training images, each of which has its own percentile clip), clamped to [0, 1]. Latent distances "
              "are Euclidean, in units of the median norm of the model's own clean Y10 latents; the MMD^2 "
              "(DeepAdversaries' 19 kernel widths) is between the Y10 and Y1 latents of the test galaxies, in each "
              "model's own latent units."))


def _one_pixel(out: StageResult, cfg: MorphologyConfig, models, names, x, y, on_y10, attack, scale):
    """The one-pixel attack on the first ``n_onepixel`` test images both models ``names`` classify
    correctly; returns ``(grid, chosen indices)``, ``(None, None)`` when there is none."""
    correct = np.logical_and.reduce([on_y10.predictions[m][NATURAL] == y.cpu().numpy() for m in names])
    chosen = torch.from_numpy(np.flatnonzero(correct)[:cfg.n_onepixel]).to(x.device)
    if len(chosen) == 0:
        return None, None
    with out.timed(f"morphology: one-pixel attack on {len(chosen)} images x {len(names)} models "
                   f"(population {cfg.population}, {cfg.generations} generations)"):
        grid = evaluate_grid({m: models[m] for m in names}, {"one-pixel": attack}, x[chosen], y[chosen],
                             n_classes=3, keep_distances=True, batch_size=len(chosen))  # one batch: _church re-runs it
    rows = {}
    for m in names:
        cell = grid.scores[m]["one-pixel"]
        it = cell["iterations"]
        facts = {"onepixel_images": Num(len(chosen), ".0f"),
                 "onepixel_success": Num(cell["success_rate"], ".0%", len(chosen)),
                 "onepixel_median_iterations": Num(it.get("median", float("nan")), ".3g")}
        rows[m] = {"images": facts["onepixel_images"], "success rate": facts["onepixel_success"],
                   "iterations needed (median of successes)": facts["onepixel_median_iterations"],
                   "iterations needed (mean of successes)": Num(it.get("mean", float("nan")), ".3g"),
                   "latent distance (median, relative)": Num(cell["latent"]["median"] / scale[m], ".3g")}
        out.facts.update({f"morphology/{m}/{key}": v for key, v in facts.items()})
    out.tables.append(ReportTable(
        "Morphology: one-pixel attack, with and without domain adaptation", rows=rows,
        note=(f"Differential evolution (best1, population {cfg.population}, at most {cfg.generations} generations) "
              "replacing one pixel's gri values with values in [0, 1] (the preprocessed data's range), on test images "
              "both models classify correctly. Success: the predicted class changes. Iterations: generations "
              "until the first success (Ciprijanovic et al. 2022 use them as a susceptibility measure). Latent "
              "distance clean - attacked in units of the median norm of the model's clean Y10 latents.")))
    return grid, chosen


def _latent_figures(names, latents, scale, y, onepixel) -> dict:
    """Isomaps (Y10 filled, Y1 empty) and relative latent-distance histograms, for baseline and DA."""
    figures = {}
    y_np = y.cpu().numpy()
    hist = {}
    for m in names:
        z10, z1 = (t.cpu().numpy() for t in latents[m])
        figures[f"Isomap of the {m} latent space: Y10 (filled) and Y1 (empty), colour = true class"] = plot_isomap(
            {"Y10": z10, "Y1": z1}, {"Y10": y_np, "Y1": y_np}, class_names=MORPHOLOGY_CLASSES)
        hist[f"Y1 noise, {m}"] = latent_distances(z10, z1) / scale[m]
    if onepixel is not None:  # after the two Y1 samples: the title's JS distance compares those
        for m in names:
            hist[f"one-pixel, {m}"] = onepixel.distances[m]["one-pixel"] / scale[m]
    figures["Latent distances clean - perturbed, relative to each model's median clean latent norm (the JS distance "
            "compares the Y1 histograms of baseline and domain adaptation)"] = plot_distance_histograms(
        hist, title="latent distance clean - perturbed", unit="median clean latent norm")
    return figures


def _church(model, name: str, x, y, attack, seed: int) -> dict:
    """Church window of the first image of ``x`` (B, C, H, W) the one-pixel attack fools (else the
    first image): the one-pixel direction against a random direction of the same norm. The attack
    is re-run on the same batch with the same seed, i.e. the search the one-pixel table scored."""
    x_adv = attack(model)(x, y)
    fooled = np.flatnonzero((predict(model, x_adv)[0].argmax(1) != y).cpu().numpy())
    i = int(fooled[0]) if fooled.size else 0
    x, x_adv = x[i:i + 1], x_adv[i:i + 1]
    d1 = (x_adv - x)[0]
    if not bool(d1.abs().sum() > 0):
        return {}
    classes = [MORPHOLOGY_CLASSES[int(predict(model, v)[0].argmax())] for v in (x, x_adv)]
    d2 = torch.randn(d1.shape, generator=torch.Generator().manual_seed(seed)).to(d1)
    d2 *= d1.norm() / d2.norm()
    window = church_window(model, x[0], d1, d2, extent=(-1.5, 1.5), steps=41)
    return {f"Church window of one test galaxy ({name}): one-pixel direction vs a random direction of the same "
            f"norm; the clean image (0, 0) is classified {classes[0]}, the attacked one (1, 0) {classes[1]}":
            plot_church_window(window, class_names=MORPHOLOGY_CLASSES)}


def _certify(out: StageResult, cfg: MorphologyConfig, model, name: str, x, y, seed: int, device):
    """Randomized smoothing of the noise-trained classifier: certified accuracy vs L2 radius; returns
    the fixed-n ``(prediction, radius)`` of the first ``n_certify`` test images."""
    k = min(cfg.n_certify, x.shape[0])
    smooth = Smooth(model, 3, cfg.noise_sigma)
    with out.timed(f"morphology: randomized smoothing, certify {k} images (n0 {cfg.n0}, n {cfg.n:,})"):
        pred, radius = smooth.certify_batch(x[:k], cfg.n0, cfg.n, cfg.alpha, batch_size=500,
                                            generator=torch.Generator(device=device).manual_seed(seed))
    labels = y[:k].cpu().numpy()
    radii = [r * cfg.noise_sigma for r in CERTIFY_RADII_SIGMA]
    acc = certified_accuracy(pred.numpy(), radius.numpy(), labels, radii)
    acr = average_certified_radius(pred.numpy(), radius.numpy(), labels)
    # the largest radius n samples can certify: every sample votes for the class, p_A >= alpha^(1/n)
    largest = cfg.noise_sigma * float(NormalDist().inv_cdf(cfg.alpha ** (1.0 / cfg.n)))
    out.facts["morphology/certified_acr"] = acr
    row = {f"radius {r:g}": a for r, a in zip(radii, acc)}
    row["abstained"] = float((pred == Smooth.ABSTAIN).float().mean())
    row["average certified radius"] = f"{acr:.3f}"
    out.tables.append(ReportTable(
        f"Randomized smoothing (Cohen et al. 2019): certified accuracy of the {name} classifier on {k} Y10 test images",
        rows={name: row},
        note=(f"Smoothing sigma {cfg.noise_sigma:g}, n0 = {cfg.n0}, n = {cfg.n:,}, alpha = {cfg.alpha:g}; radii are "
              f"L2 in preprocessed image units (the image of 3 x {cfg.size} x {cfg.size} values in [0, 1]); an "
              f"abstention counts as wrong. With n = {cfg.n:,} samples no radius above {largest:.3f} can be "
              "certified (every sample voting for the class). The smoothed classifier votes over noisy copies of "
              "each image, so its accuracy at radius 0 differs from the base classifier's on clean images; these "
              f"are the first {k} test images.")))
    grid = np.linspace(0.0, max(float(radius.max()), 0.1) * 1.05, 60)
    curve = certified_accuracy(pred.numpy(), radius.numpy(), labels, grid)
    out.figures["Certified accuracy vs L2 radius (randomized smoothing)"] = plot_certified_accuracy(
        {f"sigma = {cfg.noise_sigma:g}": (grid, curve)}, unit="preprocessed image units")
    out.headline.append((f"morphology smoothed classifier: certified accuracy at radius {radii[2]:g}",
                         f"{acc[2]:.0%} (ACR {acr:.3f})"))
    out.findings.append(
        f"Randomized smoothing (sigma {cfg.noise_sigma:g}) of the noise-trained classifier certifies {acc[2]:.0%} of "
        f"{k} Y10 test images correct within an L2 radius of {radii[2]:g} ({acc[0]:.0%} correct at radius 0; "
        f"average certified radius {acr:.3f}; at most {largest:.3f} can be certified with n = {cfg.n:,}).")
    return pred, radius


def _certify_adaptive(out: StageResult, cfg: MorphologyConfig, model, name: str, x, y, seed: int, device,
                      fixed) -> None:
    """Adaptive certification (:meth:`Smooth.certify_adaptive`) of the same images at the tabulated radii,
    ``n_max`` = :data:`ADAPTIVE_BUDGET` x the fixed procedure's ``n0 + n`` (capped): certified accuracy and
    samples used, beside the fixed-n certificates ``fixed`` = ``(prediction, radius)``."""
    k = min(cfg.n_certify, x.shape[0])
    n_fixed = cfg.n0 + cfg.n
    n_max = min(ADAPTIVE_BUDGET * n_fixed, ADAPTIVE_N_MAX_CAP)
    radii = [r * cfg.noise_sigma for r in CERTIFY_RADII_SIGMA]
    with out.timed(f"morphology: adaptive certification of {k} images (n_max {n_max:,})"):
        cert = Smooth(model, 3, cfg.noise_sigma).certify_adaptive(
            x[:k], radii, alpha=cfg.alpha, n_max=n_max, batch_size=500,
            generator=torch.Generator(device=device).manual_seed(seed + 1))
    labels, samples = y[:k].cpu().numpy(), cert.samples.numpy()
    acc = certified_accuracy_at(cert.certified.numpy(), cert.prediction.numpy(), labels)
    acc_fixed = certified_accuracy(fixed[0].numpy(), fixed[1].numpy(), labels, radii)
    spent = {"median samples": f"{np.median(samples):,.0f}", "mean samples": f"{samples.mean():,.0f}",
             "max samples": f"{samples.max():,}", "stopped at n_max": float(np.mean(samples == n_max))}
    rows = {f"adaptive (n_max = {n_max:,})": {**{f"radius {r:g}": a for r, a in zip(radii, acc)}, **spent},
            f"fixed n (n0 + n = {n_fixed:,})": {**{f"radius {r:g}": a for r, a in zip(radii, acc_fixed)},
                                                "median samples": f"{n_fixed:,}", "mean samples": f"{n_fixed:,}",
                                                "max samples": f"{n_fixed:,}", "stopped at n_max": "-"}}
    out.facts["morphology/adaptive_median_samples"] = float(np.median(samples))
    out.tables.append(ReportTable(
        f"Adaptive certification: certified accuracy vs L2 radius and samples used ({name} classifier, {k} Y10 "
        "test images)", rows=rows,
        note=(f"Smoothing sigma {cfg.noise_sigma:g}, alpha = {cfg.alpha:g}, n_max = {n_max:,} ({ADAPTIVE_BUDGET}x the "
              f"fixed procedure's n0 + n = {n_fixed:,}, at most {ADAPTIVE_N_MAX_CAP:,}). Each image is sampled in "
              "rounds and stops as soon as 'certified at r' or 'not certified at r' is settled for every radius of the "
              "table (Clopper-Pearson bounds at pre-set looks, alpha split over the looks and the classes: the same "
              "1 - alpha guarantee as Cohen et al. 2019), so a clear-cut image stops early and a borderline one may "
              "use up to n_max. Certified accuracy at r: the fraction of images certified at r and correctly "
              "classified (abstentions count as wrong). Samples: model evaluations spent per image. The radius an "
              "adaptive certificate reports is the bound reached when the image stopped, not the largest radius it "
              "could certify, so no average certified radius is given for it: only the certified-at-r decisions are "
              "compared.")))
    out.figures["Certified accuracy at the tabulated radii: adaptive vs fixed n"] = plot_certified_accuracy(
        {f"adaptive (median {np.median(samples):,.0f} samples)": (np.asarray(radii), acc),
         f"fixed n ({n_fixed:,} samples)": (np.asarray(radii), np.asarray(acc_fixed))},
        unit="preprocessed image units")
    out.findings.append(
        f"Adaptive certification at the tabulated radii spends a median of {np.median(samples):,.0f} model "
        f"evaluations per image (mean {samples.mean():,.0f}, at most n_max = {n_max:,}; "
        f"{np.mean(samples == n_max):.0%} of the images ran to n_max) where the fixed procedure spends {n_fixed:,}: "
        f"certified accuracy at radius {radii[2]:g} is {acc[2]:.0%} adaptive vs {acc_fixed[2]:.0%} fixed n, at "
        f"radius {radii[-1]:g} {acc[-1]:.0%} vs {acc_fixed[-1]:.0%}.")
