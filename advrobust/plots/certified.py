"""Certified accuracy vs radius (Cohen et al. 2019; the robust-models report, Fig. 1)."""
from __future__ import annotations

from typing import Mapping, Tuple

from matplotlib.figure import Figure

from advrobust.metrics import as_numpy
from advrobust.plots.base import new_figure

__all__ = ["plot_certified_accuracy"]


def plot_certified_accuracy(curves: Mapping[str, Tuple[object, object]], *, unit: str = "image units") -> Figure:
    """One line per setting: ``{label: (radii (R,), certified accuracy (R,) in [0, 1])}``.

    Labels name the setting, e.g. ``"sigma=0.25, n=1000"``; radii are L2 radii in ``unit``.

    Raises:
        ValueError: no curve, or radii and accuracies of different lengths.
    """
    if not curves:
        raise ValueError("plot_certified_accuracy: give at least one curve")
    fig, axes = new_figure((6.0, 4.0))
    ax = axes[0, 0]
    for i, (label, (r, acc)) in enumerate(curves.items()):
        r, acc = as_numpy(r, f"radii[{label}]"), as_numpy(acc, f"accuracy[{label}]")
        if r.shape != acc.shape:
            raise ValueError(f"plot_certified_accuracy: {label}: {r.size} radii but {acc.size} accuracies")
        ax.plot(r, 100 * acc, color=f"C{i}", lw=1.5, label=label)
    ax.set_xlabel(f"L2 radius [{unit}]")
    ax.set_ylabel("certified accuracy [%]")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
