"""Photo-z figures (Campagne 2021, Figs. 3-6).

* :func:`plot_photoz_comparison`: dz histograms (shared binning) above z_phot vs z_spec, one column
  per case (clean beside perturbed);
* :func:`plot_perturbation`: one galaxy's bands, the perturbation magnified, the perturbed bands,
  the middle-row profiles and the clean and perturbed p.d.f.s with z_phot and z_spec;
* :func:`plot_pit_histograms`: PIT histograms, one panel per case (clean beside perturbed), the
  uniform line of calibrated p.d.f.s;
* :func:`plot_nz`: the stacked redshift distributions ``n(z)``, clean vs each perturbation.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from advrobust.metrics import as_numpy, delta_z, photoz_metrics
from advrobust.plots.base import new_figure

__all__ = ["plot_photoz_comparison", "plot_perturbation", "plot_pit_histograms", "plot_nz"]


def plot_photoz_comparison(z_spec, z_phot: Mapping[str, object], *, dz_range: float = 0.2, bins: int = 60,
                           z_max: Optional[float] = None) -> Figure:
    """dz histograms (top) and z_phot vs z_spec (bottom), one column per case of ``z_phot``.

    Args:
        z_spec: ``(N,)`` true redshifts (dimensionless).
        z_phot: ``{label: (N,) predicted redshifts}``, e.g. ``{"clean": zc, "FGSM eps=0.01": za}``.
        dz_range: histogram range ``[-dz_range, dz_range]`` (shared bins, as Campagne 2021 Fig. 4).
        bins: histogram bins; z_max: axis limit of the scatter (default: data maximum).

    Raises:
        ValueError: no case, or lengths differ.
    """
    if not z_phot:
        raise ValueError("plot_photoz_comparison: give at least one z_phot case")
    zs = as_numpy(z_spec, "z_spec")
    fig, axes = new_figure((4.0 * len(z_phot), 7.0), 2, len(z_phot))
    edges = np.linspace(-dz_range, dz_range, bins + 1)
    top = z_max or float(max(zs.max(), max(as_numpy(v, "z_phot").max() for v in z_phot.values()))) * 1.05
    for j, (label, zp) in enumerate(z_phot.items()):
        zp = as_numpy(zp, f"z_phot[{label}]")
        dz = delta_z(zp, zs)
        m = photoz_metrics(zp, zs)
        ax = axes[0, j]
        ax.hist(np.clip(dz, -dz_range, dz_range), edges, color="C0" if j == 0 else "C3", label=label)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_xlabel("dz = (z_phot - z_spec) / (1 + z_spec)  [dimensionless]")
        ax.set_ylabel("galaxies per bin [count]")
        ax.set_title(f"{label}\nbias={m['bias']:.2e}  sigma_MAD={m['sigma_mad']:.2e}  eta={100 * m['eta']:.1f}%",
                     fontsize=9)
        ax = axes[1, j]
        ax.scatter(zs, zp, s=3, alpha=0.5, color="C0" if j == 0 else "C3", label=label)
        ax.plot([0, top], [0, top], "k--", lw=0.8, label="z_phot = z_spec")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("z_spec [dimensionless]")
        ax.set_ylabel("z_phot [dimensionless]")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _image(t, name: str) -> np.ndarray:
    a = t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"plot_perturbation: {name} must be one image (C, H, W), got shape {a.shape}")
    return a


def plot_perturbation(x, x_adv, *, bands: Optional[Sequence[str]] = None, magnify: float = 100.0,
                      pdf_clean=None, pdf_adv=None, bin_centres=None, z_spec: Optional[float] = None,
                      unit: str = "nanomaggies") -> Figure:
    """One galaxy under attack, band by band (Campagne 2021, Figs. 5-6).

    Rows: the clean bands ``x``; the perturbation ``x_adv - x`` times ``magnify``; ``x_adv``;
    the middle-row profile of ``x`` and ``x_adv`` per band; and (with ``pdf_clean``, ``pdf_adv`` and
    ``bin_centres``) the clean and perturbed redshift p.d.f.s with their z_phot and ``z_spec``.
    Image rows share one colour scale.

    Args:
        x, x_adv: ``(C, H, W)`` (or ``(1, C, H, W)``) images in ``unit``.
        bands: band names (default ``band 0..``); magnify: perturbation magnification.
        pdf_clean, pdf_adv: ``(n_bins,)`` p.d.f.s (probabilities); bin_centres: ``(n_bins,)`` redshifts.
        z_spec: true redshift (a dashed black line).

    Raises:
        ValueError: shapes differ, or a p.d.f. without bin centres.
    """
    a, b = _image(x, "x"), _image(x_adv, "x_adv")
    if a.shape != b.shape:
        raise ValueError(f"plot_perturbation: x and x_adv shapes differ: {a.shape} vs {b.shape}")
    C = a.shape[0]
    bands = list(bands) if bands is not None else [f"band {i}" for i in range(C)]
    with_pdf = pdf_clean is not None
    if with_pdf and (pdf_adv is None or bin_centres is None):
        raise ValueError("plot_perturbation: pdf_clean needs pdf_adv and bin_centres")
    rows = 5 if with_pdf else 4
    fig, axes = new_figure((2.4 * C, 2.2 * rows), rows, C)
    _image_rows(fig, axes[:3], a, b, bands, magnify, unit)
    _profile_row(axes[3], a, b, bands, unit)
    if with_pdf:
        _pdf_row(fig, axes[4], as_numpy(bin_centres, "bin_centres"), as_numpy(pdf_clean, "pdf_clean"),
                 as_numpy(pdf_adv, "pdf_adv"), z_spec)
    fig.tight_layout()
    return fig


def _image_rows(fig: Figure, axes, a: np.ndarray, b: np.ndarray, bands: Sequence[str], magnify: float,
                unit: str) -> None:
    """Rows 0-2 of :func:`plot_perturbation`: ``a``, ``(b - a) * magnify`` and ``b`` (each ``(C, H, W)``),
    band by band; ``a`` and ``b`` share one colour scale, the perturbation a symmetric one."""
    vmin, vmax = np.percentile(np.concatenate([a.ravel(), b.ravel()]), [1, 99.5])
    delta = (b - a) * magnify
    dlim = float(np.abs(delta).max()) or 1.0
    C = a.shape[0]
    for c in range(C):
        for r, (img, kw, label) in enumerate((
                (a[c], dict(vmin=vmin, vmax=vmax, cmap="viridis"), f"x [{unit}]"),
                (delta[c], dict(vmin=-dlim, vmax=dlim, cmap="RdBu_r"), f"(x_adv - x) x {magnify:g} [{unit}]"),
                (b[c], dict(vmin=vmin, vmax=vmax, cmap="viridis"), f"x_adv [{unit}]"))):
            ax = axes[r][c]
            im = ax.imshow(img, origin="lower", **kw)
            ax.set_xlabel("column [pixel]", fontsize=7)
            ax.set_ylabel("row [pixel]", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(f"{bands[c]}: {label}", fontsize=7)
            if c == C - 1:
                fig.colorbar(im, ax=ax, fraction=0.046)


def _profile_row(axes, a: np.ndarray, b: np.ndarray, bands: Sequence[str], unit: str) -> None:
    """Row 3 of :func:`plot_perturbation`: the middle-row profile of ``a`` and ``b`` per band."""
    H = a.shape[1]
    for c, ax in enumerate(axes):
        ax.plot(a[c, H // 2], color="C0", label="x")
        ax.plot(b[c, H // 2], color="C3", label="x_adv", lw=0.8)
        ax.set_xlabel("column [pixel]", fontsize=7)
        ax.set_ylabel(f"flux [{unit}]", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(f"{bands[c]}: middle row", fontsize=7)
        ax.legend(fontsize=6)


def _pdf_row(fig: Figure, axes, centres: np.ndarray, pc: np.ndarray, pa: np.ndarray,
             z_spec: Optional[float]) -> None:
    """Row 4 of :func:`plot_perturbation`, one axis across: the clean and perturbed p.d.f.s over the
    bin ``centres`` with their z_phot (dashed) and ``z_spec`` (dashed black)."""
    gs = axes[0].get_gridspec()
    for ax in axes:
        ax.remove()
    ax = fig.add_subplot(gs[4, :])
    ax.plot(centres, pc, color="C0", label="p.d.f. clean")
    ax.plot(centres, pa, color="C3", label="p.d.f. perturbed")
    ax.axvline(float(pc @ centres), color="C0", ls="--", label="z_phot clean")
    ax.axvline(float(pa @ centres), color="C3", ls="--", label="z_phot perturbed")
    if z_spec is not None:
        ax.axvline(float(z_spec), color="k", ls="--", label="z_spec")
    ax.set_xlabel("redshift z [dimensionless]")
    ax.set_ylabel("probability per bin")
    ax.legend(fontsize=7, ncol=5)


def plot_pit_histograms(pit: Mapping[str, object], *, bins: int = 20) -> Figure:
    """PIT histograms (density), one panel per case of ``pit``, on shared bins over [0, 1].

    A calibrated p.d.f. gives a flat histogram at density 1 (the dashed line); a U shape means
    p.d.f.s too narrow, a hump too wide, a slope biased.

    Args:
        pit: ``{label: (N,) PIT values in [0, 1]}``, e.g. ``{"clean": ..., "FGSM": ...}``.
        bins: histogram bins.

    Raises:
        ValueError: no case.
    """
    if not pit:
        raise ValueError("plot_pit_histograms: give at least one PIT case")
    n = len(pit)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = new_figure((3.2 * cols, 2.8 * rows), rows, cols, sharey=True)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for ax in axes.ravel()[n:]:
        ax.remove()
    for j, (label, values) in enumerate(pit.items()):
        ax = axes.ravel()[j]
        u = as_numpy(values, f"pit[{label}]")
        ax.hist(np.clip(u, 0.0, 1.0), edges, density=True, color="C0" if j == 0 else "C3")
        ax.axhline(1.0, color="k", lw=0.8, ls="--", label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("PIT = CDF(z_spec) [dimensionless]", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=6)
    axes.ravel()[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_nz(edges, nz: Mapping[str, object]) -> Figure:
    """Stacked redshift distributions ``n(z)`` (probability density per unit redshift) as steps on the
    bin ``edges``, the first case (clean) in black, each other case in colour.

    Args:
        edges: ``(bins + 1,)`` bin edges.
        nz: ``{label: (bins,) probabilities per bin}`` (e.g. :func:`advrobust.metrics.stacked_nz`).

    Raises:
        ValueError: no case, or a case of the wrong length.
    """
    if not nz:
        raise ValueError("plot_nz: give at least one n(z)")
    e = as_numpy(edges, "edges")
    widths = np.diff(e)
    fig, axes = new_figure((7.0, 3.6))
    ax = axes[0, 0]
    for j, (label, values) in enumerate(nz.items()):
        p = as_numpy(values, f"nz[{label}]")
        if p.shape != widths.shape:
            raise ValueError(f"plot_nz: nz[{label!r}] must have {widths.size} values (one per bin), got {p.shape}")
        density = np.append(p / widths, p[-1] / widths[-1])
        ax.step(e, density, where="post", color="k" if j == 0 else f"C{j % 10}", lw=1.6 if j == 0 else 0.9,
                label=label)
    ax.set_xlabel("redshift z [dimensionless]")
    ax.set_ylabel("n(z) [probability per unit z]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
