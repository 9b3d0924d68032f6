"""Randomized-smoothing certificates (Cohen et al. 2019; the robust-models report, Fig. 1).

A smoothed classifier's certify step gives, per image, a prediction (-1 = abstain) and a
certified L2 radius (image units). The certified accuracy at radius r is the fraction of images
predicted correctly with a certified radius >= r (abstentions count as wrong); the average
certified radius (ACR) is the mean over all images of the radius where the prediction is correct
and 0 otherwise.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from advrobust.metrics.helpers import ArrayLike, as_numpy

__all__ = ["certified_counts", "certified_accuracy", "average_certified_radius"]


def certified_counts(predictions: Tensor, radii: Tensor, labels: Tensor, at: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-batch sums behind the certificates, on the inputs' device (no host sync, no checks).

    Args:
        predictions, labels: ``(N,)`` classes (-1 = abstain); radii: ``(N,)`` float64 certified
            radii (image units); at: ``(R,)`` float64 radii to score at.

    Returns:
        ``(R,)`` int64 count of the images correct with radius >= ``at[r]``, and the float64 sum
        of the radii of the correct images (0 for the others).
    """
    correct = predictions == labels
    at_r = (correct[:, None] & (radii[:, None] >= at.to(radii.device)[None, :])).sum(dim=0)
    return at_r, torch.where(correct, radii, torch.zeros_like(radii)).sum()


def _checked(predictions: ArrayLike, radii: ArrayLike, labels: ArrayLike, name: str):
    p = as_numpy(predictions, "predictions", dtype=None)
    r = as_numpy(radii, "radii")
    y = as_numpy(labels, "labels", dtype=None)
    if not (p.shape == r.shape == y.shape):
        raise ValueError(f"{name}: predictions, radii and labels must have the same length, got {p.size}, {r.size}, {y.size}")
    if np.any(r < 0):
        raise ValueError(f"{name}: radii must be >= 0, got min {r.min()}")
    return p, r, y


def certified_accuracy(predictions: ArrayLike, radii: ArrayLike, labels: ArrayLike,
                       at: Union[float, Sequence[float]]) -> np.ndarray:
    """Fraction of images correct with certified radius >= r, for each r of ``at``: float64 ``(len(at),)``.

    Args:
        predictions: ``(N,)`` predicted classes, -1 for an abstention.
        radii: ``(N,)`` certified L2 radii (image units), >= 0.
        labels: ``(N,)`` true classes.
        at: a radius or a list of radii (image units).

    Raises:
        ValueError: lengths differ, negative radii.

    Example:
        >>> certified_accuracy([0, 1, -1], [0.5, 0.2, 0.0], [0, 0, 1], [0.0, 0.3]).tolist()
        [0.3333333333333333, 0.3333333333333333]
    """
    p, r, y = _checked(predictions, radii, labels, "certified_accuracy")
    grid = torch.tensor(np.atleast_1d(np.asarray(at, dtype=np.float64)))
    at_r, _ = certified_counts(torch.tensor(p), torch.tensor(r), torch.tensor(y), grid)
    return at_r.numpy() / p.size


def average_certified_radius(predictions: ArrayLike, radii: ArrayLike, labels: ArrayLike) -> float:
    """Mean over images of the certified radius where correct, 0 elsewhere (image units)."""
    p, r, y = _checked(predictions, radii, labels, "average_certified_radius")
    _, radius_sum = certified_counts(torch.tensor(p), torch.tensor(r), torch.tensor(y),
                                     torch.zeros(0, dtype=torch.float64))
    return float(radius_sum) / p.size
