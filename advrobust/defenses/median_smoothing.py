"""Median smoothing of a regression (Chiang et al. 2020, "Detection as regression: certified object
detection by median smoothing"): certified photo-z.

The smoothed regression is ``g(x) = median of f(x + eps)``, ``eps ~ N(0, sigma^2 I)``. For every
event A, ``x -> Phi^-1(P(f(x + eps) in A))`` is (1 / sigma)-Lipschitz in L2 (the lemma behind Cohen
et al. 2019's radius), so for ``||delta||_2 <= r``, with ``p_- = Phi(-r / sigma)`` and
``p_+ = Phi(r / sigma)``:

    q_{p_-}(x) <= g(x + delta) <= q_{p_+}(x),

where ``q_p(x)`` is the p-quantile of ``f(x + eps)`` (Chiang et al. 2020, Theorem 1; the lower
quantile ``inf{y : P(f(x + eps) <= y) >= p}``; for outputs with a continuous distribution the
median is unique and the statement is exact). Estimation from ``n`` noisy outputs sorted
``y_(1) <= ... <= y_(n)``: ``#{i : y_i <= q_{p_-}}`` is binomial with success probability >= p_-,
so ``y_(k) <= q_{p_-}`` with probability >= ``P(Bin(n, p_-) >= k)``; ``lo = y_(k_lo)`` with the largest
``k_lo`` for which that is >= 1 - alpha / 2. Symmetrically ``#{i : y_i < q_{p_+}}`` is binomial with
success probability <= p_+, and ``hi = y_(k_hi)`` with the smallest ``k_hi`` for which
``P(Bin(n, p_+) <= k_hi - 1) >= 1 - alpha / 2``. Then ``[lo, hi]`` holds ``g(x + delta)`` for every
``||delta|| <= r`` at once with probability >= 1 - alpha. When n is too small for an order
statistic to qualify, the bound is infinite (nothing certified on that side).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from scipy.stats import binom, norm
from torch import Tensor, nn

from advrobust import redshift
from advrobust.attacks.base import eval_mode
from advrobust.checks import check_model, check_number, check_redshifts, model_device
from advrobust.checks import check_finite_output
from advrobust.defenses.sequential import NOISY_HINT, NOISY_OUTPUT, noisy_passes
from advrobust.models.base import PhotozModel

__all__ = ["SmoothRegression", "RegressionCertificate", "order_statistic_bounds", "certified_non_outlier"]

#: noisy outputs held in memory at once (images are certified in groups of MAX_OUTPUTS // n)
MAX_OUTPUTS = 1 << 22


@dataclass(frozen=True)
class RegressionCertificate:
    """The answer of :meth:`SmoothRegression.certify` for ``B`` inputs (all float64 / int64 on the CPU).

    Attributes:
        median: ``(B,)``, the median of the n noisy outputs (the estimate of ``g(x)``; the lower median
            ``y_((n + 1) // 2)`` for even n).
        lo, hi: ``(B,)``, ``[lo, hi]`` holds ``g(x + delta)`` for every ``||delta||_2 <= radius`` with
            probability >= 1 - alpha; -inf / +inf where n is too small to bound that side.
        samples: int64 ``(B,)``, noisy forward passes spent on each input.
        radius: the L2 radius certified (image units).
    """

    median: Tensor
    lo: Tensor
    hi: Tensor
    samples: Tensor
    radius: float


def order_statistic_bounds(n: int, radius: float, sigma: float, alpha: float) -> Tuple[int, int]:
    """1-based ranks ``(k_lo, k_hi)`` of the order statistics that bound the smoothed median within
    ``radius`` (see the module docstring); ``k_lo = 0`` / ``k_hi = n + 1`` when no rank qualifies."""
    j = np.arange(n)
    k_lo = int(np.count_nonzero(binom.cdf(j, n, norm.cdf(-radius / sigma)) <= alpha / 2))
    k_hi = int(np.count_nonzero(binom.cdf(j, n, norm.cdf(radius / sigma)) < 1 - alpha / 2)) + 1
    return k_lo, k_hi


def certified_non_outlier(lo: Tensor, hi: Tensor, z_spec: Tensor, threshold: float = 0.05) -> Tensor:
    """Bool ``(B,)``: ``|dz| = |z - z_spec| / (1 + z_spec) <= threshold`` for every z in ``[lo, hi]`` (an
    object that no perturbation within the certified radius makes an outlier; Campagne 2021's outliers
    are ``|dz| > 0.05``). dz is linear in z, so the two ends decide; an infinite end is never certified.

    Raises:
        ValueError: shapes differ, a redshift <= -1, threshold <= 0.
    """
    threshold = check_number("certified_non_outlier", "threshold", threshold, positive=True)
    z_spec = torch.as_tensor(z_spec, dtype=torch.float64)
    if not (lo.shape == hi.shape == z_spec.shape):
        raise ValueError(f"certified_non_outlier: lo, hi and z_spec must have the same shape, got "
                         f"{tuple(lo.shape)}, {tuple(hi.shape)}, {tuple(z_spec.shape)}")
    check_redshifts("certified_non_outlier", z_spec, "z_spec")
    lo, hi = lo.double().cpu(), hi.double().cpu()
    return (redshift.delta_z(lo, z_spec) >= -threshold) & (redshift.delta_z(hi, z_spec) <= threshold)


class SmoothRegression:
    """Median smoothing of a regression model (Chiang et al. 2020).

    Args:
        model: a :class:`advrobust.models.PhotozModel` (smoothed on its ``z_phot``, inputs ``(image,
            ebv)``), or any module returning one value per input, ``(B,)`` or ``(B, 1)``. Run in eval
            mode without gradients (its flags are restored afterwards).
        sigma: noise standard deviation in image units (added to the image only, not to the extra inputs).
    """

    def __init__(self, model: nn.Module, sigma: float) -> None:
        check_model("SmoothRegression", model)
        self.model = model
        self.sigma = check_number("SmoothRegression", "sigma", sigma, positive=True)

    def certify(self, x: Tensor, radius: float, *extra: Tensor, alpha: float, n: int, batch_size: int,
                generator: Optional[torch.Generator] = None) -> RegressionCertificate:
        """Smoothed median and its certified interval at L2 ``radius`` for every input of ``x`` ``(B, ...)``.

        Args:
            x: float images ``(B, C, H, W)`` (image units).
            radius: L2 radius >= 0 (image units).
            *extra: further model inputs with B rows (a photo-z model's ebv), passed unchanged.
            alpha: the interval fails with probability <= alpha (alpha / 2 per side).
            n: noisy outputs per input. batch_size: rows per forward pass.
            generator: a ``torch.Generator`` on the model's device for the noise (None: the global RNG).

        Raises:
            ValueError: bad radius / alpha / shapes, a model output not (B,) or (B, 1), NaN/Inf outputs.
            TypeError: x not a float tensor, non-integer n / batch_size.
        """
        self._check(x, radius, extra, alpha, n, batch_size)
        n = int(n)
        k_lo, k_hi = order_statistic_bounds(n, radius, self.sigma, alpha)
        medians, los, his = [], [], []
        group = max(1, MAX_OUTPUTS // n)
        for start in range(0, x.shape[0], group):
            rows = slice(start, start + group)
            y = self._outputs(x[rows], [e[rows] for e in extra], n, batch_size, generator).sort(dim=1).values
            medians.append(y[:, (n - 1) // 2])
            los.append(y[:, k_lo - 1] if k_lo >= 1 else torch.full_like(y[:, 0], -float("inf")))
            his.append(y[:, k_hi - 1] if k_hi <= n else torch.full_like(y[:, 0], float("inf")))
        return RegressionCertificate(median=torch.cat(medians), lo=torch.cat(los), hi=torch.cat(his),
                                     samples=torch.full((x.shape[0],), n, dtype=torch.int64), radius=float(radius))

    # -- parts -------------------------------------------------------------------------------------
    def _check(self, x, radius, extra, alpha, n, batch_size) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"SmoothRegression.certify: x must be a float tensor (B, C, H, W), got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"SmoothRegression.certify: x must be a non-empty batch (B, C, H, W), "
                             f"got {tuple(x.shape)}")
        check_number("SmoothRegression.certify", "radius", radius)
        if not 0 < check_number("SmoothRegression.certify", "alpha", alpha, positive=True) < 1:
            raise ValueError(f"SmoothRegression.certify: alpha must be in (0, 1), got {alpha}")
        check_number("SmoothRegression.certify", "n", n, integer=True, positive=True)
        check_number("SmoothRegression.certify", "batch_size", batch_size, integer=True, positive=True)
        if isinstance(self.model, PhotozModel) and len(extra) != 1:
            raise ValueError(f"SmoothRegression.certify: a photo-z model takes (image, ebv): pass ebv after the "
                             f"radius, certify(x, radius, ebv, ...), got {len(extra)} extra inputs")
        for i, e in enumerate(extra):
            if not isinstance(e, Tensor) or e.dim() == 0 or e.shape[0] != x.shape[0]:
                got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
                raise ValueError(f"SmoothRegression.certify: extra input {i} must be a tensor with {x.shape[0]} rows "
                                 f"(one per image), got {got}")

    @torch.no_grad()
    def _outputs(self, x: Tensor, extra, n: int, batch_size: int, generator) -> Tensor:
        """Float64 ``(A, n)``: the model's value on ``n`` noisy copies of each input of ``x`` ``(A, ...)``."""
        device = model_device(self.model) or x.device
        x, extra = x.to(device), [e.to(device) for e in extra]
        out, filled = torch.empty(x.shape[0] * n, dtype=torch.float64, device=device), 0
        with eval_mode(self.model):
            for owner, noisy in noisy_passes(x, n, batch_size, self.sigma, generator):  # rows in image order
                y = self._value(noisy, [e[owner] for e in extra])
                out[filled:filled + y.shape[0]] = y
                filled += y.shape[0]
        return out.view(x.shape[0], n).cpu()

    def _value(self, noisy: Tensor, extra) -> Tensor:
        """The model's one value per row, ``(k,)``, checked."""
        if isinstance(self.model, PhotozModel):
            y = self.model.z_phot(noisy, *extra)
        else:
            y = self.model(noisy, *extra)
        if isinstance(y, Tensor) and y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != noisy.shape[0] or not y.is_floating_point():
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"SmoothRegression: the model must return one float value per input, shape "
                             f"({noisy.shape[0]},) or ({noisy.shape[0]}, 1), got {got}; a classifier's logits "
                             "are not a regression (use Smooth), a photo-z model must subclass PhotozModel")
        check_finite_output("SmoothRegression.certify", y, NOISY_OUTPUT, NOISY_HINT)
        return y
