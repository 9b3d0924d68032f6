"""Metrics as small functional helpers: photo-z quality (:mod:`advrobust.metrics.photoz`)."""
from advrobust.metrics.photoz import (
    delta_z,
    outlier_fraction,
    photoz_bias,
    photoz_metrics,
    sigma_mad,
)

__all__ = ["photoz_metrics", "delta_z", "photoz_bias", "sigma_mad", "outlier_fraction"]
