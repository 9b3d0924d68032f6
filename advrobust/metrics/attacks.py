"""Attack metrics: success rate and the one-pixel attack's iterations-needed statistics.

Ciprijanovic et al. (2022, section 5.3) use the number of differential-evolution iterations a
one-pixel attack needs to flip an image as a susceptibility measure (cap: 80 iterations); an image
never flipped within the cap is counted in ``n_failed``, not in the iteration statistics.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from advrobust.metrics.helpers import ArrayLike, as_numpy

__all__ = ["success_rate", "iterations_summary"]


def success_rate(success: ArrayLike) -> float:
    """Fraction of samples fooled, in [0, 1]; ``success`` is a ``(N,)`` bool (or 0/1) sequence."""
    s = as_numpy(success, "success", dtype=None)
    if not (s.dtype == bool or np.all((s == 0) | (s == 1))):
        raise ValueError("success_rate: success must hold booleans (or 0/1)")
    return float(np.mean(s.astype(bool)))


def iterations_summary(iterations: ArrayLike, success: ArrayLike, max_iter: Optional[int] = None) -> Dict[str, float]:
    """Statistics of the iterations needed by the successful attacks.

    Args:
        iterations: ``(N,)`` generations run per image (:class:`~advrobust.attacks.OnePixelResult`).
        success: ``(N,)`` bool, the image was flipped.
        max_iter: the attack's cap, reported back as ``max_iter`` (None: not reported).

    Returns:
        ``n``, ``n_success``, ``n_failed``, ``success_rate``, and over the successful images
        ``mean``, ``median``, ``sem`` (standard error), ``min``, ``max`` (NaN when none succeeded).

    Raises:
        ValueError: lengths differ, negative iterations.
    """
    it = as_numpy(iterations, "iterations")
    ok = as_numpy(success, "success", dtype=None).astype(bool)
    if it.shape != ok.shape:
        raise ValueError(f"iterations_summary: iterations and success must have the same length, got {it.size} and {ok.size}")
    if np.any(it < 0):
        raise ValueError("iterations_summary: iterations must be >= 0")
    s = it[ok]
    out = {"n": int(it.size), "n_success": int(ok.sum()), "n_failed": int((~ok).sum()),
           "success_rate": float(ok.mean())}
    if s.size:
        out.update(mean=float(s.mean()), median=float(np.median(s)),
                   sem=float(s.std(ddof=1) / np.sqrt(s.size)) if s.size > 1 else 0.0,
                   min=float(s.min()), max=float(s.max()))
    else:
        out.update({k: float("nan") for k in ("mean", "median", "sem", "min", "max")})
    if max_iter is not None:
        out["max_iter"] = int(max_iter)
    return out
