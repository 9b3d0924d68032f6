"""One batch through one model, clean and under one attack: the step shared by the evaluation grid
(:func:`advrobust.evaluate.evaluate_grid`, which scores batches into metrics) and the survey scan
(:mod:`advrobust.scan`, which writes a row per object).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from advrobust import redshift
from advrobust.checks import check_finite, check_finite_output
from advrobust.modes import eval_mode

__all__ = ["Outcome", "predict", "attack_batch"]


def predict(model: nn.Module, x: Tensor, extra: Sequence[Tensor] = (), *,
            latent: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
    """The model's logits ``(B, K)`` and, where it has ``features`` and ``latent`` is set, its latent
    vectors ``(B, D)`` (else None), in eval mode without gradients (the model's mode is restored).

    Raises:
        ValueError: NaN/Inf logits (a broken model: no prediction is read from them).
    """
    with torch.no_grad(), eval_mode(model):
        if latent and callable(getattr(model, "features", None)):
            features = model.features(x, *extra)
            logits = model.head(features)
        else:
            logits, features = model(x, *extra), None
    check_finite_output(type(model).__name__, logits)
    return logits, features


@dataclass
class Outcome:
    """One attack on one batch of ``B`` images.

    Attributes:
        x_adv: ``(B, C, H, W)`` perturbed images (image units).
        logits: ``(B, K)`` the model's logits on them.
        features: ``(B, D)`` latent vectors, or None.
        success: ``(B,)`` bool: the attack's own verdict (``atk.run``), else the task's rule.
        iterations: ``(B,)`` one-pixel iterations needed, or None for other attacks.
    """

    x_adv: Tensor
    logits: Tensor
    features: Optional[Tensor]
    success: Tensor
    iterations: Optional[Tensor] = None


def attack_batch(model: nn.Module, attack: Callable[..., Tensor], x: Tensor, y: Tensor,
                 extra: Sequence[Tensor] = (), *, task: str, latent: bool = True,
                 outlier_threshold: float = 0.05) -> Outcome:
    """Perturb ``x`` with ``attack`` and predict on the result.

    Args:
        model: the model attacked (called as ``model(x, *extra)``).
        attack: through the attack contract: ``attack.run(x, y, *extra)`` when it has ``run`` (its
            ``success`` and, for the one-pixel attack, ``iterations`` are kept), else
            ``attack(x, y, *extra) -> x_adv`` (a natural perturbation).
        x: ``(B, C, H, W)`` images; y: ``(B,)`` labels (classifier) or redshifts (photo-z).
        extra: further model inputs, not perturbed.
        task: ``"classifier"`` or ``"photoz"``: the success rule for an attack without ``run``:
            the predicted class differs from ``y``, or ``|dz| > outlier_threshold`` (photo-z models
            need a ``bin_centres`` buffer).
    """
    iterations = None
    if callable(getattr(attack, "run", None)):
        result = attack.run(x, y, *extra)
        x_adv, success = result.x_adv, result.success
        iterations = getattr(result, "iterations", None)
        logits, features = predict(model, x_adv, extra, latent=latent)
    else:
        x_adv = attack(x, y, *extra)
        check_finite("attack_batch", x_adv, "the perturbed images",
                     "the perturbation overflowed the images' dtype (an eps far beyond the pixel values?)")
        logits, features = predict(model, x_adv, extra, latent=latent)
        if task == "photoz":
            z_phot = redshift.z_phot(logits, model.bin_centres)
            success = redshift.delta_z(z_phot, y.to(z_phot.dtype)).abs() > outlier_threshold
        else:
            success = logits.argmax(1) != y
    return Outcome(x_adv, logits, features, success, iterations)
