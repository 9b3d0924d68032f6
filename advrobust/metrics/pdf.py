"""Metrics of binned redshift p.d.f.s, as the LSST DESC photo-z framework (RAIL, with ``qp``) defines them.

A p.d.f. here is a row of ``(N, bins)`` probabilities per bin over increasing bin ``edges``
``(bins + 1,)`` (e.g. :func:`advrobust.redshift.bin_edges`; a photo-z model's softmax), read as a
piecewise-constant density ``f(z) = p_k / w_k`` on bin ``k`` of width ``w_k`` (``qp.hist``), zero
outside the edges. Its CDF ``F`` is piecewise linear. Rows must sum to 1 (within ``1e-3``; they are
then renormalised exactly; the input rules: :mod:`advrobust.binned_pdf`). Redshifts are
dimensionless; everything is computed in float64.

Per object (:func:`pdf_columns`):

* ``pit = F(z_spec)``, the probability integral transform (0 below the edges, 1 above);
* ``crps = integral (F(z) - 1[z >= z_spec])^2 dz`` over the real line, in closed form for the
  piecewise-linear ``F`` (redshift units); a ``z_spec`` outside the edges adds its distance to them.

Over a sample (:func:`pit_statistics`, :func:`pdf_metrics`), the PIT meta-metrics of RAIL's
evaluator (``qp.metrics.pit.PIT``, used by ``rail.evaluation``):

* ``pit_ks``: Kolmogorov-Smirnov statistic of the PIT values against U(0, 1), ``sup |ECDF(u) - u|``
  (the statistic of RAIL's ``scipy.stats.kstest``, in closed form on the sorted values ``u_(i)``);
* ``pit_cvm``: Cramer-von Mises statistic against U(0, 1), ``1/(12n) + sum_i ((2i - 1)/(2n) - u_(i))^2``
  (not divided by ``n``; the statistic of RAIL's ``scipy.stats.cramervonmises``, without its p-value);
* ``pit_ad``: RAIL's Anderson-Darling statistic: the PIT values inside ``ad_range`` (default
  ``[0, 1]``, i.e. all of them; RAIL's ``pit_min`` / ``pit_max``) against as many evenly spaced points
  on that range, by the k-sample test ``scipy.stats.anderson_ksamp`` (midrank variant, the
  standardised statistic, which can be negative). Not the one-sample ``A^2``, which is infinite as
  soon as a ``z_spec`` lies outside the edges (PIT exactly 0 or 1);
* ``pit_outlier_rate``: the fraction of PIT values ``< 1e-4`` or ``> 1 - 1e-4`` (RAIL's limits),
  counted on the values themselves (qp's ``evaluate_PIT_outlier_rate`` reads it off a 100-quantile
  interpolation of the PIT distribution instead);
* ``cde_loss``: the conditional density estimation loss of Izbicki & Lee (2017),
  ``mean_i integral f_i(z)^2 dz - 2 mean_i f_i(z_spec_i)`` (lower is better; ``f_i(z_spec) = 0``
  outside the edges), in closed form: ``integral f^2 = sum_k p_k^2 / w_k`` (qp's ``CDELossMetric``
  uses a trapezoid on a 301-point grid and the nearest grid point).

Sample redshift distribution (:func:`stacked_nz`, :func:`nz_compare`, :func:`nz_shift`): the stacked
``n(z)`` is the mean of the rows (probabilities per bin, summing to 1); two of them are compared by
the shift of their means (bin-centre weighted, the exact mean of the piecewise-constant density) and
their Wasserstein-1 distance ``integral |F_a(z) - F_b(z)| dz`` (exact for piecewise-linear CDFs).

Accumulating forms: :class:`PdfAccumulator`, :class:`NzShiftAccumulator`.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from scipy import stats

from advrobust import redshift
from advrobust.binned_pdf import check_edges, check_pdf
from advrobust.metrics.accumulate import Metric
from advrobust.metrics.helpers import ArrayLike, as_numpy

__all__ = ["pdf_columns", "pit_statistics", "pdf_metrics", "stacked_nz", "nz_compare", "nz_shift",
           "PdfAccumulator", "NzShiftAccumulator", "PIT_OUTLIER_LIMIT"]

#: RAIL's PIT outlier limits: PIT < 1e-4 or PIT > 1 - 1e-4
PIT_OUTLIER_LIMIT = 1e-4
#: rows per chunk in :func:`pdf_columns`, bounding its temporaries to ~100 MB at 180 bins
_CHUNK_ROWS = 1 << 14
#: RAIL's (qp's) AD is scipy's default midrank statistic; scipy >= 1.17 asks for it by name
_AD_VARIANT = {"variant": "midrank"} if "variant" in inspect.signature(stats.anderson_ksamp).parameters else {}


def _check_inputs(pdf: ArrayLike, z_spec: ArrayLike, edges: ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = check_edges(edges)
    p = check_pdf(pdf, e)
    z = as_numpy(z_spec, "z_spec")
    if z.size != p.shape[0]:
        raise ValueError(f"pdf has {p.shape[0]} rows but z_spec has {z.size} values")
    return p, z, e


def _chunk_columns(p: np.ndarray, z: np.ndarray, e: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PIT, CRPS and the CDE-loss term ``integral f^2 - 2 f(z_spec)`` of checked rows.

    With ``y`` = z_spec clipped into the edges, ``(F - 1[z >= z_spec])^2 = F^2 + 1[z >= y] (1 - 2 F)``
    gives ``CRPS = int F^2 + (e_B - y) - 2 int_y^e_B F`` over the edges, plus the distance of a
    z_spec outside them; ``int F^2`` over a bin where ``F`` goes linearly from ``a`` to ``b`` is
    ``w (a^2 + a b + b^2) / 3``, and ``int_e_0^x F = E[(x - Z)^+]`` (``x - c_k`` for a bin below ``x``).
    """
    n, n_bins = p.shape
    w, centres = np.diff(e), (e[:-1] + e[1:]) / 2
    cdf = np.empty((n, n_bins + 1))  # F at the edges
    cdf[:, 0] = 0.0
    np.cumsum(p, axis=1, out=cdf[:, 1:])
    np.minimum(cdf, 1.0, out=cdf)  # a cumulative sum may pass 1 by a rounding error
    cdf[:, -1] = 1.0
    j = redshift.redshift_to_bin(torch.from_numpy(z), torch.from_numpy(e)).numpy()  # clipped into the edges
    rows = np.arange(n)
    y = np.clip(z, e[j], e[j + 1])
    f_lo, p_j = cdf[rows, j], p[rows, j]
    pit = np.clip(f_lo + p_j * (y - e[j]) / w[j], 0.0, 1.0)
    w_at_edges = np.concatenate([w, [0.0]]) + np.concatenate([[0.0], w])
    int_f2 = ((cdf * cdf) @ w_at_edges + (cdf[:, :-1] * cdf[:, 1:]) @ w) / 3.0
    mass_times_centre = np.cumsum(p * centres, axis=1)  # sum_{k <= i} p_k c_k
    int_f_to_y = (e[j] * f_lo - np.where(j > 0, mass_times_centre[rows, np.maximum(j - 1, 0)], 0.0)
                  + (y - e[j]) * (f_lo + pit) / 2)
    int_f_all = e[-1] - mass_times_centre[:, -1]
    crps = (int_f2 + (e[-1] - y) - 2.0 * (int_f_all - int_f_to_y)
            + np.maximum(e[0] - z, 0.0) + np.maximum(z - e[-1], 0.0))
    inside = (z >= e[0]) & (z <= e[-1])
    cde = (p * p) @ (1.0 / w) - 2.0 * np.where(inside, p_j / w[j], 0.0)
    return pit, crps, cde


def _columns(p: np.ndarray, z: np.ndarray, e: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [_chunk_columns(p[s:s + _CHUNK_ROWS], z[s:s + _CHUNK_ROWS], e) for s in range(0, p.shape[0], _CHUNK_ROWS)]
    return tuple(np.concatenate(column) for column in zip(*parts))


def pdf_columns(pdf: ArrayLike, z_spec: ArrayLike, edges: ArrayLike) -> Dict[str, np.ndarray]:
    """Per-object ``pit`` and ``crps`` of binned p.d.f.s (the scan's columns), float64 ``(N,)`` each.

    Args:
        pdf: ``(N, bins)`` probabilities per bin (tensor on any device, or array), rows summing to 1.
        z_spec: ``(N,)`` true redshifts.
        edges: ``(bins + 1,)`` strictly increasing bin edges.

    Raises:
        ValueError: shapes, edges not strictly increasing, negative / non-finite values, rows not
            summing to 1.

    Example:
        >>> pdf_columns([[0.5, 0.5]], [0.5], [0.0, 0.5, 1.0])["pit"].tolist()
        [0.5]
    """
    pit, crps, _ = _columns(*_check_inputs(pdf, z_spec, edges))
    return {"pit": pit, "crps": crps}


def pit_statistics(pit: ArrayLike, *, ad_range: Sequence[float] = (0.0, 1.0)) -> Dict[str, float]:
    """``pit_ks``, ``pit_cvm``, ``pit_ad`` and ``pit_outlier_rate`` of PIT values (module docstring).

    ``pit_ad`` is NaN when fewer than two PIT values lie in ``ad_range``.

    Raises:
        ValueError: ``pit`` not a finite 1-D sequence in [0, 1], or a bad ``ad_range``.
    """
    u = as_numpy(pit, "pit")
    if np.any((u < 0) | (u > 1)):
        raise ValueError("pit values must lie in [0, 1]")
    lo, hi = (float(v) for v in ad_range)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"ad_range must satisfy 0 <= lo < hi <= 1, got {ad_range}")
    kept = u[(u >= lo) & (u <= hi)]
    if kept.size >= 2:
        with warnings.catch_warnings():  # p-value capping notes: only the statistic is used
            warnings.simplefilter("ignore", UserWarning)
            ad = float(stats.anderson_ksamp([kept, np.linspace(lo, hi, kept.size)], **_AD_VARIANT).statistic)
    else:
        ad = float("nan")
    u, n = np.sort(u), u.size
    i = np.arange(1, n + 1)
    return {"pit_ks": float(max(np.max(i / n - u), np.max(u - (i - 1) / n))),
            "pit_cvm": float(1.0 / (12 * n) + np.sum(((2 * i - 1) / (2.0 * n) - u) ** 2)),
            "pit_ad": ad,
            "pit_outlier_rate": float(np.mean((u < PIT_OUTLIER_LIMIT) | (u > 1 - PIT_OUTLIER_LIMIT)))}


def _summary(pit: np.ndarray, crps: np.ndarray, cde_loss: float, ad_range) -> Dict[str, object]:
    return {"pit": pit, "crps": crps, "crps_mean": float(np.mean(crps)),
            **pit_statistics(pit, ad_range=ad_range), "cde_loss": cde_loss}


def pdf_metrics(pdf: ArrayLike, z_spec: ArrayLike, edges: ArrayLike, *,
                ad_range: Sequence[float] = (0.0, 1.0)) -> Dict[str, object]:
    """The p.d.f. metrics of a sample (module docstring for the definitions).

    Args:
        pdf, z_spec, edges: as :func:`pdf_columns`.
        ad_range: the PIT range kept for ``pit_ad`` (RAIL's ``pit_min``, ``pit_max``).

    Returns:
        ``pit`` and ``crps`` (float64 ``(N,)``), ``crps_mean``, ``pit_ks``, ``pit_cvm``, ``pit_ad``,
        ``pit_outlier_rate`` (a fraction) and ``cde_loss`` (floats).

    Raises:
        ValueError: see :func:`pdf_columns`.
    """
    pit, crps, cde = _columns(*_check_inputs(pdf, z_spec, edges))
    return _summary(pit, crps, float(np.mean(cde)), ad_range)


def stacked_nz(pdf: ArrayLike, edges: ArrayLike) -> np.ndarray:
    """The sample's redshift distribution: the mean of the rows, float64 ``(bins,)`` summing to 1."""
    return check_pdf(pdf, check_edges(edges)).mean(axis=0)


def _abs_linear_integral(width: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integral of ``|g|`` over a segment of ``width`` where ``g`` goes linearly from ``a`` to ``b``."""
    same_sign = a * b >= 0
    scale = np.where(same_sign, 1.0, np.abs(a) + np.abs(b))
    return width * np.where(same_sign, (np.abs(a) + np.abs(b)) / 2, (a * a + b * b) / (2 * scale))


def nz_compare(nz_clean: ArrayLike, nz_perturbed: ArrayLike, edges: ArrayLike) -> Dict[str, object]:
    """Compare two stacked ``n(z)`` (probabilities per bin, e.g. :func:`stacked_nz`) on the same edges.

    Returns:
        ``nz_clean``, ``nz_perturbed`` (float64 ``(bins,)``, renormalised), ``mean_z_clean``,
        ``mean_z_perturbed``, ``mean_shift`` (perturbed minus clean) and ``wasserstein1``
        (``integral |F_perturbed - F_clean| dz``), in redshift units.

    Raises:
        ValueError: see :func:`pdf_columns`.
    """
    e = check_edges(edges)
    a = check_pdf(np.atleast_2d(as_numpy(nz_clean, "nz_clean")), e, "nz_clean")[0]
    b = check_pdf(np.atleast_2d(as_numpy(nz_perturbed, "nz_perturbed")), e, "nz_perturbed")[0]
    centres = (e[:-1] + e[1:]) / 2
    d = np.concatenate([[0.0], np.cumsum(b - a)])
    d[-1] = 0.0
    mean_a, mean_b = float(a @ centres), float(b @ centres)
    wasserstein1 = float(np.sum(_abs_linear_integral(np.diff(e), d[:-1], d[1:])))
    return {"nz_clean": a, "nz_perturbed": b, "mean_z_clean": mean_a, "mean_z_perturbed": mean_b,
            "mean_shift": mean_b - mean_a, "wasserstein1": wasserstein1}


def nz_shift(pdf_clean: ArrayLike, pdf_perturbed: ArrayLike, edges: ArrayLike) -> Dict[str, object]:
    """:func:`nz_compare` of the stacked ``n(z)`` of clean and perturbed p.d.f.s ``(N, bins)``, ``(M, bins)``."""
    return nz_compare(stacked_nz(pdf_clean, edges), stacked_nz(pdf_perturbed, edges), edges)


class PdfAccumulator(Metric):
    """:func:`pdf_metrics` over batches, plus the stacked ``n(z)``.

    State: concatenated ``pit`` and ``crps`` (the KS / CvM / AD statistics need every PIT value),
    summed CDE-loss terms, summed p.d.f. rows and the row count.

    ``update(pdf, z_spec)`` with ``(B, bins)`` and ``(B,)``; ``compute()`` -> the keys of
    :func:`pdf_metrics` plus ``nz`` (``(bins,)``, :func:`stacked_nz`) and ``n``.
    """

    def __init__(self, edges: ArrayLike, *, ad_range: Sequence[float] = (0.0, 1.0), sync: bool = True) -> None:
        super().__init__(sync=sync)
        self.edges = check_edges(edges)
        self.ad_range = tuple(float(v) for v in ad_range)
        self.add_state("pit", "cat")
        self.add_state("crps", "cat")
        self.add_state("totals", "sum", torch.zeros(2, dtype=torch.float64))  # n, sum of CDE terms
        self.add_state("nz_sum", "sum", torch.zeros(self.edges.size - 1, dtype=torch.float64))

    def update(self, pdf: ArrayLike, z_spec: ArrayLike) -> None:
        p, z, _ = _check_inputs(pdf, z_spec, self.edges)
        pit, crps, cde = _columns(p, z, self.edges)
        self._add("pit", torch.from_numpy(pit))
        self._add("crps", torch.from_numpy(crps))
        self._add("totals", torch.tensor([p.shape[0], cde.sum()], dtype=torch.float64))
        self._add("nz_sum", torch.from_numpy(p.sum(axis=0)))

    def _compute(self, state):
        n, cde_sum = (float(v) for v in state["totals"].cpu())
        if n == 0:
            raise ValueError("PdfAccumulator.compute: no update yet")
        out = _summary(state["pit"].cpu().numpy(), state["crps"].cpu().numpy(), cde_sum / n, self.ad_range)
        return {**out, "nz": state["nz_sum"].cpu().numpy() / n, "n": int(round(n))}


class NzShiftAccumulator(Metric):
    """:func:`nz_shift` over batches: ``update(pdf_clean, pdf_perturbed)``, ``compute()`` -> :func:`nz_compare`.

    State: the summed rows and row counts of each side (the two may see different numbers of rows).
    """

    def __init__(self, edges: ArrayLike, *, sync: bool = True) -> None:
        super().__init__(sync=sync)
        self.edges = check_edges(edges)
        self.add_state("sums", "sum", torch.zeros(2, self.edges.size - 1, dtype=torch.float64))
        self.add_state("counts", "sum", torch.zeros(2, dtype=torch.float64))

    def update(self, pdf_clean: ArrayLike, pdf_perturbed: ArrayLike) -> None:
        a, b = check_pdf(pdf_clean, self.edges, "pdf_clean"), check_pdf(pdf_perturbed, self.edges, "pdf_perturbed")
        self._add("sums", torch.from_numpy(np.stack([a.sum(axis=0), b.sum(axis=0)])))
        self._add("counts", torch.tensor([a.shape[0], b.shape[0]], dtype=torch.float64))

    def _compute(self, state):
        counts = state["counts"].cpu().numpy()
        if np.any(counts == 0):
            raise ValueError("NzShiftAccumulator.compute: no update yet")
        sums = state["sums"].cpu().numpy()
        return nz_compare(sums[0] / counts[0], sums[1] / counts[1], self.edges)
