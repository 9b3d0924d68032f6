"""The demo's photo-z part (Campagne 2021 on simulated LSST cutouts).

Simulate bright galaxies (0.02 < z < ``z_max``, ugriz 64x64, nanomaggies, LSST Y10 depth), train
a baseline photo-z p.d.f. network and an adversarially trained twin (Campagne 2021, Algorithm 1:
a fraction f_a of each mini-batch replaced by FGSM samples), then measure both under uniform noise,
FGSM, PGD-Linf, PGD-L2 and the noise of a one-year (Y1) exposure. Every strength is in sky sigmas
of each band (the per-band sky noise measured on the training cutouts by
:func:`advrobust.data.sky_sigma`), and stated in nanomaggies in the report. The p.d.f.s themselves
are judged as LSST DESC's RAIL judges them (:mod:`advrobust.report.pdf_under_attack`: PIT statistics,
CRPS, CDE loss, n(z) shift; RAIL's point metrics beside Campagne's), clean vs every perturbation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from advrobust import redshift
from advrobust.attacks import eps_l2_equal_volume, lsst_shorter_exposure
from advrobust.attacks.by_name import AttackSettings, attack_by_name
from advrobust.data import PHOTOZ_BANDS, SurveyDataset, simulate_photoz, sky_sigma
from advrobust.defenses import AdversarialTraining
from advrobust.demo.config import PRESETS, PhotozConfig
from advrobust.demo.seeds import difference
from advrobust.demo.stage import StageResult, ratio, sigma_eta, sky_label
from advrobust.evaluate import NATURAL, evaluate_grid, natural, predict
from advrobust.models import create, save
from advrobust.plots import plot_perturbation, plot_photoz_comparison
from advrobust.report import (Num, PdfUnderAttack, ReportTable, Spread, format_cell, pdf_figures, pdf_tables,
                              pdf_vs_point)
from advrobust.train import Trainer

#: Campagne 2021, Iref (Inception, 100k SDSS training galaxies): Table 3 (clean / FGSM / PGD-10 at
#: eps = 0.01) and Table 2 (f_a = 20%, clean / FGSM-perturbed), as sigma_MAD / eta
PAPER_SOURCE = "Campagne 2021, Tables 2-3, eps = 0.01"
PAPER_SOURCE_CLEAN = "Campagne 2021, Tables 2-3; 100k SDSS galaxies"
PAPER_BASELINE = {"clean": "0.011 / 1%", "FGSM": "0.066 / 42%", "PGD-Linf": "0.082 / 59%"}
PAPER_ADVERSARIAL = {"clean": "0.011 / 1%", "FGSM": "0.008 / 1%"}
#: the demo's targets for a credible photo-z baseline (issue 10: sigma_MAD <= 0.03, eta <= 5%)
TARGET_SIGMA_MAD, TARGET_ETA = 0.03, 0.05
Y1_EXPOSURE_RATIO = 0.1  # one year of a ten-year survey
#: the paper's attack strength, in its images' units (SDSS frames, nanomaggies)
PAPER_EPS = 0.01
#: certified photo-z (median smoothing): noise draws per galaxy, failure probability, radii in units of
#: the smoothing sigma, and the most galaxies certified (at most a tenth of the attacked ones)
CERTIFY_N, CERTIFY_ALPHA, CERTIFY_RADII_SIGMA, CERTIFY_MAX_OBJECTS = 100, 0.001, (0.25, 0.5, 1.0), 100


@dataclass
class PhotozSurvey:
    """The simulated photo-z survey.

    Attributes:
        images: ``(N, 5, 64, 64)`` ugriz cutouts in nanomaggies (CPU).
        z_spec, ebv: ``(N,)`` float32 true redshifts and E(B-V) (CPU).
        train, test: the slices of the training and the held-out galaxies.
        sky: ``(5,)`` per-band sky sigma of the training cutouts, nanomaggies (NumPy).
        unit: ``sky`` as a float32 tensor on the device (the attacks' unit).
    """

    images: Tensor
    z_spec: Tensor
    ebv: Tensor
    train: slice
    test: slice
    sky: np.ndarray
    unit: Tensor

    def test_set(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(images, z_spec, ebv)`` of the held-out galaxies on ``device``."""
        return (self.images[self.test].to(device), self.z_spec[self.test].to(device),
                self.ebv[self.test].to(device))


def run_photoz(cfg: PhotozConfig, survey: "PhotozSurvey", *, seed: int, device: torch.device, progress: bool,
               models_dir: str, first: bool = True) -> StageResult:
    """Train the baseline and the adversarially trained model from ``seed``, attack both, tabulate.

    The trained models are written to ``models_dir`` (``photoz_baseline.safetensors``,
    ``photoz_adversarial.safetensors``, with ``_seed<seed>`` before the suffix unless ``first``;
    :func:`advrobust.models.load` reads them). The one-model stages (figures, certified photo-z) run
    only when ``first``. Findings and headline come from the facts of every seed
    (:func:`photoz_findings`, :func:`photoz_headline`).

    Args:
        survey: :func:`simulate_survey`'s data (the same for every seed).
        seed: the training seed (initial weights, sample order, attacks' random draws).
        first: this is the first seed: save the models under the plain names, run the one-model stages.

    Returns:
        :class:`StageResult` with the tables (float and :class:`Num` cells), figures, the per-band sky
        sigma (nanomaggies) and the measured facts (:class:`Num`): per model ``photoz/<model>/held-out/
        bias|sigma_mad|eta`` on the whole test set, and per perturbation column ``photoz/<model>/<column>/
        sigma_mad|eta|crps_mean|pit_ks|mae`` (``mean_shift``, ``wasserstein1`` of the perturbed columns).
    """
    out = StageResult()
    models = _train(out, cfg, survey, seed=seed, device=device, progress=progress, models_dir=models_dir,
                    suffix="" if first else f"_seed{seed}")
    base_name, adv_name = models  # the two names, in training order
    x_test, z_test, ebv_test = survey.test_set(device)
    with out.timed(f"photo-z: clean metrics on {cfg.n_test:,} test galaxies"):
        clean = evaluate_grid(models, {}, x_test, z_test, ebv_test, task="photoz", latent=False).scores
    attacks, strengths = _attacks(cfg, survey.unit, seed, image_shape=tuple(survey.images.shape[1:]))
    k = min(cfg.n_attack, cfg.n_test)
    pdfs = PdfUnderAttack(models, z_test[:k], ebv_test[:k])  # the grid keeps z_phot only: p.d.f.s here
    with out.timed(f"photo-z: {len(attacks)} perturbations x {len(models)} models on {k:,} test galaxies"):
        pdfs.add_clean(x_test[:k])
        grid = evaluate_grid(models, attacks, x_test[:k], z_test[:k], ebv_test[:k], task="photoz", latent=False,
                             keep_predictions=True, progress=progress, on_adversarial=pdfs)
    pdf_results = pdfs.results()
    _record(out, cfg, survey.sky, clean, grid, pdf_results, strengths)
    out.tables.append(_clean_table(cfg, clean, base_name, adv_name))
    n_pixels = int(survey.images.shape[-1] * survey.images.shape[-2])
    out.tables.append(_perturbation_table(cfg, grid, base_name, adv_name, k, survey.sky, n_pixels))
    out.tables += pdf_tables(pdf_results, objects=k)
    if first:
        out.figures.update(_figures(models, grid, x_test, z_test, ebv_test, survey.unit, cfg.eps_sky[-1], cfg))
        out.figures.update(pdf_figures(pdf_results, {m: pdfs.edges(m) for m in models}))
        certify_photoz(out, cfg, models[base_name], base_name, (x_test, z_test, ebv_test), survey.sky, seed)
    return out


def simulate_survey(out: StageResult, cfg: PhotozConfig, seed: int, device: torch.device) -> "PhotozSurvey":
    """Simulate ``n_train + n_test`` galaxies (0.02 < z < ``z_max``) from ``seed`` and measure the sky on the
    training ones (timed in ``out``)."""
    n = cfg.n_train + cfg.n_test
    with out.timed(f"photo-z: simulate {n:,} galaxies (0.02 < z < {cfg.z_max})"):
        sim = simulate_photoz(n, seed=seed, z_range=(0.02, cfg.z_max))
    train, test = slice(0, cfg.n_train), slice(cfg.n_train, n)
    sky = sky_sigma(sim["images"][train])
    return PhotozSurvey(images=torch.from_numpy(sim["images"]), z_spec=torch.from_numpy(sim["z_spec"]).float(),
                        ebv=torch.from_numpy(sim["ebv"]).float(), train=train, test=test, sky=sky,
                        unit=torch.tensor(sky, dtype=torch.float32, device=device))


def _train(out: StageResult, cfg: PhotozConfig, survey: "PhotozSurvey", *, seed: int, device: torch.device,
           progress: bool, models_dir: str, suffix: str) -> dict:
    """``{"baseline": model, "adversarial training (...)": model}``, trained from the same seed, saved
    to ``models_dir`` (``photoz_<baseline|adversarial><suffix>.safetensors``) and returned in eval mode."""
    t = survey.train
    train_set = SurveyDataset(survey.images[t], {"z_spec": survey.z_spec[t], "ebv": survey.ebv[t]}, augment=True)

    def fit(label: str, file: str, transform=None):
        torch.manual_seed(seed)
        model = create(cfg.model, z_max=cfg.z_max)
        with out.timed(f"photo-z: train {label} ({cfg.n_train:,} galaxies, {cfg.epochs} epochs)"):
            Trainer(model, "photoz_ce", lr=cfg.lr, one_cycle=True, batch_transform=transform, seed=seed,
                    progress=progress, device=device, fields=("image", "z_spec", "ebv")).fit(
                train_set, cfg.epochs, batch_size=cfg.batch_size)
        save(model, os.path.join(models_dir, file))
        return model.eval()

    base_name, adv_name = model_names(cfg)
    adversarial = AdversarialTraining("fgsm", cfg.eps_sky[-1], fraction=cfg.fraction, unit=survey.unit)
    return {base_name: fit(base_name, f"photoz_baseline{suffix}.safetensors"),
            adv_name: fit(adv_name, f"photoz_adversarial{suffix}.safetensors", adversarial)}


def model_names(cfg: PhotozConfig) -> tuple:
    """``(baseline, adversarially trained)``: the two models' names in tables and facts."""
    return "baseline", f"adversarial training (FGSM, f_a = {cfg.fraction:.0%})"


def _record(out: StageResult, cfg: PhotozConfig, sky: np.ndarray, clean: dict, grid, pdf_results: dict,
            strengths: dict) -> None:
    """The sky sigma, the measured facts (:class:`Num` with their test-sample errors) and the attack
    strengths (nanomaggies per band) into ``out``."""
    out.sky_sigma = sky.tolist()
    k = min(cfg.n_attack, cfg.n_test)
    for m, s in clean.items():
        cell = sigma_eta(s[NATURAL], cfg.n_test)
        out.facts.update({f"photoz/{m}/held-out/bias": Num(s[NATURAL]["bias"], "+.4f"),
                          f"photoz/{m}/held-out/sigma_mad": cell["sigma_mad"],
                          f"photoz/{m}/held-out/eta": cell["eta"]})
    for m, row in grid.scores.items():
        for col, scores in row.items():
            cell = sigma_eta(scores, k)
            out.facts[f"photoz/{m}/{col}/sigma_mad"], out.facts[f"photoz/{m}/{col}/eta"] = cell["sigma_mad"], cell["eta"]
    for m, columns in pdf_results.items():
        for col, metrics in columns.items():
            out.facts.update({f"photoz/{m}/{col}/{key}": Num(metrics[key], fmt)
                              for key, fmt in PDF_FACTS.items() if key in metrics})
    out.eps = {f"photo-z {name}": (e * sky).tolist() for name, e in strengths.items()}


#: the p.d.f. metrics kept as facts, with their formats
PDF_FACTS = {"crps_mean": ".4f", "mae": ".4f", "pit_ks": ".3f", "mean_shift": "+.4f", "wasserstein1": ".4f"}


def _clean_table(cfg: PhotozConfig, clean, base_name: str, adv_name: str) -> ReportTable:
    """Bias and sigma_MAD / eta of both models on the whole held-out set, next to the paper's."""
    return ReportTable(
        "Photo-z on the held-out test set (clean)",
        rows={m: {"galaxies": f"{cfg.n_test:,}", "bias": Num(s[NATURAL]["bias"], "+.4f"),
                  "sigma_MAD / eta": sigma_eta(s[NATURAL], cfg.n_test)} for m, s in clean.items()},
        paper={"sigma_MAD / eta": {base_name: PAPER_BASELINE["clean"], adv_name: PAPER_ADVERSARIAL["clean"]}},
        paper_source=PAPER_SOURCE_CLEAN,
        note=(f"{cfg.model} trained on {cfg.n_train:,} simulated galaxies with 0.02 < z < {cfg.z_max} for "
              f"{cfg.epochs} epochs. Target for a credible baseline: sigma_MAD <= {TARGET_SIGMA_MAD}, "
              f"eta <= {TARGET_ETA:.0%} (whether it is met: the findings)."))


def _perturbation_table(cfg: PhotozConfig, grid, base_name: str, adv_name: str, k: int, sky: np.ndarray,
                        n_pixels: int) -> ReportTable:
    """sigma_MAD / eta of both models under every perturbation column, on the first ``k`` test galaxies."""
    headline = cfg.eps_sky[-1]
    clean_here = f"clean (the same {k:,} galaxies)"
    label = {NATURAL: clean_here}
    rows = {label.get(col, col): {m: sigma_eta(grid.scores[m][col], k) for m in (base_name, adv_name)}
            for col in grid.scores[base_name]}
    paper_rows = {clean_here: "clean", f"FGSM {sky_label(headline)}": "FGSM",
                  f"PGD-Linf {sky_label(headline)}": "PGD-Linf"}
    return ReportTable(
        f"Photo-z under perturbation: sigma_MAD / eta on {k:,} test galaxies",
        rows=rows,
        paper={base_name: {r: PAPER_BASELINE[p] for r, p in paper_rows.items()},
               adv_name: {r: PAPER_ADVERSARIAL[p] for r, p in paper_rows.items() if p in PAPER_ADVERSARIAL}},
        paper_source=PAPER_SOURCE,
        note=("Strengths are L-inf radii in sky sigmas of each band (sky sigma per band, nanomaggies: "
              + ", ".join(f"{b} {s:.2e}" for b, s in zip(PHOTOZ_BANDS, sky)) + "); uniform noise is U[-eps, eps] "
              f"per band; PGD-Linf and PGD-L2: {cfg.pgd_steps} steps of eps/4; the PGD-L2 radius is the "
              f"equal-volume radius eps * sqrt(2n/(e pi)) with n = {n_pixels}, in sky-sigma units: "
              f"||delta / sky||_2 <= {eps_l2_equal_volume(headline, n_pixels):.4g} at {sky_label(headline)} (a chi "
              "ball, no single radius in nanomaggies). Y1 noise: the Poisson noise of one year of the survey "
              f"instead of ten. The paper's eps = {PAPER_EPS} (nanomaggies, if its SDSS frames are in them, as "
              "SDSS corrected frames are) would be "
              + ", ".join(f"{b} {PAPER_EPS / s:.0f}" for b, s in zip(PHOTOZ_BANDS, sky)) + " sky sigmas of these "
              "cutouts: its columns compare the effect, not the strength."))


def _pair(facts: Mapping[str, Spread], model: str, column: str) -> str:
    """``"sigma_MAD / eta"`` of ``model`` under ``column`` from the combined facts (as the tables show it)."""
    return format_cell({key: facts[f"photoz/{model}/{column}/{key}"] for key in ("sigma_mad", "eta")})


def photoz_headline(cfg: PhotozConfig, facts: Mapping[str, Spread]) -> list:
    """The photo-z ``(what, measured)`` lines of the demo's closing table, from the facts of every seed."""
    base, adv = model_names(cfg)
    h = sky_label(cfg.eps_sky[-1])
    k = min(cfg.n_attack, cfg.n_test)
    return [
        (f"photo-z baseline, clean ({cfg.n_test:,} held-out galaxies)", _pair(facts, base, "held-out")),
        (f"photo-z baseline, clean ({k:,} of them)", _pair(facts, base, NATURAL)),
        (f"photo-z baseline, uniform noise {h} (same {k:,})", _pair(facts, base, f"uniform noise {h}")),
        (f"photo-z baseline, FGSM {h} (same {k:,})", _pair(facts, base, f"FGSM {h}")),
        (f"photo-z baseline, PGD-Linf {h} (same {k:,})", _pair(facts, base, f"PGD-Linf {h}")),
        (f"photo-z adversarially trained, FGSM {h} (same {k:,})", _pair(facts, adv, f"FGSM {h}")),
    ]


def photoz_findings(cfg: PhotozConfig, facts: Mapping[str, Spread]) -> list:
    """The photo-z sentences of the report's findings, from the facts of every seed: an effect is claimed
    only where :func:`advrobust.demo.seeds.difference` allows it."""
    base, adv = model_names(cfg)
    h = sky_label(cfg.eps_sky[-1])
    k = min(cfg.n_attack, cfg.n_test)
    seeds = facts[f"photoz/{base}/held-out/sigma_mad"].seeds
    mean = "" if seeds < 2 else f" (means over {seeds} training seeds)"

    def f(model: str, column: str, key: str) -> Spread:
        return facts[f"photoz/{model}/{column}/{key}"]

    held_s, held_e = f(base, "held-out", "sigma_mad").mean, f(base, "held-out", "eta").mean
    target_met = held_s <= TARGET_SIGMA_MAD and held_e <= TARGET_ETA
    default_updates = PRESETS["default"].photoz.n_train * PRESETS["default"].photoz.epochs
    on_mean = " on the mean" if seeds > 1 else ""
    shortfall = f"NOT met{on_mean}" + (f" (this preset trains on {cfg.n_train * cfg.epochs:,} galaxy-epochs, the "
                                       f"default preset on {default_updates:,})"
                                       if cfg.n_train * cfg.epochs < default_updates else "")
    uniform, fgsm = f"uniform noise {h}", f"FGSM {h}"
    noise_vs_clean = difference(f(base, uniform, "sigma_mad"), f(base, NATURAL, "sigma_mad")).verdict(
        "uniform noise raises sigma_MAD", "uniform noise lowers sigma_MAD",
        "the run cannot tell uniform noise from clean")
    fgsm_vs_noise = difference(f(base, fgsm, "sigma_mad"), f(base, uniform, "sigma_mad")).verdict(
        "FGSM of the same size raises sigma_MAD more than the noise", "FGSM of the same size raises sigma_MAD less "
        "than the noise", "the run cannot tell FGSM from uniform noise of the same size")
    findings = [
        f"Photo-z baseline on {cfg.n_test:,} held-out galaxies: sigma_MAD / eta {_pair(facts, base, 'held-out')}"
        f"{mean}: the target of a credible baseline (sigma_MAD <= {TARGET_SIGMA_MAD}, eta <= {TARGET_ETA:.0%}) is "
        f"{f'met{on_mean}' if target_met else shortfall}.",
        f"On {k:,} of the test galaxies, uniform noise of {h} per band gives sigma_MAD / eta {_pair(facts, base, uniform)} "
        f"(clean on the same galaxies {_pair(facts, base, NATURAL)}): {noise_vs_clean}; FGSM of the same size gives "
        f"{_pair(facts, base, fgsm)} ({ratio(f(base, fgsm, 'sigma_mad').mean, f(base, NATURAL, 'sigma_mad').mean)} "
        f"the clean sigma_MAD): {fgsm_vs_noise}. PGD-Linf {_pair(facts, base, f'PGD-Linf {h}')}, PGD-L2 "
        f"{_pair(facts, base, f'PGD-L2 {h}')}.",
    ]
    clean_s = f(base, NATURAL, "sigma_mad").mean
    doubled = [e for e in cfg.eps_sky if f(base, f"FGSM {sky_label(e)}", "sigma_mad").mean >= 2 * clean_s]
    tested = ", ".join(f"{e:g}" for e in cfg.eps_sky)
    findings.append(f"The smallest tested FGSM strength that doubles sigma_MAD{' on the mean' if seeds > 1 else ''} "
                    f"is {sky_label(min(doubled))} per band (tested: {tested} sky sigma)." if doubled else
                    f"No tested FGSM strength ({tested} sky sigma per band) doubles sigma_MAD.")
    findings.append(
        f"Adversarial training (FGSM at {h}, f_a = {cfg.fraction:.0%}): under FGSM {h} sigma_MAD / eta "
        f"{_pair(facts, adv, fgsm)} (baseline {_pair(facts, base, fgsm)}): "
        + difference(f(adv, fgsm, "eta"), f(base, fgsm, "eta")).verdict(
            "adversarial training raises eta under FGSM", "adversarial training lowers eta under FGSM",
            "the run cannot tell whether adversarial training changes eta under FGSM")
        + f"; under PGD-Linf {_pair(facts, adv, f'PGD-Linf {h}')} (baseline {_pair(facts, base, f'PGD-Linf {h}')}); "
        f"on the clean held-out set {_pair(facts, adv, 'held-out')} (baseline {_pair(facts, base, 'held-out')}): "
        + difference(f(adv, "held-out", "sigma_mad"), f(base, "held-out", "sigma_mad")).verdict(
            "it costs clean sigma_MAD", "its clean sigma_MAD is lower",
            "the run cannot tell its clean sigma_MAD from the baseline's") + ".")
    y1 = "Y1 noise (one-year exposure)"
    findings.append(f"The noise of a one-year exposure gives {_pair(facts, base, y1)} (clean {_pair(facts, base, NATURAL)}): "
                    + difference(f(base, y1, "eta"), f(base, NATURAL, "eta")).verdict(
                        "it raises eta", "it lowers eta", "the run cannot tell its eta from the clean one") + ".")
    findings += _pdf_findings(cfg, facts)
    return findings


def _pdf_findings(cfg: PhotozConfig, facts: Mapping[str, Spread]) -> list:
    """Per model, under the headline FGSM and PGD-Linf: do the p.d.f.s degrade more or less than the
    point estimates (:func:`advrobust.report.pdf_vs_point`: mean CRPS ratio vs mean |z_phot - z_spec|
    ratio, perturbed / clean, on the means over the seeds)?"""
    h = sky_label(cfg.eps_sky[-1])
    findings = []
    for model in model_names(cfg):
        def get(column: str, key: str) -> Spread:
            return facts[f"photoz/{model}/{column}/{key}"]

        clean = {key: get(NATURAL, key).mean for key in ("crps_mean", "mae")}
        parts = []
        for column in (f"FGSM {h}", f"PGD-Linf {h}"):
            rule = pdf_vs_point(clean, {key: get(column, key).mean for key in ("crps_mean", "mae")})
            parts.append(f"under {column} the mean CRPS grows {rule['crps_ratio']:.2f}x and the point estimate's "
                         f"mean |z_phot - z_spec| {rule['mae_ratio']:.2f}x: the p.d.f.s degrade {rule['verdict']}"
                         f"{' as' if rule['verdict'] == 'as much' else ' than'} the point estimates (PIT KS "
                         f"{get(NATURAL, 'pit_ks')} -> {get(column, 'pit_ks')}, n(z) mean shift "
                         f"{get(column, 'mean_shift')}, W1 {get(column, 'wasserstein1')})")
        findings.append(f"p.d.f.s of the {model} model (RAIL's metrics, z_phot = p.d.f.-weighted mean): "
                        + "; ".join(parts) + ".")
    return findings


def _attacks(cfg: PhotozConfig, unit: Tensor, seed: int, image_shape):
    """The perturbation columns ``{name: factory}`` and ``{name: eps in sky sigmas}``."""
    attacks, strengths = {}, {}

    def by_name(kind: str, eps: float):
        def factory(model):
            generator = torch.Generator(device=unit.device).manual_seed(seed)
            return attack_by_name(kind, model, AttackSettings(eps=eps, pgd_steps=cfg.pgd_steps, unit=unit),
                                  task="photoz", image_shape=image_shape, generator=generator, seed=seed)
        return factory

    for e in cfg.eps_sky:
        for label, kind in (("uniform noise", "noise"), ("FGSM", "fgsm")):
            attacks[f"{label} {sky_label(e)}"] = by_name(kind, e)
            strengths[f"{label} {sky_label(e)}"] = e
    headline = cfg.eps_sky[-1]
    for label, kind in (("PGD-Linf", "pgd"), ("PGD-L2", "pgd_l2")):
        attacks[f"{label} {sky_label(headline)}"] = by_name(kind, headline)
    strengths[f"PGD-Linf {sky_label(headline)}"] = headline
    attacks["Y1 noise (one-year exposure)"] = natural(lsst_shorter_exposure, seed=seed, bands=PHOTOZ_BANDS,
                                                      years=10.0, exposure_ratio=Y1_EXPOSURE_RATIO)
    return attacks, strengths


def _figures(models, grid, x, z, ebv, unit, headline, cfg: PhotozConfig) -> dict:
    """z_phot vs z_spec clean / attacked for both models, and one galaxy's FGSM perturbation."""
    k = cfg.n_attack
    fgsm_h, uni_h = f"FGSM {sky_label(headline)}", f"uniform noise {sky_label(headline)}"
    base, adv = list(models)
    preds = grid.predictions
    z_np = z[:k].cpu().numpy()
    figures = {
        f"Photo-z of the baseline: clean, {uni_h} and {fgsm_h} ({k:,} test galaxies)": plot_photoz_comparison(
            z_np, {"clean": preds[base][NATURAL], uni_h: preds[base][uni_h], fgsm_h: preds[base][fgsm_h]},
            z_max=cfg.z_max),
        f"Photo-z under {fgsm_h}: baseline vs adversarially trained": plot_photoz_comparison(
            z_np, {"baseline": preds[base][fgsm_h], "adversarially trained": preds[adv][fgsm_h]}, z_max=cfg.z_max),
    }
    model = models[base]
    one = slice(0, 1)
    atk = attack_by_name("fgsm", model, AttackSettings(eps=headline, unit=unit), task="photoz",
                         image_shape=tuple(x.shape[1:]))
    x_adv = atk(x[one], z[one], ebv[one])
    pdf_clean = torch.softmax(predict(model, x[one], (ebv[one],), latent=False)[0], 1)[0]
    pdf_adv = torch.softmax(predict(model, x_adv, (ebv[one],), latent=False)[0], 1)[0]
    figures[f"One test galaxy under {fgsm_h} (perturbation magnified 100x) and its p.d.f.s"] = plot_perturbation(
        x[0].cpu().numpy(), x_adv[0].cpu().numpy(), bands=PHOTOZ_BANDS, pdf_clean=pdf_clean.cpu().numpy(),
        pdf_adv=pdf_adv.cpu().numpy(), bin_centres=model.bin_centres.cpu().numpy(), z_spec=float(z[0]))
    return figures


def certify_photoz(out: StageResult, cfg: PhotozConfig, model, name: str, test: tuple, sky: np.ndarray,
                   seed: int) -> None:
    """Certified photo-z by median smoothing (Chiang et al. 2020) of ``model`` on the first test galaxies:
    the certified interval of the smoothed z_phot and the certified non-outlier fraction at each radius
    of :data:`CERTIFY_RADII_SIGMA` (``test`` = ``(images, z_spec, ebv)`` on the model's device)."""
    from advrobust.defenses import SmoothRegression, certified_non_outlier

    x, z, ebv = test
    k = max(1, min(CERTIFY_MAX_OBJECTS, cfg.n_attack // 10, x.shape[0]))
    sigma = float(np.median(sky))  # one sky sigma (median over the bands), nanomaggies
    radii = [r * sigma for r in CERTIFY_RADII_SIGMA]
    smoother, z_k = SmoothRegression(model, sigma), z[:k].double().cpu()
    rows, intervals = {}, {}
    stage = f"photo-z: certified photo-z of {k} galaxies at {len(radii)} radii (n {CERTIFY_N})"
    with out.timed(stage):
        for r in radii:
            cert = smoother.certify(x[:k], r, ebv[:k], alpha=CERTIFY_ALPHA, n=CERTIFY_N, batch_size=500,
                                    generator=torch.Generator(device=x.device).manual_seed(seed))
            width = (cert.hi - cert.lo).numpy()
            good = certified_non_outlier(cert.lo, cert.hi, z_k)
            rows[f"radius {r:.3g} nmgy ({r / sigma:g} sigma)"] = {
                "certified non-outliers": float(good.double().mean()),
                "median interval width (z)": f"{np.median(width):.4f}",
                "smoothed median an outlier": float((redshift.delta_z(cert.median, z_k).abs() > 0.05).double().mean())}
            intervals[r] = cert
    out.facts["photoz/certified_non_outlier"] = list(rows.values())[0]["certified non-outliers"]
    out.tables.append(ReportTable(
        f"Certified photo-z (median smoothing, Chiang et al. 2020): the {name} model on {k} test galaxies",
        rows=rows, note=(
            f"Smoothing sigma {sigma:.3g} nanomaggies (one sky sigma, the median over ugriz), Gaussian on every "
            f"pixel; n = {CERTIFY_N} noisy copies per galaxy, alpha = {CERTIFY_ALPHA:g}; radii are L2 norms over the "
            f"whole {' x '.join(map(str, x.shape[1:]))} cutout. Certified interval [z_lo, z_hi]: with probability >= "
            "1 - alpha, the smoothed z_phot (the median over the noise) of every image within the radius lies in it "
            "(order statistics of the n outputs with a binomial bound). Certified non-outlier: |dz| = |z - z_spec| / "
            "(1 + z_spec) <= 0.05 for every z of the interval. The base model was not trained with noise; n is "
            f"small to keep the demo short ({len(radii) * k * CERTIFY_N:,} model evaluations, "
            f"{out.timings[stage]:.0f} s here).")))
    out.figures["Certified photo-z intervals at the largest radius vs z_spec"] = _interval_figure(
        intervals[radii[-1]], z_k, radii[-1], sigma)
    first, last = (row["certified non-outliers"] for row in (list(rows.values())[0], list(rows.values())[-1]))
    out.findings.append(
        f"Median smoothing certifies {first:.0%} of {k} test galaxies as non-outliers within L2 radius "
        f"{radii[0]:.3g} nanomaggies ({CERTIFY_RADII_SIGMA[0]:g} sky sigma) and {last:.0%} within {radii[-1]:.3g} "
        f"({CERTIFY_RADII_SIGMA[-1]:g} sky sigma), with n = {CERTIFY_N} draws per galaxy.")


def _interval_figure(cert, z_spec, radius: float, sigma: float):
    """Certified intervals [lo, hi] and smoothed medians against z_spec, with the |dz| = 0.05 outlier lines."""
    from advrobust.plots import new_figure

    fig, axes = new_figure((6.0, 4.5))
    ax = axes[0, 0]
    z, med = z_spec.numpy(), cert.median.numpy()
    lo, hi = np.maximum(cert.lo.numpy(), -1), np.minimum(cert.hi.numpy(), 10)  # infinite ends clipped for drawing
    ax.errorbar(z, med, yerr=[med - lo, hi - med], fmt="o", ms=2, lw=0.6, color="C0",
                label=f"smoothed z_phot and certified interval (r = {radius / sigma:g} sigma)")
    line = np.linspace(0, float(z.max()) * 1.05, 50)
    ax.plot(line, line, color="k", lw=0.8)
    for sign in (-1, 1):
        ax.plot(line, line + sign * 0.05 * (1 + line), color="C3", lw=0.8, ls="--")
    ax.set_xlabel("z_spec")
    ax.set_ylabel("z_phot (median smoothing)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
