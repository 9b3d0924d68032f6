"""Metrics: small functions, and accumulating classes reduced across ``torch.distributed`` ranks.

* input rules (:mod:`~advrobust.metrics.helpers`): :func:`as_numpy` (functional metrics),
  :func:`as_rows` (accumulating metrics);
* photo-z (:mod:`~advrobust.metrics.photoz`): :func:`delta_z` (that of :mod:`advrobust.redshift`),
  :func:`photoz_bias`, :func:`sigma_mad`, :func:`outlier_fraction`, :func:`photoz_metrics` (Campagne 2021);
* RAIL's point metrics (:mod:`~advrobust.metrics.rail`): :func:`rail_point_metrics`
  (``bias_median``, ``sigma_iqr``, ``outlier_rate_rail``), :class:`RailPointAccumulator`;
* binned p.d.f.s (:mod:`~advrobust.metrics.pdf`, as RAIL / qp): :func:`pdf_metrics`,
  :func:`pdf_columns` (per-object PIT and CRPS), :func:`pit_statistics`, :func:`stacked_nz`,
  :func:`nz_compare`, :func:`nz_shift`, :class:`PdfAccumulator`, :class:`NzShiftAccumulator`;
* classification (:mod:`~advrobust.metrics.classification`): :func:`classification_metrics`,
  :func:`confusion_matrix`, :func:`confusion_counts`, :func:`metrics_from_confusion` (weighted as
  Ciprijanovic et al. 2022);
* latent space (:mod:`~advrobust.metrics.latent`): :func:`latent_distances`, :func:`latent_distance_rows`,
  :func:`distance_summary`, :func:`js_distance`, :func:`shared_bins`;
* attacks (:mod:`~advrobust.metrics.attacks`): :func:`success_rate`, :func:`iterations_summary`;
* randomized smoothing (:mod:`~advrobust.metrics.certified`): :func:`certified_accuracy`,
  :func:`average_certified_radius`, :func:`certified_counts`;
* accumulating (:mod:`~advrobust.metrics.accumulate`): :class:`Metric` and
  :class:`PhotozAccumulator`, :class:`ClassificationAccumulator`,
  :class:`LatentDistanceAccumulator`, :class:`AttackAccumulator`, :class:`CertifiedAccumulator`.
"""
from advrobust.metrics.accumulate import (
    AttackAccumulator, CertifiedAccumulator, ClassificationAccumulator, LatentDistanceAccumulator, Metric,
    PhotozAccumulator,
)
from advrobust.metrics.attacks import iterations_summary, success_rate
from advrobust.metrics.certified import average_certified_radius, certified_accuracy, certified_counts
from advrobust.metrics.classification import (
    classification_metrics, confusion_counts, confusion_matrix, metrics_from_confusion,
)
from advrobust.metrics.helpers import as_numpy, as_rows
from advrobust.metrics.latent import distance_summary, js_distance, latent_distance_rows, latent_distances, shared_bins
from advrobust.metrics.pdf import (
    NzShiftAccumulator, PdfAccumulator, nz_compare, nz_shift, pdf_columns, pdf_metrics, pit_statistics, stacked_nz,
)
from advrobust.metrics.photoz import delta_z, outlier_fraction, photoz_bias, photoz_metrics, sigma_mad
from advrobust.metrics.rail import RailPointAccumulator, rail_point_metrics

__all__ = [
    "photoz_metrics", "delta_z", "photoz_bias", "sigma_mad", "outlier_fraction", "as_numpy", "as_rows",
    "rail_point_metrics", "RailPointAccumulator",
    "pdf_metrics", "pdf_columns", "pit_statistics", "stacked_nz", "nz_compare", "nz_shift",
    "PdfAccumulator", "NzShiftAccumulator",
    "classification_metrics", "confusion_matrix", "confusion_counts", "metrics_from_confusion",
    "latent_distances", "latent_distance_rows", "distance_summary", "js_distance", "shared_bins",
    "success_rate", "iterations_summary",
    "certified_accuracy", "average_certified_radius", "certified_counts",
    "Metric", "PhotozAccumulator", "ClassificationAccumulator", "LatentDistanceAccumulator",
    "AttackAccumulator", "CertifiedAccumulator",
]
