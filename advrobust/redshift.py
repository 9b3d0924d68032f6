"""The one home of the redshift binning and of the photo-z formulas.

The photo-z models of Pasquet et al. (2019) and Campagne (2021) classify a galaxy into ``n_bins``
(180) redshift bins of equal width ``w = z_max / n_bins`` over ``[0, z_max]``; their output is a
p.d.f. over the bins. Everything in advrobust that turns a redshift into a bin, logits into a
redshift or a redshift into an error uses this module: the models
(:class:`advrobust.models.PhotozModel`), the attack losses and objectives
(:mod:`advrobust.attacks.losses`), the metrics (:mod:`advrobust.metrics`) and the evaluation
(:mod:`advrobust.evaluate`).

Binning (all redshifts dimensionless):

* edges ``e_k = k * z_max / n_bins``, ``k = 0 .. n_bins``, computed in float64;
* centres ``c_k = (k + 1/2) * z_max / n_bins``, ``k = 0 .. n_bins - 1``;
* bin ``k`` holds ``e_k <= z < e_(k+1)`` (half-open), the last bin also holds ``z = z_max``;
  a redshift outside ``[0, z_max]`` is clipped into the first or last bin (no error, no host
  sync: inputs are checked where they enter, e.g. by the attacks). The comparison runs in
  ``z``'s dtype, against the float64 edges rounded to it, so ``torch.tensor(0.7)`` (float32)
  lies in the bin that starts at 0.7, as it does in float64. Edges are floats: a decimal that
  is not exact in binary (0.3 = 3 * 0.4 / 4) may sit just below its float64 edge.

Formulas (Campagne 2021, section 2):

* ``z_phot = softmax(logits) @ centres``, the p.d.f.-weighted mean of the bin centres;
* ``dz = (z_phot - z_spec) / (1 + z_spec)``.
"""
from __future__ import annotations

from typing import Optional, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["bin_edges", "bin_centres", "redshift_to_bin", "z_phot", "delta_z"]

Array = TypeVar("Array", Tensor, np.ndarray)


def bin_edges(n_bins: int, z_max: float, *, device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """Float64 edges ``k * z_max / n_bins``, ``k = 0 .. n_bins``: shape ``(n_bins + 1,)``."""
    return torch.arange(n_bins + 1, dtype=torch.float64, device=device) * float(z_max) / n_bins


def bin_centres(n_bins: int, z_max: float, *, device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """Float64 centres ``(k + 1/2) * z_max / n_bins``, ``k = 0 .. n_bins - 1``: shape ``(n_bins,)``."""
    return (torch.arange(n_bins, dtype=torch.float64, device=device) + 0.5) * float(z_max) / n_bins


def redshift_to_bin(z: Tensor, edges: Tensor) -> Tensor:
    """Index of the bin holding each redshift: half-open bins, the last one closed, outside clipped.

    Args:
        z: redshifts, any shape, floating point.
        edges: ``(n_bins + 1,)`` increasing bin edges (e.g. :func:`bin_edges`); only the inner
            ones are used.

    Returns:
        int64 tensor of ``z``'s shape, values in ``[0, n_bins - 1]``.

    Example:
        >>> redshift_to_bin(torch.tensor([-0.1, 0.0, 0.1, 0.15, 0.4, 2.0]), bin_edges(4, 0.4)).tolist()
        [0, 0, 1, 1, 3, 3]
    """
    inner = edges[1:-1].to(device=z.device, dtype=z.dtype)
    return torch.bucketize(z.contiguous(), inner, right=True)


def z_phot(logits: Tensor, centres: Tensor) -> Tensor:
    """Photometric redshift ``softmax(logits) @ centres``, shape ``(N,)``, differentiable.

    Args:
        logits: ``(N, n_bins)`` scores over the redshift bins.
        centres: ``(n_bins,)`` bin centres; cast to the logits' dtype and device.
    """
    if logits.dim() != 2 or logits.shape[1] != centres.numel():
        raise ValueError(f"z_phot: expected logits of shape (N, {centres.numel()}) (one per redshift bin), "
                         f"got {tuple(logits.shape)}")
    return torch.softmax(logits, dim=1) @ centres.to(device=logits.device, dtype=logits.dtype)


def delta_z(z_phot: Array, z_spec: Array) -> Array:
    """Normalised redshift error ``(z_phot - z_spec) / (1 + z_spec)``, elementwise: the one ``dz``
    of advrobust (:func:`advrobust.metrics.delta_z` is this function).

    Tensors: in their dtype and on their device, differentiable, values unchecked (a check would be
    a host sync on a GPU). NumPy arrays and sequences: float64 NumPy, checked.

    Raises:
        ValueError: (arrays and sequences) shapes differ, or ``z_spec <= -1``.

    Example:
        >>> delta_z([0.11, 1.2], [0.1, 1.0]).round(6).tolist()
        [0.009091, 0.1]
    """
    if isinstance(z_phot, Tensor) or isinstance(z_spec, Tensor):
        return (z_phot - z_spec) / (1 + z_spec)
    zp, zs = np.asarray(z_phot, dtype=np.float64), np.asarray(z_spec, dtype=np.float64)
    if zp.shape != zs.shape:
        raise ValueError(f"z_phot and z_spec must have the same length, got {zp.size} and {zs.size}")
    if np.any(zs <= -1):
        raise ValueError("z_spec must be greater than -1")
    return (zp - zs) / (1 + zs)
