"""Latent-space figures (Ciprijanovic et al. 2022, Figs. 4-7).

* :func:`plot_church_window`: the class map of :func:`advrobust.evaluate.church_window`;
* :func:`isomap_embedding` / :func:`plot_isomap`: 2-D or 3-D Isomap projections of latents
  (scikit-learn), coloured by class, one marker per data set (e.g. Y10 filled, Y1 empty);
* :func:`plot_distance_histograms`: latent-distance distributions with their JS distance.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from advrobust.metrics import as_numpy, js_distance, shared_bins
from advrobust.plots.base import DPI, new_figure

__all__ = ["plot_church_window", "isomap_embedding", "plot_isomap", "plot_distance_histograms", "MORPHOLOGY_CLASSES"]

#: Ciprijanovic et al. (2022) labels
MORPHOLOGY_CLASSES = ("spiral", "elliptical", "merger")


def _class_names(n: int, names: Optional[Sequence[str]]) -> list:
    return list(names) if names is not None else [f"class {i}" for i in range(n)]


def plot_church_window(window, *, class_names: Optional[Sequence[str]] = MORPHOLOGY_CLASSES,
                       d1_label: str = "one-pixel direction", d2_label: str = "noise direction",
                       points: Optional[Mapping[str, Sequence[float]]] = None) -> Figure:
    """The class regions of a :class:`~advrobust.evaluate.ChurchWindow`.

    Axes are multiples of the two directions (dimensionless). ``points`` marks named grid points;
    default: ``clean`` (0, 0), ``d1`` (1, 0) and ``d2`` (0, 1) with the direction labels.
    """
    cls = np.asarray(window.classes)
    n = int(max(cls.max(), window.clean_class)) + 1
    names = _class_names(max(n, len(class_names or ())), class_names)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    cmap = ListedColormap(colours[:len(names)])
    fig, axes = new_figure((5.5, 5.0))
    ax = axes[0, 0]
    a, b = window.a, window.b
    ax.pcolormesh(a, b, cls, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, shading="nearest")
    points = points or {"clean image": (0.0, 0.0), d1_label: (1.0, 0.0), d2_label: (0.0, 1.0)}
    for (label, (pa, pb)), marker in zip(points.items(), "o^sDv"):
        ax.plot([pa], [pb], marker, color="white", mec="black", ms=9, label=label)
    handles = [Patch(color=colours[i], label=names[i]) for i in range(len(names))]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=8, loc="upper right")
    ax.set_xlabel(f"{d1_label} [multiples of the perturbation]")
    ax.set_ylabel(f"{d2_label} [multiples of the perturbation]")
    ax.set_title(f"predicted class around the image (clean: {names[window.clean_class]})", fontsize=9)
    fig.tight_layout()
    return fig


def _latents(z, name: str) -> np.ndarray:
    a = z.detach().cpu().double().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"isomap: {name} must be (N, D) latents with N >= 2, got shape {a.shape}")
    return a


def isomap_embedding(latents: Mapping[str, object], n_components: int = 2, n_neighbors: int = 10) -> dict:
    """One Isomap fitted on all the data sets together; ``{name: (N_i, n_components)}`` coordinates.

    Raises:
        ValueError: n_components not 2 or 3, or latents not ``(N, D)``.
    """
    from sklearn.manifold import Isomap

    if n_components not in (2, 3):
        raise ValueError(f"isomap_embedding: n_components must be 2 or 3, got {n_components}")
    arrays = {k: _latents(v, k) for k, v in latents.items()}
    stacked = np.concatenate(list(arrays.values()))
    k = min(n_neighbors, stacked.shape[0] - 1)
    emb = Isomap(n_neighbors=k, n_components=n_components).fit_transform(stacked)
    out, i = {}, 0
    for name, a in arrays.items():
        out[name] = emb[i:i + a.shape[0]]
        i += a.shape[0]
    return out


def plot_isomap(latents: Mapping[str, object], labels: Mapping[str, object], *, n_components: int = 2,
                n_neighbors: int = 10, class_names: Optional[Sequence[str]] = MORPHOLOGY_CLASSES) -> Figure:
    """Isomap of latents (2-D or 3-D), colour = class, one marker style per data set.

    Args:
        latents: ``{data set: (N, D) latents}``, e.g. ``{"Y10": z10, "Y1": z1}``.
        labels: ``{data set: (N,) class per point}`` (true or predicted classes, as the caller says).
        The first data set is drawn with filled markers, the others empty (Ciprijanovic et al. 2022, Fig. 7).
    """
    emb = isomap_embedding(latents, n_components, n_neighbors)
    fig = Figure(figsize=(6.0, 5.0), dpi=DPI)
    ax = fig.add_subplot(projection="3d" if n_components == 3 else None)
    markers = "o^sDv"
    all_labels = np.concatenate([as_numpy(labels[k], f"labels[{k}]", dtype=None) for k in latents])
    names = _class_names(int(all_labels.max()) + 1, class_names)
    for d, (name, xy) in enumerate(emb.items()):
        lab = as_numpy(labels[name], f"labels[{name}]", dtype=None)
        if lab.shape[0] != xy.shape[0]:
            raise ValueError(f"plot_isomap: labels[{name}] has {lab.shape[0]} values for {xy.shape[0]} latents")
        for c in np.unique(lab):
            pts = xy[lab == c]
            style = dict(color=f"C{int(c)}", marker=markers[d % len(markers)], s=14,
                         label=f"{name}: {names[int(c)]}")
            if d:
                style.update(facecolors="none", edgecolors=f"C{int(c)}")
                style.pop("color")
            ax.scatter(*pts.T, **style)
    ax.set_xlabel("isomap 1 [latent units]")
    ax.set_ylabel("isomap 2 [latent units]")
    if n_components == 3:
        ax.set_zlabel("isomap 3 [latent units]")
    ax.legend(fontsize=7)
    ax.set_title(f"{n_components}-D isomap of the latent space", fontsize=9)
    fig.tight_layout()
    return fig


def plot_distance_histograms(distances: Mapping[str, object], *, bins: int = 30,
                             title: str = "latent distance clean - perturbed", unit: str = "latent units") -> Figure:
    """Histograms (normalised to sum 1) of latent distances on shared bins; the JS distance between
    the first two in the title (Ciprijanovic et al. 2022, Fig. 6).

    Args:
        distances: ``{label: (N,) distances}``, e.g. ``{"regular": d_reg, "domain adaptation": d_da}``.
        unit: the distances' unit, for the x axis.
    """
    if not distances:
        raise ValueError("plot_distance_histograms: give at least one distance sample")
    arrays = {k: as_numpy(v, f"distances[{k}]") for k, v in distances.items()}
    edges = shared_bins(*arrays.values(), bins=bins)
    fig, axes = new_figure((6.0, 4.0))
    ax = axes[0, 0]
    for i, (label, d) in enumerate(arrays.items()):
        ax.hist(d, edges, weights=np.full(d.size, 1.0 / d.size), histtype="step", lw=1.5, color=f"C{i}",
                label=f"{label} (median {np.median(d):.3g}, N={d.size})")
    if len(arrays) >= 2:
        (l1, d1), (l2, d2) = list(arrays.items())[:2]
        title += f"\nJS distance ({l1} vs {l2}) = {js_distance(d1, d2, bins=edges):.3f}"
    ax.set_xlabel(f"Euclidean distance in latent space [{unit}]")
    ax.set_ylabel("fraction of images per bin")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
