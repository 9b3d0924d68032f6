"""Argument checks and type aliases shared by the ops, the attacks and everything built on them.

One home for each rule, so every entry point says the same thing about the same mistake. Every
check takes ``name`` (the public function or class the user called, e.g. ``"PGD"`` or
``"linf_step"``), which starts its message, and ``what`` (the argument's name), and raises a
``TypeError`` for a value of the wrong kind and a ``ValueError`` for a value out of range.

Type aliases:

* :data:`ScalarOrPerSample` -- a radius or step (``eps``, ``alpha``, ``sigma``): a number, or a
  ``(B,)`` tensor with one value per sample, in the units of the images;
* :data:`Bound` -- a valid-range bound (``lo``, ``hi``): ``None`` (no bound), a number, or a
  ``(C,)`` tensor with one value per channel (dimension 1 of the images).
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = [
    "ScalarOrPerSample", "Bound", "FLOAT_DTYPES",
    "check_number", "check_float_tensor", "check_like", "check_batch", "check_finite",
    "check_radius", "per_sample", "per_channel", "check_lo_le_hi", "broadcast_per_sample",
    "check_device", "check_model", "model_device", "model_dtype", "check_model_inputs",
    "nonfinite_rows", "raise_nonfinite_rows", "check_finite_output", "nonfinite_parameters",
    "check_class_labels", "check_redshifts", "check_within_range",
    "channel_view", "clamp_range",
]

ScalarOrPerSample = Union[float, Tensor]
Bound = Union[None, float, Tensor]
#: The unit of an attack strength: None (image units), a number or a per-channel ``(C,)`` tensor (> 0).
Unit = Union[None, float, Tensor]

#: The floating dtypes the kernels compute in.
FLOAT_DTYPES = (torch.float32, torch.float64)


# ------------------------------------------------------------------ numbers

def check_number(name: str, what: str, v, *, integer: bool = False, positive: bool = False,
                 nonnegative: bool = True, finite: bool = True) -> float:
    """A real number (int or float, never a bool or a string), returned as float.

    Args:
        integer: must be a whole number. positive: must be > 0. nonnegative: must be >= 0
            (default). finite: NaN and +-inf are refused (default); NaN is refused always.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name}: {what} must be {kind}, got {v!r} ({type(v).__name__})")
    v = float(v)
    if math.isnan(v) or (finite and not math.isfinite(v)):
        raise ValueError(f"{name}: {what} must be a finite number, got {v}")
    if (positive and not v > 0) or (nonnegative and v < 0):
        raise ValueError(f"{name}: {what} must be {'> 0' if positive else '>= 0'}, got {v}")
    return v


# ------------------------------------------------------------------ tensors

def check_float_tensor(name: str, t, what: str) -> None:
    """``t`` is a float32 or float64 tensor (what the kernels compute in)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: {what} must be float32 or float64, got {t.dtype}")


def check_like(name: str, ref: Tensor, ref_what: str, others: Mapping[str, Tensor]) -> None:
    """Every tensor of ``others`` has ``ref``'s shape, dtype and device."""
    for what, t in others.items():
        if t.shape != ref.shape:
            raise ValueError(f"{name}: {what} has shape {tuple(t.shape)}, expected {tuple(ref.shape)} like {ref_what}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{name}: {what} is {t.dtype}, expected {ref.dtype} like {ref_what}")
        if t.device != ref.device:
            raise ValueError(f"{name}: {what} is on {t.device}, expected {ref.device} like {ref_what}")


def check_batch(name: str, x: Tensor, what: str = "x", *, min_dim: int = 1) -> None:
    """``x`` has at least ``min_dim`` dimensions and a non-empty batch dimension 0."""
    if x.dim() < min_dim:
        raise ValueError(f"{name}: {what} must have at least {min_dim} dimensions (B, ...), got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{name}: {what} must have a non-empty batch dimension, got shape {tuple(x.shape)}")


def _samples(rows: Tensor) -> str:
    """``samples [i, j, ...]`` for a (B,) bool mask (the first 8 indices)."""
    idx = torch.nonzero(rows).flatten()[:8].tolist()
    return f"samples {idx}{', ...' if int(rows.sum()) > 8 else ''}"


def check_finite(name: str, t: Tensor, what: str, hint: str = "") -> None:
    """No NaN or Inf in a floating tensor (one reduction; synchronises a GPU)."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = ~torch.isfinite(t)
        rows = bad.flatten(1).any(1) if t.dim() > 1 else bad
        raise ValueError(f"{name}: {what} has {int(bad.sum())} NaN/Inf values ({_samples(rows)})"
                         f"{'; ' + hint if hint else ''}")


def nonfinite_rows(t, batch: int) -> Optional[Tensor]:
    """``(batch,)`` bool: rows of ``t`` (B, ...) holding a NaN or Inf, without a host sync; None when
    ``t`` is not a floating tensor with ``batch`` rows (a model output the caller cannot read)."""
    if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() == 0 or t.shape[0] != batch:
        return None
    return ~torch.isfinite(t).reshape(batch, -1).all(1)


def raise_nonfinite_rows(name: str, rows: Optional[Tensor], what: str, hint: str = "") -> None:
    """ValueError naming the samples flagged in ``rows`` (from :func:`nonfinite_rows`), if any
    (one host sync)."""
    if rows is not None and bool(rows.any()):
        raise ValueError(f"{name}: {what} is NaN/Inf for {int(rows.sum())} of {rows.numel()} samples "
                         f"({_samples(rows)}){'; ' + hint if hint else ''}")


#: what a NaN/Inf model output means, said by every check of one
BROKEN_MODEL_HINT = ("the model is broken for these inputs (NaN/Inf weights, overflow from inputs far beyond the "
                     "pixel values such as a huge eps, log of 0, ...); nothing computed from its output would mean "
                     "anything")


def check_finite_output(name: str, out, what: str = "the model's output", hint: str = BROKEN_MODEL_HINT) -> None:
    """ValueError when a model's output ``out`` ``(B, ...)`` holds NaN/Inf, naming the samples (one host
    sync): the one check of every path that reads a model's output (evaluation, scan, certification,
    training). Anything but a floating tensor with a batch dimension passes unchecked."""
    if isinstance(out, Tensor) and out.dim() > 0:
        raise_nonfinite_rows(name, nonfinite_rows(out, out.shape[0]), what, hint)


def nonfinite_parameters(model: nn.Module) -> list:
    """Names of the floating parameters and buffers of ``model`` holding a NaN or Inf (empty: none)."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [key for key, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_class_labels(name: str, y: Tensor, n_classes: int, what: str = "y") -> None:
    """Integer class indices in ``[0, n_classes)``. Cross-entropy ignores the label -100 (the
    sample's loss and gradient are 0: it would silently stay unattacked); others are out of range.

    Raises:
        TypeError: floating or bool labels. ValueError: a label outside [0, n_classes), naming the samples.
    """
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name}: {what} must hold integer class indices (int64), got {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.dim() > 1:
        bad = bad.flatten(1).any(1)
    if bool(bad.any()):
        values = y[bad].flatten()[:8].tolist()
        raise ValueError(f"{name}: {what} must be class indices in [0, {n_classes}) (the model gives {n_classes} "
                         f"outputs), got {values} at {_samples(bad)}")


def check_redshifts(name: str, z: Tensor, what: str = "y") -> None:
    """Redshifts > -1 (dz divides by 1 + z): catches the missing-value markers -99 / -999 / -1.

    Raises:
        ValueError: a redshift <= -1, naming the samples.
    """
    bad = z <= -1
    if bad.dim() > 1:
        bad = bad.flatten(1).any(1)
    if bool(bad.any()):
        raise ValueError(f"{name}: {what} holds redshifts <= -1 {z[bad].flatten()[:8].tolist()} at {_samples(bad)}; "
                         "missing-value markers (-99, -999) must be removed from the catalogue first")


def check_within_range(name: str, x: Tensor, lo: "Bound", hi: "Bound", what: str = "x") -> None:
    """Every value of ``x`` (B, C, ...) lies in [lo, hi] (per-channel bounds on dim 1). A clean
    image outside the valid range would be clamped far outside the eps ball by the attack.

    Raises:
        ValueError: naming the samples outside the range and the range.
    """
    if lo is None and hi is None:
        return
    view = (lambda b: b.view((1, -1) + (1,) * (x.dim() - 2)) if isinstance(b, Tensor) and x.dim() > 1 else b)
    bad = torch.zeros_like(x, dtype=torch.bool)
    if lo is not None:
        bad |= x < view(lo)
    if hi is not None:
        bad |= x > view(hi)
    rows = bad.reshape(x.shape[0], -1).any(1)
    if bool(rows.any()):
        show = (lambda b: b.tolist() if isinstance(b, Tensor) else b)
        raise ValueError(f"{name}: the clean {what} lies outside [lo, hi] = [{show(lo)}, {show(hi)}] for "
                         f"{int(rows.sum())} samples ({_samples(rows)}); clamping would move them far outside "
                         "the eps ball: widen lo/hi or clip the images first")


# ------------------------------------------------------------------ radii and bounds

def check_radius(name: str, what: str, v: ScalarOrPerSample) -> ScalarOrPerSample:
    """A radius or step given at construction: a finite number >= 0, or a 1-D float tensor of
    finite values >= 0 (one per sample; its length is checked against x by :func:`per_sample`)."""
    if isinstance(v, Tensor):
        if v.dim() > 1 or not v.is_floating_point():
            raise TypeError(f"{name}: {what} must be a number or a 1-D float tensor (one value per sample), "
                            f"got shape {tuple(v.shape)} {v.dtype}")
        if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
            raise ValueError(f"{name}: {what} must be >= 0 and finite for every sample, got {v.tolist()}")
        return v.detach()
    return check_number(name, what, v)


def per_sample(name: str, what: str, v: ScalarOrPerSample, x: Tensor, *, as_tensor: bool = False) -> ScalarOrPerSample:
    """A radius or step for the batch ``x`` (B, ...), checked as :func:`check_radius`.

    Returns a float (``as_tensor=False`` and a number given), else a 1-D tensor of ``x``'s dtype
    and device: ``(1,)`` for a number, ``(B,)`` for a tensor (a ``(1,)`` tensor is broadcast).
    """
    v = check_radius(name, what, v)
    if not isinstance(v, Tensor):
        return torch.full((1,), v, dtype=x.dtype, device=x.device) if as_tensor else v
    if v.numel() not in (1, x.shape[0]):
        raise ValueError(f"{name}: {what} has {v.numel()} values but the batch has B={x.shape[0]} samples")
    if v.device != x.device:
        raise ValueError(f"{name}: {what} is on {v.device} but x is on {x.device}")
    return v.reshape(-1).expand(x.shape[0]).to(x.dtype).contiguous()


def per_channel(name: str, what: str, v: Bound, x: Tensor, *, as_tensor: bool = False) -> Bound:
    """A valid-range bound for ``x`` (B, C, ...): None, a number (not NaN; +-inf allowed) or a
    ``(1,)``/``(C,)`` tensor without NaN on ``x``'s device.

    Returns None, a float (``as_tensor=False``) or a 1-D tensor of ``x``'s dtype: ``(1,)`` or ``(C,)``.
    """
    if v is None:
        return None
    if not isinstance(v, Tensor):
        v = check_number(name, what, v, nonnegative=False, finite=False)
        return torch.full((1,), v, dtype=x.dtype, device=x.device) if as_tensor else v
    C = x.shape[1] if x.dim() > 1 else None
    if v.dim() > 1 or (v.numel() != 1 and v.numel() != C):
        raise ValueError(f"{name}: {what} must be None, a number or a 1-D tensor with one value per channel "
                         f"(dim 1 of x, C={C if C is not None else 'absent'}), got shape {tuple(v.shape)}")
    if not v.is_floating_point():
        v = v.double()
    if v.device != x.device:
        raise ValueError(f"{name}: {what} is on {v.device} but x is on {x.device}")
    if bool(torch.isnan(v).any()):
        raise ValueError(f"{name}: {what} has NaN values, got {v.tolist()}")
    return v.detach().reshape(-1).to(x.dtype).contiguous()


def check_unit(name: str, unit: Unit) -> Unit:
    """A strength unit given at construction: None, a finite number > 0, or a 1-D tensor of finite
    values > 0, one per channel (its length is checked against x by :func:`unit_per_channel`).

    Raises:
        TypeError: not a number or tensor. ValueError: a value <= 0, NaN or infinite, an empty or
            multi-dimensional tensor; the message names ``unit`` and its value.
    """
    if unit is None:
        return None
    if not isinstance(unit, Tensor):
        return check_number(name, "unit", unit, positive=True)
    if unit.dim() > 1 or unit.numel() == 0:
        raise ValueError(f"{name}: unit must be None, a number or a 1-D tensor with one value per channel, "
                         f"got shape {tuple(unit.shape)}")
    unit = unit.detach() if unit.is_floating_point() else unit.detach().double()
    if not bool(torch.isfinite(unit).all()) or bool((unit <= 0).any()):
        raise ValueError(f"{name}: unit must be > 0 and finite in every channel, got {unit.tolist()}")
    return unit


def unit_per_channel(name: str, unit: Unit, x: Tensor) -> Unit:
    """A unit checked by :func:`check_unit`, for the batch ``x`` (B, C, ...): None, a float, or a
    ``(1,)``/``(C,)`` tensor of ``x``'s dtype (see :func:`per_channel`).

    Raises:
        ValueError: a tensor whose length is not 1 or C, or on another device than x.
    """
    return per_channel(name, "unit", check_unit(name, unit), x)


def check_lo_le_hi(name: str, lo: Bound, hi: Bound) -> None:
    """lo <= hi wherever both are given (numbers or broadcastable tensors)."""
    if lo is None or hi is None:
        return
    if bool((torch.as_tensor(lo) > torch.as_tensor(hi).to(torch.as_tensor(lo).device)).any()):
        show = (lambda b: b.tolist() if isinstance(b, Tensor) else b)
        raise ValueError(f"{name}: lo must be <= hi, got lo={show(lo)} hi={show(hi)}")


def broadcast_per_sample(v: ScalarOrPerSample, x: Tensor) -> ScalarOrPerSample:
    """(B,) -> (B, 1, ..., 1) against ``x``; a float stays a float."""
    if isinstance(v, Tensor):
        return v.view((-1,) + (1,) * (x.dim() - 1))
    return v


def channel_view(b: Union[float, Tensor], x: Tensor) -> Union[float, Tensor]:
    """A per-channel ``(C,)``/``(1,)`` tensor viewed ``(1, C, 1, ..., 1)`` against ``x``; a float as is."""
    if isinstance(b, Tensor) and x.dim() > 1:
        return b.view((1, -1) + (1,) * (x.dim() - 2))
    return b


def clamp_range(x: Tensor, lo: Bound, hi: Bound) -> Tensor:
    """Clamp to [lo, hi] with scalar or per-channel (dim 1) bounds; None = no bound."""
    for b, op in ((lo, torch.maximum), (hi, torch.minimum)):
        if b is None:
            continue
        if isinstance(b, Tensor):
            x = op(x, channel_view(b, x))
        else:
            x = x.clamp(min=b) if op is torch.maximum else x.clamp(max=b)
    return x
# ------------------------------------------------------------------ devices

def check_device(name: str, device: Union[str, torch.device]) -> torch.device:
    """``torch.device(device)`` for ``cpu``, ``cuda`` or ``cuda:N`` that this process can use: the one
    device check of the package (the commands' ``--device``, :func:`advrobust.demo.run_demo`, the
    benchmarks). ``name`` starts the messages (``"--device"``, ``"run_demo: device"``).

    Raises:
        ValueError: another device name, or CUDA asked for where no (or no such) CUDA device is visible.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {device}: no CUDA device is visible (torch.cuda.is_available() is False); "
                             "use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


# ------------------------------------------------------------------ models and their inputs

def check_model(name: str, model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: model must be a torch.nn.Module, got {type(model).__name__}")


def model_device(model: nn.Module) -> Optional[torch.device]:
    """Device of the model's first parameter (or buffer); None for a model without either."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def model_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """dtype of the model's first floating parameter; None without one."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return None


def check_model_inputs(name: str, model: nn.Module, x, y: Optional[Tensor], extra: Sequence, *,
                       min_dim: int = 1) -> None:
    """One up-front check of what a model is about to be called with (``model(x, *extra)``, labels
    ``y``): float x with a non-empty batch on the model's device and dtype, no NaN/Inf in x, y or
    extra, every tensor with x's batch size. Raises TypeError/ValueError saying what to change."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: x must be a floating-point tensor (float32/float64), got {x.dtype}")
    check_batch(name, x, min_dim=min_dim)
    dev = model_device(model)
    if dev is not None and dev != x.device:
        raise ValueError(f"{name}: the model is on {dev} but x is on {x.device}; move one of them "
                         f"(e.g. x = x.to('{dev}'))")
    mdt = model_dtype(model)
    if mdt is not None and mdt != x.dtype:
        raise TypeError(f"{name}: the model's parameters are {mdt} but x is {x.dtype}; "
                        f"use x.to({mdt}) or model.to({x.dtype})")
    check_finite(name, x, "x", "clean or mask the images first")
    B = x.shape[0]
    for what, t in ([("y", y)] if y is not None else []) + [(f"extra[{i}]", e) for i, e in enumerate(extra)]:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0 or t.shape[0] != B:
            raise ValueError(f"{name}: {what} must have first dimension B={B} like x, got shape {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{name}: {what} is on {t.device} but x is on {x.device}")
        check_finite(name, t, what, "a NaN label or E(B-V) would silently poison the attack of its sample")
