"""Attacks and perturbations for classifiers and photo-z p.d.f. models, on the fused ops.

Gradient attacks (torchattacks-style classes and functions): :class:`FGSM` / :func:`fgsm`,
:class:`PGD` / :func:`pgd` (L-inf, BIM, optional random start), :class:`PGDL2` / :func:`pgd_l2`
and :func:`eps_l2_equal_volume` (001's L2 radius). One-pixel attack by batched differential
evolution: :class:`OnePixel` / :func:`one_pixel` -> :class:`OnePixelResult`. Natural
perturbations: :func:`gaussian_noise`, :func:`uniform_noise`, :func:`shorter_exposure` (and their
modules). Transfer evaluation: :func:`transfer_evaluate`. Loss hooks and one-pixel objectives:
:mod:`advrobust.attacks.losses`.

Example:
    >>> from advrobust.attacks import PGD, OnePixel
    >>> x_adv = PGD(model, eps=0.01, steps=10)(images, labels)
    >>> x_adv = PGD(photoz_model, eps=0.01, loss="photoz_ce")(images, z_spec, ebv)
    >>> res = OnePixel(model, pixels=1, population=400, max_iter=80, seed=0)(images, labels)
"""
from advrobust.attacks.base import Attack, eval_mode
from advrobust.attacks.gradient import FGSM, PGD, PGDL2, eps_l2_equal_volume, fgsm, pgd, pgd_l2
from advrobust.attacks.losses import (
    ClassifierObjective, CrossEntropy, PhotozBinCE, PhotozDeltaZ, PhotozObjective,
)
from advrobust.attacks.natural import (
    GaussianNoise, ShorterExposure, UniformNoise, gaussian_noise, shorter_exposure, uniform_noise,
)
from advrobust.attacks.onepixel import OnePixel, OnePixelResult, one_pixel
from advrobust.attacks.transfer import TransferResult, transfer_evaluate

__all__ = [
    "Attack", "eval_mode",
    "FGSM", "PGD", "PGDL2", "fgsm", "pgd", "pgd_l2", "eps_l2_equal_volume",
    "OnePixel", "OnePixelResult", "one_pixel",
    "CrossEntropy", "PhotozBinCE", "PhotozDeltaZ", "ClassifierObjective", "PhotozObjective",
    "gaussian_noise", "uniform_noise", "shorter_exposure", "GaussianNoise", "UniformNoise", "ShorterExposure",
    "TransferResult", "transfer_evaluate",
]
