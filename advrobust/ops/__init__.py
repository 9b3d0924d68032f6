"""Fused operators (``torch.ops.advrobust.*``) behind documented Python wrappers.

Every wrapper checks its arguments once (clear ``ValueError``/``TypeError`` naming the
problem), normalises scalars to tensors and calls the compiled kernel for the tensor's
device; without the extension it runs the pure-PyTorch twin of
:mod:`advrobust.ops.reference`, which is also what the tests compare against.

Ops: :func:`linf_step`, :func:`l2_step` (attack steps), :func:`de_trial`,
:func:`de_build`, :func:`de_select_` (one-pixel differential evolution),
:func:`mk_mmd` (multi-kernel MMD^2, differentiable), plus bandwidth helpers
:func:`dan_sigmas` and :func:`sigmas_from_variances`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from advrobust._extension import has_cpu_kernels
from advrobust.ops import reference

__all__ = [
    "linf_step", "l2_step", "StepParams", "step_params", "mk_mmd", "dan_sigmas", "sigmas_from_variances",
    "DEEPADVERSARIES_MMD_VARIANCES", "DEDraws", "de_draws", "de_trial", "de_build", "de_select_",
]

ScalarOrPerSample = Union[float, Tensor]
Bound = Union[None, float, Tensor]

_FLOAT_DTYPES = (torch.float32, torch.float64)


def _use_kernels(t: Tensor) -> bool:
    from advrobust._extension import has_cuda_kernels
    return has_cpu_kernels() and (t.device.type == "cpu" or (t.device.type == "cuda" and has_cuda_kernels()))


def _check_float(name: str, t: Tensor, what: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: {what} must be float32 or float64, got {t.dtype}")


def _check_same(name: str, ref: Tensor, others: dict) -> None:
    for what, t in others.items():
        if t.shape != ref.shape:
            raise ValueError(f"{name}: {what} has shape {tuple(t.shape)}, expected {tuple(ref.shape)} like x_adv")
        if t.dtype != ref.dtype:
            raise TypeError(f"{name}: {what} is {t.dtype}, expected {ref.dtype} like x_adv")
        if t.device != ref.device:
            raise ValueError(f"{name}: {what} is on {t.device}, expected {ref.device} like x_adv")


def _as_per_sample(name: str, what: str, v: ScalarOrPerSample, x: Tensor) -> Tensor:
    """float or (B,) tensor -> (1,) or (B,) tensor of x's dtype and device, checked >= 0."""
    if isinstance(v, Tensor):
        if v.dim() > 1 or (v.dim() == 1 and v.numel() not in (1, x.shape[0])):
            raise ValueError(f"{name}: {what} must be a float or a 1-D tensor of length B={x.shape[0]}, "
                             f"got shape {tuple(v.shape)}")
        if v.is_floating_point() is False:
            raise TypeError(f"{name}: {what} must be a floating tensor, got {v.dtype}")
        if v.device != x.device:
            raise ValueError(f"{name}: {what} is on {v.device}, expected {x.device} like x_adv")
        t = v.detach().reshape(-1).to(x.dtype)
        if bool((t < 0).any()) or bool(torch.isnan(t).any()):
            raise ValueError(f"{name}: {what} must be >= 0 everywhere, got min {t.min().item():g}")
        return t.contiguous()
    v = float(v)
    if not v >= 0:
        raise ValueError(f"{name}: {what} must be >= 0, got {v}")
    return torch.full((1,), v, dtype=x.dtype, device=x.device)


def _as_per_channel(name: str, what: str, v: Bound, x: Tensor) -> Optional[Tensor]:
    """None, float or (C,) tensor -> None or (1,)/(C,) tensor of x's dtype and device."""
    if v is None:
        return None
    if isinstance(v, Tensor):
        if v.dim() > 1 or (v.dim() == 1 and v.numel() != 1 and (x.dim() < 2 or v.numel() != x.shape[1])):
            raise ValueError(f"{name}: {what} must be None, a float or a 1-D tensor with one value per "
                             f"channel (dim 1 of x, {x.shape[1] if x.dim() > 1 else 'absent'}), "
                             f"got shape {tuple(v.shape)}")
        if v.device != x.device:
            raise ValueError(f"{name}: {what} is on {v.device}, expected {x.device} like x_adv")
        return v.detach().reshape(-1).to(x.dtype).contiguous()
    return torch.full((1,), float(v), dtype=x.dtype, device=x.device)


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
        ValueError: alpha or eps < 0 or NaN, wrong lengths or devices, lo > hi.
    """
    _check_float(name, x, "x_adv")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name}: x_adv must have a non-empty batch dimension, got shape {tuple(x.shape)}")
    lo_t = _as_per_channel(name, "lo", lo, x)
    hi_t = _as_per_channel(name, "hi", hi, x)
    if lo_t is not None and hi_t is not None and bool((lo_t > hi_t).any()):
        raise ValueError(f"{name}: lo must be <= hi, got lo={lo_t.tolist()} hi={hi_t.tolist()}")
    return StepParams(_as_per_sample(name, "alpha", alpha, x), _as_per_sample(name, "eps", eps, x), lo_t, hi_t)


def _step(name, kernel, twin, x_adv, grad, x_nat, alpha, eps, lo, hi, params):
    for what, t in (("x_adv", x_adv), ("grad", grad), ("x_nat", x_nat)):
        _check_float(name, t, what)
    _check_same(name, x_adv, {"grad": grad, "x_nat": x_nat})
    if params is None:
        params = step_params(x_adv, alpha=alpha, eps=eps, lo=lo, hi=hi, name=name)
    elif alpha is not None or eps is not None or lo is not None or hi is not None:
        raise ValueError(f"{name}: give either params or alpha/eps/lo/hi, not both")
    elif any(t.numel() not in (1, x_adv.shape[0]) or t.dtype != x_adv.dtype for t in params[:2]):
        raise ValueError(f"{name}: params were made for another batch or dtype; call step_params on this x_adv")
    if _use_kernels(x_adv):
        return kernel(x_adv, grad, x_nat, *params)
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
        params: instead of alpha/eps/lo/hi, the result of :func:`step_params` (checked once).

    Returns:
        A new (B, ...) tensor; the inputs are not modified.

    Raises:
        TypeError: non-float tensors or mixed dtypes. ValueError: shape/device mismatch,
        empty batch, alpha or eps < 0, lo > hi.
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


# --------------------------------------------------------------------------- MMD

#: The 19 kernel widths of DeepAdversaries' (002) MMD code, given there as variances sigma^2.
DEEPADVERSARIES_MMD_VARIANCES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 5.0, 10.0, 15.0, 20.0,
                                 25.0, 30.0, 35.0, 100.0, 1e3, 1e4, 1e5, 1e6)


def sigmas_from_variances(variances: Sequence[float] = DEEPADVERSARIES_MMD_VARIANCES) -> list:
    """Kernel widths sigma_k = sqrt(variance_k), for code that, like 002's, lists sigma^2."""
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


def _check_mmd(x: Tensor, y: Tensor, sigmas) -> list:
    for what, t in (("x", x), ("y", y)):
        _check_float("mk_mmd", t, what)
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

    Args:
        x: (n, d) and y: (m, d) float32/float64 latent vectors on one device.
        sigmas: K kernel widths (standard deviations, in the units of x), a sequence of
            floats or a 1-D tensor; see :func:`dan_sigmas` and :func:`sigmas_from_variances`.
        unbiased: the unbiased U-statistic instead of the biased V-statistic.

    Returns:
        0-dim tensor, differentiable in x and y (first order).

    Example:
        >>> loss = ce + lam * mk_mmd(f_source, f_target, dan_sigmas(f_source, f_target))
    """
    sig = _check_mmd(x, y, sigmas)
    n, m = x.shape[0], y.shape[0]
    if min(n, m) < (2 if unbiased else 1):
        raise ValueError(f"mk_mmd: needs n, m >= {2 if unbiased else 1} samples, got n={n}, m={m}")
    if not _use_kernels(x):
        return reference.mk_mmd_reference(x, y, sig, unbiased)
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        return torch.ops.advrobust.mk_mmd_with_grad(x, y, sig, unbiased)[0]  # gradient made with the value
    return torch.ops.advrobust.mk_mmd(x, y, sig, unbiased)


# ------------------------------------------------------------ differential evolution

class DEDraws(NamedTuple):
    """The random numbers of one DE/rand/1/bin generation (see :func:`de_draws`).

    donors (B, P, 3) int64: distinct r1, r2, r3, all != the candidate's own index;
    cross_u (B, P, D) uniform [0, 1); cross_j (B, P) int64 in [0, D);
    resample_u (B, P, D) uniform [0, 1) for genes pushed out of bounds.
    """
    donors: Tensor
    cross_u: Tensor
    cross_j: Tensor
    resample_u: Tensor


def de_draws(batch: int, population: int, genes: int, *, dtype=torch.float32, device=None,
             generator: Optional[torch.Generator] = None) -> DEDraws:
    """Draw one generation's random numbers with torch (seedable through ``generator``).

    Donor indices are sampled without replacement and without the candidate itself by
    the skip trick (draw offsets from shrinking ranges, shift past the ones taken), so
    the cost is O(B P), not O(B P^2). Needs ``population >= 4``.
    """
    if population < 4:
        raise ValueError(f"de_draws: DE/rand/1 needs a population of at least 4, got {population}")
    kw = dict(device=device, generator=generator)
    shape = (batch, population)
    o1 = torch.randint(1, population, shape, **kw)
    o2 = torch.randint(1, population - 1, shape, **kw)
    o2 = o2 + (o2 >= o1).long()
    lo_, hi_ = torch.minimum(o1, o2), torch.maximum(o1, o2)
    o3 = torch.randint(1, population - 2, shape, **kw)
    o3 = o3 + (o3 >= lo_).long()
    o3 = o3 + (o3 >= hi_).long()
    own = torch.arange(population, device=device).view(1, population)
    donors = (torch.stack([o1, o2, o3], dim=-1) + own.unsqueeze(-1)) % population
    return DEDraws(
        donors=donors,
        cross_u=torch.rand(shape + (genes,), dtype=dtype, **kw),
        cross_j=torch.randint(0, genes, shape, **kw),
        resample_u=torch.rand(shape + (genes,), dtype=dtype, **kw),
    )


def de_trial(population: Tensor, draws: DEDraws, lower: Tensor, upper: Tensor, *,
             F: float = 0.5, CR: float = 1.0, resample: bool = True) -> Tensor:
    """DE/rand/1/bin trial vectors for B independent populations, in one kernel.

    Args:
        population: (B, P, D) float; a one-pixel candidate is k pixels x (row, col, C values),
            flattened to D = k * (2 + C) genes.
        draws: from :func:`de_draws` (B, P, D).
        lower, upper: (D,) gene bounds, same dtype and device as ``population``.
        F: differential weight (Su et al. use 0.5). CR: crossover rate (1.0 = mutant
            taken whole, as Su et al.). resample: redraw out-of-bounds genes uniformly in
            bounds (True) or clip them (False).

    Returns:
        (B, P, D) trial population.
    """
    _check_float("de_trial", population, "population")
    if population.dim() != 3:
        raise ValueError(f"de_trial: population must be (B, P, D), got shape {tuple(population.shape)}")
    B, P, D = population.shape
    expect = {"donors": (B, P, 3), "cross_u": (B, P, D), "cross_j": (B, P), "resample_u": (B, P, D)}
    for what, shape in expect.items():
        t = getattr(draws, what)
        if tuple(t.shape) != shape:
            raise ValueError(f"de_trial: draws.{what} has shape {tuple(t.shape)}, expected {shape}")
    for what, t in (("lower", lower), ("upper", upper)):
        if tuple(t.shape) != (D,) or t.dtype != population.dtype or t.device != population.device:
            raise ValueError(f"de_trial: {what} must be a ({D},) {population.dtype} tensor on "
                             f"{population.device}, got {tuple(t.shape)} {t.dtype} {t.device}")
    if bool((lower > upper).any()):
        raise ValueError("de_trial: lower must be <= upper for every gene")
    if not 0.0 <= CR <= 1.0 or not F >= 0.0:
        raise ValueError(f"de_trial: need F >= 0 and 0 <= CR <= 1, got F={F}, CR={CR}")
    args = (population, draws.donors, draws.cross_u.to(population.dtype), draws.cross_j,
            draws.resample_u.to(population.dtype), lower, upper, float(F), float(CR), bool(resample))
    if _use_kernels(population):
        return torch.ops.advrobust.de_trial(*args)
    return reference.de_trial_reference(*args)


def de_build(images: Tensor, candidates: Tensor, *, add: bool = False) -> Tensor:
    """Build all B*P perturbed images of a DE generation in one pass.

    Args:
        images: (B, C, H, W) float originals (not modified).
        candidates: (B, P, k, 2 + C): per pixel its row and column (pixel units; floored
            and clamped into the image) and C channel values (image units).
        add: add the values to the pixels instead of replacing them (002 replaces).

    Returns:
        (B, P, C, H, W); ``.flatten(0, 1)`` gives the model's batch, without a copy. The layout
        follows ``images``: channels-last images give a channels-last batch (what oneDNN
        convolutions prefer on the CPU), contiguous ones a contiguous batch.
    """
    _check_float("de_build", images, "images")
    _check_float("de_build", candidates, "candidates")
    if images.dim() != 4 or candidates.dim() != 4:
        raise ValueError(f"de_build: images must be (B, C, H, W) and candidates (B, P, k, 2+C), got "
                         f"{tuple(images.shape)} and {tuple(candidates.shape)}")
    B, C = images.shape[:2]
    if candidates.shape[0] != B or candidates.shape[3] != 2 + C:
        raise ValueError(f"de_build: candidates must be ({B}, P, k, {2 + C}) for images {tuple(images.shape)}, "
                         f"got {tuple(candidates.shape)}")
    if candidates.dtype != images.dtype or candidates.device != images.device:
        raise ValueError("de_build: images and candidates must share dtype and device")
    if _use_kernels(images):
        return torch.ops.advrobust.de_build(images, candidates, bool(add))
    return reference.de_build_reference(images, candidates, bool(add))


def de_select_(population: Tensor, fitness: Tensor, trial: Tensor, trial_fitness: Tensor) -> None:
    """Greedy DE selection in place: where ``trial_fitness <= fitness`` (lower is better,
    ties to the trial as in Storn and Price), the trial replaces its parent.

    population, trial: (B, P, D); fitness, trial_fitness: (B, P), all one dtype and device.
    """
    for what, t in (("population", population), ("fitness", fitness), ("trial", trial),
                    ("trial_fitness", trial_fitness)):
        _check_float("de_select_", t, what)
    if population.dim() != 3 or trial.shape != population.shape:
        raise ValueError(f"de_select_: population and trial must be (B, P, D) alike, got "
                         f"{tuple(population.shape)} and {tuple(trial.shape)}")
    if fitness.shape != population.shape[:2] or trial_fitness.shape != fitness.shape:
        raise ValueError(f"de_select_: fitness and trial_fitness must be {tuple(population.shape[:2])}, got "
                         f"{tuple(fitness.shape)} and {tuple(trial_fitness.shape)}")
    if len({t.dtype for t in (population, fitness, trial, trial_fitness)}) != 1 or \
            len({t.device for t in (population, fitness, trial, trial_fitness)}) != 1:
        raise ValueError("de_select_: all four tensors must share dtype and device")
    if _use_kernels(population):
        torch.ops.advrobust.de_select_(population, fitness, trial, trial_fitness)
        return
    new_pop, new_fit = reference.de_select_reference(population, fitness, trial, trial_fitness)
    population.copy_(new_pop)
    fitness.copy_(new_fit)


if has_cpu_kernels():
    from advrobust.ops import _registration  # noqa: F401,E402  (fake kernels, autograd)
