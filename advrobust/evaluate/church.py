"""Church-window maps (Ciprijanovic et al. 2022, section 4.2; Warde-Farley and Goodfellow 2017).

The model's predicted class on a 2-D grid of inputs ``x + a * d1 + b * d2`` around one image,
spanned by two perturbation directions (e.g. ``d1 = x_one_pixel - x`` and ``d2 = x_noisy - x``, so
that the point (1, 0) is the one-pixel image and (0, 1) the noisy one). The coordinates are
multiples of the directions as given (dimensionless); plot them with
:func:`advrobust.plots.plot_church_window`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from torch import Tensor, nn

from advrobust.modes import eval_mode
from advrobust.checks import check_finite_output, check_model_inputs, check_number

__all__ = ["ChurchWindow", "church_window"]


@dataclass
class ChurchWindow:
    """A church-window map.

    Attributes:
        a: ``(S,)`` coordinates along ``d1`` (multiples of ``d1``); b: ``(S,)`` along ``d2``.
        classes: ``(S, S)`` int64 predicted class at ``x + a[j] * d1 + b[i] * d2`` (row i, column j).
        confidence: ``(S, S)`` softmax probability of that class.
        clean_class: the prediction at (0, 0).
    """

    a: np.ndarray
    b: np.ndarray
    classes: np.ndarray
    confidence: np.ndarray
    clean_class: int


@torch.no_grad()
def church_window(model: nn.Module, x: Tensor, d1: Tensor, d2: Tensor, *extra: Tensor,
                  extent: Tuple[float, float] = (-2.0, 2.0), steps: int = 41, batch_size: int = 256) -> ChurchWindow:
    """The predicted class of ``model`` on the grid ``x + a d1 + b d2``, ``a, b`` in ``extent``.

    Args:
        model: a classifier, called as ``model(inputs, *extra)`` (eval mode inside, flags restored).
        x: ``(C, H, W)`` or ``(1, C, H, W)`` the image; d1, d2: directions of ``x``'s shape, in image units.
        extra: further model inputs for the one image (e.g. ``(1,)`` E(B-V)), repeated over the grid.
        extent: ``(lo, hi)`` range of both coordinates; steps: grid points per axis (>= 2).
        batch_size: grid points per forward pass.

    Raises:
        ValueError: shapes differ, bad extent or steps.
    """
    x1 = x.unsqueeze(0) if x.dim() == 3 else x
    if x1.shape[0] != 1:
        raise ValueError(f"church_window: x must be one image (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    for what, d in (("d1", d1), ("d2", d2)):
        if d.numel() != x1.numel():
            raise ValueError(f"church_window: {what} must have x's shape {tuple(x.shape)}, got {tuple(d.shape)}")
    steps = int(check_number("church_window", "steps", steps, integer=True, positive=True))
    if steps < 2 or not extent[0] < extent[1]:
        raise ValueError(f"church_window: need steps >= 2 and extent lo < hi, got steps={steps}, extent={extent}")
    extra1 = tuple(e.reshape((1,) + tuple(e.shape[1:])) if e.dim() else e.reshape(1) for e in extra)
    check_model_inputs("church_window", model, x1, None, extra1)
    grid = torch.linspace(float(extent[0]), float(extent[1]), steps, dtype=torch.float64)
    bb, aa = torch.meshgrid(grid, grid, indexing="ij")
    coeff = torch.stack([aa.reshape(-1), bb.reshape(-1)], 1).to(device=x1.device, dtype=x1.dtype)
    dirs = torch.stack([d1.reshape(-1), d2.reshape(-1)]).to(x1.dtype)
    classes, conf = [], []
    with eval_mode(model):
        for i in range(0, coeff.shape[0], batch_size):
            c = coeff[i:i + batch_size]
            inputs = x1 + (c @ dirs).view((c.shape[0],) + tuple(x1.shape[1:]))
            logits = model(inputs, *(e.expand((c.shape[0],) + tuple(e.shape[1:])) for e in extra1))
            check_finite_output("church_window", logits)
            p = torch.softmax(logits.double(), 1)
            cf, cl = p.max(1)
            classes.append(cl.cpu())
            conf.append(cf.cpu())
        clean = int(model(x1, *extra1).argmax(1).item())
    return ChurchWindow(a=grid.numpy(), b=grid.numpy(), classes=torch.cat(classes).view(steps, steps).numpy(),
                        confidence=torch.cat(conf).view(steps, steps).numpy(), clean_class=clean)
