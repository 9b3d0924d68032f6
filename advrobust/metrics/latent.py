"""Latent-space distances (Ciprijanovic et al. 2022, section 4.3, Tables 3 and 5, Fig. 6).

The Euclidean distance between a clean image's latent vector and its perturbed counterpart's,
its summary (median, mean and the standard error of the mean), and the Jensen-Shannon distance
between two distributions of such distances (e.g. regular training vs domain adaptation),
histogrammed on shared bins. Distances are in the latent space's own (arbitrary) units.
"""
from __future__ import annotations

from typing import Dict, Sequence, Union

import numpy as np
import torch

from advrobust.metrics.helpers import ArrayLike, as_numpy

__all__ = ["latent_distance_rows", "latent_distances", "distance_summary", "js_distance", "shared_bins"]

Latents = Union[torch.Tensor, np.ndarray]


def latent_distance_rows(clean: Latents, perturbed: Latents) -> torch.Tensor:
    """Euclidean distance per sample between ``(N, D)`` clean and perturbed latents: float64 ``(N,)``
    on their device (NumPy: the CPU). Shapes are checked, values not (no host sync).

    Raises:
        ValueError: shapes differ or are not ``(N, D)`` with N >= 1.
    """
    a, b = (t.detach().double() if isinstance(t, torch.Tensor) else torch.tensor(np.asarray(t, np.float64))
            for t in (clean, perturbed))
    if a.dim() != 2 or a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(f"latent_distances: clean and perturbed must both be (N, D) with N >= 1, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return ((a - b.to(a.device)) ** 2).sum(dim=1).sqrt()


def latent_distances(clean: Latents, perturbed: Latents) -> np.ndarray:
    """Euclidean distance per sample between ``(N, D)`` clean and perturbed latents: float64 ``(N,)``.

    Raises:
        ValueError: shapes differ or are not ``(N, D)`` with N >= 1, or non-finite values.
    """
    d = latent_distance_rows(clean, perturbed).cpu().numpy()
    if not np.all(np.isfinite(d)):
        raise ValueError("latent_distances: latents contain NaN or infinite values")
    return d


def distance_summary(distances: ArrayLike) -> Dict[str, float]:
    """``median``, ``mean``, ``sem`` (standard error of the mean, ``std(ddof=1) / sqrt(N)``; 0 for N = 1) and ``n``."""
    d = as_numpy(distances, "distances")
    sem = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    return {"median": float(np.median(d)), "mean": float(d.mean()), "sem": sem, "n": int(d.size)}


def shared_bins(*samples: ArrayLike, bins: int = 30) -> np.ndarray:
    """``bins + 1`` equal-width edges spanning all the samples together (one common binning)."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"shared_bins: bins must be a positive int, got {bins!r}")
    arrays = [as_numpy(s, f"sample {i}") for i, s in enumerate(samples)]
    lo = min(a.min() for a in arrays)
    hi = max(a.max() for a in arrays)
    if hi == lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def js_distance(d1: ArrayLike, d2: ArrayLike, bins: Union[int, Sequence[float], np.ndarray] = 30) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the histograms of two samples on shared bins.

    Each histogram is normalised to sum to 1; the distance is ``sqrt(JSD)`` with
    ``JSD = (KL(p || m) + KL(q || m)) / 2``, ``m = (p + q) / 2``, logarithms base 2: 0 for
    identical histograms, 1 for histograms with disjoint support.

    Args:
        d1, d2: ``(N1,)`` and ``(N2,)`` samples (e.g. latent distances).
        bins: number of equal-width bins over the range of both samples, or explicit edges
            (values outside them are dropped).

    Raises:
        ValueError: empty or non-finite samples, bad bins, or a sample with no value inside the bins.

    Example:
        >>> js_distance([0.1, 0.2], [5.0, 6.0], bins=4)
        1.0
    """
    a, b = as_numpy(d1, "d1"), as_numpy(d2, "d2")
    edges = shared_bins(a, b, bins=bins) if isinstance(bins, (int, np.integer)) else np.asarray(bins, np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"js_distance: bins must be a positive int or increasing edges, got {bins!r}")
    p, _ = np.histogram(a, edges)
    q, _ = np.histogram(b, edges)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError("js_distance: a sample has no value inside the bins")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(u: np.ndarray) -> float:
        nz = u > 0
        return float(np.sum(u[nz] * np.log2(u[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))
