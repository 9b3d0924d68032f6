"""The input rules shared by :mod:`advrobust.metrics`: functional metrics take NumPy, accumulating
metrics keep tensors on the device.

* :func:`as_numpy`: a checked (non-empty, 1-D, finite) NumPy array, for the functional metrics;
* :func:`as_rows`: a shape-checked 1-D tensor left on its device, for ``Metric.update`` (values
  are not checked there: a value check on a GPU tensor is a host sync; the functional metric
  applied in ``compute`` checks them once).
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["ArrayLike", "as_numpy", "as_rows"]

ArrayLike = Union[Tensor, np.ndarray, list, tuple]


def as_numpy(values: ArrayLike, name: str, dtype=np.float64) -> np.ndarray:
    """A non-empty, finite 1-D NumPy array from a tensor, array or sequence (the one input rule of
    the functional metrics); ``dtype=None`` keeps the input's dtype (e.g. integer labels).

    Raises:
        ValueError: not 1-D, empty, or NaN / infinite values.
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu()
        values = (values.double() if dtype is not None or values.is_floating_point() else values).numpy()
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def as_rows(values: ArrayLike, name: str, dtype: Optional[torch.dtype] = None) -> Tensor:
    """A non-empty 1-D tensor (detached) on the input's device (NumPy arrays and sequences: on the
    CPU), cast to ``dtype`` when given. Only the shape is checked: no host sync.

    Raises:
        ValueError: not 1-D, or empty.
    """
    # torch.tensor copies: an array may be read-only
    t = values.detach() if isinstance(values, Tensor) else torch.tensor(np.asarray(values))
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    return t if dtype is None else t.to(dtype)
