"""Pure-PyTorch twins of the fused operators.

Each function here computes, with ordinary eager PyTorch, exactly what the matching
operator in :mod:`advrobust.ops` computes in one fused C++/CUDA kernel. They are

* the oracle of the test suite (operator == twin on random inputs),
* the baseline of ``bench/`` (and, through ``torch.compile``, the "fused for free" bar),
* the fallback used by :mod:`advrobust.ops` when the compiled extension is missing.

The twins take the same *normalised* arguments as the operators: ``alpha`` and ``eps``
are 1-D tensors of length 1 or B, ``lo``/``hi`` are ``None`` or 1-D tensors of length 1
or C (broadcast over the channel dimension 1), DE random draws are tensors.
No argument checking happens here: :mod:`advrobust.ops` does it once for both paths.

:data:`REFERENCES` maps each ``torch.ops.advrobust`` op to its twin. An op that updates
arguments in place (``de_select_``; its schema marks them ``Tensor(a!)``) has a twin that
returns their new values instead. This module imports nothing from the op families.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "linf_step_reference",
    "l2_step_reference",
    "de_trial_reference",
    "de_build_reference",
    "de_select_reference",
    "mk_mmd_reference",
    "mk_mmd_with_grad_reference",
    "de_pixels",
    "REFERENCES",
]


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """(1,) or (B,) -> shape (B or 1, 1, ..., 1) broadcastable against ``x`` (B, ...)."""
    return v.reshape((-1,) + (1,) * (x.dim() - 1))


def _per_channel(v: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """None, (1,) or (C,) -> None or shape (1, C or 1, 1, ..., 1) against ``x`` (B, C, ...)."""
    if v is None:
        return None
    return v.reshape((1, -1) + (1,) * (x.dim() - 2))


def _clamp_range(x: Tensor, lo: Optional[Tensor], hi: Optional[Tensor]) -> Tensor:
    lo_b, hi_b = _per_channel(lo, x), _per_channel(hi, x)
    if lo_b is not None:
        x = torch.maximum(x, lo_b)
    if hi_b is not None:
        x = torch.minimum(x, hi_b)
    return x


def linf_step_reference(
    x_adv: Tensor, grad: Tensor, x_nat: Tensor, alpha: Tensor, eps: Tensor,
    lo: Optional[Tensor] = None, hi: Optional[Tensor] = None,
) -> Tensor:
    """``clamp(clip(x_adv + alpha*sign(grad), x_nat - eps, x_nat + eps), lo, hi)``.

    Shapes: x_adv, grad, x_nat (B, ...); alpha, eps (1,) or (B,); lo, hi None or (1,)/(C,).
    A NaN in x_adv, grad or x_nat gives NaN in that output element: torch.sign(NaN) is 0, so
    the sign keeps a NaN gradient explicitly (as the kernel's ``sign_of``); maximum / minimum
    propagate NaN.
    """
    a, e = _per_sample(alpha, x_adv), _per_sample(eps, x_adv)
    stepped = x_adv + a * torch.where(torch.isnan(grad), grad, torch.sign(grad))
    clipped = torch.minimum(torch.maximum(stepped, x_nat - e), x_nat + e)
    return _clamp_range(clipped, lo, hi)


def l2_step_reference(
    x_adv: Tensor, grad: Tensor, x_nat: Tensor, alpha: Tensor, eps: Tensor,
    lo: Optional[Tensor] = None, hi: Optional[Tensor] = None,
) -> Tensor:
    """``x_nat + P_eps(x_adv - x_nat + alpha * grad/||grad||)``, then clamp to [lo, hi].

    ``P_eps(d) = eps * d / max(eps, ||d||)``; norms are per sample over all non-batch
    dims. A zero gradient makes no step (no NaN); ``eps = 0`` projects onto x_nat.
    A NaN in a sample's x_adv, grad or x_nat makes its norms, and so its whole output, NaN
    (the conditions test ``== 0`` / ``<= eps`` so that NaN takes the division, as the kernel's
    ``l2_step_coefficients``).
    """
    flat = grad.flatten(1)
    gnorm = torch.linalg.vector_norm(flat, dim=1)
    step = torch.where(gnorm == 0, 0.0, alpha / gnorm.clamp_min(torch.finfo(grad.dtype).tiny))
    delta = (x_adv - x_nat) + _per_sample(step, grad) * grad
    dnorm = torch.linalg.vector_norm(delta.flatten(1), dim=1)
    eps_b = eps.expand_as(dnorm)
    scale = torch.where(dnorm <= eps_b, 1.0, eps_b / dnorm.clamp_min(torch.finfo(grad.dtype).tiny))
    return _clamp_range(x_nat + _per_sample(scale, delta) * delta, lo, hi)


def de_trial_reference(
    population: Tensor, donors: Tensor, cross_u: Tensor, cross_j: Tensor,
    resample_u: Tensor, lower: Tensor, upper: Tensor, F: float, CR: float, resample: bool,
) -> Tensor:
    """DE/rand/1/bin trial vectors.

    Shapes: population (B, P, D); donors (B, P, 3) int64, the r1, r2, r3 of each
    candidate; cross_u (B, P, D) uniform [0, 1); cross_j (B, P) int64 in [0, D), the gene
    always taken from the mutant; resample_u (B, P, D) uniform [0, 1); lower, upper (D,).

    mutant = pop[r1] + F * (pop[r2] - pop[r3]); gene j of the trial is the mutant's where
    ``cross_u < CR`` or ``j == cross_j``, else the parent's. A mutant gene outside
    [lower, upper] is redrawn as ``lower + resample_u * (upper - lower)`` when ``resample``,
    else clipped. Returns (B, P, D).
    """
    B, P, D = population.shape
    flat_idx = donors + (torch.arange(B, device=donors.device) * P).view(B, 1, 1)
    picked = population.reshape(B * P, D)[flat_idx.reshape(-1)].view(B, P, 3, D)
    mutant = picked[:, :, 0] + F * (picked[:, :, 1] - picked[:, :, 2])
    out_of_bounds = (mutant < lower) | (mutant > upper)
    if resample:
        mutant = torch.where(out_of_bounds, lower + resample_u * (upper - lower), mutant)
    else:
        mutant = torch.minimum(torch.maximum(mutant, lower), upper)
    genes = torch.arange(D, device=population.device)
    take_mutant = (cross_u < CR) | (genes == cross_j.unsqueeze(-1))
    return torch.where(take_mutant, mutant, population)


def de_pixels(candidates: Tensor, H: int, W: int) -> tuple[Tensor, Tensor]:
    """Pixel (row, col) of each gene group, int64 of shape ``candidates.shape[:-1]``: the
    continuous row and column genes (``candidates[..., 0]``, ``[..., 1]``, pixel units) floored
    and clamped into the H x W image, as ``de_build`` and its kernels do (C++:
    ``de_pixel_index`` in csrc/de_math.h). A NaN gene goes to index 0, as there (a NaN cast
    to int64 would give an arbitrary index). Public as :func:`advrobust.ops.de_pixels`."""
    def index(gene: Tensor, size: int) -> Tensor:
        f = gene.floor()
        return torch.where(f > 0, f.clamp_max(size - 1), 0.0).long()

    return index(candidates[..., 0], H), index(candidates[..., 1], W)


def de_build_reference(images: Tensor, candidates: Tensor, add: bool) -> Tensor:
    """The B*P perturbed images of one DE generation.

    images (B, C, H, W); candidates (B, P, k, 2 + C): per pixel a row, a column (floats,
    floored and clamped into the image) and C channel values. Returns (B, P, C, H, W):
    image b with the k pixels of candidate p replaced by (``add=False``) or increased by
    (``add=True``) the values, pixels applied in order 0..k-1.
    """
    B, C, H, W = images.shape
    P, k = candidates.shape[1], candidates.shape[2]
    if not (images.is_contiguous() or images.is_contiguous(memory_format=torch.channels_last)):
        images = images.contiguous()  # a strided view: the view() below needs one of these two layouts
    out = images.unsqueeze(1).expand(B, P, C, H, W).clone()
    flat = out.view(B * P, C, H * W)
    rows, cols = de_pixels(candidates, H, W)
    pix = (rows * W + cols).view(B * P, k)
    values = candidates[..., 2:].reshape(B * P, k, C)
    bp = torch.arange(B * P, device=images.device)
    for j in range(k):  # k is a handful of pixels; order matters when two coincide
        idx = pix[:, j]
        current = flat[bp, :, idx]
        flat[bp, :, idx] = current + values[:, j] if add else values[:, j]
    return out


def de_select_reference(
    population: Tensor, fitness: Tensor, trial: Tensor, trial_fitness: Tensor
) -> tuple[Tensor, Tensor]:
    """Greedy DE selection, lower fitness is better, ties go to the trial.

    population, trial (B, P, D); fitness, trial_fitness (B, P). Returns the new
    (population, fitness) without modifying the inputs.
    """
    better = trial_fitness <= fitness
    return (torch.where(better.unsqueeze(-1), trial, population),
            torch.where(better, trial_fitness, fitness))


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||^2 as an (n, m) matrix through the Gram identity, clamped at 0.

    With ``b is a`` the diagonal is exactly 0: the Gram identity leaves a few ulp of
    2||a_i||^2 there, which the narrow kernels (sigma^2 down to 1e-6, Ciprijanovic et al.
    2022) turn into a self-term well below K (as the kernels' ``mmd_self_kernel``). The clamp
    is a ``where`` so that a NaN keeps its gradient (NaN in, NaN gradient out, like the kernel).
    """
    aa = (a * a).sum(1, keepdim=True)
    bb = (b * b).sum(1, keepdim=True)
    d2 = aa + bb.T - 2.0 * (a @ b.T)
    drop = d2 < 0
    if b is a:
        drop = drop | torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    return torch.where(drop, 0.0, d2)


def mk_mmd_reference(x: Tensor, y: Tensor, sigmas: Sequence[float], unbiased: bool = False) -> Tensor:
    """Multi-kernel Gaussian MMD^2, materialising each n x m kernel matrix (as DAN code does).

    x (n, d), y (m, d); k(a, b) = sum_k exp(-||a - b||^2 / (2 sigma_k^2)).
    Biased: mean k(x, x') + mean k(y, y') - 2 mean k(x, y), diagonals included.
    Unbiased: the within-set means leave out the diagonal (i == j). Returns a 0-dim tensor.
    """
    def ksum(a: Tensor, b: Tensor) -> Tensor:
        d2 = _sq_dists(a, b)
        return sum(torch.exp(d2 * (-0.5 / (s * s))) for s in sigmas)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = ksum(x, x), ksum(y, y), ksum(x, y)
    if unbiased:
        txx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        tyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        txx, tyy = kxx.mean(), kyy.mean()
    return txx + tyy - 2.0 * kxy.mean()


def mk_mmd_with_grad_reference(x: Tensor, y: Tensor, sigmas: Sequence[float], unbiased: bool = False
                               ) -> tuple[Tensor, Tensor, Tensor]:
    """``_mk_mmd_with_grad``'s twin: :func:`mk_mmd_reference` and its gradient in x and y
    (autograd through the twin); returns (value, grad_x, grad_y), none requiring grad."""
    with torch.enable_grad():
        xr, yr = x.detach().requires_grad_(), y.detach().requires_grad_()
        value = mk_mmd_reference(xr, yr, sigmas, unbiased)
        gx, gy = torch.autograd.grad(value, (xr, yr))
    return value.detach(), gx, gy


#: Each ``torch.ops.advrobust`` op -> its pure-PyTorch twin, called with the op's arguments.
REFERENCES: dict[str, Callable] = {
    "linf_step": linf_step_reference,
    "l2_step": l2_step_reference,
    "de_trial": de_trial_reference,
    "de_build": de_build_reference,
    "de_select_": de_select_reference,
    "mk_mmd": mk_mmd_reference,
    "_mk_mmd_with_grad": mk_mmd_with_grad_reference,
}
