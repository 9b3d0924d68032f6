"""The attack base class, its result type and the conventions every attack shares.

The contract (torchattacks-style, drop-in in training loops):

* ``atk(x, y, *extra) -> Tensor``: the adversarial batch, like ``x``;
* ``atk.run(x, y, *extra) -> AttackResult``: the adversarial batch, ``success`` per sample and
  the attack's own fields (:class:`~advrobust.attacks.OnePixelResult` for the one-pixel attack).

Success is judged by an *objective* of :mod:`advrobust.attacks.losses` (the one that scores the
one-pixel candidates): for classifiers the prediction on ``x_adv`` differs from ``y`` (targeted:
equals ``y``); for photo-z models ``|dz(x_adv)| > 0.05`` (targeted: ``< 0.05`` from the target).

:class:`Attack` is a template method in the style of torchattacks' ``Attack.__call__``:
remember the training flag of every sub-module of the model, switch to ``eval()``, check the
inputs once, run the attack, restore the flags (also when the attack raises). Subclasses
implement one hook, :meth:`Attack.forward`: it returns the adversarial tensor (the base class then
judges success for ``run`` with one forward pass of ``x_adv``) or, for an attack that judges success
itself (the one-pixel search), its :class:`AttackResult`. A subclass without ``forward`` cannot be
instantiated (``TypeError`` naming the missing method).

The natural perturbations (:mod:`advrobust.attacks.natural`: noise, shorter exposure) are plain
functions and modules, not attacks: they take no model and judge no success.

Conventions shared by all attacks:

* ``x``: a float batch ``(B, ...)`` (images ``(B, C, H, W)``) in the data's own units —
  no ``[0, 1]`` assumption, negative values are fine. It is never modified.
* ``y``: labels (classifiers), redshifts (photo-z) or targets (``targeted=True``), first
  dimension ``B``.
* ``extra``: further model inputs, passed unchanged after the image —
  ``model(x_adv, *extra)``; e.g. the E(B-V) of the photo-z models. They are not perturbed.
* ``eps``/``alpha``: a float or a per-sample ``(B,)`` tensor, in the units of ``x``.
* ``lo``/``hi``: valid range, ``None`` (no clamp, the default), a float or a per-channel
  ``(C,)`` tensor.
* ``unit`` (gradient attacks and noise): the unit ``eps``/``alpha`` are measured in, ``None`` (image
  units, the default), a float or a per-channel ``(C,)`` tensor of values > 0 in image units per unit,
  e.g. the per-band sky sigma of a survey, so ``eps = 2`` means "2 sky sigmas in every band"
  (:func:`check_unit`).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from advrobust.attacks.losses import check_targets, resolve_objective
from advrobust.checks import (
    Bound, check_lo_le_hi, check_model, check_model_inputs, check_number, nonfinite_rows, per_channel,
    raise_nonfinite_rows,
)
from advrobust.modes import eval_mode

__all__ = ["Attack", "AttackResult", "check_fitness"]

#: What the NaN errors suggest.
NAN_OUTPUT_HINT = ("the model is broken for these inputs (NaN weights, log of 0, overflow from an eps far beyond the "
                   "pixel values, ...); an attack on it means nothing")


def _check_ebv(name: str, model: nn.Module, extra: Tuple[Tensor, ...]) -> None:
    """A photo-z model's E(B-V) (its second input, ``extra[0]``) is >= 0: a reddening cannot be negative
    (a -99 missing-value marker would be attacked as a physical value). One host sync per attack."""
    from advrobust.models.base import PhotozModel  # models do not import the attacks

    if isinstance(model, PhotozModel) and extra and isinstance(extra[0], Tensor) and bool((extra[0] < 0).any()):
        bad = (extra[0] < 0).reshape(extra[0].shape[0], -1).any(1)
        raise ValueError(f"{name}: E(B-V) (extra[0]) is negative for {int(bad.sum())} samples "
                         f"{torch.nonzero(bad).flatten()[:8].tolist()}; remove or fix those objects")


def check_fitness(name: str, fitness: Tensor, rows: Tensor) -> None:
    """Candidate fitness ``(n, P)`` of the images ``rows`` (n,) (their indices in the batch) is finite:
    a NaN model output gives NaN fitness, which would read as success. Raises ValueError naming them."""
    bad = ~torch.isfinite(fitness).reshape(fitness.shape[0], -1).all(1)
    if bool(bad.any()):
        raise ValueError(f"{name}: the model's output (fitness) is NaN/Inf for images {rows[bad][:8].tolist()}"
                         f"{', ...' if int(bad.sum()) > 8 else ''}; {NAN_OUTPUT_HINT}")


@dataclass
class AttackResult:
    """What :meth:`Attack.run` returns.

    Attributes:
        x_adv: ``(B, ...)`` the adversarial batch, like ``x``, detached.
        success: ``(B,)`` bool, the sample is fooled (see the module docstring for the rule).
    """

    x_adv: Tensor
    success: Tensor

    @property
    def success_rate(self) -> float:
        """Fraction of samples fooled, in [0, 1]."""
        return float(self.success.float().mean())


class Attack(abc.ABC):
    """Base class of the attacks: model-mode handling, input checks, the call protocol.

    ``atk(x, y, *extra)`` returns the adversarial tensor; ``atk.run(x, y, *extra)`` an
    :class:`AttackResult`. Both run the attack with the model in eval mode and restore every
    sub-module's training flag afterwards. Model parameters are neither modified nor given
    gradients (``requires_grad`` is left as it is); inputs are never modified.

    Subclasses set ``self.objective`` (a name or callable for
    :func:`~advrobust.attacks.losses.resolve_objective`, or None when the attack cannot judge
    success) and ``self.targeted``.

    Args:
        model: any ``nn.Module``; called as ``model(x, *extra)``.
        lo, hi: valid range of the adversarial images: None (no clamp), a float or a
            per-channel ``(C,)`` tensor.
        channels_last: hand the model its image input in ``torch.channels_last`` memory
            format (same values; the caller's tensors and the model are untouched). ``None``
            (default): on for 4-D inputs on the CPU when the model has a ``Conv2d`` — oneDNN
            convolutions run 1.3-1.6x faster on ConvNet that way (bench/RESULTS_attacks.md);
            off on GPUs, where cuDNN's float32 default layout is kept.
    """

    #: minimum number of dimensions of x (images: 4)
    _min_dim = 1
    objective = None
    targeted = False

    def __init__(self, model: nn.Module, *, lo: Bound = None, hi: Bound = None,
                 channels_last: Optional[bool] = None) -> None:
        name = type(self).__name__
        check_model(name, model)
        self.model = model
        self.channels_last = channels_last
        self._has_conv2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
        for what, b in (("lo", lo), ("hi", hi)):
            if b is not None and not isinstance(b, Tensor):
                check_number(name, what, b, nonnegative=False, finite=False)
        if not isinstance(lo, Tensor) and not isinstance(hi, Tensor):
            check_lo_le_hi(name, lo, hi)
        self.lo, self.hi = lo, hi

    def __call__(self, x: Tensor, y: Optional[Tensor] = None, *extra: Tensor) -> Tensor:
        """The adversarial batch ``(B, ...)``, like ``x``, detached."""
        return self._checked(self._adversarial, x, y, extra)

    def run(self, x: Tensor, y: Optional[Tensor] = None, *extra: Tensor) -> AttackResult:
        """The adversarial batch with ``success`` per sample and the attack's own fields."""
        return self._checked(self._result, x, y, extra)

    def _checked(self, fn, x: Tensor, y: Optional[Tensor], extra: Tuple[Tensor, ...]):
        """``fn(x, y, lo, hi, extra)`` on checked, detached inputs, the model in eval mode."""
        name = type(self).__name__
        check_model_inputs(name, self.model, x, y, extra, min_dim=self._min_dim)
        _check_ebv(name, self.model, extra)
        lo, hi = per_channel(name, "lo", self.lo, x), per_channel(name, "hi", self.hi, x)
        check_lo_le_hi(name, lo, hi)
        x, extra = x.detach(), tuple(e.detach() for e in extra)
        y = None if y is None else y.detach()
        with eval_mode(self.model):
            return fn(x, y, lo, hi, extra)

    def _check_targets(self, x: Tensor, y: Optional[Tensor], extra: Tuple[Tensor, ...]) -> None:
        """Labels in [0, n_classes) and redshifts > -1 for the built-in losses (gradient attacks) and
        resolved objectives (one-pixel) (one forward pass of the first image tells the number of
        classes). Subclasses call it once at the start of the attack, after their own shape checks.
        Raises ValueError naming the samples."""
        hooks = [h for h in (getattr(self, "loss", None), self.objective) if hasattr(h, "check_targets")]
        if y is None or not hooks:
            return
        with torch.no_grad():
            out = self.model(x[:1], *(e[:1] for e in extra))
        for hook in hooks:
            check_targets(type(self).__name__, hook, out, y)

    def _use_channels_last(self, x: Tensor) -> bool:
        if self.channels_last is not None:
            return bool(self.channels_last) and x.dim() == 4
        return x.dim() == 4 and x.device.type == "cpu" and self._has_conv2d

    def _model_input(self, x: Tensor, channels_last: bool) -> Tensor:
        """``x`` as the model gets it: in channels-last memory format when asked."""
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    @abc.abstractmethod
    def forward(self, x: Tensor, y: Optional[Tensor], lo: Bound, hi: Bound,
                extra: Tuple[Tensor, ...]) -> Union[Tensor, AttackResult]:
        """The attack on checked, detached inputs, the model in eval mode (the one hook of a subclass).

        Args:
            x: ``(B, ...)`` the clean batch; y: its labels/redshifts/targets or None.
            lo, hi: the valid range, checked against ``x`` (None, a float or a ``(1,)``/``(C,)`` tensor).
            extra: further model inputs ``(B, ...)``.

        Returns:
            the adversarial batch ``(B, ...)`` like ``x`` (``run`` then judges success by ``self.objective``),
            or the attack's :class:`AttackResult` when it judges success itself.
        """

    def _result(self, x: Tensor, y: Optional[Tensor], lo: Bound, hi: Bound,
                extra: Tuple[Tensor, ...]) -> AttackResult:
        """:meth:`forward`'s result; a tensor is judged by ``self.objective`` on one forward pass of ``x_adv``."""
        if self.objective is None:
            raise ValueError(f"{type(self).__name__}.run: cannot judge success with this loss; pass "
                             "objective='classifier', 'photoz' or a callable (output, y) -> (fitness, success)")
        out = self.forward(x, y, lo, hi, extra)
        if isinstance(out, AttackResult):
            return out
        if y is None:
            raise ValueError(f"{type(self).__name__}.run: y is required to judge success")
        objective = resolve_objective(self.objective, self.model, targeted=self.targeted)
        with torch.no_grad():
            logits = self.model(self._model_input(out, self._use_channels_last(x)), *extra)
        raise_nonfinite_rows(type(self).__name__, nonfinite_rows(logits, x.shape[0]), "the model's output on x_adv",
                             NAN_OUTPUT_HINT)
        _, success = objective(logits, y)
        return AttackResult(x_adv=out, success=success)

    def _adversarial(self, x: Tensor, y: Optional[Tensor], lo: Bound, hi: Bound,
                     extra: Tuple[Tensor, ...]) -> Tensor:
        """:meth:`forward`'s adversarial batch (a result's ``x_adv``)."""
        out = self.forward(x, y, lo, hi, extra)
        return out.x_adv if isinstance(out, AttackResult) else out

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if k != "model" and not k.startswith("_")]
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)
        return f"{type(self).__name__}({type(self.model).__name__}, {args})"
