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

import numpy as np
import torch
from torch import Tensor

from advrobust import redshift
from advrobust.attacks import eps_l2_equal_volume, lsst_shorter_exposure
from advrobust.attacks.by_name import AttackSettings, attack_by_name
from advrobust.data import PHOTOZ_BANDS, SurveyDataset, simulate_photoz, sky_sigma
from advrobust.defenses import AdversarialTraining
from advrobust.demo.config import PRESETS, PhotozConfig
from advrobust.demo.stage import StageResult, ratio, sigma_eta, sky_label
from advrobust.evaluate import NATURAL, evaluate_grid, natural, predict
from advrobust.models import create, save
from advrobust.plots import plot_perturbation, plot_photoz_comparison
from advrobust.report import PdfUnderAttack, ReportTable, pdf_figures, pdf_tables, pdf_vs_point
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
class _Survey:
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


def run_photoz(cfg: PhotozConfig, *, seed: int, device: torch.device, progress: bool, models_dir: str) -> StageResult:
    """Simulate, train the baseline and the adversarially trained model, attack both, tabulate.

    The trained models are written to ``models_dir`` (``photoz_baseline.safetensors``,
    ``photoz_adversarial.safetensors``; :func:`advrobust.models.load` reads them).

    Returns:
        :class:`StageResult` with the tables, figures, headline lines, the per-band sky sigma
        (nanomaggies) and measured facts (``photoz/clean_sigma_mad``, ``photoz/clean_eta`` on the
        held-out set, and per perturbation ``photoz/<model>/<column>/sigma_mad|eta``).
    """
    out = StageResult()
    survey = _simulate(out, cfg, seed, device)
    models = _train(out, cfg, survey, seed=seed, device=device, progress=progress, models_dir=models_dir)
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
    base_clean = clean[base_name][NATURAL]
    _record(out, survey.sky, base_clean, grid, strengths)
    target_met = base_clean["sigma_mad"] <= TARGET_SIGMA_MAD and base_clean["eta"] <= TARGET_ETA
    out.tables.append(_clean_table(cfg, clean, base_name, adv_name, target_met))
    n_pixels = int(survey.images.shape[-1] * survey.images.shape[-2])
    out.tables.append(_perturbation_table(cfg, grid, base_name, adv_name, k, survey.sky, n_pixels))
    pdf_results = pdfs.results()
    out.tables += pdf_tables(pdf_results, objects=k)
    out.headline += _headline(cfg, base_clean, grid, base_name, adv_name, k)
    out.findings += _findings(cfg, clean, grid, base_name, adv_name, target_met)
    out.findings += _pdf_findings(cfg, pdf_results, out.facts)
    out.figures.update(_figures(models, grid, x_test, z_test, ebv_test, survey.unit, cfg.eps_sky[-1], cfg))
    out.figures.update(pdf_figures(pdf_results, {m: pdfs.edges(m) for m in models}))
    certify_photoz(out, cfg, models[base_name], base_name, (x_test, z_test, ebv_test), survey.sky, seed)
    return out


def _simulate(out: StageResult, cfg: PhotozConfig, seed: int, device: torch.device) -> _Survey:
    """Simulate ``n_train + n_test`` galaxies (0.02 < z < ``z_max``) and measure the sky on the training ones."""
    n = cfg.n_train + cfg.n_test
    with out.timed(f"photo-z: simulate {n:,} galaxies (0.02 < z < {cfg.z_max})"):
        sim = simulate_photoz(n, seed=seed, z_range=(0.02, cfg.z_max))
    train, test = slice(0, cfg.n_train), slice(cfg.n_train, n)
    sky = sky_sigma(sim["images"][train])
    return _Survey(images=torch.from_numpy(sim["images"]), z_spec=torch.from_numpy(sim["z_spec"]).float(),
                   ebv=torch.from_numpy(sim["ebv"]).float(), train=train, test=test, sky=sky,
                   unit=torch.tensor(sky, dtype=torch.float32, device=device))


def _train(out: StageResult, cfg: PhotozConfig, survey: _Survey, *, seed: int, device: torch.device,
           progress: bool, models_dir: str) -> dict:
    """``{"baseline": model, "adversarial training (...)": model}``, trained from the same seed, saved
    to ``models_dir`` and returned in eval mode."""
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

    base_name, adv_name = "baseline", f"adversarial training (FGSM, f_a = {cfg.fraction:.0%})"
    adversarial = AdversarialTraining("fgsm", cfg.eps_sky[-1], fraction=cfg.fraction, unit=survey.unit)
    return {base_name: fit(base_name, "photoz_baseline.safetensors"),
            adv_name: fit(adv_name, "photoz_adversarial.safetensors", adversarial)}


def _record(out: StageResult, sky: np.ndarray, base_clean: dict, grid, strengths: dict) -> None:
    """The sky sigma, the measured facts and the attack strengths (nanomaggies per band) into ``out``."""
    out.sky_sigma = sky.tolist()
    out.facts.update({"photoz/clean_sigma_mad": base_clean["sigma_mad"], "photoz/clean_eta": base_clean["eta"]})
    for m, row in grid.scores.items():
        for col, cell in row.items():
            out.facts[f"photoz/{m}/{col}/sigma_mad"] = cell["sigma_mad"]
            out.facts[f"photoz/{m}/{col}/eta"] = cell["eta"]
    out.eps = {f"photo-z {name}": (e * sky).tolist() for name, e in strengths.items()}


def _clean_table(cfg: PhotozConfig, clean, base_name: str, adv_name: str, target_met: bool) -> ReportTable:
    """Bias and sigma_MAD / eta of both models on the whole held-out set, next to the paper's."""
    default_updates = PRESETS["default"].photoz.n_train * PRESETS["default"].photoz.epochs
    shortfall = "NOT met in this run." + (
        f" This preset trains on {cfg.n_train * cfg.epochs:,} galaxy-epochs, the default preset on "
        f"{default_updates:,}." if cfg.n_train * cfg.epochs < default_updates else "")
    return ReportTable(
        "Photo-z on the held-out test set (clean)",
        rows={m: {"galaxies": f"{cfg.n_test:,}", "bias": f"{s[NATURAL]['bias']:+.4f}",
                  "sigma_MAD / eta": sigma_eta(s[NATURAL])} for m, s in clean.items()},
        paper={"sigma_MAD / eta": {base_name: PAPER_BASELINE["clean"], adv_name: PAPER_ADVERSARIAL["clean"]}},
        paper_source=PAPER_SOURCE_CLEAN,
        note=(f"{cfg.model} trained on {cfg.n_train:,} simulated galaxies with 0.02 < z < {cfg.z_max} for "
              f"{cfg.epochs} epochs. Target for a credible baseline: sigma_MAD <= {TARGET_SIGMA_MAD}, "
              f"eta <= {TARGET_ETA:.0%}: " + ("met." if target_met else shortfall)))


def _perturbation_table(cfg: PhotozConfig, grid, base_name: str, adv_name: str, k: int, sky: np.ndarray,
                        n_pixels: int) -> ReportTable:
    """sigma_MAD / eta of both models under every perturbation column, on the first ``k`` test galaxies."""
    headline = cfg.eps_sky[-1]
    clean_here = f"clean (the same {k:,} galaxies)"
    label = {NATURAL: clean_here}
    rows = {label.get(col, col): {m: sigma_eta(grid.scores[m][col]) for m in (base_name, adv_name)}
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


def _headline(cfg: PhotozConfig, base_clean: dict, grid, base_name: str, adv_name: str, k: int) -> list:
    """The photo-z ``(what, measured)`` lines of the demo's closing table."""
    headline = cfg.eps_sky[-1]
    fgsm_h, uni_h = f"FGSM {sky_label(headline)}", f"uniform noise {sky_label(headline)}"
    pgd_h = f"PGD-Linf {sky_label(headline)}"
    b = grid.scores[base_name]
    return [
        (f"photo-z baseline, clean ({cfg.n_test:,} held-out galaxies)", sigma_eta(base_clean)),
        (f"photo-z baseline, clean ({k:,} of them)", sigma_eta(b[NATURAL])),
        (f"photo-z baseline, {uni_h} (same {k:,})", sigma_eta(b[uni_h])),
        (f"photo-z baseline, {fgsm_h} (same {k:,})", sigma_eta(b[fgsm_h])),
        (f"photo-z baseline, {pgd_h} (same {k:,})", sigma_eta(b[pgd_h])),
        (f"photo-z adversarially trained, {fgsm_h} (same {k:,})", sigma_eta(grid.scores[adv_name][fgsm_h])),
    ]


def _findings(cfg: PhotozConfig, clean, grid, base: str, adv: str, target_met: bool) -> list:
    """The photo-z sentences of the report's findings, from the measured scores."""
    h = sky_label(cfg.eps_sky[-1])
    b, a = grid.scores[base], grid.scores[adv]
    nat = b[NATURAL]
    c = clean[base][NATURAL]
    findings = [
        f"Photo-z baseline on {cfg.n_test:,} held-out galaxies: sigma_MAD {c['sigma_mad']:.4f}, eta "
        f"{c['eta']:.1%}: the target of a credible baseline (sigma_MAD <= {TARGET_SIGMA_MAD}, eta <= "
        f"{TARGET_ETA:.0%}) is {'met' if target_met else 'NOT met (see the table note)'}.",
        f"On {min(cfg.n_attack, cfg.n_test):,} of the test galaxies, uniform noise of {h} per band gives sigma_MAD "
        f"{b[f'uniform noise {h}']['sigma_mad']:.4f} (clean on the same galaxies {nat['sigma_mad']:.4f}) and eta "
        f"{b[f'uniform noise {h}']['eta']:.1%} (clean {nat['eta']:.1%}), while FGSM of the same size gives "
        f"sigma_MAD {b[f'FGSM {h}']['sigma_mad']:.4f} ({ratio(b[f'FGSM {h}']['sigma_mad'], nat['sigma_mad'])}) "
        f"and eta {b[f'FGSM {h}']['eta']:.1%} ({ratio(b[f'FGSM {h}']['eta'], nat['eta'])}); PGD-Linf "
        f"{sigma_eta(b[f'PGD-Linf {h}'])}, PGD-L2 {sigma_eta(b[f'PGD-L2 {h}'])}.",
    ]
    doubled = [e for e in cfg.eps_sky if b[f"FGSM {sky_label(e)}"]["sigma_mad"] >= 2 * nat["sigma_mad"]]
    tested = ", ".join(f"{e:g}" for e in cfg.eps_sky)
    findings.append(f"The smallest tested FGSM strength that doubles sigma_MAD is {sky_label(min(doubled))} per band "
                    f"(tested: {tested} sky sigma)." if doubled else
                    f"No tested FGSM strength ({tested} sky sigma per band) doubles sigma_MAD.")
    findings.append(
        f"Adversarial training (FGSM at {h}, f_a = {cfg.fraction:.0%}): under FGSM {h} sigma_MAD / eta "
        f"{sigma_eta(a[f'FGSM {h}'])} (baseline {sigma_eta(b[f'FGSM {h}'])}), under PGD-Linf "
        f"{sigma_eta(a[f'PGD-Linf {h}'])} (baseline {sigma_eta(b[f'PGD-Linf {h}'])}); its clean score on the "
        f"held-out set is {sigma_eta(clean[adv][NATURAL])} (baseline {sigma_eta(c)}).")
    findings.append(f"The noise of a one-year exposure gives {sigma_eta(b['Y1 noise (one-year exposure)'])} "
                    f"(clean {sigma_eta(nat)}).")
    return findings


def _pdf_findings(cfg: PhotozConfig, results: dict, facts: dict) -> list:
    """Per model, under the headline FGSM and PGD-Linf: do the p.d.f.s degrade more or less than the
    point estimates (:func:`advrobust.report.pdf_vs_point`: mean CRPS ratio vs mean |z_phot - z_spec|
    ratio, perturbed / clean)? Also records ``photoz/<model>/<column>/crps_mean|pit_ks|wasserstein1``."""
    h = sky_label(cfg.eps_sky[-1])
    findings = []
    for model, columns in results.items():
        for column, m in columns.items():
            facts.update({f"photoz/{model}/{column}/{key}": m[key] for key in ("crps_mean", "pit_ks", "mae")})
            if column != NATURAL:
                facts[f"photoz/{model}/{column}/wasserstein1"] = m["wasserstein1"]
        clean = columns[NATURAL]
        parts = []
        for column in (f"FGSM {h}", f"PGD-Linf {h}"):
            rule = pdf_vs_point(clean, columns[column])
            parts.append(f"under {column} the mean CRPS grows {rule['crps_ratio']:.2f}x and the point estimate's "
                         f"mean |z_phot - z_spec| {rule['mae_ratio']:.2f}x: the p.d.f.s degrade {rule['verdict']}"
                         f"{' as' if rule['verdict'] == 'as much' else ' than'} the point estimates (PIT KS "
                         f"{clean['pit_ks']:.3f} -> {columns[column]['pit_ks']:.3f}, n(z) mean shift "
                         f"{columns[column]['mean_shift']:+.4f}, W1 {columns[column]['wasserstein1']:.4f})")
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
