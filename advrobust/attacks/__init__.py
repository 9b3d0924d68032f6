"""Attacks and perturbations for classifiers and photo-z p.d.f. models, on the fused ops.

Every attack (:class:`Attack`) follows one contract: ``atk(x, y, *extra)`` returns the
adversarial tensor (drop-in, as torchattacks), ``atk.run(x, y, *extra)`` an
:class:`AttackResult` with ``x_adv``, ``success`` (per sample) and the attack's own fields.

Gradient attacks (classes and functions returning the tensor): :class:`FGSM` / :func:`fgsm`,
:class:`PGD` / :func:`pgd` (L-inf, BIM, optional random start), :class:`PGDL2` / :func:`pgd_l2`
and :func:`eps_l2_equal_volume` (Campagne 2021's L2 radius); their result is a plain
:class:`AttackResult`. One-pixel attack by batched differential evolution: :class:`OnePixel` /
:func:`one_pixel`; ``.run`` gives an :class:`OnePixelResult` (iterations, pixels, values,
fitness). Loss hooks and the objectives that judge success: :mod:`advrobust.attacks.losses`.

Natural perturbations are not attacks (no model, no success): the functions
:func:`gaussian_noise`, :func:`uniform_noise`, :func:`shorter_exposure` and their modules.
Transfer evaluation lives in :mod:`advrobust.evaluate`.

Example:
    >>> from advrobust.attacks import PGD, OnePixel
    >>> x_adv = PGD(model, eps=0.01, steps=10)(images, labels)
    >>> res = PGD(photoz_model, eps=0.01, loss="photoz_ce").run(images, z_spec, ebv)
    >>> res = OnePixel(model, pixels=1, population=400, max_iter=80, seed=0).run(images, labels)
    >>> res.success_rate, res.iterations
"""
from advrobust.attacks.base import Attack, AttackResult
from advrobust.attacks.gradient import FGSM, PGD, PGDL2, eps_l2_equal_volume, fgsm, pgd, pgd_l2
from advrobust.attacks.losses import (
    ClassifierObjective, CrossEntropy, PhotozBinCE, PhotozDeltaZ, PhotozObjective,
)
from advrobust.attacks.natural import (
    GaussianNoise, ShorterExposure, UniformNoise, gaussian_noise, lsst_shorter_exposure, shorter_exposure,
    uniform_noise,
)
from advrobust.attacks.onepixel import OnePixel, OnePixelResult, one_pixel

__all__ = [
    "Attack", "AttackResult",
    "FGSM", "PGD", "PGDL2", "fgsm", "pgd", "pgd_l2", "eps_l2_equal_volume",
    "OnePixel", "OnePixelResult", "one_pixel",
    "CrossEntropy", "PhotozBinCE", "PhotozDeltaZ", "ClassifierObjective", "PhotozObjective",
    "gaussian_noise", "uniform_noise", "shorter_exposure", "lsst_shorter_exposure", "GaussianNoise", "UniformNoise", "ShorterExposure",
]
