"""Attacks by name, with one set of settings: what the command line, the demo and the scan build.

:data:`ATTACK_NAMES`: ``fgsm`` (:class:`~advrobust.attacks.FGSM`), ``pgd`` (L-inf
:class:`~advrobust.attacks.PGD`, random start), ``pgd2`` (:class:`~advrobust.attacks.PGDL2` at the
L2 radius of equal ball volume, :func:`~advrobust.attacks.eps_l2_equal_volume` over the pixels of one
band, as Campagne 2021), ``onepixel`` (:class:`~advrobust.attacks.OnePixel`) and ``noise``
(:func:`~advrobust.attacks.uniform_noise` of the same ``eps``: Campagne 2021's random control, a
perturbation as large as the attack's but without its direction).

Every attack is untargeted and judged by the task: ``"classifier"`` (cross-entropy; success = the
class changes) or ``"photoz"`` (bin cross-entropy; success = ``|dz| > threshold``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from advrobust.attacks.gradient import FGSM, PGD, PGDL2, eps_l2_equal_volume
from advrobust.attacks.natural import uniform_noise
from advrobust.attacks.onepixel import OnePixel
from advrobust.checks import Bound, check_number

__all__ = ["ATTACK_NAMES", "AttackSettings", "attack_by_name"]

ATTACK_NAMES = ("fgsm", "pgd", "pgd2", "onepixel", "noise")


@dataclass(frozen=True)
class AttackSettings:
    """The settings shared by the named attacks.

    Attributes:
        eps: L-inf radius in image units (FGSM, PGD; the half-width of the uniform noise).
        pgd_steps: PGD and PGD-L2 iterations (step ``eps / 4``, ``eps_2 / 4``).
        pixels, population, generations: the one-pixel attack's pixels changed, DE population and
            maximum generations (Ciprijanovic et al. 2022: 1, 400, 80).
        threshold: photo-z success cut on ``|dz|`` (Campagne 2021: 0.05).
        incremental: OnePixel's ``incremental`` option.
    """

    eps: float
    pgd_steps: int = 10
    pixels: int = 1
    population: int = 100
    generations: int = 30
    threshold: float = 0.05
    incremental: object = "auto"

    def __post_init__(self):
        check_number("AttackSettings", "eps", self.eps, positive=True)
        for what in ("pgd_steps", "pixels", "population", "generations"):
            check_number("AttackSettings", what, getattr(self, what), integer=True, positive=True)

    def as_dict(self) -> dict:
        return asdict(self)


def attack_by_name(name: str, model: nn.Module, settings: AttackSettings, *, task: str, image_shape,
                   generator: Optional[torch.Generator] = None, seed: int = 0,
                   lo: Bound = None, hi: Bound = None) -> Callable[..., Tensor]:
    """Build the attack ``name`` on ``model``.

    Args:
        name: one of :data:`ATTACK_NAMES`.
        model: the model attacked.
        settings: :class:`AttackSettings`.
        task: ``"classifier"`` or ``"photoz"``.
        image_shape: ``(C, H, W)`` of the images (the L2 radius is over ``H * W`` pixels).
        generator: random numbers of PGD's start and of the noise (device of the images).
        seed: the one-pixel attack's seed.
        lo, hi: valid range (PGD clamps to it; the one-pixel attack draws its values in it);
            None, a float or a per-band ``(C,)`` tensor.

    Returns:
        The attack (``atk(x, y, *extra)``; the gradient and one-pixel attacks also have ``run``).

    Raises:
        ValueError: unknown name or task.
    """
    if task not in ("classifier", "photoz"):
        raise ValueError(f"attack_by_name: task must be 'classifier' or 'photoz', got {task!r}")
    loss = "ce" if task == "classifier" else "photoz_ce"
    eps = float(settings.eps)
    if name == "fgsm":
        return FGSM(model, eps=eps, loss=loss, lo=lo, hi=hi)
    if name == "pgd":
        return PGD(model, eps=eps, alpha=eps / 4, steps=settings.pgd_steps, random_start=True, loss=loss,
                   lo=lo, hi=hi, generator=generator)
    if name == "pgd2":
        eps2 = eps_l2_equal_volume(eps, int(image_shape[-1] * image_shape[-2]))
        return PGDL2(model, eps=eps2, alpha=eps2 / 4, steps=settings.pgd_steps, random_start=True, loss=loss,
                     lo=lo, hi=hi, generator=generator)
    if name == "onepixel":
        return OnePixel(model, pixels=settings.pixels, population=settings.population,
                        max_iter=settings.generations, objective=task, threshold=settings.threshold,
                        lo=lo, hi=hi, seed=seed)
    if name == "noise":
        def noise(x: Tensor, y: Optional[Tensor] = None, *extra: Tensor) -> Tensor:
            return uniform_noise(x, eps, generator=generator)

        return noise
    raise ValueError(f"unknown attack {name!r}; the attacks are: {', '.join(ATTACK_NAMES)}")
