"""Loss hooks of the gradient attacks and objectives of the one-pixel attack.

A gradient attack (:class:`~advrobust.attacks.FGSM`, :class:`~advrobust.attacks.PGD`,
:class:`~advrobust.attacks.PGDL2`) *ascends* ``loss(output, y)`` (untargeted) or descends it
(``targeted=True``, ``y`` is then the target). ``output`` is whatever the model returns for
``model(x_adv, *extra)``; the loss returns one value per sample, shape ``(B,)`` (a scalar is
accepted too). Built-ins, selectable by name:

* ``"ce"`` — :class:`CrossEntropy`: classifiers, ``y`` class indices ``(B,)``;
* ``"photoz_ce"`` — :class:`PhotozBinCE`: 001's training loss, cross-entropy of the redshift-bin
  logits against the bin holding ``y`` (spectroscopic redshifts ``(B,)`` or bin indices);
* ``"photoz_dz"`` — :class:`PhotozDeltaZ`: ``|dz|`` with ``dz = (z_phot - z) / (1 + z)`` and
  ``z_phot`` the p.d.f.-weighted mean of the bin centres (001, section 2).

The one-pixel attack instead scores candidates with an *objective*
``objective(output, y) -> (fitness, success)``, both ``(N,)``: fitness lower is better (what
:func:`advrobust.ops.de_select_` keeps), success a bool per candidate read from the same forward
pass. Built-ins: ``"classifier"`` (:class:`ClassifierObjective`) and ``"photoz"``
(:class:`PhotozObjective`).

Photo-z hooks need the bin centres; they take them from the model's ``bin_centres`` buffer
(:class:`advrobust.models.PhotozModel`) through :meth:`bind`, or from the constructor.
"""
from __future__ import annotations

import copy
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CrossEntropy", "PhotozBinCE", "PhotozDeltaZ", "ClassifierObjective", "PhotozObjective",
    "resolve_loss", "resolve_objective", "redshift_to_bin",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
ObjectiveFn = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


def redshift_to_bin(z: Tensor, bin_centres: Tensor) -> Tensor:
    """Index of the bin whose centre is nearest to each redshift, int64 of ``z``'s shape.

    For 001's equal-width bins this is the bin holding ``z`` (clamped to the range).
    """
    centres = bin_centres.to(device=z.device, dtype=z.dtype)
    edges = 0.5 * (centres[1:] + centres[:-1])
    return torch.bucketize(z.contiguous(), edges)


class _NeedsBinCentres:
    """Mixin: photo-z hooks take the bin centres from the constructor or from the model."""

    bin_centres: Optional[Tensor]

    def bind(self, model: nn.Module) -> "_NeedsBinCentres":
        """This hook with ``model.bin_centres`` when no centres were given (a copy: the caller's object
        is left unbound, so it can be reused on a model with other bins); raise if there are none."""
        if self.bin_centres is not None:
            return self
        centres = getattr(model, "bin_centres", None)
        if not isinstance(centres, Tensor):
            raise ValueError(
                f"{type(self).__name__}: the model ({type(model).__name__}) has no `bin_centres` "
                "buffer; pass bin_centres=<(n_bins,) tensor of redshift-bin centres> explicitly")
        bound = copy.copy(self)
        bound.bin_centres = centres
        return bound

    def _z_phot(self, logits: Tensor) -> Tensor:
        if self.bin_centres is None:
            raise ValueError(f"{type(self).__name__}: bin_centres unknown; pass them, or use the hook "
                             "returned by bind(model)")
        if logits.dim() != 2 or logits.shape[1] != self.bin_centres.numel():
            raise ValueError(f"{type(self).__name__}: expected logits of shape (N, {self.bin_centres.numel()}) "
                             f"(one per redshift bin), got {tuple(logits.shape)}")
        centres = self.bin_centres.to(device=logits.device, dtype=logits.dtype)
        return torch.softmax(logits, dim=1) @ centres


class CrossEntropy:
    """Per-sample cross-entropy of classifier logits ``(B, n_classes)`` against labels ``(B,)``."""

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def __repr__(self) -> str:
        return "CrossEntropy()"


class PhotozBinCE(_NeedsBinCentres):
    """001's photo-z loss: cross-entropy of the bin logits ``(B, n_bins)`` against the one-hot bin of ``y``.

    Args:
        bin_centres: ``(n_bins,)`` redshift-bin centres; default: the model's ``bin_centres``.

    ``y`` holds redshifts ``(B,)`` (float: converted to the nearest bin) or bin indices (int64).
    """

    def __init__(self, bin_centres: Optional[Tensor] = None) -> None:
        self.bin_centres = bin_centres

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        if y.is_floating_point():
            if self.bin_centres is None:
                raise ValueError("PhotozBinCE: float redshifts need bin_centres; pass them, or use the hook "
                                 "returned by bind(model)")
            y = redshift_to_bin(y, self.bin_centres)
        return F.cross_entropy(logits, y, reduction="none")

    def __repr__(self) -> str:
        return "PhotozBinCE()"


class PhotozDeltaZ(_NeedsBinCentres):
    """``|dz| = |z_phot - y| / (1 + y)`` per sample, ``z_phot`` = p.d.f.-weighted mean of bin centres.

    Untargeted, an attack maximises the redshift error against ``y = z_spec``; targeted
    (``targeted=True``), it pulls ``z_phot`` toward the target redshift ``y``.

    Args:
        bin_centres: ``(n_bins,)`` redshift-bin centres; default: the model's ``bin_centres``.
    """

    def __init__(self, bin_centres: Optional[Tensor] = None) -> None:
        self.bin_centres = bin_centres

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        z = y.to(logits.dtype)
        return (self._z_phot(logits) - z).abs() / (1.0 + z)

    def __repr__(self) -> str:
        return "PhotozDeltaZ()"


class ClassifierObjective:
    """One-pixel fitness for classifiers (Su et al.), lower is better.

    Untargeted: fitness = softmax probability of the true class ``y``, success = argmax != y.
    Targeted: fitness = -probability of the target ``y``, success = argmax == y.
    """

    def __init__(self, targeted: bool = False) -> None:
        self.targeted = bool(targeted)

    def __call__(self, logits: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        prob = torch.softmax(logits, dim=1).gather(1, y.view(-1, 1)).squeeze(1)
        hit = logits.argmax(dim=1) == y
        return (-prob, hit) if self.targeted else (prob, ~hit)

    def __repr__(self) -> str:
        return f"ClassifierObjective(targeted={self.targeted})"


class PhotozObjective(_NeedsBinCentres):
    """One-pixel fitness for photo-z p.d.f. models, lower is better.

    Untargeted (``y = z_spec``): fitness = -|dz| (maximise the redshift error), success when
    ``|dz| > threshold`` — by default 0.05, the catastrophic-outlier cut of 001's eta.
    Targeted (``y`` = target redshift): fitness = ``|z_phot - y| / (1 + y)``, success when it is
    below ``threshold``.

    Args:
        bin_centres: ``(n_bins,)`` bin centres; default: the model's ``bin_centres``.
        targeted: push toward ``y`` instead of away from it.
        threshold: the ``|dz|`` success cut (dimensionless).
    """

    def __init__(self, bin_centres: Optional[Tensor] = None, *, targeted: bool = False,
                 threshold: float = 0.05) -> None:
        if not threshold > 0:
            raise ValueError(f"PhotozObjective: threshold must be > 0, got {threshold}")
        self.bin_centres = bin_centres
        self.targeted = bool(targeted)
        self.threshold = float(threshold)

    def __call__(self, logits: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        z = y.to(logits.dtype)
        dz = (self._z_phot(logits) - z).abs() / (1.0 + z)
        if self.targeted:
            return dz, dz < self.threshold
        return -dz, dz > self.threshold

    def __repr__(self) -> str:
        return f"PhotozObjective(targeted={self.targeted}, threshold={self.threshold})"


_LOSSES = {"ce": CrossEntropy, "photoz_ce": PhotozBinCE, "photoz_dz": PhotozDeltaZ}


def resolve_loss(loss: Union[str, LossFn], model: nn.Module) -> LossFn:
    """A loss name (``"ce"``, ``"photoz_ce"``, ``"photoz_dz"``) or callable -> callable bound to ``model``."""
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {sorted(_LOSSES)} or a callable "
                             "(output, y) -> per-sample loss (B,)")
        loss = _LOSSES[loss]()
    if not callable(loss):
        raise TypeError(f"loss must be a name or a callable (output, y) -> (B,) loss, got {type(loss).__name__}")
    if hasattr(loss, "bind"):
        bound = loss.bind(model)
        loss = loss if bound is None else bound  # a user's hook may bind in place and return None
    return loss


def resolve_objective(objective: Union[str, ObjectiveFn], model: nn.Module, *, targeted: bool,
                      threshold: float = 0.05) -> ObjectiveFn:
    """``"classifier"``, ``"photoz"`` or a callable (output, y) -> (fitness, success) -> callable."""
    if isinstance(objective, str):
        if objective == "classifier":
            objective = ClassifierObjective(targeted)
        elif objective == "photoz":
            objective = PhotozObjective(targeted=targeted, threshold=threshold)
        else:
            raise ValueError(f"unknown objective {objective!r}; use 'classifier', 'photoz' or a callable "
                             "(output, y) -> (fitness (N,), success (N,) bool), fitness lower is better")
    if not callable(objective):
        raise TypeError(f"objective must be a name or a callable, got {type(objective).__name__}")
    if hasattr(objective, "bind"):
        bound = objective.bind(model)
        objective = objective if bound is None else bound
    return objective
