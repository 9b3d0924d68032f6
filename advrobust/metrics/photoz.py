"""Photometric-redshift quality metrics (Campagne 2021, section 2).

``dz = (z_phot - z_spec) / (1 + z_spec)`` (:func:`advrobust.redshift.delta_z`, re-exported here); ``bias = mean(dz)``;
``sigma_MAD = 1.4826 * median(|dz - median(dz)|)``; ``eta`` = fraction of outliers ``|dz| > 0.05``.
Inputs are 1-D tensors or arrays of equal length; medians are the usual ones (the mean of the two
middle values for an even count), computed in float64.
"""
from __future__ import annotations

import numpy as np

from advrobust.checks import check_number
from advrobust.metrics.helpers import ArrayLike, as_numpy
from advrobust.redshift import delta_z

__all__ = ["delta_z", "photoz_bias", "sigma_mad", "outlier_fraction", "photoz_metrics"]

#: 1 / Phi^-1(3/4): makes the median absolute deviation of a Gaussian equal to its sigma
MAD_TO_SIGMA = 1.4826


def photoz_bias(dz: ArrayLike) -> float:
    """Mean of ``dz``."""
    return float(np.mean(as_numpy(dz, "dz")))


def sigma_mad(dz: ArrayLike) -> float:
    """``1.4826 * median(|dz - median(dz)|)``, a robust standard deviation of ``dz``."""
    dz = as_numpy(dz, "dz")
    return float(MAD_TO_SIGMA * np.median(np.abs(dz - np.median(dz))))


def outlier_fraction(dz: ArrayLike, threshold: float = 0.05) -> float:
    """Fraction of ``|dz| > threshold`` (Campagne 2021: 0.05), in [0, 1].

    Raises:
        ValueError: ``threshold`` <= 0 or NaN (every galaxy, or none, would be an outlier).
    """
    check_number("outlier_fraction", "threshold", threshold, positive=True)
    return float(np.mean(np.abs(as_numpy(dz, "dz")) > threshold))


def photoz_metrics(z_phot: ArrayLike, z_spec: ArrayLike, outlier_threshold: float = 0.05) -> dict[str, float]:
    """``bias``, ``sigma_mad`` and ``eta`` (outlier fraction, not a percentage) of a photo-z sample.

    Args:
        z_phot: predicted redshifts, shape ``(N,)`` (tensor, array or sequence).
        z_spec: true (spectroscopic) redshifts, shape ``(N,)``.
        outlier_threshold: ``|dz|`` above which a galaxy is an outlier.

    Raises:
        ValueError: inputs not 1-D, of different lengths, non-finite, or ``z_spec <= -1``.

    Example:
        >>> photoz_metrics([0.1, 0.52], [0.1, 0.5])["eta"]
        0.0
    """
    dz = delta_z(as_numpy(z_phot, "z_phot"), as_numpy(z_spec, "z_spec"))
    return {"bias": photoz_bias(dz), "sigma_mad": sigma_mad(dz), "eta": outlier_fraction(dz, outlier_threshold)}
