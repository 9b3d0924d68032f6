"""Differential evolution for the one-pixel attack, for B images x P candidates at once:
:func:`de_draws` (the random numbers, drawn with torch), :func:`de_trial` (mutation, crossover,
bounds), :func:`de_build` (the B*P perturbed images), :func:`de_select_` (greedy selection),
and :func:`de_pixels` (a candidate's genes -> pixel indices, as the kernels compute them); the
fake kernels of ``torch.ops.advrobust.de_*`` (schemas: csrc/de_schema.cpp)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from advrobust.checks import check_float_tensor
from advrobust.ops import reference
from advrobust.ops._backend import use_kernels
from advrobust.ops._registration import register_fake
from advrobust.ops.reference import de_pixels  # the twin of the kernels' rule, public here

__all__ = ["DEDraws", "de_draws", "de_trial", "de_build", "de_select_", "de_pixels"]


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
    check_float_tensor("de_trial", population, "population")
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
    if use_kernels(population):
        return torch.ops.advrobust.de_trial(*args)
    return reference.de_trial_reference(*args)


def de_build(images: Tensor, candidates: Tensor, *, add: bool = False) -> Tensor:
    """Build all B*P perturbed images of a DE generation in one pass.

    Args:
        images: (B, C, H, W) float originals (not modified).
        candidates: (B, P, k, 2 + C): per pixel its row and column (pixel units; floored
            and clamped into the image) and C channel values (image units).
        add: add the values to the pixels instead of replacing them (Ćiprijanović et al. 2022 replace).

    Returns:
        (B, P, C, H, W); ``.flatten(0, 1)`` gives the model's batch, without a copy. The layout
        follows ``images``: channels-last images give a channels-last batch (what oneDNN
        convolutions prefer on the CPU), contiguous ones a contiguous batch.
    """
    check_float_tensor("de_build", images, "images")
    check_float_tensor("de_build", candidates, "candidates")
    if images.dim() != 4 or candidates.dim() != 4:
        raise ValueError(f"de_build: images must be (B, C, H, W) and candidates (B, P, k, 2+C), got "
                         f"{tuple(images.shape)} and {tuple(candidates.shape)}")
    B, C = images.shape[:2]
    if candidates.shape[0] != B or candidates.shape[3] != 2 + C:
        raise ValueError(f"de_build: candidates must be ({B}, P, k, {2 + C}) for images {tuple(images.shape)}, "
                         f"got {tuple(candidates.shape)}")
    if candidates.dtype != images.dtype or candidates.device != images.device:
        raise ValueError("de_build: images and candidates must share dtype and device")
    if use_kernels(images):
        return torch.ops.advrobust.de_build(images, candidates, bool(add))
    return reference.de_build_reference(images, candidates, bool(add))


def de_select_(population: Tensor, fitness: Tensor, trial: Tensor, trial_fitness: Tensor) -> None:
    """Greedy DE selection in place: where ``trial_fitness <= fitness`` (lower is better,
    ties to the trial as in Storn and Price), the trial replaces its parent.

    population, trial: (B, P, D); fitness, trial_fitness: (B, P), all one dtype and device.
    """
    for what, t in (("population", population), ("fitness", fitness), ("trial", trial),
                    ("trial_fitness", trial_fitness)):
        check_float_tensor("de_select_", t, what)
    if population.dim() != 3 or trial.shape != population.shape:
        raise ValueError(f"de_select_: population and trial must be (B, P, D) alike, got "
                         f"{tuple(population.shape)} and {tuple(trial.shape)}")
    if fitness.shape != population.shape[:2] or trial_fitness.shape != fitness.shape:
        raise ValueError(f"de_select_: fitness and trial_fitness must be {tuple(population.shape[:2])}, got "
                         f"{tuple(fitness.shape)} and {tuple(trial_fitness.shape)}")
    if len({t.dtype for t in (population, fitness, trial, trial_fitness)}) != 1 or \
            len({t.device for t in (population, fitness, trial, trial_fitness)}) != 1:
        raise ValueError("de_select_: all four tensors must share dtype and device")
    if use_kernels(population):
        torch.ops.advrobust.de_select_(population, fitness, trial, trial_fitness)
        return
    new_pop, new_fit = reference.de_select_reference(population, fitness, trial, trial_fitness)
    population.copy_(new_pop)
    fitness.copy_(new_fit)


@register_fake("de_trial")
def _de_trial_fake(population, donors, cross_u, cross_j, resample_u, lower, upper, F, CR, resample):
    return torch.empty_like(population, memory_format=torch.contiguous_format)


@register_fake("de_build")
def _de_build_fake(images, candidates, add):
    B, C, H, W = images.shape
    P = candidates.shape[1]
    if C > 1 and not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last):
        return images.new_empty_strided((B, P, C, H, W), (P * C * H * W, C * H * W, 1, W * C, C))
    return images.new_empty((B, P, C, H, W))


@register_fake("de_select_")
def _de_select_fake(population, fitness, trial, trial_fitness):
    return None
