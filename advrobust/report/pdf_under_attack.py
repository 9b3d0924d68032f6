"""The "p.d.f. under attack" part of a photo-z report: the redshift p.d.f.s of photo-z models, clean
and under each perturbation, judged as the LSST DESC photo-z framework (RAIL) judges them.

:class:`PdfUnderAttack` collects, for every (model, column) — ``natural`` for the clean images, then
one column per perturbation — the p.d.f. metrics (:class:`advrobust.metrics.PdfAccumulator`: PIT,
its KS / CvM / AD statistics and outlier rate, CRPS, CDE loss, stacked ``n(z)``), Campagne (2021)'s
point metrics (``bias`` = mean dz, ``sigma_mad``, ``eta``) and RAIL's (``bias_median``,
``sigma_iqr``, ``outlier_rate_rail``, :mod:`advrobust.metrics.rail`). It is an ``on_adversarial``
callback of :func:`advrobust.evaluate.evaluate_grid` (or is fed perturbed images by hand). Its
results go into :func:`pdf_tables`, :func:`pdf_figures` and :func:`pdf_vs_point`.

Point estimate: both sets of point metrics use advrobust's ``z_phot``, the p.d.f.-weighted mean of
the bin centres (Campagne 2021), not the p.d.f.'s mode that RAIL's own evaluation uses
(:data:`POINT_ESTIMATE`).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from advrobust import redshift
from advrobust.evaluate.batch import predict
from advrobust.metrics import PdfAccumulator, PhotozAccumulator, RailPointAccumulator, nz_compare
from advrobust.report.cells import Num
from advrobust.report.write import ReportTable

__all__ = ["PdfUnderAttack", "pdf_tables", "pdf_figures", "pdf_vs_point", "POINT_ESTIMATE", "CLEAN"]

#: the column of the clean images (evaluate_grid's ``natural``)
CLEAN = "natural"
#: the point estimate the point metrics are computed on, as the report states it
POINT_ESTIMATE = ("z_phot = the p.d.f.-weighted mean of the bin centres (Campagne 2021); RAIL's own "
                  "evaluation takes the mode of the p.d.f., so its numbers on the same p.d.f.s can differ")
#: relative tolerance of :func:`pdf_vs_point`: ratios within it count as "as much"
SAME_TOLERANCE = 0.05


class PdfUnderAttack:
    """p.d.f. and point metrics of photo-z models, clean and per perturbation, accumulated batch by batch.

    Batches of one (model, column) must come in the order of ``z_spec`` (evaluate_grid's order):
    the ``i``-th object seen is ``z_spec[i]``, ``ebv[i]``.

    Args:
        models: ``{name: PhotozModel}``.
        z_spec: ``(N,)`` true redshifts, or None (no metrics: only the p.d.f.s are kept, e.g. for qp
            files when the catalogue has no z_spec).
        ebv: ``(N,)`` E(B-V) of the same objects.
        keep_pdfs: keep every p.d.f. (float32 ``(N, bins)`` per model and column) for :meth:`pdfs`.
    """

    def __init__(self, models: Mapping[str, torch.nn.Module], z_spec: Optional[Tensor], ebv: Tensor, *,
                 keep_pdfs: bool = False) -> None:
        if z_spec is None and not keep_pdfs:
            raise ValueError("PdfUnderAttack: without z_spec there is nothing to compute; set keep_pdfs")
        self.models = dict(models)
        self.z_spec = None if z_spec is None else torch.as_tensor(z_spec).detach().double().cpu()
        self.ebv = torch.as_tensor(ebv).detach().cpu()
        self.keep_pdfs = bool(keep_pdfs)
        self._seen: Dict[tuple, int] = {}
        self._cells: Dict[str, Dict[str, dict]] = {name: {} for name in self.models}
        self._kept: Dict[str, Dict[str, list]] = {name: {} for name in self.models}

    def edges(self, model: str) -> np.ndarray:
        """Float64 bin edges ``(bins + 1,)`` of ``model``."""
        return self.models[model].bin_edges.detach().cpu().numpy()

    def _cell(self, model: str, column: str) -> dict:
        if column not in self._cells[model]:
            self._cells[model][column] = {"pdf": PdfAccumulator(self.edges(model), sync=False),
                                          "campagne": PhotozAccumulator(sync=False),
                                          "rail": RailPointAccumulator(sync=False), "abs_error": [0.0, 0]}
        return self._cells[model][column]

    def _start(self, model: str, column: str, count: int) -> int:
        """The index of the next object of ``(model, column)``; ValueError past the ``N`` objects."""
        start = self._seen.get((model, column), 0)
        if start + count > self.ebv.shape[0]:
            raise ValueError(f"PdfUnderAttack: {start + count} objects of {model!r} / {column!r}, "
                             f"only {self.ebv.shape[0]} given")
        return start

    def add_pdf(self, model: str, column: str, pdf: Tensor) -> None:
        """Add ``(B, bins)`` p.d.f.s of the next ``B`` objects of ``(model, column)``."""
        start = self._start(model, column, pdf.shape[0])
        stop = start + pdf.shape[0]
        self._seen[(model, column)] = stop
        pdf = pdf.detach().float().cpu()
        if self.keep_pdfs:
            self._kept[model].setdefault(column, []).append(pdf)
        if self.z_spec is None:
            return
        z = self.z_spec[start:stop]
        z_phot = pdf.double() @ self.models[model].bin_centres.detach().double().cpu()
        cell = self._cell(model, column)
        cell["pdf"].update(pdf, z)
        cell["campagne"].update(z_phot, z)
        cell["rail"].update(z_phot, z)
        cell["abs_error"][0] += float((z_phot - z).abs().sum())
        cell["abs_error"][1] += int(z.shape[0])

    def add_images(self, model: str, column: str, x: Tensor) -> None:
        """Add the p.d.f.s of ``model`` on ``(B, C, H, W)`` images ``x`` of the next ``B`` objects."""
        start = self._start(model, column, x.shape[0])
        net = self.models[model]
        ebv = self.ebv[start:start + x.shape[0]].to(x.device)
        logits = predict(net, x, (ebv,), latent=False)[0]
        self.add_pdf(model, column, torch.softmax(logits.double(), dim=1))

    def __call__(self, model: str, column: str, x_adv: Tensor) -> None:
        """evaluate_grid's ``on_adversarial(model_name, attack_name, x_adv)``."""
        self.add_images(model, column, x_adv)

    def add_clean(self, x: Tensor, *, batch_size: int = 256) -> None:
        """The clean column of every model on ``(N, C, H, W)`` images (batches moved to the model's device)."""
        for name, net in self.models.items():
            dev = net.bin_centres.device
            for i in range(0, x.shape[0], batch_size):
                self.add_images(name, CLEAN, x[i:i + batch_size].to(dev))

    def pdfs(self, model: str) -> Dict[str, np.ndarray]:
        """``{column: float32 (N, bins)}`` of ``model`` (``keep_pdfs=True``)."""
        if not self.keep_pdfs:
            raise ValueError("PdfUnderAttack.pdfs: built without keep_pdfs")
        return {column: torch.cat(parts).numpy() for column, parts in self._kept[model].items()}

    def results(self) -> Dict[str, Dict[str, dict]]:
        """``{model: {column: metrics}}``: :func:`~advrobust.metrics.pdf_metrics`'s keys plus ``nz``,
        ``n``, ``bias``, ``sigma_mad``, ``eta``, ``bias_median``, ``sigma_iqr``, ``outlier_rate_rail``,
        ``mae`` (mean ``|z_phot - z_spec|``, the CRPS of the point estimate) and, for each perturbed
        column, ``mean_shift`` and ``wasserstein1`` of its ``n(z)`` against the clean one."""
        if self.z_spec is None:
            raise ValueError("PdfUnderAttack.results: no z_spec given")
        out = {}
        for model, cells in self._cells.items():
            out[model] = {}
            for column, cell in cells.items():
                total, count = cell["abs_error"]
                out[model][column] = {**cell["pdf"].compute(), **cell["campagne"].compute(),
                                      **cell["rail"].compute(), "mae": total / count}
            clean = out[model].get(CLEAN)
            for column, m in out[model].items():
                if clean is not None and column != CLEAN:
                    shift = nz_compare(clean["nz"], m["nz"], self.edges(model))
                    m.update(mean_shift=shift["mean_shift"], wasserstein1=shift["wasserstein1"])
        return out


def _row_label(model: str, column: str, several: bool) -> str:
    name = "clean" if column == CLEAN else column
    return f"{model}: {name}" if several else name


def pdf_tables(results: Mapping[str, Mapping[str, dict]], *, objects: int) -> list:
    """Two :class:`ReportTable`: "p.d.f. under attack" (RAIL's p.d.f. metrics and the n(z) shift) and
    the point metrics of Campagne (2021) beside RAIL's, one row per (model, column) of ``results``
    (:meth:`PdfUnderAttack.results`; the n(z) columns are ``-`` for the clean rows, and for all rows
    of a model without a clean column); ``objects``: the objects each row is measured on."""
    several = len(results) > 1
    pdf_rows, point_rows = {}, {}
    for model, columns in results.items():
        for column, m in columns.items():
            label = _row_label(model, column, several)
            shift = ((Num(m["mean_shift"], "+.4f"), Num(m["wasserstein1"], ".4f")) if "mean_shift" in m
                     else ("-", "-"))
            pdf_rows[label] = {"PIT KS": Num(m["pit_ks"], ".3f"), "PIT CvM": Num(m["pit_cvm"], ".3g"),
                               "PIT AD": Num(m["pit_ad"], ".3g"), "PIT outliers": Num(m["pit_outlier_rate"], ".2%"),
                               "mean CRPS": Num(m["crps_mean"], ".4f"), "CDE loss": Num(m["cde_loss"], ".3f"),
                               "n(z) mean shift": shift[0], "n(z) W1": shift[1]}
            point_rows[label] = {"bias (mean)": Num(m["bias"], "+.4f"), "sigma_MAD": Num(m["sigma_mad"], ".4f"),
                                 "eta": Num(m["eta"], ".1%"), "bias_median": Num(m["bias_median"], "+.4f"),
                                 "sigma_IQR": Num(m["sigma_iqr"], ".4f"),
                                 "outlier_rate_rail": Num(m["outlier_rate_rail"], ".1%")}
    pdf_note = (f"{objects:,} objects per row. PIT = F(z_spec), the p.d.f.'s CDF at the true redshift; PIT KS / "
                "CvM / AD: Kolmogorov-Smirnov, Cramer-von Mises and (k-sample, as RAIL) Anderson-Darling "
                "statistics of the PIT values against U(0, 1) (0 = calibrated); PIT outliers: PIT < 1e-4 or "
                "> 1 - 1e-4 (RAIL's limits); CRPS = integral (F(z) - 1[z >= z_spec])^2 dz (redshift units, lower "
                "is better); CDE loss = mean integral f^2 dz - 2 mean f(z_spec) (Izbicki & Lee 2017, lower is "
                "better); n(z): the stacked p.d.f.s, perturbed vs clean: shift of the mean redshift and "
                "Wasserstein-1 distance integral |F_pert - F_clean| dz (redshift units).")
    point_note = (f"Point estimate: {POINT_ESTIMATE}. dz = (z_phot - z_spec) / (1 + z_spec). Campagne 2021: "
                  "bias = mean dz, sigma_MAD = 1.4826 median |dz - median dz|, eta = fraction |dz| > 0.05. "
                  "RAIL: bias_median = median dz, sigma_IQR = (P75 - P25)(dz) / 1.349, outlier_rate_rail = "
                  "fraction |dz| > max(0.06, 3 sigma_IQR).")
    return [ReportTable("p.d.f. under attack (RAIL's p.d.f. metrics; n(z) vs clean)", pdf_rows, note=pdf_note),
            ReportTable("Point metrics: Campagne 2021 beside RAIL", point_rows, note=point_note)]


def pdf_figures(results: Mapping[str, Mapping[str, dict]], edges: Mapping[str, np.ndarray]) -> dict:
    """``{caption: Figure}``: per model, the PIT histograms of every column and ``n(z)`` clean vs
    each perturbation (:func:`advrobust.plots.plot_pit_histograms`, :func:`advrobust.plots.plot_nz`)."""
    from advrobust.plots import plot_nz, plot_pit_histograms

    figures = {}
    for model, columns in results.items():
        labels = {("clean" if c == CLEAN else c): m for c, m in columns.items()}
        figures[f"PIT histograms, {model}: clean and each perturbation"] = plot_pit_histograms(
            {label: m["pit"] for label, m in labels.items()})
        figures[f"n(z) of {model}: clean vs each perturbation"] = plot_nz(
            edges[model], {label: m["nz"] for label, m in labels.items()})
    return figures


def pdf_vs_point(clean: Mapping[str, float], perturbed: Mapping[str, float], *,
                 tolerance: float = SAME_TOLERANCE) -> dict:
    """Whether the p.d.f.s degrade more or less than the point estimates under one perturbation.

    The rule: the p.d.f.'s degradation is the ratio of mean CRPS, perturbed / clean; the point
    estimate's is the ratio of its mean absolute error ``|z_phot - z_spec|`` — the CRPS of a point
    forecast, so both are in the same units and the same score. ``"more"`` when the CRPS ratio
    exceeds the error ratio by more than ``tolerance`` (relative), ``"less"`` when it falls short
    by more than that, else ``"as much"``.

    Returns:
        ``{"verdict": "more" | "less" | "as much", "crps_ratio": float, "mae_ratio": float}``.
    """
    crps_ratio = perturbed["crps_mean"] / clean["crps_mean"]
    mae_ratio = perturbed["mae"] / clean["mae"]
    if crps_ratio > mae_ratio * (1 + tolerance):
        verdict = "more"
    elif crps_ratio < mae_ratio / (1 + tolerance):
        verdict = "less"
    else:
        verdict = "as much"
    return {"verdict": verdict, "crps_ratio": crps_ratio, "mae_ratio": mae_ratio}
