"""Task losses of the trainer: per-sample, ``loss(output, y) -> (B,)``.

Photo-z: :class:`advrobust.attacks.PhotozBinCE` (cross-entropy on the redshift bin, Campagne 2021),
by name ``"photoz_ce"``; classes: ``"ce"`` (:class:`advrobust.attacks.CrossEntropy`) or
:class:`WeightedCrossEntropy` with :func:`inverse_frequency_weights` (Ciprijanovic et al. 2022
weight the classes of their unbalanced morphology sample). The names resolve through
:func:`advrobust.attacks.losses.resolve_loss`, the one registry of losses.
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks.losses import LossFn, resolve_loss

__all__ = ["WeightedCrossEntropy", "inverse_frequency_weights", "task_loss"]


class WeightedCrossEntropy:
    """Per-sample cross-entropy of logits ``(B, n_classes)`` against labels ``(B,)``, each sample
    multiplied by the weight of its class.

    Args:
        class_weights: ``(n_classes,)`` non-negative weights (see :func:`inverse_frequency_weights`).

    Raises:
        ValueError: weights not 1-D, negative or not finite.
    """

    success_objective = "classifier"

    def __init__(self, class_weights: Tensor) -> None:
        w = torch.as_tensor(class_weights, dtype=torch.float32)
        if w.dim() != 1 or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"WeightedCrossEntropy: class_weights must be a 1-D tensor of finite values >= 0, "
                             f"got {class_weights!r}")
        self.class_weights = w

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        w = self.class_weights.to(device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits, y, reduction="none") * w[y]

    def __repr__(self) -> str:
        return f"WeightedCrossEntropy({self.class_weights.tolist()})"


def inverse_frequency_weights(labels: Tensor, n_classes: int) -> Tensor:
    """Class weights ``N / (n_classes * count_c)`` (mean weight over the samples is 1), float32 ``(n_classes,)``.

    Raises:
        ValueError: a class in ``range(n_classes)`` has no sample.
    """
    counts = torch.bincount(torch.as_tensor(labels).reshape(-1).long(), minlength=n_classes)[:n_classes].float()
    if bool((counts == 0).any()):
        raise ValueError(f"inverse_frequency_weights: classes {torch.nonzero(counts == 0).flatten().tolist()} "
                         "have no sample; their weight would be infinite")
    return counts.sum() / (n_classes * counts)


def task_loss(loss: Union[str, LossFn], model: nn.Module) -> LossFn:
    """A loss name (``"ce"``, ``"photoz_ce"``, ``"photoz_dz"``) or per-sample callable, bound to the
    model's redshift binning where it needs one."""
    return resolve_loss(loss, model)
