"""The demo's defenses part: Mallam Garba, Susini and Kayo's Table 1 and Wang et al. (2018)'s sensitivity
training, on the morphology part's simulated survey (gri stamps preprocessed to [0, 1]).

Seven models trained the same way (the morphology part's network, epochs, learning rate and batch size):
basic, noisy training, PGD-L2 and PGD-Linf adversarial training (``alpha J(x) + (1 - alpha) J(x_adv)`` in
expectation: a random ``1 - alpha`` of each batch adversarial),
mixed adversarial training (natural, PGD-L2 and PGD-Linf in equal parts), randomized smoothing of the
noisy model (Cohen et al. 2019; no training), and a sensitivity-trained model (cross-entropy plus
``beta`` times the log-volume of the interval over-approximation of its outputs over the l_inf ball).
Each is scored clean and under FGSM, PGD-Linf and PGD-L2 on the same test images; the output-box
volume (Wang et al.'s sensitivity) is measured for every trained model.

The findings are written from the facts alone (:func:`defenses_findings`, :func:`defenses_headline`), so
that the same sentences come from one seed or from the mean and spread of several
(:func:`advrobust.demo.seeds.combine_facts`).
"""
from __future__ import annotations

import functools
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from advrobust.attacks import eps_l2_equal_volume
from advrobust.attacks.by_name import make_attack
from advrobust.data import MORPHOLOGY_BANDS
from advrobust.defenses import (
    AdversarialTraining, MixedTraining, NoisyTraining, SensitivityLoss, Smooth, interval_bounds, log_volume,
)
from advrobust.demo.config import DefensesConfig
from advrobust.demo.morphology import Survey, train_classifier, training_set
from advrobust.demo.seeds import difference
from advrobust.demo.stage import StageResult, sky_label
from advrobust.evaluate import predict
from advrobust.report import Num, ReportTable, Spread

__all__ = ["run_defenses", "defenses_findings", "defenses_headline", "mean_log_volume", "MODELS",
           "INPUTS", "BOX_MODELS", "PAPER_TABLE_1"]

#: fact key of each model -> its row label (the paper's order; the sensitivity model last)
MODELS = {"basic": "basic", "noisy": "noisy training", "pgd_l2_at": "PGD-L2 adversarial training",
          "pgd_linf_at": "PGD-Linf adversarial training", "mixed_at": "mixed adversarial training",
          "smoothing": "randomized smoothing (of the noisy model)",
          "sensitivity": "sensitivity training (Wang et al. 2018)"}
#: the inputs every model is scored on: fact key -> column label
INPUTS = {"natural": "natural", "fgsm": "FGSM", "pgd_linf": "PGD-Linf", "pgd_l2": "PGD-L2"}
#: the trained models whose output box is measured (smoothing has no box: it is the noisy model's)
BOX_MODELS = ("basic", "sensitivity", "pgd_linf_at", "pgd_l2_at", "mixed_at", "noisy")
#: Mallam Garba, Susini and Kayo, Table 1: accuracy (%) by model and input
PAPER_TABLE_1 = {
    "basic": (58.2, 3.81, 0.29, 0.29), "noisy": (62.16, 26.17, 21.77, 25.16),
    "pgd_l2_at": (54.78, 25.00, 20.99, 23.82), "pgd_linf_at": (54.41, 28.32, 25.58, 19.33),
    "mixed_at": (51.76, 28.41, 26.46, 27.15), "smoothing": (59.71, 38.1, 37.68, 39.8),
}
#: the paper's step: two thirds of eps
STEP_FRACTION = 2.0 / 3.0


def run_defenses(cfg: DefensesConfig, survey: Survey, *, seed: int, device: torch.device, progress: bool,
                 models_dir: str, reuse: Optional[dict] = None, first: bool = True) -> StageResult:
    """Train the defense models on ``survey``, attack them, tabulate the accuracies and the box volumes.

    Args:
        cfg: the part's settings.
        survey: the morphology part's survey (:func:`advrobust.demo.morphology.simulate_survey`).
        seed: seeds the weights, the sample order, the attacks' starts and the smoothing noise.
        models_dir: where the models trained here go (``morphology_defenses_<model key>.safetensors``,
            :data:`MODELS`; basic and noisy only when not reused).
        reuse: ``{"basic": model, "noisy": model}`` the morphology part trained from the same seed and
            settings; used only when ``cfg.n_train`` is None (the same training set), else trained here.
        first: the first training seed: its models are saved under the plain names, a later seed's with
            ``_seed<seed>`` before the suffix.

    The findings and headline are not written here: :func:`defenses_findings` and :func:`defenses_headline`
    write them from the facts of one or several seeds.

    Returns:
        :class:`StageResult`; ``facts`` holds ``defenses/<model>/<input>`` accuracies (:data:`MODELS`,
        :data:`INPUTS`), ``defenses/<model>/log_volume`` (:data:`BOX_MODELS`), ``defenses/n_attack`` (test images) and
        ``defenses/box_eps`` (the box's l_inf radius, image units).
    """
    out = StageResult()
    models = _train(out, cfg, survey, seed=seed, device=device, progress=progress, models_dir=models_dir,
                    reuse=reuse if cfg.n_train is None else None, suffix="" if first else f"_seed{seed}")
    k = min(cfg.n_attack, survey.x10[survey.test].shape[0])
    x, y = survey.x10[survey.test][:k].to(device), survey.labels[survey.test][:k].to(device)
    with out.timed(f"defenses: {len(models)} models clean and under FGSM / PGD-Linf / PGD-L2 ({k} test images)"):
        adversarial = {m: _attacked(cfg, survey, model, x, y, seed) for m, model in models.items()}
        for m, model in models.items():
            for inp, x_in in adversarial[m].items():
                out.facts[f"defenses/{m}/{inp}"] = _accuracy(predict(model, x_in, latent=False)[0].argmax(1), y)
    with out.timed(f"defenses: smoothed predictions of the noisy model's 4 x {k} inputs ({cfg.smooth_n} copies each)"):
        smooth = Smooth(models["noisy"], 3, survey.config.noise_sigma)
        generator = torch.Generator(device=device).manual_seed(seed)
        for inp, x_in in adversarial["noisy"].items():
            out.facts[f"defenses/smoothing/{inp}"] = _accuracy(_smoothed(cfg, smooth, x_in, generator), y)
    eps_box = _box_eps(cfg, survey)
    with out.timed(f"defenses: output-box volume of {len(BOX_MODELS)} models ({k} test images)"):
        for m in BOX_MODELS:
            out.facts[f"defenses/{m}/log_volume"] = mean_log_volume(models[m], x, eps_box)
    out.facts["defenses/n_attack"] = float(k)
    out.facts["defenses/box_eps"] = eps_box
    out.facts["defenses/noise_sigma"] = survey.config.noise_sigma
    out.tables += [_accuracy_table(cfg, survey, out.facts, k), _box_table(cfg, out.facts, eps_box, k)]
    return out


def _train(out: StageResult, cfg: DefensesConfig, survey: Survey, *, seed: int, device, progress: bool,
           models_dir: str, reuse: Optional[dict], suffix: str) -> Dict[str, torch.nn.Module]:
    """``{model key: trained model}`` for every model of :data:`MODELS` but smoothing, each from seed
    ``seed`` with the morphology part's settings; basic and noisy from ``reuse`` when given."""
    mcfg = survey.config
    eps_l2 = _eps_l2(cfg, survey)
    bounds = dict(lo=0.0, hi=1.0, unit=survey.unit)
    steps = cfg.train_pgd_steps
    # a random 1 - alpha of each batch replaced by its adversarial version: in expectation the paper's
    # alpha J(x) + (1 - alpha) J(x_adv), at half the cost of attacking and training on the whole batch twice
    at = functools.partial(AdversarialTraining, fraction=1 - cfg.alpha, steps=steps, **bounds)
    transforms = {
        "basic": None, "noisy": NoisyTraining(mcfg.noise_sigma),
        "pgd_l2_at": at("pgd_l2", eps_l2, step_size=STEP_FRACTION * eps_l2),
        "pgd_linf_at": at("pgd", cfg.eps_sky, step_size=STEP_FRACTION * cfg.eps_sky),
        "mixed_at": MixedTraining(cfg.eps_sky, eps_l2, steps=steps, step_fraction=STEP_FRACTION, **bounds),
    }
    extra = {"sensitivity": (SensitivityLoss(_box_eps(cfg, survey), cfg.sensitivity_beta, lo=0.0, hi=1.0),)}
    fit = functools.partial(train_classifier, out, mcfg, training_set(survey, cfg.n_train), seed=seed, device=device,
                            progress=progress, models_dir=models_dir)
    models = {}
    for m in ("basic", "noisy", "pgd_l2_at", "pgd_linf_at", "mixed_at", "sensitivity"):
        if reuse and m in reuse:
            models[m] = reuse[m].eval()
        else:
            models[m] = fit(f"defenses {MODELS[m]}", f"defenses_{m}{suffix}", transforms.get(m), extra.get(m, ()))
    return models


def _eps_l2(cfg: DefensesConfig, survey: Survey) -> float:
    """PGD-L2's radius in sky sigmas: the L2 ball of the L-inf ball's volume over one band's pixels."""
    return eps_l2_equal_volume(cfg.eps_sky, int(survey.x10.shape[-1] * survey.x10.shape[-2]))


def _box_eps(cfg: DefensesConfig, survey: Survey) -> float:
    """The l_inf radius of the output box, image units: the attack's largest per-band radius (the
    smallest cube that holds the attack's ball)."""
    return float(cfg.eps_sky * survey.sky.max())


def _attacked(cfg: DefensesConfig, survey: Survey, model, x: Tensor, y: Tensor, seed: int) -> Dict[str, Tensor]:
    """``{input key: images}``: ``x`` and its FGSM, PGD-Linf and PGD-L2 versions against ``model``
    (per-band sky-sigma unit, clamped to [0, 1], PGD step 2/3 eps from a random start)."""
    eps_l2 = _eps_l2(cfg, survey)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    common = dict(loss="ce", generator=gen, lo=0.0, hi=1.0, unit=survey.unit)
    attacks = {"fgsm": make_attack("fgsm", model, cfg.eps_sky, **common),
               "pgd_linf": make_attack("pgd", model, cfg.eps_sky, steps=cfg.pgd_steps,
                                       step_size=STEP_FRACTION * cfg.eps_sky, **common),
               "pgd_l2": make_attack("pgd_l2", model, eps_l2, steps=cfg.pgd_steps, step_size=STEP_FRACTION * eps_l2,
                                     **common)}
    return {"natural": x, **{k: atk(x, y).detach() for k, atk in attacks.items()}}


def _smoothed(cfg: DefensesConfig, smooth: Smooth, x: Tensor, generator: torch.Generator) -> Tensor:
    """The smoothed classifier's prediction of every image of ``x`` ``(N, C, H, W)``: ``(N,)`` int64,
    :attr:`Smooth.ABSTAIN` (-1) where it abstains."""
    return torch.tensor([smooth.predict(img, cfg.smooth_n, cfg.smooth_alpha, cfg.smooth_n, generator=generator)
                         for img in x], device=x.device)


def _accuracy(predicted: Tensor, y: Tensor) -> Num:
    """Fraction of ``predicted == y`` (an abstention, -1, is wrong), with its test-sample size."""
    return Num(float((predicted == y).float().mean()), ".1%", n_objects=y.numel())


def mean_log_volume(model: torch.nn.Module, x: Tensor, eps: float, batch_size: int = 100) -> float:
    """Mean over ``x`` of the log-volume of the interval over-approximation of ``model``'s outputs over the
    l_inf ball of radius ``eps`` (image units) around each image, clamped to [0, 1] (Wang et al. 2018's
    sensitivity; :func:`advrobust.defenses.interval_bounds`, :func:`advrobust.defenses.log_volume`)."""
    volumes = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            lower, upper = interval_bounds(model.eval(), x[i:i + batch_size], eps, lo=0.0, hi=1.0)
            volumes.append(log_volume(lower, upper))
    return float(torch.cat(volumes).mean())


def _accuracy_table(cfg: DefensesConfig, survey: Survey, facts: Mapping[str, float], k: int) -> ReportTable:
    """Table 1 of Mallam Garba, Susini and Kayo: accuracy by model and input, theirs in labelled columns."""
    mcfg = survey.config
    eps_l2 = _eps_l2(cfg, survey)
    rows = {MODELS[m]: {INPUTS[i]: facts[f"defenses/{m}/{i}"] for i in INPUTS} for m in MODELS}
    paper = {INPUTS[i]: {MODELS[m]: v[j] / 100 for m, v in PAPER_TABLE_1.items()} for j, i in enumerate(INPUTS)}
    bands = ", ".join(f"{b} {s:.3g}" for b, s in zip(MORPHOLOGY_BANDS, survey.sky))
    n_train = len(training_set(survey, cfg.n_train))
    return ReportTable(
        f"Defenses (cf. Mallam Garba, Susini and Kayo, Table 1): accuracy on {k} Y10 test galaxies, natural and "
        "under attack", rows=rows, paper=paper, paper_source="Mallam Garba, Susini and Kayo, Table 1",
        note=(f"Every model is {mcfg.model} trained the same way: {n_train:,} Y10 images, {mcfg.epochs} epochs, Adam "
              f"lr {mcfg.lr:g}, batch {mcfg.batch_size} (the paper: '30 steps' of training). Noisy training and "
              f"smoothing: Gaussian sigma {mcfg.noise_sigma:g} (image units). Adversarial training: a random "
              f"{1 - cfg.alpha:.0%} of each batch replaced by its adversarial version, in expectation the paper's "
              f"alpha J(x) + (1 - alpha) J(x_adv) with alpha = {cfg.alpha:g}; mixed training: thirds natural, PGD-L2, "
              "PGD-Linf. Their PGD: "
              f"{cfg.train_pgd_steps} step(s) of 2/3 eps from a random start at the attacks' strengths (the paper: 10 "
              "steps, ~11 clean epochs per epoch here, beyond this demo's time). Attacks: FGSM and PGD-Linf of "
              f"{sky_label(cfg.eps_sky)} per band of the preprocessed Y10 images ({bands} in image units); PGD-L2 of "
              f"radius {eps_l2:.3g} in sky sigmas (the L2 norm of perturbation / sky sigma over the whole image; in "
              "image units an L2 norm of " + " / ".join(f"{eps_l2 * s:.3g}" for s in survey.sky)
              + f" for a perturbation in {' / '.join(MORPHOLOGY_BANDS)} alone), the "
              "L2 ball of the L-inf ball's volume over one band's pixels, fixed before the run (the package's rule, "
              "Campagne 2021): the paper instead lowered its L2 radius (0.045 beside 0.03 L-inf, on [0, 1] images) "
              "until the basic classifier did about as well under both, i.e. chose it from its results; PGD "
              f"{cfg.pgd_steps} steps of 2/3 eps from a random start; all clamped to [0, 1]. Randomized smoothing "
              f"predicts with {cfg.smooth_n} noisy copies and abstains when its top class does not win a binomial "
              f"test at alpha = {cfg.smooth_alpha:g} (Cohen et al. 2019); it is attacked with the adversarial "
              "examples of its base classifier (the noisy-training row's inputs) scored through the smoothed "
              "prediction, and an abstention counts as wrong. The paper's images (an image-classification set it does "
              "not name, on which its basic model reaches 58%) and network differ: its numbers are for comparing the "
              "pattern, not the values."))


def _box_table(cfg: DefensesConfig, facts: Mapping[str, float], eps_box: float, k: int) -> ReportTable:
    """The output-box log-volume (Wang et al. 2018's sensitivity) beside clean and attacked accuracy."""
    rows = {MODELS[m]: {"mean log output-box volume": Num(facts[f"defenses/{m}/log_volume"], ".2f"),
                        "natural": facts[f"defenses/{m}/natural"], "PGD-Linf": facts[f"defenses/{m}/pgd_linf"],
                        "PGD-L2": facts[f"defenses/{m}/pgd_l2"]} for m in BOX_MODELS}
    return ReportTable(
        f"Sensitivity (Wang et al. 2018): output-box volume and accuracy ({k} Y10 test galaxies)", rows=rows,
        note=(f"Log-volume: sum over the 3 logits of log(upper - lower) of the interval over-approximation of the "
              f"outputs over the l_inf ball of radius {eps_box:.3g} (image units: the attack's largest per-band "
              f"radius, so the ball holds the attack's; clamped to [0, 1]), averaged over the images; smaller is "
              f"less sensitive. The sensitivity model adds beta = {cfg.sensitivity_beta:g} times this log-volume "
              "(at the same radius) to its cross-entropy; its clean cost is its natural accuracy against the "
              "basic model's."))


def defenses_findings(cfg: DefensesConfig, facts: Mapping[str, Spread]) -> List[str]:
    """Whether each paper's finding shows in this run, from ``facts`` (:class:`Spread` by fact name).

    An effect is claimed only where :func:`advrobust.demo.seeds.difference` says it exceeds its
    uncertainty; otherwise the sentence says the run cannot tell.
    """
    def f(m, i):
        return facts[f"defenses/{m}/{i}"]

    findings = []
    noise_sigma = facts["defenses/noise_sigma"].mean
    attacks = [i for i in INPUTS if i != "natural"]
    others = [m for m in MODELS if m != "smoothing"]
    verdicts = []
    for i in attacks:
        best = max(others, key=lambda m: f(m, i).mean)
        d = difference(f("smoothing", i), f(best, i))
        verdicts.append((i, best, d))
    if all(d.claimed and d.value > 0 for _, _, d in verdicts):
        verdict = "shows here: smoothing is best under every attack"
    elif any(d.claimed and d.value < 0 for _, _, d in verdicts):
        verdict = "does not show here: another model beats smoothing under " + ", ".join(
            INPUTS[i] for i, _, d in verdicts if d.claimed and d.value < 0)
    else:
        verdict = "cannot be told here: smoothing is not ahead by more than the uncertainty under every attack"
    findings.append(
        "Mallam Garba, Susini and Kayo find randomized smoothing best under every attack; this " + verdict + " ("
        + "; ".join(f"{INPUTS[i]}: smoothing {f('smoothing', i):.1%} vs {MODELS[b]} {f(b, i):.1%}"
                    for i, b, _ in verdicts) + ")" + verdicts[0][2].caveat() + ".")
    costs, trades = [], []
    for m in ("pgd_l2_at", "pgd_linf_at", "mixed_at"):
        cost = difference(f("basic", "natural"), f(m, "natural"))
        gain = difference(f(m, "pgd_linf"), f("basic", "pgd_linf"))
        costs.append(cost.claimed and cost.value > 0)
        within = "within the uncertainty"
        trades.append(f"{MODELS[m]} {f(m, 'natural'):.1%} clean ({cost.word('a cost', 'a gain', within)}), "
                      f"{f(m, 'pgd_linf'):.1%} under PGD-Linf ({gain.word('more robust', 'less robust', within)})")
    verdict = ("shows here for every adversarially trained model" if all(costs) else
               "does not show here for " + ", ".join(MODELS[m] for m, c in zip(("pgd_l2_at", "pgd_linf_at",
                                                                                "mixed_at"), costs) if not c))
    findings.append(
        "Mallam Garba, Susini and Kayo find that adversarial training costs clean accuracy; this " + verdict + " ("
        f"basic {f('basic', 'natural'):.1%} clean, {f('basic', 'pgd_linf'):.1%} under PGD-Linf; " + "; ".join(trades)
        + ").")
    box = difference(f("sensitivity", "log_volume"), f("basic", "log_volume"))
    box_text = box.word("larger than", "smaller than", "not measurably different from")
    cost = difference(f("basic", "natural"), f("sensitivity", "natural"))
    near = difference(f("sensitivity", "pgd_linf"), f("pgd_linf_at", "pgd_linf"))
    near_text = near.word("above", "below", "within the uncertainty of")
    findings.append(
        f"The noisy model (sigma {noise_sigma:g}), the base classifier of smoothing, reaches "
        f"{f('noisy', 'natural'):.1%} on clean images, the smoothed classifier {f('smoothing', 'natural'):.1%} "
        f"(basic {f('basic', 'natural'):.1%}).")
    findings.append(
        f"Sensitivity training (Wang et al. 2018, beta {cfg.sensitivity_beta:g}): its output box (log-volume "
        f"{f('sensitivity', 'log_volume'):.2f}) is {box_text} the basic model's ({f('basic', 'log_volume'):.2f}); "
        f"clean accuracy {f('sensitivity', 'natural'):.1%} vs {f('basic', 'natural'):.1%} "
        f"({cost.word('a cost', 'a gain', 'within the uncertainty')}); "
        f"under PGD-Linf {f('sensitivity', 'pgd_linf'):.1%}, {near_text} PGD-Linf adversarial training's "
        f"{f('pgd_linf_at', 'pgd_linf'):.1%} (Wang et al. report robustness close to adversarial training)"
        + box.caveat() + ".")
    return findings


def defenses_headline(cfg: DefensesConfig, facts: Mapping[str, Spread]) -> List[Tuple[str, str]]:
    """Headline lines ``(what, measured)`` from ``facts`` (:class:`Spread` by fact name)."""
    def f(m, i):
        return facts[f"defenses/{m}/{i}"]

    return [
        (f"defenses under PGD-Linf {sky_label(cfg.eps_sky)}: basic / PGD-Linf AT / smoothing",
         f"{f('basic', 'pgd_linf'):.1%} / {f('pgd_linf_at', 'pgd_linf'):.1%} / {f('smoothing', 'pgd_linf'):.1%}"),
        ("defenses: output-box log-volume, basic / sensitivity training",
         f"{f('basic', 'log_volume'):.2f} / {f('sensitivity', 'log_volume'):.2f}"),
    ]
