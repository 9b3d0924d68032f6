"""RAIL's photo-z point metrics (LSST DESC, ``rail.evaluation.metrics.pointestimates``; LSST Science Book).

Beside Campagne (2021)'s ``bias`` (mean), ``sigma_mad`` and ``eta`` (:mod:`advrobust.metrics.photoz`),
under names that cannot be mistaken for them. With ``dz = (z_phot - z_spec) / (1 + z_spec)``:

* ``bias_median = median(dz)``;
* ``sigma_iqr = (P75(dz) - P25(dz)) / 1.349`` (NumPy's linearly interpolated percentiles, as RAIL;
  1.349 is the interquartile range of a unit Gaussian);
* ``outlier_rate_rail`` = fraction of ``|dz| > max(0.06, 3 sigma_iqr)``.

RAIL evaluates them on the mode of each p.d.f.; here they take whatever point estimate is given
(advrobust's ``z_phot`` is the p.d.f.-weighted mean of the bin centres, :mod:`advrobust.redshift`).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from advrobust.metrics.accumulate import PhotozAccumulator
from advrobust.metrics.helpers import ArrayLike, as_numpy
from advrobust.metrics.photoz import delta_z

__all__ = ["rail_point_metrics", "RailPointAccumulator", "IQR_TO_SIGMA", "RAIL_OUTLIER_FLOOR"]

#: interquartile range of a unit Gaussian, 2 Phi^-1(3/4), rounded as RAIL does
IQR_TO_SIGMA = 1.349
#: the smallest ``|dz|`` outlier threshold of RAIL's outlier rate
RAIL_OUTLIER_FLOOR = 0.06


def rail_point_metrics(z_phot: ArrayLike, z_spec: ArrayLike) -> Dict[str, float]:
    """``bias_median``, ``sigma_iqr`` and ``outlier_rate_rail`` (a fraction) of a photo-z sample.

    Args:
        z_phot: point estimates, shape ``(N,)`` (tensor, array or sequence).
        z_spec: true redshifts, shape ``(N,)``.

    Raises:
        ValueError: see :func:`advrobust.metrics.delta_z`.

    Example:
        >>> rail_point_metrics([0.1, 0.5, 0.5, 0.5, 1.0], [0.5] * 5)["outlier_rate_rail"]  # sigma_iqr = 0
        0.4
    """
    dz = delta_z(as_numpy(z_phot, "z_phot"), as_numpy(z_spec, "z_spec"))
    q75, q25 = np.percentile(dz, [75.0, 25.0])
    sigma_iqr = float((q75 - q25) / IQR_TO_SIGMA)
    threshold = max(RAIL_OUTLIER_FLOOR, 3.0 * sigma_iqr)
    return {"bias_median": float(np.median(dz)), "sigma_iqr": sigma_iqr,
            "outlier_rate_rail": float(np.mean(np.abs(dz) > threshold))}


class RailPointAccumulator(PhotozAccumulator):
    """:func:`rail_point_metrics` over batches: the state and ``update(z_phot, z_spec)`` of
    :class:`~advrobust.metrics.PhotozAccumulator`, computing RAIL's metrics instead of Campagne's."""

    def __init__(self, *, sync: bool = True) -> None:
        super().__init__(sync=sync)

    def _compute(self, state):
        return rail_point_metrics(state["z_phot"], state["z_spec"])
