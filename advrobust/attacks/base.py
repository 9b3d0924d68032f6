"""The attack base class and the argument checks every attack shares.

:class:`Attack` is a template method in the style of torchattacks' ``Attack.__call__``:
remember the training flag of every sub-module of the model, switch to ``eval()``, check the
inputs once, run :meth:`Attack.forward`, restore the flags (also when the attack raises).
Subclasses implement ``forward(x, y, *extra)`` only.

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
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from advrobust.checks import Bound, check_lo_le_hi, check_model, check_model_inputs, check_number, per_channel

__all__ = ["Attack", "eval_mode", "clamp_range"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module in eval mode, then restore each one's own training flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def clamp_range(x: Tensor, lo: Bound, hi: Bound) -> Tensor:
    """Clamp to [lo, hi] with scalar or per-channel (dim 1) bounds; None = no bound."""
    for b, op in ((lo, torch.maximum), (hi, torch.minimum)):
        if b is None:
            continue
        if isinstance(b, Tensor):
            x = op(x, b.view((1, -1) + (1,) * (x.dim() - 2)))
        else:
            x = x.clamp(min=b) if op is torch.maximum else x.clamp(max=b)
    return x


class Attack:
    """Base class of the attacks: model-mode handling, input checks, the call protocol.

    ``atk(x, y, *extra)`` runs the attack with the model in eval mode and restores every
    sub-module's training flag afterwards. Model parameters are neither modified nor given
    gradients (``requires_grad`` is left as it is); inputs are never modified.

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

    def __call__(self, x: Tensor, y: Optional[Tensor] = None, *extra: Tensor):
        name = type(self).__name__
        check_model_inputs(name, self.model, x, y, extra, min_dim=self._min_dim)
        lo, hi = per_channel(name, "lo", self.lo, x), per_channel(name, "hi", self.hi, x)
        check_lo_le_hi(name, lo, hi)
        with eval_mode(self.model):
            return self.forward(x.detach(), None if y is None else y.detach(), lo, hi,
                                tuple(e.detach() for e in extra))

    def _use_channels_last(self, x: Tensor) -> bool:
        if self.channels_last is not None:
            return bool(self.channels_last) and x.dim() == 4
        return x.dim() == 4 and x.device.type == "cpu" and self._has_conv2d

    def forward(self, x: Tensor, y: Optional[Tensor], lo: Bound, hi: Bound,
                extra: Tuple[Tensor, ...]):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if k != "model" and not k.startswith("_")]
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)
        return f"{type(self).__name__}({type(self.model).__name__}, {args})"
