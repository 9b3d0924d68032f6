"""Batch transforms of the :class:`~advrobust.train.Trainer` for adversarial, mixed and noisy training.

Each is a callable ``transform(trainer, batch) -> batch``. Adversarial samples are crafted by the
package's attacks on the *current* weights with the model in eval mode (the attacks switch to eval
and restore the flags), against the trainer's own task loss, drawing their random starts from the
trainer's generator (so a resumed run repeats them).

* :class:`AdversarialTraining`: Algorithm 1 of Campagne (2021): a fraction ``f_a`` of every
  mini-batch is replaced by its adversarial version (FGSM or PGD generator).
* :class:`WeightedAdversarialTraining`: ``alpha * J(x) + (1 - alpha) * J(x_adv)`` (the robust-models
  report): the batch and its adversarial version, weighted.
* :class:`MixedTraining`: equal parts natural, PGD-L2 and PGD-Linf samples (the robust-models report).
* FGSM with a random start and step 1.25 eps (Wong, Rice and Kolter 2020): ``attack="fgsm_rs"`` in
  either adversarial transform; PGD-level robustness at FGSM cost.
* :class:`NoisyTraining`: Gaussian augmentation ``x + sigma * N(0, 1)`` (the robust-models report;
  also the base classifier of randomized smoothing, Cohen, Rosenfeld and Kolter 2019).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from advrobust.attacks.by_name import TRAINING_ATTACKS as ATTACKS, canonical_name, make_attack
from advrobust.checks import Bound, Unit, check_number, check_unit
from advrobust.train.trainer import Batch

__all__ = ["ATTACKS", "make_attack", "AdversarialTraining", "WeightedAdversarialTraining", "MixedTraining",
           "NoisyTraining"]

class _AttackTransform:
    """Shared parts: the attack built on the trainer's (unwrapped) model, loss and generator."""

    def __init__(self, attack: str, eps: float, steps: int, step_size: Optional[float], lo: Bound, hi: Bound,
                 unit: Unit) -> None:
        name = type(self).__name__
        try:
            self.attack = canonical_name(attack, training=True)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        self.eps = check_number(name, "eps", eps, positive=True)
        self.steps = int(check_number(name, "steps", steps, integer=True, positive=True))
        self.step_size = None if step_size is None else check_number(name, "step_size", step_size, positive=True)
        self.lo, self.hi = lo, hi
        self.unit = check_unit(name, unit)

    def adversarial(self, trainer, batch: Batch, kind: Optional[str] = None, eps: Optional[float] = None,
                    step_size: Optional[float] = None) -> Tensor:
        """Adversarial version of the whole ``batch.x`` on the current weights (detached); ``kind``,
        ``eps`` and ``step_size`` default to the transform's own."""
        unit = self.unit.to(batch.x.device) if isinstance(self.unit, Tensor) else self.unit
        atk = make_attack(kind or self.attack, trainer.module, self.eps if eps is None else eps,
                          loss=trainer.loss_fn, steps=self.steps,
                          step_size=self.step_size if step_size is None else step_size,
                          generator=trainer.generator, lo=self.lo, hi=self.hi, unit=unit)
        return atk(batch.x, batch.y, *batch.extra)


class AdversarialTraining(_AttackTransform):
    """Algorithm 1 of Campagne (2021): replace a fraction ``fraction`` (f_a) of each mini-batch,
    chosen at random, by adversarial samples crafted on the current weights.

    Args:
        attack: ``"fgsm"``, ``"fgsm_rs"``, ``"pgd"`` or ``"pgd_l2"`` (see :func:`make_attack`).
        eps: radius in image units (nanomaggies for the simulated surveys; sky noise ~1e-3 per pixel),
            or in ``unit``.
        fraction: f_a in (0, 1]; ``round(f_a * B)`` samples are replaced.
        steps, step_size: PGD iterations and step (step in the units of eps). lo, hi: valid image range.
        unit: the unit of eps and step_size: None (image units), a float or a per-band ``(C,)`` tensor,
            e.g. the sky sigma of each band (``eps=0.1, unit=sky``: 0.1 sky sigma in every band; see
            :class:`~advrobust.attacks.PGD`; moved to the batch's device).
    """

    def __init__(self, attack: str = "fgsm", eps: float = 0.01, *, fraction: float = 0.5, steps: int = 7,
                 step_size: Optional[float] = None, lo: Bound = None, hi: Bound = None, unit: Unit = None) -> None:
        super().__init__(attack, eps, steps, step_size, lo, hi, unit)
        self.fraction = check_number("AdversarialTraining", "fraction", fraction, positive=True)
        if self.fraction > 1:
            raise ValueError(f"AdversarialTraining: fraction must be in (0, 1], got {fraction}")

    def __call__(self, trainer, batch: Batch) -> Batch:
        B = batch.x.shape[0]
        k = int(round(self.fraction * B))
        if k == 0:
            return batch
        idx = torch.randperm(B, generator=trainer.generator, device=trainer.generator.device)[:k].to(batch.x.device)
        part = Batch(batch.x[idx], batch.y[idx], tuple(e[idx] for e in batch.extra))
        x = batch.x.clone()
        x[idx] = self.adversarial(trainer, part)
        return batch.with_(x=x)


class WeightedAdversarialTraining(_AttackTransform):
    """``alpha * J(x) + (1 - alpha) * J(x_adv)``: the natural batch and its adversarial version,
    each sample of the first weighted ``alpha / B`` and of the second ``(1 - alpha) / B``.

    Args:
        attack, eps, steps, step_size, lo, hi, unit: as :class:`AdversarialTraining`.
        alpha: weight of the natural loss in [0, 1] (1: standard training, 0: adversarial only).
    """

    def __init__(self, attack: str = "fgsm", eps: float = 0.01, *, alpha: float = 0.5, steps: int = 7,
                 step_size: Optional[float] = None, lo: Bound = None, hi: Bound = None, unit: Unit = None) -> None:
        super().__init__(attack, eps, steps, step_size, lo, hi, unit)
        self.alpha = check_number("WeightedAdversarialTraining", "alpha", alpha)
        if self.alpha > 1:
            raise ValueError(f"WeightedAdversarialTraining: alpha must be in [0, 1], got {alpha}")

    def __call__(self, trainer, batch: Batch) -> Batch:
        B = batch.x.shape[0]
        x_adv = self.adversarial(trainer, batch)
        w = torch.cat([torch.full((B,), self.alpha / B), torch.full((B,), (1 - self.alpha) / B)])
        return Batch(torch.cat([batch.x, x_adv]), torch.cat([batch.y, batch.y]),
                     tuple(torch.cat([e, e]) for e in batch.extra), w.to(batch.x.device))


class MixedTraining(_AttackTransform):
    """Equal parts natural, PGD-L2 and PGD-Linf: the batch is cut in three (in its shuffled order);
    the second third is replaced by PGD-L2 samples of radius ``eps_l2``, the last by PGD-Linf
    samples of radius ``eps``.

    Args:
        eps: L-inf radius (image units, or ``unit``). eps_l2: L2 radius (image units, or the
            whitened L2 norm in ``unit``; see :func:`advrobust.attacks.eps_l2_equal_volume` for
            Campagne 2021's choice).
        steps: PGD iterations for both. lo, hi: valid image range. unit: as :class:`AdversarialTraining`.
        step_fraction: each attack's step as a fraction of its own radius (the robust-models report: 2/3);
            None for the attacks' default step.
    """

    def __init__(self, eps: float = 0.01, eps_l2: float = 0.1, *, steps: int = 7, lo: Bound = None,
                 hi: Bound = None, unit: Unit = None, step_fraction: Optional[float] = None) -> None:
        super().__init__("pgd", eps, steps, None, lo, hi, unit)
        self.eps_l2 = check_number("MixedTraining", "eps_l2", eps_l2, positive=True)
        self.step_fraction = None if step_fraction is None else check_number(
            "MixedTraining", "step_fraction", step_fraction, positive=True)

    def __call__(self, trainer, batch: Batch) -> Batch:
        B = batch.x.shape[0]
        a, b = B // 3, (2 * B) // 3
        x = batch.x.clone()
        for (start, stop), kind, eps in (((a, b), "pgd_l2", self.eps_l2), ((b, B), "pgd", self.eps)):
            if stop > start:
                part = Batch(batch.x[start:stop], batch.y[start:stop], tuple(e[start:stop] for e in batch.extra))
                step = None if self.step_fraction is None else self.step_fraction * eps
                x[start:stop] = self.adversarial(trainer, part, kind, eps, step)
        return batch.with_(x=x)


class NoisyTraining:
    """Gaussian augmentation: ``x + sigma * N(0, 1)`` for every image, drawn from the trainer's generator.

    Args:
        sigma: noise standard deviation in image units (nanomaggies: the simulated sky noise is
            ~1e-3 per pixel).
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = check_number("NoisyTraining", "sigma", sigma, positive=True)

    def __call__(self, trainer, batch: Batch) -> Batch:
        g = trainer.generator
        noise = torch.randn(batch.x.shape, generator=g, device=g.device, dtype=batch.x.dtype).to(batch.x.device)
        return batch.with_(x=batch.x + self.sigma * noise)
