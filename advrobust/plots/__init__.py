"""Figures of the papers (matplotlib, Agg backend); every function returns a :class:`~matplotlib.figure.Figure`,
:func:`save_figure` writes it as PNG and PDF.

* photo-z (:mod:`~advrobust.plots.photoz`, Campagne 2021 Figs. 3-6): :func:`plot_photoz_comparison`,
  :func:`plot_perturbation`; p.d.f.s: :func:`plot_pit_histograms`, :func:`plot_nz`;
* latent space (:mod:`~advrobust.plots.latent`, Ciprijanovic et al. 2022 Figs. 4-7):
  :func:`plot_church_window`, :func:`isomap_embedding`, :func:`plot_isomap`, :func:`plot_distance_histograms`;
* randomized smoothing (:mod:`~advrobust.plots.certified`): :func:`plot_certified_accuracy`.
"""
from advrobust.plots.base import DPI, new_figure, save_figure
from advrobust.plots.certified import plot_certified_accuracy
from advrobust.plots.latent import (
    MORPHOLOGY_CLASSES, isomap_embedding, plot_church_window, plot_distance_histograms, plot_isomap,
)
from advrobust.plots.photoz import plot_nz, plot_perturbation, plot_photoz_comparison, plot_pit_histograms

__all__ = ["DPI", "new_figure", "save_figure", "plot_photoz_comparison", "plot_perturbation", "plot_pit_histograms",
           "plot_nz",
           "plot_church_window", "isomap_embedding", "plot_isomap", "plot_distance_histograms",
           "plot_certified_accuracy", "MORPHOLOGY_CLASSES"]
