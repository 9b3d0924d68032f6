"""Multi-kernel Gaussian MMD^2 (:func:`mk_mmd`, differentiable) and its kernel widths
(:func:`dan_sigmas`, :func:`sigmas_from_variances`); the fake kernels and autograd formulas
of ``torch.ops.advrobust.mk_mmd`` / ``_mk_mmd_with_grad`` (schemas: csrc/mk_mmd_schema.cpp).

Autograd: ``_mk_mmd_with_grad`` returns the value and its gradient in x and y from one walk
over the kernel tiles; its backward only scales the saved gradient. ``mk_mmd`` (value only,
for inference) gets its backward from ``_mk_mmd_with_grad`` too, recomputing the tiles
instead of saving them."""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

from advrobust.checks import check_float_tensor
from advrobust.ops import reference
from advrobust.ops._backend import use_kernels
from advrobust.ops._registration import register_autograd, register_fake

__all__ = ["mk_mmd", "dan_sigmas", "sigmas_from_variances", "DEEPADVERSARIES_MMD_VARIANCES"]


#: The 19 kernel widths of the MMD code of DeepAdversaries (Ćiprijanović et al. 2022), given there as variances sigma^2.
DEEPADVERSARIES_MMD_VARIANCES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 5.0, 10.0, 15.0, 20.0,
                                 25.0, 30.0, 35.0, 100.0, 1e3, 1e4, 1e5, 1e6)


def sigmas_from_variances(variances: Sequence[float] = DEEPADVERSARIES_MMD_VARIANCES) -> list:
    """Kernel widths sigma_k = sqrt(variance_k), for code that, like DeepAdversaries', lists sigma^2."""
    return [math.sqrt(float(v)) for v in variances]


def dan_sigmas(x: Tensor, y: Tensor, kernel_mul: float = 2.0, kernel_num: int = 5) -> list:
    """DAN's bandwidth ladder (Long et al. 2015) as kernel widths sigma_k.

    The base bandwidth is the mean squared distance over all pairs i != j of
    ``cat(x, y)`` (computed in O((n+m) d), no pairwise matrix), divided by
    ``kernel_mul ** (kernel_num // 2)``; bandwidth_k = base * kernel_mul**k is DAN's
    ``2 sigma_k^2``. Computed without gradient (as DAN does); returns ``kernel_num`` floats.
    """
    with torch.no_grad():
        z = torch.cat([x, y]).to(torch.float64)
        N = z.shape[0]
        if N < 2:
            raise ValueError(f"dan_sigmas: needs at least 2 samples in total, got {N}")
        total = 2.0 * N * (z * z).sum() - 2.0 * (z.sum(0) ** 2).sum()
        base = float(total) / (N * N - N) / kernel_mul ** (kernel_num // 2)
    if not base > 0:
        raise ValueError("dan_sigmas: all samples are identical, the bandwidth would be 0")
    return [math.sqrt(base * kernel_mul ** k / 2.0) for k in range(kernel_num)]


_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


def _autocast_to_float32(t, what: str):
    """A bf16/fp16 ``t`` inside autocast for its device (latents a model produced there) is
    computed in float32, as the ops' Autocast kernels do; outside autocast it is an error."""
    if not (isinstance(t, Tensor) and t.dtype in _AUTOCAST_DTYPES):
        return t
    if not torch.is_autocast_enabled(t.device.type):
        raise TypeError(f"mk_mmd: {what} is {t.dtype}; it is accepted only inside torch.autocast (and computed "
                        f"in float32 there), otherwise pass float32 or float64, e.g. {what}.float()")
    return t.float()


def _check_mmd(x: Tensor, y: Tensor, sigmas) -> list:
    for what, t in (("x", x), ("y", y)):
        check_float_tensor("mk_mmd", t, what)
        if t.dim() != 2:
            raise ValueError(f"mk_mmd: {what} must be 2-D (samples, features), got shape {tuple(t.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mk_mmd: x has {x.shape[1]} features and y has {y.shape[1]}")
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(f"mk_mmd: x ({x.dtype}, {x.device}) and y ({y.dtype}, {y.device}) differ")
    if isinstance(sigmas, Tensor):
        sigmas = sigmas.detach().reshape(-1).tolist()
    sig = [float(s) for s in sigmas]
    if not sig:
        raise ValueError("mk_mmd: sigmas is empty; give at least one kernel width")
    if not all(s > 0 and math.isfinite(s) for s in sig):
        raise ValueError(f"mk_mmd: every sigma must be finite and > 0, got {sig}")
    return sig


def mk_mmd(x: Tensor, y: Tensor, sigmas: Union[Sequence[float], Tensor], *, unbiased: bool = False) -> Tensor:
    """Squared maximum mean discrepancy with a sum of Gaussian kernels, differentiable.

    ``k(a, b) = sum_k exp(-||a - b||^2 / (2 sigma_k^2))``;
    biased ``MMD^2 = mean k(x,x') + mean k(y,y') - 2 mean k(x,y)``; unbiased leaves the
    diagonals out of the two within-set means (needs n, m >= 2).
    The kernel never holds the n x m x K kernel tensor: it tiles the pairs and uses
    O((n+m) d + tile) extra memory. When x or y requires grad, the gradient is computed in
    the same pass as the value (three matrix products per tile, against four for a forward
    and a backward that recomputes the tiles) and the backward only scales it.

    Precision: distances come from the Gram identity ``||a||^2 + ||b||^2 - 2 a.b``. A point's
    distance to itself is exactly 0 (the self-term is exactly K; before, float32 rounding left
    a few ulp there and, with DeepAdversaries' widths down to sigma^2 = 1e-6, Ciprijanovic et
    al. 2022, the biased MMD^2 of unit-scale 64 x 32 latents was 2% off). Between two
    different points the identity loses about ``d * u * (||a||^2 + ||b||^2)`` (u = 6e-8 in
    float32) to cancellation, so a kernel term changes by up to that over ``2 sigma_k^2``:
    with float32, widths whose sigma^2 is below ~1e-6 (||a||^2 + ||b||^2) cannot tell
    near-duplicate rows apart (their terms may be anywhere in [0, 1]); the estimate is then
    only as good as float32 allows (relative ~1e-5 for well-separated widths). Use float64
    latents where that matters. A NaN in x or y gives a NaN value and gradient.

    Inside ``torch.autocast`` the op computes in float32 (float64 inputs in float64), with the
    same value and gradient as outside; bf16/fp16 latents (a model run under autocast) are
    accepted there and computed in float32. Outside autocast they are a ``TypeError``.

    Args:
        x: (n, d) and y: (m, d) float32/float64 latent vectors on one device (bf16/fp16
            inside autocast).
        sigmas: K kernel widths (standard deviations, in the units of x), a sequence of
            floats or a 1-D tensor; see :func:`dan_sigmas` and :func:`sigmas_from_variances`.
        unbiased: the unbiased U-statistic instead of the biased V-statistic.

    Returns:
        0-dim tensor (float32 for bf16/fp16 inputs), differentiable in x and y (first order).

    Example:
        >>> loss = ce + lam * mk_mmd(f_source, f_target, dan_sigmas(f_source, f_target))
    """
    x, y = _autocast_to_float32(x, "x"), _autocast_to_float32(y, "y")
    sig = _check_mmd(x, y, sigmas)
    n, m = x.shape[0], y.shape[0]
    if min(n, m) < (2 if unbiased else 1):
        raise ValueError(f"mk_mmd: needs n, m >= {2 if unbiased else 1} samples, got n={n}, m={m}")
    if not use_kernels(x):
        return reference.mk_mmd_reference(x, y, sig, unbiased)
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        return torch.ops.advrobust._mk_mmd_with_grad(x, y, sig, unbiased)[0]  # gradient made with the value
    return torch.ops.advrobust.mk_mmd(x, y, sig, unbiased)


@register_fake("mk_mmd")
def _mk_mmd_fake(x, y, sigmas, unbiased):
    return x.new_empty(())


@register_fake("_mk_mmd_with_grad")
def _mk_mmd_with_grad_fake(x, y, sigmas, unbiased):
    return x.new_empty(()), torch.empty_like(x, memory_format=torch.contiguous_format), \
        torch.empty_like(y, memory_format=torch.contiguous_format)


def _mk_mmd_setup_context(ctx, inputs, output):
    x, y, sigmas, unbiased = inputs
    ctx.save_for_backward(x, y)
    ctx.sigmas, ctx.unbiased = sigmas, unbiased


def _first_order_only() -> None:
    """The MMD gradients are computed, not traced: refuse create_graph rather than return a
    second-order gradient that silently misses the MMD's own curvature."""
    if torch.is_grad_enabled():
        raise RuntimeError("advrobust mk_mmd is differentiable once: double backward (create_graph=True) "
                           "through it is not supported; use advrobust.ops.reference.mk_mmd_reference there")


def _mk_mmd_backward(ctx, grad_out: Tensor):
    _first_order_only()
    x, y = ctx.saved_tensors
    _, gx, gy = torch.ops.advrobust._mk_mmd_with_grad(x, y, ctx.sigmas, ctx.unbiased)
    return grad_out * gx, grad_out * gy, None, None


def _mk_mmd_with_grad_setup_context(ctx, inputs, output):
    _, gx, gy = output
    ctx.mark_non_differentiable(gx, gy)  # the gradient outputs are first-order only
    ctx.save_for_backward(gx, gy)


def _mk_mmd_with_grad_backward(ctx, grad_value: Tensor, grad_gx, grad_gy):
    _first_order_only()
    gx, gy = ctx.saved_tensors
    return grad_value * gx, grad_value * gy, None, None


register_autograd("mk_mmd", _mk_mmd_backward, setup_context=_mk_mmd_setup_context)
register_autograd("_mk_mmd_with_grad", _mk_mmd_with_grad_backward, setup_context=_mk_mmd_with_grad_setup_context)
