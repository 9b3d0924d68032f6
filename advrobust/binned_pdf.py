"""The input rules of binned redshift p.d.f.s, shared by their metrics and their files.

A binned p.d.f. is a row of ``(N, bins)`` probabilities per bin over ``(bins + 1,)`` strictly
increasing bin edges (:func:`advrobust.redshift.bin_edges` for the photo-z models); it reads as the
piecewise-constant density ``p_k / w_k`` on bin ``k`` of width ``w_k``. Used by
:mod:`advrobust.metrics.pdf` and :mod:`advrobust.data.qp_io`.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = ["check_edges", "check_pdf", "SUM_TOLERANCE"]

#: how far from 1 the sum of a p.d.f. row may be (a float32 softmax is within ~1e-6)
SUM_TOLERANCE = 1e-3

ArrayLike = Union[torch.Tensor, np.ndarray, list, tuple]


def _float64(values: ArrayLike) -> np.ndarray:
    """A float64 copy (never a view of the caller's memory: :func:`check_pdf` normalises in place)."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64, copy=True).numpy()
    return np.array(values, dtype=np.float64)


def check_edges(edges: ArrayLike) -> np.ndarray:
    """Float64 ``(bins + 1,)`` edges.

    Raises:
        ValueError: not 1-D, fewer than 2 values, non-finite, or not strictly increasing.
    """
    e = _float64(edges)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be a 1-D sequence of at least 2 values, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("edges contain NaN or infinite values")
    if not np.all(np.diff(e) > 0):
        first = int(np.flatnonzero(np.diff(e) <= 0)[0])
        raise ValueError(f"edges must be strictly increasing; edges[{first}] = {e[first]:.6g} >= "
                         f"edges[{first + 1}] = {e[first + 1]:.6g}")
    return e


def check_pdf(pdf: ArrayLike, edges: np.ndarray, name: str = "pdf") -> np.ndarray:
    """Float64 ``(N, bins)`` rows (tensor on any device, or array), each renormalised to sum exactly 1.

    Args:
        pdf: probabilities per bin, ``N >= 1`` rows.
        edges: checked edges (:func:`check_edges`).
        name: the argument's name in error messages.

    Raises:
        ValueError: wrong shape, NaN / infinite or negative values, a row not summing to 1 within
            :data:`SUM_TOLERANCE`.
    """
    p = _float64(pdf)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] != edges.size - 1:
        raise ValueError(f"{name} must have shape (N, {edges.size - 1}) (one probability per bin of the "
                         f"{edges.size} edges), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative probabilities (min {p.min():.3g}): pass probabilities, not logits")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
    if bad.size:
        raise ValueError(f"{name} rows must sum to 1 (probabilities per bin, e.g. a softmax); row {bad[0]} "
                         f"sums to {sums[bad[0]]:.6g} ({bad.size} rows off by more than {SUM_TOLERANCE})")
    p /= sums[:, None]
    return p
