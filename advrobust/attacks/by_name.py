"""Attacks by name: the one place that turns a name into an attack.

* :func:`make_attack` -- the gradient attacks that adversarial training uses
  (:data:`TRAINING_ATTACKS`: ``fgsm``, ``fgsm_rs``, ``pgd``, ``pgd_l2``), on any per-sample loss.
* :func:`attack_by_name` -- the evaluation set the command line, the demo and the scan build, with
  one :class:`AttackSettings`. :data:`ATTACK_NAMES`: ``fgsm`` (:class:`~advrobust.attacks.FGSM`), ``pgd`` (L-inf
:class:`~advrobust.attacks.PGD`, random start), ``pgd2`` (:class:`~advrobust.attacks.PGDL2` at the
L2 radius of equal ball volume, :func:`~advrobust.attacks.eps_l2_equal_volume` over the pixels of one
band, as Campagne 2021), ``onepixel`` (:class:`~advrobust.attacks.OnePixel`) and ``noise``
(:func:`~advrobust.attacks.uniform_noise` of the same ``eps``: Campagne 2021's random control, a
perturbation as large as the attack's but without its direction).

Strengths are in image units, or in a per-band ``unit`` (e.g. the sky sigma of each band; see
:mod:`advrobust.attacks.gradient`): ``eps = 2`` with ``unit = sky`` is 2 sky sigmas in every band.

Every attack is untargeted and judged by the task: ``"classifier"`` (cross-entropy; success = the
class changes) or ``"photoz"`` (bin cross-entropy; success = ``|dz| > threshold``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from advrobust.attacks.base import Attack
from advrobust.checks import Unit, check_unit
from advrobust.attacks.gradient import FGSM, PGD, PGDL2, eps_l2_equal_volume
from advrobust.attacks.natural import uniform_noise
from advrobust.attacks.onepixel import OnePixel
from advrobust.checks import Bound, check_number, model_device

__all__ = ["TRAINING_ATTACKS", "make_attack", "ATTACK_NAMES", "AttackSettings", "attack_by_name"]

#: generators of adversarial samples for training (:func:`make_attack`)
TRAINING_ATTACKS = ("fgsm", "fgsm_rs", "pgd", "pgd_l2")

#: the evaluation attacks (:func:`attack_by_name`)
ATTACK_NAMES = ("fgsm", "pgd", "pgd2", "onepixel", "noise")


def make_attack(kind: str, model: nn.Module, eps: float, *, loss, steps: int = 7, step_size: Optional[float] = None,
                generator: Optional[torch.Generator] = None, lo: Bound = None, hi: Bound = None,
                unit: Unit = None) -> Attack:
    """A gradient attack by name, ascending ``loss`` on ``model``.

    Args:
        kind: ``"fgsm"`` (:class:`~advrobust.attacks.FGSM`), ``"fgsm_rs"`` (PGD with one step of
            ``1.25 eps`` from a uniform random start, Wong, Rice and Kolter 2020), ``"pgd"`` (L-inf,
            random start) or ``"pgd_l2"`` (:class:`~advrobust.attacks.PGDL2`, random start).
        eps: radius in image units, or in ``unit`` (L-inf, or L2 for ``"pgd_l2"``).
        loss: a loss name (``"ce"``, ``"photoz_ce"``, ...) or a per-sample loss ``(output, y) -> (B,)``.
        steps, step_size: PGD iterations and step, in the units of eps (default: the attack's own
            default step).
        generator: random starts; lo, hi: valid range of the images.
        unit: the unit of eps and step_size: None (image units), a float or a per-channel ``(C,)``
            tensor on the images' device (e.g. the per-band sky sigma; see :class:`~advrobust.attacks.PGD`).

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "fgsm":
        return FGSM(model, eps, loss=loss, lo=lo, hi=hi, unit=unit)
    if kind == "fgsm_rs":
        return PGD(model, eps, alpha=1.25 * eps, steps=1, random_start=True, loss=loss, lo=lo, hi=hi,
                   generator=generator, unit=unit)
    if kind == "pgd":
        return PGD(model, eps, alpha=step_size, steps=steps, random_start=True, loss=loss, lo=lo, hi=hi,
                   generator=generator, unit=unit)
    if kind == "pgd_l2":
        return PGDL2(model, eps, alpha=step_size, steps=steps, random_start=True, loss=loss, lo=lo, hi=hi,
                     generator=generator, unit=unit)
    raise ValueError(f"make_attack: unknown attack {kind!r}; use one of {TRAINING_ATTACKS}")


@dataclass(frozen=True)
class AttackSettings:
    """The settings shared by the named attacks.

    Attributes:
        eps: L-inf radius in image units, or in ``unit`` (FGSM, PGD; the half-width of the uniform noise;
            pgd2's L2 radius follows from it, in the same units).
        pgd_steps: PGD and PGD-L2 iterations (step ``eps / 4``, ``eps_2 / 4``).
        pixels, population, generations: the one-pixel attack's pixels changed, DE population and
            maximum generations (Ciprijanovic et al. 2022: 1, 400, 80).
        threshold: photo-z success cut on ``|dz|`` (Campagne 2021: 0.05).
        incremental: OnePixel's ``incremental`` option.
        unit: the unit of ``eps`` for fgsm, pgd, pgd2 and noise (not onepixel): None (image units), a
            number, or one number per band (given as a sequence or 1-D tensor, kept as a tuple of
            floats so the settings stay JSON-serialisable), e.g. the per-band sky sigma.
    """

    eps: float
    pgd_steps: int = 10
    pixels: int = 1
    population: int = 100
    generations: int = 30
    threshold: float = 0.05
    incremental: object = "auto"
    unit: Union[None, float, Sequence[float]] = None

    def __post_init__(self):
        check_number("AttackSettings", "eps", self.eps, positive=True)
        unit = self.unit
        if unit is None or isinstance(unit, (bool, int, float)):
            unit = check_unit("AttackSettings", unit)
        else:  # a sequence or tensor: a tuple of floats (a 0-d one: a float)
            values = check_unit("AttackSettings", torch.as_tensor(unit, dtype=torch.float64).detach().cpu()).tolist()
            unit = tuple(values) if isinstance(values, list) else values
        object.__setattr__(self, "unit", unit)
        for what in ("pgd_steps", "pixels", "population", "generations"):
            check_number("AttackSettings", what, getattr(self, what), integer=True, positive=True)

    def as_dict(self) -> dict:
        return asdict(self)


def attack_by_name(name: str, model: nn.Module, settings: AttackSettings, *, task: str, image_shape,
                   generator: Optional[torch.Generator] = None, seed: int = 0,
                   lo: Bound = None, hi: Bound = None, pixel_lo: Bound = None,
                   pixel_hi: Bound = None) -> Callable[..., Tensor]:
    """Build the attack ``name`` on ``model``.

    Args:
        name: one of :data:`ATTACK_NAMES`.
        model: the model attacked.
        settings: :class:`AttackSettings`.
        task: ``"classifier"`` or ``"photoz"``.
        image_shape: ``(C, H, W)`` of the images (the L2 radius is over ``H * W`` pixels).
        generator: random numbers of PGD's start and of the noise (device of the images).
        seed: the one-pixel attack's seed.
        lo, hi: valid range the gradient attacks clamp to: None, a float or a per-band ``(C,)`` tensor.
        pixel_lo, pixel_hi: range the one-pixel attack draws its values in (default ``lo``, ``hi``;
            None: each batch's per-band range).

    Returns:
        The attack (``atk(x, y, *extra)``; the gradient and one-pixel attacks also have ``run``).

    Raises:
        ValueError: unknown name or task.
    """
    if task not in ("classifier", "photoz"):
        raise ValueError(f"attack_by_name: task must be 'classifier' or 'photoz', got {task!r}")
    loss = "ce" if task == "classifier" else "photoz_ce"
    eps = float(settings.eps)
    unit = settings.unit
    if isinstance(unit, tuple):
        unit = torch.tensor(unit, dtype=torch.float64, device=model_device(model) or torch.device("cpu"))
    if name == "fgsm":
        return make_attack("fgsm", model, eps, loss=loss, lo=lo, hi=hi, unit=unit)
    if name == "pgd":
        return make_attack("pgd", model, eps, loss=loss, steps=settings.pgd_steps, step_size=eps / 4,
                           generator=generator, lo=lo, hi=hi, unit=unit)
    if name == "pgd2":
        eps2 = eps_l2_equal_volume(eps, int(image_shape[-1] * image_shape[-2]))
        return make_attack("pgd_l2", model, eps2, loss=loss, steps=settings.pgd_steps, step_size=eps2 / 4,
                           generator=generator, lo=lo, hi=hi, unit=unit)
    if name == "onepixel":
        return OnePixel(model, pixels=settings.pixels, population=settings.population,
                        max_iter=settings.generations, objective=task, threshold=settings.threshold,
                        lo=lo if pixel_lo is None else pixel_lo, hi=hi if pixel_hi is None else pixel_hi,
                        seed=seed, incremental=settings.incremental)
    if name == "noise":
        def noise(x: Tensor, y: Optional[Tensor] = None, *extra: Tensor) -> Tensor:
            return uniform_noise(x, eps, unit=unit, generator=generator)

        return noise
    raise ValueError(f"unknown attack {name!r}; the attacks are: {', '.join(ATTACK_NAMES)}")
