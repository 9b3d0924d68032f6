"""Attacks by name: the registry, the one place that turns a name into an attack.

:data:`ATTACK_SPECS` maps each name to an :class:`AttackSpec`: how to build the attack on a model, its
norm, how its radius follows from the settings' ``eps``, whether adversarial training may use it, and
its label. Every entry point (training, the ``attack`` and ``scan`` commands, the demo) reads it:

* :func:`make_attack` -- an attack at a radius in its own norm, on any per-sample loss (adversarial
  training: :data:`TRAINING_ATTACKS`);
* :func:`attack_by_name` -- an attack from one :class:`AttackSettings` (evaluation: the command line,
  the demo, the scan), at the radius :attr:`AttackSpec.radius` states;
* :func:`check_attack_names` -- the one check of a list of names (unknown names and old names).

The attacks: ``fgsm`` (:class:`~advrobust.attacks.FGSM`), ``fgsm_rs`` (PGD with one step of ``1.25 eps``
from a uniform random start, Wong, Rice and Kolter 2020), ``pgd`` (L-inf :class:`~advrobust.attacks.PGD`,
random start), ``pgd_l2`` (:class:`~advrobust.attacks.PGDL2`, random start; from the settings, at the L2
radius of equal ball volume, :func:`~advrobust.attacks.eps_l2_equal_volume` over the pixels of one band,
as Campagne 2021), ``onepixel`` (:class:`~advrobust.attacks.OnePixel`) and ``noise``
(:func:`~advrobust.attacks.uniform_noise` of the same ``eps``: Campagne 2021's random control, a
perturbation as large as the attack's but without its direction). Old names still accepted, with a
``DeprecationWarning``: :data:`DEPRECATED_NAMES` (``pgd2`` is ``pgd_l2``).

A new attack is its own file plus one line of :data:`ATTACK_SPECS`.

Strengths are in image units, or in a per-band ``unit`` (e.g. the sky sigma of each band; see
:mod:`advrobust.attacks.gradient`): ``eps = 2`` with ``unit = sky`` is 2 sky sigmas in every band.

Every attack built from settings is untargeted and judged by the task: ``"classifier"`` (cross-entropy;
success = the class changes) or ``"photoz"`` (bin cross-entropy; success = ``|dz| > threshold``).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from advrobust.attacks.gradient import FGSM, PGD, PGDL2, eps_l2_equal_volume
from advrobust.attacks.natural import uniform_noise
from advrobust.attacks.onepixel import OnePixel
from advrobust.checks import Bound, Unit, check_number, check_unit, model_device

__all__ = ["AttackSpec", "AttackArgs", "AttackSettings", "ATTACK_SPECS", "ATTACK_NAMES", "TRAINING_ATTACKS",
           "DEPRECATED_NAMES", "canonical_name", "check_attack_names", "make_attack", "attack_by_name",
           "image_unit_radii"]

@dataclass(frozen=True)
class AttackSettings:
    """The settings shared by the named attacks.

    Attributes:
        eps: L-inf radius in image units, or in ``unit`` (FGSM, PGD; the half-width of the uniform noise;
            each attack's own radius follows from it, :attr:`AttackSpec.radius`; PGD-L2's in the same units).
        pgd_steps: PGD and PGD-L2 iterations (step ``eps / 4``, ``eps_2 / 4``).
        pixels, population, generations: the one-pixel attack's pixels changed, DE population and
            maximum generations (Ciprijanovic et al. 2022: 1, 400, 80).
        threshold: photo-z success cut on ``|dz|`` (Campagne 2021: 0.05).
        incremental: OnePixel's ``incremental`` option.
        unit: the unit of ``eps`` for every attack but onepixel: None (image units), a
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
        check_number("AttackSettings", "threshold", self.threshold, positive=True)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AttackArgs:
    """What an :attr:`AttackSpec.build` gets besides the model.

    Attributes:
        eps: the attack's radius in its own norm (L-inf half-width, L2 radius), image units or ``unit``.
        loss: the gradient attacks' loss: a name (``"ce"``, ``"photoz_ce"``, ...) or ``(output, y) -> (B,)``.
        steps, step_size: PGD iterations and step, units of ``eps`` (None: the attack's default step).
        generator: random starts and noise (the images' device).
        lo, hi: valid range of the adversarial images: None, a float or a per-band ``(C,)`` tensor.
        unit: the unit of ``eps`` and ``step_size``: None (image units), a float or a ``(C,)`` tensor.
        settings: the evaluation settings (the one-pixel search's), None in training.
        task: ``"classifier"`` or ``"photoz"`` (the one-pixel objective).
        seed: the one-pixel attack's seed.
        pixel_lo, pixel_hi: range the one-pixel attack draws its values in (None: ``lo``, ``hi``).
    """

    eps: float
    loss: object = "ce"
    steps: int = 7
    step_size: Optional[float] = None
    generator: Optional[torch.Generator] = None
    lo: Bound = None
    hi: Bound = None
    unit: Unit = None
    settings: Optional[AttackSettings] = None
    task: str = "classifier"
    seed: int = 0
    pixel_lo: Bound = None
    pixel_hi: Bound = None

    @property
    def gradient(self) -> dict:
        """The keyword arguments every gradient attack takes: ``loss``, ``lo``, ``hi``, ``unit``."""
        return {"loss": self.loss, "lo": self.lo, "hi": self.hi, "unit": self.unit}


def _linf_radius(settings: AttackSettings, image_shape) -> float:
    return float(settings.eps)


def _l2_radius(settings: AttackSettings, image_shape) -> float:
    """The L2 ball of the L-inf ball's volume over the ``H * W`` pixels of one band (Campagne 2021)."""
    return eps_l2_equal_volume(float(settings.eps), int(image_shape[-1] * image_shape[-2]))


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the registry.

    Attributes:
        build: ``(model, AttackArgs) -> attack``, called ``attack(x, y, *extra)``.
        norm: the distance its strength bounds: ``"linf"``, ``"l2"`` or ``"l0"`` (pixels changed).
        radius: ``(settings, image_shape) -> float``: its radius from :class:`AttackSettings` (``eps``),
            units of ``settings.unit``; None for an attack whose strength is not a radius (one-pixel:
            ``settings.pixels`` pixels).
        trains: adversarial training may use it (a gradient attack on any per-sample loss).
        label: how reports name it.
    """

    build: Callable[[nn.Module, AttackArgs], Callable[..., Tensor]]
    norm: str
    radius: Optional[Callable[[AttackSettings, Sequence[int]], float]]
    trains: bool
    label: str


def _one_pixel(model: nn.Module, a: AttackArgs) -> OnePixel:
    s = a.settings
    if s is None:
        raise ValueError("onepixel: needs AttackSettings (pixels, population, generations); use attack_by_name")
    return OnePixel(model, pixels=s.pixels, population=s.population, max_iter=s.generations, objective=a.task,
                    threshold=s.threshold, lo=a.lo if a.pixel_lo is None else a.pixel_lo,
                    hi=a.hi if a.pixel_hi is None else a.pixel_hi, seed=a.seed, incremental=s.incremental)


def _noise(model: nn.Module, a: AttackArgs) -> Callable[..., Tensor]:
    def noise(x: Tensor, y: Optional[Tensor] = None, *extra: Tensor) -> Tensor:
        return uniform_noise(x, a.eps, unit=a.unit, generator=a.generator)
    return noise


#: the registry: name -> :class:`AttackSpec` (a new attack: its file and one line here)
ATTACK_SPECS: Dict[str, AttackSpec] = {
    "fgsm": AttackSpec(lambda m, a: FGSM(m, a.eps, **a.gradient), "linf", _linf_radius, True, "FGSM"),
    "fgsm_rs": AttackSpec(lambda m, a: PGD(m, a.eps, alpha=1.25 * a.eps, steps=1, random_start=True,
                                           generator=a.generator, **a.gradient), "linf", _linf_radius, True,
                          "FGSM, random start"),
    "pgd": AttackSpec(lambda m, a: PGD(m, a.eps, alpha=a.step_size, steps=a.steps, random_start=True,
                                       generator=a.generator, **a.gradient), "linf", _linf_radius, True, "PGD-Linf"),
    "pgd_l2": AttackSpec(lambda m, a: PGDL2(m, a.eps, alpha=a.step_size, steps=a.steps, random_start=True,
                                            generator=a.generator, **a.gradient), "l2", _l2_radius, True, "PGD-L2"),
    "onepixel": AttackSpec(_one_pixel, "l0", None, False, "one-pixel"),
    "noise": AttackSpec(_noise, "linf", _linf_radius, False, "uniform noise"),
}

#: every attack name (:func:`attack_by_name`)
ATTACK_NAMES: Tuple[str, ...] = tuple(ATTACK_SPECS)

#: the attacks adversarial training may use (:func:`make_attack`)
TRAINING_ATTACKS: Tuple[str, ...] = tuple(name for name, spec in ATTACK_SPECS.items() if spec.trains)

#: old names, still accepted with a ``DeprecationWarning``: old -> canonical
DEPRECATED_NAMES: Dict[str, str] = {"pgd2": "pgd_l2"}


def canonical_name(name: str, *, training: bool = False) -> str:
    """The registry name of ``name``: itself, or the canonical name of an old one (``DeprecationWarning``).

    Raises:
        ValueError: an unknown name (the message lists the valid ones), or with ``training`` an
            attack training cannot use.
    """
    return check_attack_names([name], training=training)[0]


def check_attack_names(names: Sequence[str], *, training: bool = False) -> list:
    """The names checked against the registry, old names replaced by their canonical ones (each with a
    ``DeprecationWarning``).

    Args:
        names: attack names, at least one.
        training: only :data:`TRAINING_ATTACKS` are valid.

    Raises:
        ValueError: no names, unknown names (all of them, with the list of valid names), or with
            ``training`` attacks that training cannot use.
    """
    valid = [name for name, spec in ATTACK_SPECS.items() if spec.trains or not training]
    kind = "training attacks" if training else "attacks"
    names = list(names)
    unknown = [n for n in names if n not in ATTACK_SPECS and n not in DEPRECATED_NAMES]
    if not names:
        raise ValueError(f"no attack named; the {kind} are: {', '.join(valid)}")
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; the {kind} are: {', '.join(valid)}")
    resolved = []
    for n in names:
        if n in DEPRECATED_NAMES:
            warnings.warn(f"attack name {n!r} is deprecated; use {DEPRECATED_NAMES[n]!r}", DeprecationWarning,
                          stacklevel=3)
            n = DEPRECATED_NAMES[n]
        resolved.append(n)
    repeated = sorted({n for n in resolved if resolved.count(n) > 1})
    if repeated:
        raise ValueError(f"attack(s) {repeated} named twice (their columns would collide); name each once")
    untrainable = [n for n in resolved if n not in valid]
    if untrainable:
        raise ValueError(f"attack(s) {untrainable} cannot be used in training; the {kind} are: {', '.join(valid)}")
    return resolved


def make_attack(kind: str, model: nn.Module, eps: float, *, loss, steps: int = 7, step_size: Optional[float] = None,
                generator: Optional[torch.Generator] = None, lo: Bound = None, hi: Bound = None,
                unit: Unit = None) -> Callable[..., Tensor]:
    """A training attack by name, ascending ``loss`` on ``model``.

    Args:
        kind: one of :data:`TRAINING_ATTACKS` (``"fgsm"``, ``"fgsm_rs"``, ``"pgd"``, ``"pgd_l2"``).
        eps: radius in the attack's own norm (L-inf, or L2 for ``"pgd_l2"``), image units or ``unit``.
        loss: a loss name (``"ce"``, ``"photoz_ce"``, ...) or a per-sample loss ``(output, y) -> (B,)``.
        steps, step_size: PGD iterations and step, in the units of eps (default: the attack's own
            default step).
        generator: random starts; lo, hi: valid range of the images.
        unit: the unit of eps and step_size: None (image units), a float or a per-channel ``(C,)``
            tensor on the images' device (e.g. the per-band sky sigma; see :class:`~advrobust.attacks.PGD`).

    Raises:
        ValueError: unknown ``kind``, or one training cannot use.
    """
    name = canonical_name(kind, training=True)
    check_number("make_attack", "steps", steps, integer=True, positive=True)  # 0 steps: no attack at all
    return ATTACK_SPECS[name].build(model, AttackArgs(eps=eps, loss=loss, steps=steps, step_size=step_size,
                                                      generator=generator, lo=lo, hi=hi, unit=unit))


def attack_by_name(name: str, model: nn.Module, settings: AttackSettings, *, task: str, image_shape,
                   generator: Optional[torch.Generator] = None, seed: int = 0,
                   lo: Bound = None, hi: Bound = None, pixel_lo: Bound = None,
                   pixel_hi: Bound = None) -> Callable[..., Tensor]:
    """Build the attack ``name`` on ``model``.

    Args:
        name: one of :data:`ATTACK_NAMES` (or an old name, :data:`DEPRECATED_NAMES`).
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
        ValueError: unknown name (the message lists the valid ones) or task.
    """
    spec = ATTACK_SPECS[canonical_name(name)]
    if task not in ("classifier", "photoz"):
        raise ValueError(f"attack_by_name: task must be 'classifier' or 'photoz', got {task!r}")
    if spec.norm == "l0" and settings.pixels > int(np.prod(image_shape[-2:])):
        raise ValueError(f"{name}: pixels = {settings.pixels} is more than the {image_shape[-2]}x{image_shape[-1]} "
                         f"= {int(np.prod(image_shape[-2:]))} pixels of a stamp")
    unit = settings.unit
    if isinstance(unit, tuple):
        unit = torch.tensor(unit, dtype=torch.float64, device=model_device(model) or torch.device("cpu"))
    eps = float(settings.eps) if spec.radius is None else spec.radius(settings, image_shape)
    args = AttackArgs(eps=eps, loss="ce" if task == "classifier" else "photoz_ce", steps=settings.pgd_steps,
                      step_size=eps / 4, generator=generator, lo=lo, hi=hi, unit=unit, settings=settings, task=task,
                      seed=seed, pixel_lo=pixel_lo, pixel_hi=pixel_hi)
    return spec.build(model, args)


def image_unit_radii(names: Sequence[str], settings: AttackSettings, image_shape) -> dict:
    """The radii of the named attacks in image units, as a report states them.

    L-inf attacks under their name: ``eps``, or per band ``eps * unit`` (an array) with a unit; then the
    L2 attacks as ``"<name> (L2 radius over a band's pixels)"``, only without a unit (with one the
    ball is ``||delta / unit||_2 <= r``: no radius in image units). None for the one-pixel attack
    (its strength is ``settings.pixels`` pixels).
    """
    names = [canonical_name(n) for n in names]
    eps = float(settings.eps)
    eps_image = eps * np.asarray(settings.unit) if settings.unit is not None else eps
    radii = {n: eps_image for n in names if ATTACK_SPECS[n].norm == "linf"}
    if settings.unit is None:
        radii.update({f"{n} (L2 radius over a band's pixels)": ATTACK_SPECS[n].radius(settings, image_shape)
                      for n in names if ATTACK_SPECS[n].norm == "l2"})
    return radii
