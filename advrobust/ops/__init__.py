"""Fused operators (``torch.ops.advrobust.*``) behind documented Python wrappers.

Every wrapper checks its arguments once (:mod:`advrobust.checks`: a clear ``ValueError`` or
``TypeError`` naming the problem), normalises scalars to tensors and calls the compiled
kernel for the tensor's device; without it, it runs the pure-PyTorch twin of
:mod:`advrobust.ops.reference`, which is also what the tests compare against.

One module per op family, each with its wrappers and the fake kernels (and autograd) of its
``torch.ops.advrobust`` ops; the compiled side of a family is its own set of files in csrc/
(schema, checks, per-element math, CPU kernel, CUDA kernels, glue and launchers):

* :mod:`~advrobust.ops.steps` -- :func:`linf_step`, :func:`l2_step` (attack steps) and
  :func:`step_params`;
* :mod:`~advrobust.ops.de` -- :func:`de_draws`, :func:`de_trial`, :func:`de_build`,
  :func:`de_select_`, :func:`de_pixels` (one-pixel differential evolution);
* :mod:`~advrobust.ops.mmd` -- :func:`mk_mmd` (multi-kernel MMD^2, differentiable) and the
  bandwidth helpers :func:`dan_sigmas`, :func:`sigmas_from_variances`.

``torch.ops.advrobust._mk_mmd_with_grad`` (value and gradient in one pass) is private: call
:func:`mk_mmd`, which uses it when autograd needs the gradient.

:data:`advrobust.ops.reference.REFERENCES` maps every ``torch.ops.advrobust`` op to its
pure-PyTorch twin (the tests compare each op with it on every sample input).
"""
from advrobust.ops.de import DEDraws, de_build, de_draws, de_pixels, de_select_, de_trial
from advrobust.ops.mmd import DEEPADVERSARIES_MMD_VARIANCES, dan_sigmas, mk_mmd, sigmas_from_variances
from advrobust.ops.steps import StepParams, l2_step, linf_step, step_params

__all__ = [
    "linf_step", "l2_step", "StepParams", "step_params", "mk_mmd", "dan_sigmas", "sigmas_from_variances",
    "DEEPADVERSARIES_MMD_VARIANCES", "DEDraws", "de_draws", "de_trial", "de_build", "de_select_", "de_pixels",
]
