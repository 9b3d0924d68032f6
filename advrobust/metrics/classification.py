"""Classification metrics (Ciprijanovic et al. 2022, Tables 2 and 4).

Accuracy, and precision, recall and F1 per class averaged with weights equal to the number of
true instances of each class ("weighted" averaging). A class with no prediction has precision 0
(and F1 0); a class with no true instance has weight 0. Everything is derived from the confusion
matrix, so an accumulating metric only has to sum confusion matrices.
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from advrobust.metrics.helpers import ArrayLike, as_numpy

__all__ = ["confusion_counts", "confusion_matrix", "classification_metrics", "metrics_from_confusion"]


def confusion_counts(y_true: Tensor, y_pred: Tensor, n_classes: int) -> Tuple[Tensor, Tensor]:
    """The confusion counts of ``(N,)`` integer tensors, on their device and without a host sync.

    Returns:
        ``(n_classes, n_classes)`` int64 counts (row = true class, column = predicted class) of the
        pairs with both indices in ``[0, n_classes)``, and the int64 count of the other pairs (left
        out; the caller decides whether that is an error).
    """
    k = int(n_classes)
    t, p = y_true.long(), y_pred.long()
    inside = (t >= 0) & (t < k) & (p >= 0) & (p < k)
    flat = torch.where(inside, t * k + p, torch.full_like(t, k * k))  # k * k: the "outside" bucket
    counts = torch.zeros(k * k + 1, dtype=torch.int64, device=t.device).index_add_(0, flat, torch.ones_like(flat))
    return counts[:-1].view(k, k), counts[-1]


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; row = true class, column = predicted class.

    Args:
        y_true, y_pred: ``(N,)`` integer class indices in ``[0, n_classes)``.

    Raises:
        ValueError: lengths differ, empty input, or a class index outside ``[0, n_classes)``.
        TypeError: non-integer labels or ``n_classes``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise TypeError(f"confusion_matrix: n_classes must be a positive int, got {n_classes!r}")
    t = as_numpy(y_true, "y_true", dtype=None)
    p = as_numpy(y_pred, "y_pred", dtype=None)
    for what, a in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"confusion_matrix: {what} must hold integer class indices, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= n_classes:
            raise ValueError(f"confusion_matrix: {what} has class indices outside [0, {n_classes}): "
                             f"min {a.min()}, max {a.max()}")
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: y_true and y_pred must have the same length, got {t.size} and {p.size}")
    counts, _ = confusion_counts(torch.from_numpy(t.astype(np.int64)), torch.from_numpy(p.astype(np.int64)),
                                 int(n_classes))
    return counts.numpy()


def metrics_from_confusion(cm: np.ndarray) -> Dict[str, Union[float, np.ndarray]]:
    """``accuracy``, weighted ``precision`` / ``recall`` / ``f1`` and per-class arrays from a confusion matrix.

    Returns:
        dict with floats ``accuracy``, ``precision``, ``recall``, ``f1`` (all in [0, 1]), ``n``
        (sample count), and ``confusion`` (the matrix), ``per_class_precision``,
        ``per_class_recall``, ``per_class_f1``, ``support`` (true counts) as ``(n_classes,)`` arrays.

    Raises:
        ValueError: not a square matrix of counts, or no samples at all.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or np.any(cm < 0):
        raise ValueError(f"metrics_from_confusion: expected a square matrix of counts, got shape {cm.shape}")
    n = cm.sum()
    if n == 0:
        raise ValueError("metrics_from_confusion: the confusion matrix holds no samples")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    w = support / n
    return {
        "accuracy": float(tp.sum() / n),
        "precision": float(w @ precision),
        "recall": float(w @ recall),
        "f1": float(w @ f1),
        "n": int(n),
        "confusion": cm.astype(np.int64),
        "per_class_precision": precision, "per_class_recall": recall, "per_class_f1": f1,
        "support": support.astype(np.int64),
    }


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> Dict[str, Union[float, np.ndarray]]:
    """Accuracy, weighted precision / recall / F1 and the confusion matrix of a labelled sample.

    Args:
        y_true: ``(N,)`` true class indices; y_pred: ``(N,)`` predicted class indices (tensors,
            arrays or sequences of ints); n_classes: number of classes.

    Returns:
        see :func:`metrics_from_confusion`.

    Raises:
        see :func:`confusion_matrix`.

    Example:
        >>> classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], 3)["accuracy"]
        0.75
    """
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, n_classes))
