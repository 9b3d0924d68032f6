"""Figure creation and saving shared by the plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from advrobust.atomic import atomic_path  # noqa: E402

__all__ = ["new_figure", "save_figure", "DPI"]

#: resolution of the saved PNGs (dots per inch): a figure of ``(w, h)`` inches is ``(w*DPI, h*DPI)`` pixels
DPI = 100


def new_figure(figsize: Tuple[float, float], nrows: int = 1, ncols: int = 1, **kwargs):
    """``(fig, axes)`` of ``figsize`` inches (an un-managed :class:`Figure`: nothing global to close)."""
    fig = Figure(figsize=figsize, dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def save_figure(fig: Figure, stem: str, formats: Sequence[str] = ("png", "pdf")) -> List[str]:
    """Write ``fig`` to ``stem.png`` and ``stem.pdf`` (atomically, at :data:`DPI`); the paths written.

    The PNG is exactly ``figsize * DPI`` pixels (no tight bounding box) so its size is predictable.
    """
    folder = os.path.dirname(os.path.abspath(stem))
    os.makedirs(folder, exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        paths.append(path)
    return paths

