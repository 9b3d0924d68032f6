"""Interval bounds of a network's output over an l_inf ball, and the sensitivity loss (the
sensitivity-training abstract: log-volume of the output box as a regulariser).

:func:`interval_bounds` runs the model's own ``forward`` on a *box*: a tensor subclass that carries
a lower and an upper bound and answers every torch operation with the interval rule of that
operation (interval bound propagation, Gowal et al. 2018). So the models' functional code
(``torch.cat`` of the E(B-V), ``flatten``, ``asinh`` input scaling, global means) is bounded as it
is written. Rules:

* affine with weights (``conv1d/2d``, ``linear``): centre through the layer, radius through
  ``|W|`` without bias;
* monotone non-decreasing maps applied to both ends: ReLU, sigmoid, tanh, asinh, exp, softplus,
  hardtanh, ReLU6, average and max pooling (plain and adaptive), mean, sum, zero padding, dropout in
  eval mode, and the shape operations (flatten, view, reshape, squeeze, unsqueeze, permute, indexing);
* PReLU and leaky ReLU with slopes of either sign: the extremes among both ends and the kink at 0;
* batch norm in eval mode as its per-channel affine map (scales of either sign);
* ``cat``/``stack``; ``+``, ``-`` of boxes and constants, ``*`` and ``/`` by constants, negation.

Any other operation that would produce a tensor from a box raises a ``NotImplementedError`` naming
the operation and the layer (its name in the model and its type).
"""
from __future__ import annotations

import contextlib
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

from advrobust.checks import (
    Bound, broadcast_per_sample, check_model, check_number, clamp_range, per_channel, per_sample,
)
from advrobust.modes import eval_mode

__all__ = ["interval_bounds", "log_volume", "SensitivityLoss"]


class _Box(Tensor):
    """A tensor standing for every value between ``lower`` and ``upper`` (same shape)."""

    lower: Tensor
    upper: Tensor

    @staticmethod
    def __new__(cls, lower: Tensor, upper: Tensor):
        box = Tensor._make_subclass(cls, ((lower + upper) / 2).detach(), False)
        box.lower, box.upper = lower, upper
        return box

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is not None:
            return rule(func, *args, **kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*tree_map(_plain, args), **tree_map(_plain, kwargs))
        if any(isinstance(t, Tensor) for t in tree_flatten(out)[0]):
            raise NotImplementedError(_unsupported(func))
        return out  # metadata: shape, dim, dtype, device, is_floating_point, ...


def _plain(v):
    return v.lower.detach() if isinstance(v, _Box) else v


def _ends(v) -> Tuple[Tensor, Tensor]:
    return (v.lower, v.upper) if isinstance(v, _Box) else (v, v)


# -- which layer is running (for the error message) -------------------------------------------
_LAYERS: list = []


def _unsupported(func) -> str:
    where = f"layer '{_LAYERS[-1][0] or '<model>'}' ({type(_LAYERS[-1][1]).__name__})" if _LAYERS else "the model"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    module = getattr(func, "__module__", None) or ""
    return (f"interval_bounds: cannot bound {module + '.' if module else ''}{name} in {where}; supported are "
            "conv, linear, ReLU, PReLU, leaky ReLU, sigmoid, tanh, asinh, pooling (average, max, adaptive), "
            "batch norm in eval mode, dropout in eval mode, mean/sum, flatten/reshape, cat, and + - * / by "
            "constants")


@contextlib.contextmanager
def _track_layers(model: nn.Module):
    def enter(name):
        def hook(module, inputs) -> None:
            _LAYERS.append((name, module))
        return hook

    def leave(module, inputs, output) -> None:
        _LAYERS.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        _LAYERS.clear()


# -- rules ---------------------------------------------------------------------------------------
def _affine(func, x, weight, bias=None, *args, **kwargs):
    if isinstance(weight, _Box) or isinstance(bias, _Box):
        raise NotImplementedError(_unsupported(func))
    lo, hi = _ends(x)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    out_mid = func(mid, weight, bias, *args, **kwargs)
    out_rad = func(rad, weight.abs(), None, *args, **kwargs)
    return _Box(out_mid - out_rad, out_mid + out_rad)


def _monotone(func, x, *args, **kwargs):
    kwargs.pop("inplace", None)
    lo, hi = _ends(x)
    return _Box(func(lo, *args, **kwargs), func(hi, *args, **kwargs))


def _eval_only(func, x, *args, **kwargs):
    """Dropout: the identity in eval mode, unboundable in training (random masks)."""
    training = kwargs.get("training", args[1] if len(args) > 1 else True)
    if training:
        raise NotImplementedError(_unsupported(func) + " (dropout in training mode: put the model in eval mode)")
    return x


def _kinked(func, x, *args, **kwargs):
    """f(x) = x for x >= 0, a * x below: extremes among both ends and the kink at 0 (any sign of a)."""
    kwargs.pop("inplace", None)
    lo, hi = _ends(x)
    kink = torch.zeros_like(lo).clamp(lo, hi)
    vals = [func(v, *args, **kwargs) for v in (lo, hi, kink)]
    return _Box(torch.minimum(torch.minimum(vals[0], vals[1]), vals[2]),
                torch.maximum(torch.maximum(vals[0], vals[1]), vals[2]))


def _batch_norm(func, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-5):
    if training or running_mean is None:
        raise NotImplementedError(_unsupported(func) + " (batch norm with batch statistics: put the model in "
                                  "eval mode)")
    lo, hi = _ends(x)
    shape = (1, -1) + (1,) * (lo.dim() - 2)
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale + (bias if bias is not None else 0)
    scale, shift = scale.view(shape), shift.view(shape)
    a, b = lo * scale + shift, hi * scale + shift
    return _Box(torch.minimum(a, b), torch.maximum(a, b))


def _join(func, tensors, *args, **kwargs):
    los, his = zip(*(_ends(t) for t in tensors))
    return _Box(func(list(los), *args, **kwargs), func(list(his), *args, **kwargs))


def _add(func, a, b, *args, **kwargs):
    if args or kwargs.get("alpha", 1) != 1:
        raise NotImplementedError(_unsupported(func))
    (al, ah), (bl, bh) = _ends(a), _ends(b)
    return _Box(al + bl, ah + bh)


def _sub(func, a, b, *args, **kwargs):
    if args or kwargs.get("alpha", 1) != 1:
        raise NotImplementedError(_unsupported(func))
    (al, ah), (bl, bh) = _ends(a), _ends(b)
    return _Box(al - bh, ah - bl)


def _rsub(func, a, b, *args, **kwargs):
    return _sub(func, b, a, *args, **kwargs)


def _scale(op, box_first_only: bool = False):
    """``*`` and ``/`` with one constant operand (for ``/`` the box must be the numerator)."""
    def rule(func, a, b, *args, **kwargs):
        if args or kwargs or (isinstance(a, _Box) and isinstance(b, _Box)) or (box_first_only and isinstance(b, _Box)):
            raise NotImplementedError(_unsupported(func) + " (only a box times or over a constant is bounded)")
        box, const, first = (a, b, True) if isinstance(a, _Box) else (b, a, False)
        u = op(box.lower, const) if first else op(const, box.lower)
        v = op(box.upper, const) if first else op(const, box.upper)
        return _Box(torch.minimum(u, v), torch.maximum(u, v))
    return rule


def _neg(func, x):
    lo, hi = _ends(x)
    return _Box(-hi, -lo)


def _reflected(rule):
    return lambda func, a, b, *args, **kwargs: rule(func, b, a, *args, **kwargs)


_MONOTONE = [
    F.relu, torch.relu, Tensor.relu, F.relu6, F.hardtanh, torch.sigmoid, Tensor.sigmoid, F.sigmoid,
    torch.tanh, Tensor.tanh, F.tanh, torch.asinh, Tensor.asinh, torch.exp, Tensor.exp, F.softplus,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.pad,
    torch.mean, Tensor.mean, torch.sum, Tensor.sum, torch.flatten, Tensor.flatten, Tensor.view,
    Tensor.reshape, torch.reshape, Tensor.squeeze, torch.squeeze, Tensor.unsqueeze, torch.unsqueeze,
    Tensor.permute, torch.permute, Tensor.contiguous, Tensor.__getitem__, Tensor.to, Tensor.float,
    Tensor.double, Tensor.clone, torch.clone,
]
_RULES = {f: _monotone for f in _MONOTONE}
_RULES.update({
    F.conv1d: _affine, F.conv2d: _affine, F.conv3d: _affine, F.linear: _affine,
    F.prelu: _kinked, F.leaky_relu: _kinked, torch.prelu: _kinked,
    F.batch_norm: _batch_norm, F.dropout: _eval_only,
    torch.cat: _join, torch.concat: _join, torch.stack: _join,
    torch.add: _add, Tensor.add: _add, Tensor.__add__: _add, Tensor.__radd__: _reflected(_add),
    torch.sub: _sub, Tensor.sub: _sub, Tensor.__sub__: _sub, Tensor.__rsub__: _rsub,
    torch.mul: _scale(torch.mul), Tensor.mul: _scale(torch.mul), Tensor.__mul__: _scale(torch.mul),
    Tensor.__rmul__: _reflected(_scale(torch.mul)),
    torch.div: _scale(torch.div, True), Tensor.div: _scale(torch.div, True),
    Tensor.__truediv__: _scale(torch.div, True),
    torch.neg: _neg, Tensor.neg: _neg, Tensor.__neg__: _neg,
})


def interval_bounds(model: nn.Module, x: Tensor, eps, *extra: Tensor, lo: Bound = None,
                    hi: Bound = None) -> Tuple[Tensor, Tensor]:
    """Interval bounds of ``model(x', *extra)`` over every ``x'`` with ``|x' - x|_inf <= eps`` (within
    ``[lo, hi]``).

    The model runs as it is (train or eval mode); batch norm and dropout must be in eval mode
    (:func:`advrobust.modes.eval_mode`). ``extra`` inputs (e.g. E(B-V)) are not perturbed. The
    bounds are differentiable in the model's parameters (for :class:`SensitivityLoss`).

    Args:
        model: network called as ``model(x, *extra)``.
        x: ``(B, ...)`` float batch (image units).
        eps: l_inf radius, a float or per-sample ``(B,)`` tensor, image units.
        lo, hi: valid input range: None, a number or a per-channel ``(C,)`` tensor.

    Returns:
        ``(lower, upper)``, each shaped as the model's output, ``lower <= model(x') <= upper``.

    Raises:
        NotImplementedError: an operation without an interval rule, naming it and the layer.
        ValueError, TypeError: bad ``eps``, ``lo``, ``hi``.
    """
    check_model("interval_bounds", model)
    eps = broadcast_per_sample(per_sample("interval_bounds", "eps", eps, x), x)
    lo_, hi_ = per_channel("interval_bounds", "lo", lo, x), per_channel("interval_bounds", "hi", hi, x)
    box = _Box(clamp_range(x - eps, lo_, hi_), clamp_range(x + eps, lo_, hi_))
    with _track_layers(model):
        out = model(box, *extra)
    if isinstance(out, _Box):
        return out.lower.as_subclass(Tensor), out.upper.as_subclass(Tensor)
    return out, out


def log_volume(lower: Tensor, upper: Tensor, floor: float = 1e-8) -> Tensor:
    """Log-volume of each box, ``sum_j log(upper_j - lower_j + floor)`` over the non-batch dims, ``(B,)``.

    ``floor`` (output units) keeps a zero width (a dead unit) from giving -inf; the sum of logs
    avoids the under/overflow of the raw product of widths.
    """
    return torch.log((upper - lower).clamp_min(0) + floor).flatten(1).sum(1)


class SensitivityLoss:
    """Extra loss of the trainer: ``beta * mean over the batch of the output box's log-volume`` for the
    l_inf ball of radius ``eps`` around each training image (the sensitivity-training abstract).

    The bounds are computed with the model in eval mode (batch norm as its running affine map).

    Args:
        eps: l_inf radius (image units; the simulated sky noise is ~1e-3 per pixel).
        beta: weight of the term. Watch the task metric when raising it: on photoz_small (30 bins,
            simulated 32x32 ugriz, eps = 1e-3 nanomaggies) beta = 0.001 shrinks the box (log-volume
            160 -> 114 after 3 epochs) while the network still predicts, and beta = 0.01 collapses
            it to a constant output (the box then shrinks for the wrong reason).
        lo, hi: valid input range. floor: see :func:`log_volume`.
    """

    def __init__(self, eps: float, beta: float = 0.001, *, lo: Bound = None, hi: Bound = None,
                 floor: float = 1e-8) -> None:
        self.eps = check_number("SensitivityLoss", "eps", eps, positive=True)
        self.beta = check_number("SensitivityLoss", "beta", beta)
        self.floor = check_number("SensitivityLoss", "floor", floor, positive=True)
        self.lo, self.hi = lo, hi

    def __call__(self, trainer, batch, output: Tensor) -> Tensor:
        with eval_mode(trainer.module):
            lower, upper = interval_bounds(trainer.module, batch.x, self.eps, *batch.extra, lo=self.lo, hi=self.hi)
        return self.beta * log_volume(lower.float(), upper.float(), self.floor).mean()
