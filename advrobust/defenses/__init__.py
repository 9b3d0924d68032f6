"""Defenses: training-time (batch transforms and extra losses of :class:`advrobust.train.Trainer`)
and certified (randomized smoothing).

* Adversarial training: :class:`AdversarialTraining` (Algorithm 1 of Campagne 2021, a fraction f_a
  of each mini-batch adversarial), :class:`WeightedAdversarialTraining` (``alpha J(x) + (1-alpha)
  J(x_adv)``, the robust-models report), :class:`MixedTraining` (natural, PGD-L2, PGD-Linf in equal
  parts), FGSM with random start (``attack="fgsm_rs"``, Wong, Rice and Kolter 2020).
* :class:`NoisyTraining`: Gaussian augmentation.
* :class:`MMDAdaptation`: ``lambda * MMD^2`` between source and target latents (Ciprijanovic et al.
  2022); :func:`domain_mmd` measures it.
* :func:`interval_bounds`, :class:`SensitivityLoss`, :func:`log_volume`: interval bounds of the output
  over an l_inf ball and the log-volume regulariser (the sensitivity-training abstract).
* :class:`Smooth`: randomized smoothing (Cohen, Rosenfeld and Kolter 2019) with ``predict``,
  ``certify``, ``certify_batch`` and ``certify_adaptive`` (a sequential test: as few draws as each
  image needs, :class:`AdaptiveCertificate`).
* :class:`SmoothRegression`: median smoothing of a regression (Chiang et al. 2020), certified
  photo-z intervals (:class:`RegressionCertificate`) and :func:`certified_non_outlier`.
"""
from advrobust.defenses.adversarial import (
    ATTACKS, AdversarialTraining, MixedTraining, NoisyTraining, WeightedAdversarialTraining, make_attack,
)
from advrobust.defenses.interval import SensitivityLoss, interval_bounds, log_volume
from advrobust.defenses.mmd import MMDAdaptation, domain_mmd, latent_mmd, resolve_sigmas
from advrobust.defenses.median_smoothing import (
    RegressionCertificate, SmoothRegression, certified_non_outlier, order_statistic_bounds,
)
from advrobust.defenses.smoothing import AdaptiveCertificate, Smooth, certified_radius, lower_confidence_bound

__all__ = [
    "ATTACKS", "make_attack", "AdversarialTraining", "WeightedAdversarialTraining", "MixedTraining",
    "NoisyTraining", "MMDAdaptation", "domain_mmd", "latent_mmd", "resolve_sigmas", "interval_bounds", "log_volume",
    "SensitivityLoss", "Smooth", "AdaptiveCertificate", "lower_confidence_bound", "certified_radius",
    "SmoothRegression", "RegressionCertificate", "certified_non_outlier", "order_statistic_bounds",
]
