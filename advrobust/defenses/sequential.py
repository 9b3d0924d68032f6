"""Parts shared by the sequential and the median-smoothing certificates: noisy copies of many images
streamed into forward passes, exact binomial (Clopper-Pearson) bounds on arrays, and the pre-set
checkpoints of the sequential test of :meth:`advrobust.defenses.Smooth.certify_adaptive`.

The noise of :func:`noisy_passes` is drawn per pass for all the images the pass holds (one
``torch.randn`` per pass, not one per image), so thousands of images with a few dozen draws each
cost the same number of passes as one image with all their draws.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from scipy.stats import beta as beta_dist
from torch import Tensor


__all__ = ["clopper_pearson", "checkpoints", "noisy_passes", "NOISY_OUTPUT", "NOISY_HINT"]

#: how :func:`advrobust.checks.check_finite_output` names the output of noisy copies, and what it advises
NOISY_OUTPUT = "the model's output on noisy copies"
NOISY_HINT = "nothing is certified; check the model and the inputs (and sigma) for overflow"

#: draws per image at the first look of the sequential test, and the growth of the looks
FIRST_LOOK, LOOK_GROWTH = 32, 1.5


def clopper_pearson(k: np.ndarray, n: np.ndarray, alpha: float) -> Tuple[np.ndarray, np.ndarray]:
    """One-sided exact bounds on binomial proportions, elementwise: ``(lower, upper)`` float64 arrays.

    ``lower`` is the (1 - alpha) Clopper-Pearson lower bound of ``k`` successes in ``n`` trials (0
    when ``k = 0``; the same as :func:`advrobust.defenses.lower_confidence_bound`), ``upper`` the
    (1 - alpha) upper bound (1 when ``k = n``). Each holds with probability >= 1 - alpha on its own.
    """
    k, n = np.asarray(k, dtype=np.float64), np.broadcast_to(np.asarray(n, dtype=np.float64), np.shape(k))
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(k > 0, beta_dist.ppf(alpha, np.maximum(k, 1), n - k + 1), 0.0)
        upper = np.where(k < n, beta_dist.ppf(1 - alpha, k + 1, np.maximum(n - k, 1)), 1.0)
    return lower, upper


def checkpoints(n_max: int) -> np.ndarray:
    """The sample sizes at which the sequential test looks: ``FIRST_LOOK`` draws, then x ``LOOK_GROWTH``
    each look (rounded up), the last one ``n_max``; int64 ``(K,)``, increasing. Fixed before any draw
    (the Bonferroni split over the looks needs K in advance)."""
    looks = [min(FIRST_LOOK, n_max)]
    while looks[-1] < n_max:
        looks.append(min(n_max, int(np.ceil(looks[-1] * LOOK_GROWTH))))
    return np.asarray(looks, dtype=np.int64)


def noisy_passes(x: Tensor, draws: int, batch_size: int, sigma: float,
                 generator: Optional[torch.Generator]) -> Iterator[Tuple[Tensor, Tensor]]:
    """``(owner, noisy)`` per forward pass: ``draws`` noisy copies ``x[i] + N(0, sigma^2 I)`` of every
    image of ``x`` ``(A, ...)``, in passes of at most ``batch_size`` rows; ``owner`` int64 ``(k,)`` is the
    image index of each row (rows ordered image by image), ``noisy`` ``(k, ...)``, on ``x``'s device."""
    total = x.shape[0] * draws
    for start in range(0, total, batch_size):
        stop = min(total, start + batch_size)
        owner = torch.arange(start, stop, device=x.device) // draws
        noise = torch.randn((stop - start,) + tuple(x.shape[1:]), generator=generator, device=x.device,
                            dtype=x.dtype)
        yield owner, noise.mul_(sigma).add_(x[owner])
