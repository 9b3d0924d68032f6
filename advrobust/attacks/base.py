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
import math
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["Attack", "eval_mode", "model_device"]

ScalarOrPerSample = Union[float, Tensor]
Bound = Union[None, float, Tensor]


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


def model_device(model: nn.Module) -> Optional[torch.device]:
    """Device of the model's first parameter (or buffer); None for a model without either."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _model_dtype(model: nn.Module) -> Optional[torch.dtype]:
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return None


def check_model(name: str, model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: model must be a torch.nn.Module, got {type(model).__name__}")


def check_inputs(name: str, model: nn.Module, x: Tensor, y: Optional[Tensor],
                 extra: Sequence, *, min_dim: int = 1) -> None:
    """One up-front check of an attack's inputs; raises a TypeError/ValueError saying what to change."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: x must be a floating-point tensor (float32/float64), got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name}: x must have at least {min_dim} dimensions (B, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: x is an empty batch (shape {tuple(x.shape)})")
    dev = model_device(model)
    if dev is not None and dev != x.device:
        raise ValueError(f"{name}: the model is on {dev} but x is on {x.device}; move one of them "
                         f"(e.g. x = x.to('{dev}'))")
    mdt = _model_dtype(model)
    if mdt is not None and mdt != x.dtype:
        raise TypeError(f"{name}: the model's parameters are {mdt} but x is {x.dtype}; "
                        f"use x.to({mdt}) or model.to({x.dtype})")
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: x has {n_bad} NaN/Inf values; clean or mask the images first")
    B = x.shape[0]
    for what, t in ([("y", y)] if y is not None else []) + [(f"extra[{i}]", e) for i, e in enumerate(extra)]:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0 or t.shape[0] != B:
            raise ValueError(f"{name}: {what} must have first dimension B={B} like x, got shape {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{name}: {what} is on {t.device} but x is on {x.device}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name}: {what} has {n_bad} NaN/Inf values; a NaN label or E(B-V) would "
                             f"silently poison the attack of its sample")


def check_scalar(name: str, what: str, v: float, *, integer: bool = False, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
        raise TypeError(f"{name}: {what} must be {'an integer' if integer else 'a number'}, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name}: {what} must be {'> 0' if positive else '>= 0'} and finite, got {v}")
    return v


def check_radius(name: str, what: str, v: ScalarOrPerSample) -> ScalarOrPerSample:
    """Checks a float or (B,) tensor radius/step at construction (length checked against x later)."""
    if isinstance(v, Tensor):
        if v.dim() > 1 or not v.is_floating_point():
            raise ValueError(f"{name}: {what} must be a float or a 1-D float tensor (one value per sample), "
                             f"got shape {tuple(v.shape)} {v.dtype}")
        if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
            raise ValueError(f"{name}: {what} must be >= 0 and finite for every sample, got {v.tolist()}")
        return v.detach()
    return check_scalar(name, what, v)


def radius_for(name: str, what: str, v: ScalarOrPerSample, x: Tensor) -> ScalarOrPerSample:
    """A float stays a float; a tensor becomes a (B,) tensor of x's dtype on x's device."""
    if not isinstance(v, Tensor):
        return v
    if v.numel() not in (1, x.shape[0]):
        raise ValueError(f"{name}: {what} has {v.numel()} values but the batch has B={x.shape[0]} samples")
    if v.device != x.device:
        raise ValueError(f"{name}: {what} is on {v.device} but x is on {x.device}")
    return v.reshape(-1).expand(x.shape[0]).to(x.dtype).contiguous()


def bound_for(name: str, what: str, v: Bound, x: Tensor) -> Bound:
    """None/float stay; a tensor must be (1,) or (C,) per channel on x's device."""
    if v is None or not isinstance(v, Tensor):
        if v is not None:
            v = float(v)
            if math.isnan(v):
                raise ValueError(f"{name}: {what} is NaN")
        return v
    if v.dim() > 1 or (v.numel() != 1 and (x.dim() < 2 or v.numel() != x.shape[1])):
        raise ValueError(f"{name}: {what} must be None, a float or a (C,) tensor with one value per channel "
                         f"(C={x.shape[1] if x.dim() > 1 else '?'}), got shape {tuple(v.shape)}")
    if v.device != x.device:
        raise ValueError(f"{name}: {what} is on {v.device} but x is on {x.device}")
    if bool(torch.isnan(v).any()):
        raise ValueError(f"{name}: {what} has NaN values, got {v.tolist()}")
    return v.reshape(-1).to(x.dtype)


def broadcast_per_sample(v: ScalarOrPerSample, x: Tensor) -> ScalarOrPerSample:
    """(B,) -> (B, 1, ..., 1) against x; a float stays a float."""
    if isinstance(v, Tensor):
        return v.view((-1,) + (1,) * (x.dim() - 1))
    return v


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
            if b is not None and not isinstance(b, (Tensor, int, float)):
                raise TypeError(f"{name}: {what} must be None, a float or a (C,) tensor, got {type(b).__name__}")
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
            raise ValueError(f"{name}: lo ({lo}) must be <= hi ({hi})")
        self.lo, self.hi = lo, hi

    def __call__(self, x: Tensor, y: Optional[Tensor] = None, *extra: Tensor):
        name = type(self).__name__
        check_inputs(name, self.model, x, y, extra, min_dim=self._min_dim)
        lo, hi = bound_for(name, "lo", self.lo, x), bound_for(name, "hi", self.hi, x)
        if lo is not None and hi is not None and bool((torch.as_tensor(lo) > torch.as_tensor(hi)).any()):
            raise ValueError(f"{name}: lo must be <= hi")
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
