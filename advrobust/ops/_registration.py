"""Fake (meta) kernels and autograd formulas of the ``torch.ops.advrobust`` ops.

Fake kernels give output shapes without computing, so the ops work under
``torch.compile`` and ``torch.library.opcheck``. MMD: ``_mk_mmd_with_grad`` returns the value
and its gradient in x and y from one walk over the kernel tiles; its backward only scales
the saved gradient. ``mk_mmd`` (value only, for inference) gets its backward from
``_mk_mmd_with_grad`` too, recomputing the tiles instead of saving them.
"""
from __future__ import annotations

import torch
from torch import Tensor


@torch.library.register_fake("advrobust::linf_step")
def _linf_step_fake(x_adv, grad, x_nat, alpha, eps, lo, hi):
    return torch.empty_like(x_adv, memory_format=torch.contiguous_format)


@torch.library.register_fake("advrobust::l2_step")
def _l2_step_fake(x_adv, grad, x_nat, alpha, eps, lo, hi):
    return torch.empty_like(x_adv, memory_format=torch.contiguous_format)


@torch.library.register_fake("advrobust::de_trial")
def _de_trial_fake(population, donors, cross_u, cross_j, resample_u, lower, upper, F, CR, resample):
    return torch.empty_like(population, memory_format=torch.contiguous_format)


@torch.library.register_fake("advrobust::de_build")
def _de_build_fake(images, candidates, add):
    B, C, H, W = images.shape
    P = candidates.shape[1]
    if C > 1 and not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last):
        return images.new_empty_strided((B, P, C, H, W), (P * C * H * W, C * H * W, 1, W * C, C))
    return images.new_empty((B, P, C, H, W))


@torch.library.register_fake("advrobust::de_select_")
def _de_select_fake(population, fitness, trial, trial_fitness):
    return None


@torch.library.register_fake("advrobust::mk_mmd")
def _mk_mmd_fake(x, y, sigmas, unbiased):
    return x.new_empty(())


@torch.library.register_fake("advrobust::_mk_mmd_with_grad")
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


torch.library.register_autograd("advrobust::mk_mmd", _mk_mmd_backward, setup_context=_mk_mmd_setup_context)
torch.library.register_autograd("advrobust::_mk_mmd_with_grad", _mk_mmd_with_grad_backward,
                                setup_context=_mk_mmd_with_grad_setup_context)
