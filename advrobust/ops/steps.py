"""The attack step ops: :func:`linf_step` (signed-gradient step + L-inf projection) and
:func:`l2_step` (normalised-gradient step + L2 projection), each one fused pass, and
:func:`step_params`, their arguments checked once for a whole attack; the fake kernels of
``torch.ops.advrobust.linf_step`` / ``l2_step`` (schemas: csrc/steps_schema.cpp)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from advrobust._extension import has_cpu_kernels
from advrobust.checks import (
    Bound, ScalarOrPerSample, check_batch, check_finite, check_float_tensor, check_like, check_lo_le_hi, per_channel, per_sample,
)
from advrobust.ops import reference
from advrobust.ops._backend import use_kernels
from advrobust.ops._registration import register_fake

__all__ = ["StepParams", "step_params", "linf_step", "l2_step"]


class StepParams(NamedTuple):
    """Checked, normalised step arguments: alpha, eps (1,) or (B,); lo, hi None, (1,) or (C,)."""
    alpha: Tensor
    eps: Tensor
    lo: Optional[Tensor]
    hi: Optional[Tensor]


def step_params(x: Tensor, *, alpha: ScalarOrPerSample, eps: ScalarOrPerSample, lo: Bound = None,
                hi: Bound = None, name: str = "step_params") -> StepParams:
    """Check and normalise the step arguments once, for many calls of :func:`linf_step` or
    :func:`l2_step` on inputs shaped like ``x`` (an attack's loop passes ``params=``, so
    the value checks, which synchronise a GPU, run once per attack instead of once per step).

    Raises:
        TypeError: alpha, eps, lo or hi of the wrong kind (a string, a bool, an integer tensor).
        ValueError: alpha or eps < 0, NaN or infinite, NaN lo/hi, wrong lengths or devices, lo > hi.
    """
    check_float_tensor(name, x, "x_adv")
    check_batch(name, x, "x_adv")
    lo_t = per_channel(name, "lo", lo, x, as_tensor=True)
    hi_t = per_channel(name, "hi", hi, x, as_tensor=True)
    check_lo_le_hi(name, lo_t, hi_t)
    return StepParams(per_sample(name, "alpha", alpha, x, as_tensor=True),
                      per_sample(name, "eps", eps, x, as_tensor=True), lo_t, hi_t)


#: Why a direct call refuses a NaN/Inf x_nat (as the kernels word it: csrc/steps_checks.h).
NONFINITE_CENTRE_HINT = "x_nat is the centre of the eps-ball and must be finite (check the clean images)"


@register_fake("linf_step")
def _linf_step_fake(x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat=False):
    return torch.empty_like(x_adv, memory_format=torch.contiguous_format)


@register_fake("l2_step")
def _l2_step_fake(x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat=False):
    return torch.empty_like(x_adv, memory_format=torch.contiguous_format)


def _step(name, kernel, twin, x_adv, grad, x_nat, alpha, eps, lo, hi, params):
    for what, t in (("x_adv", x_adv), ("grad", grad), ("x_nat", x_nat)):
        check_float_tensor(name, t, what)
    check_like(name, x_adv, "x_adv", {"grad": grad, "x_nat": x_nat})
    direct = params is None
    if direct:  # check values here (an attack checked its clean x once)
        params = step_params(x_adv, alpha=alpha, eps=eps, lo=lo, hi=hi, name=name)
    elif alpha is not None or eps is not None or lo is not None or hi is not None:
        raise ValueError(f"{name}: give either params or alpha/eps/lo/hi, not both")
    elif any(t.numel() not in (1, x_adv.shape[0]) or t.dtype != x_adv.dtype for t in params[:2]):
        raise ValueError(f"{name}: params were made for another batch or dtype; call step_params on this x_adv")
    if use_kernels(x_adv):  # a direct call's x_nat is tested for NaN/Inf in the kernel's own pass
        return kernel(x_adv, grad, x_nat, *params, direct)
    if direct:
        check_finite(name, x_nat, "x_nat", NONFINITE_CENTRE_HINT)
    return twin(x_adv, grad, x_nat, *params)


def linf_step(x_adv: Tensor, grad: Tensor, x_nat: Tensor, *, alpha: ScalarOrPerSample = None,
              eps: ScalarOrPerSample = None, lo: Bound = None, hi: Bound = None,
              params: Optional[StepParams] = None) -> Tensor:
    """One signed-gradient step with L-inf projection, fused in a single pass.

    ``clamp(clip(x_adv + alpha*sign(grad), x_nat - eps, x_nat + eps), lo, hi)``, sign(0) = 0.
    FGSM is ``linf_step(x, grad, x, alpha=eps, eps=eps)``.

    Args:
        x_adv, grad, x_nat: (B, ...) float32/float64 tensors of one shape, device and dtype,
            in the images' own units (no [0, 1] assumption).
        alpha: step size, a float or a (B,) tensor (per sample), >= 0, same units as x.
        eps: L-inf radius, a float or a (B,) tensor, >= 0.
        lo, hi: valid range: None (no clamp), a float, or a (C,) tensor per channel (dim 1).
        params: instead of alpha/eps/lo/hi, the result of :func:`step_params` (checked once;
            then x_nat is not checked for NaN/Inf either: the caller checked it once). Without
            it, the kernel checks x_nat in its own pass over it (no extra pass: a direct call
            costs about what a ``params=`` call does).

    Returns:
        A new (B, ...) tensor; the inputs are not modified.

    Raises:
        TypeError: non-float tensors or mixed dtypes, a string or bool alpha/eps/lo/hi.
        ValueError: shape/device mismatch, empty batch, alpha or eps < 0 or not finite, NaN lo/hi,
        lo > hi, NaN/Inf in x_nat (without ``params``).
    """
    return _step("linf_step", torch.ops.advrobust.linf_step if has_cpu_kernels() else None,
                 reference.linf_step_reference, x_adv, grad, x_nat, alpha, eps, lo, hi, params)


def l2_step(x_adv: Tensor, grad: Tensor, x_nat: Tensor, *, alpha: ScalarOrPerSample = None,
            eps: ScalarOrPerSample = None, lo: Bound = None, hi: Bound = None,
            params: Optional[StepParams] = None) -> Tensor:
    """One normalised-gradient step with L2-ball projection, per sample.

    ``x_nat + P_eps(x_adv - x_nat + alpha * grad / ||grad||_2)`` with
    ``P_eps(d) = eps * d / max(eps, ||d||_2)``, norms over all non-batch dims, then the
    optional clamp to [lo, hi]. A sample whose gradient is exactly zero takes no step.

    Args and Raises: as :func:`linf_step` (alpha: L2 step length, eps: L2 radius).
    """
    return _step("l2_step", torch.ops.advrobust.l2_step if has_cpu_kernels() else None,
                 reference.l2_step_reference, x_adv, grad, x_nat, alpha, eps, lo, hi, params)
