"""Loss hooks of the gradient attacks and objectives that judge an attack's success.

A gradient attack (:class:`~advrobust.attacks.FGSM`, :class:`~advrobust.attacks.PGD`,
:class:`~advrobust.attacks.PGDL2`) *ascends* ``loss(output, y)`` (untargeted) or descends it
(``targeted=True``, ``y`` is then the target). ``output`` is whatever the model returns for
``model(x_adv, *extra)``; the loss returns one value per sample, shape ``(B,)`` (a scalar is
accepted too). Built-ins, selectable by name:

* ``"ce"`` — :class:`CrossEntropy`: classifiers, ``y`` class indices ``(B,)``;
* ``"photoz_ce"`` — :class:`PhotozBinCE`: Campagne (2021)'s training loss, cross-entropy of the
  redshift-bin logits against the bin holding ``y`` (spectroscopic redshifts ``(B,)`` or bin indices);
* ``"photoz_dz"`` — :class:`PhotozDeltaZ`: ``|dz|`` with ``dz = (z_phot - z) / (1 + z)`` and
  ``z_phot`` the p.d.f.-weighted mean of the bin centres (Campagne 2021, section 2).

An *objective* ``objective(output, y) -> (fitness, success)``, both ``(N,)``, scores the
candidates of the one-pixel attack (fitness, lower is better: what :func:`advrobust.ops.de_select_`
keeps) and says, for every attack's :meth:`~advrobust.attacks.Attack.run`, which samples are
fooled (success, a bool per sample). Built-ins: ``"classifier"`` (:class:`ClassifierObjective`)
and ``"photoz"`` (:class:`PhotozObjective`, ``|dz| > 0.05``, the outlier cut of Pasquet et al.
2019 and Campagne 2021). A loss names the objective that judges it in its ``success_objective``
attribute (``"classifier"`` for ``"ce"``, ``"photoz"`` for the photo-z losses).

Photo-z hooks take the binning (:mod:`advrobust.redshift`) from the model's ``bin_centres``
(and ``bin_edges``) through :meth:`bind`, or from the constructor.
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust import redshift
from advrobust.checks import check_class_labels, check_number, check_redshifts

__all__ = [
    "CrossEntropy", "PhotozBinCE", "PhotozDeltaZ", "ClassifierObjective", "PhotozObjective",
    "resolve_loss", "resolve_objective", "check_targets",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
ObjectiveFn = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


class _PhotozHook:
    """Mixin: photo-z hooks take their binning tensors from the constructor or from the model.

    ``_binning`` names the attributes a hook uses (``"bin_centres"`` ``(n_bins,)``,
    ``"bin_edges"`` ``(n_bins + 1,)``); ``_required`` those :meth:`bind` must find.
    """

    _binning: Tuple[str, ...] = ("bin_centres",)
    _required: Tuple[str, ...] = ("bin_centres",)
    success_objective = "photoz"

    def bind(self, model: nn.Module) -> "_PhotozHook":
        """This hook with the model's binning tensors where none were given (a copy: the caller's
        object is left unbound, so it can be reused on a model with other bins); raise if a
        required one is missing."""
        found = {k: getattr(model, k, None) for k in self._binning if getattr(self, k) is None}
        found = {k: v for k, v in found.items() if isinstance(v, Tensor)}
        missing = [k for k in self._required if getattr(self, k) is None and k not in found]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: the model ({type(model).__name__}) has no `{missing[0]}`; pass "
                f"{missing[0]}=<tensor> explicitly (see advrobust.redshift)")
        if not found:
            return self
        bound = copy.copy(self)
        vars(bound).update(found)
        return bound

    def check_targets(self, name: str, output: Tensor, y: Tensor) -> None:
        """Redshifts ``y`` > -1 (a -99 marker would give a meaningless dz); int64 bin indices
        within the model's ``output.shape[1]`` bins."""
        if y.is_floating_point():
            check_redshifts(name, y)
        else:
            check_class_labels(name, y, output.shape[1])

    def _z_phot(self, logits: Tensor) -> Tensor:
        if self.bin_centres is None:
            raise ValueError(f"{type(self).__name__}: bin_centres unknown; pass them, or use the hook "
                             "returned by bind(model)")
        return redshift.z_phot(logits, self.bin_centres)

    def _abs_dz(self, logits: Tensor, y: Tensor) -> Tensor:
        """``|dz|`` of ``z_phot(logits)`` against the redshifts ``y``, shape ``(N,)``.

        Raises:
            TypeError: integer ``y`` (bin indices are not redshifts: ``bin_centres[y]`` are).
        """
        if not y.is_floating_point():
            raise TypeError(f"{type(self).__name__}: y must hold redshifts (float), got {y.dtype}: integer values "
                            "would be read as redshifts 0, 1, 2, ...; for bin indices pass bin_centres[y]")
        return redshift.delta_z(self._z_phot(logits), y.to(logits.dtype)).abs()


class CrossEntropy:
    """Per-sample cross-entropy of classifier logits ``(B, n_classes)`` against labels ``(B,)``."""

    success_objective = "classifier"

    def check_targets(self, name: str, output: Tensor, y: Tensor) -> None:
        """Labels in ``[0, n_classes)``: cross-entropy gives the label -100 a zero loss and gradient."""
        check_class_labels(name, y, output.shape[1])

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def __repr__(self) -> str:
        return "CrossEntropy()"


class PhotozBinCE(_PhotozHook):
    """Campagne (2021)'s photo-z loss: cross-entropy of the bin logits ``(B, n_bins)`` against the
    one-hot bin of ``y``.

    Args:
        bin_edges: ``(n_bins + 1,)`` redshift-bin edges; default: the model's ``bin_edges``
            (:class:`advrobust.models.PhotozModel` has them).

    ``y`` holds redshifts ``(B,)`` (float: the bin holding each, by
    :func:`advrobust.redshift.redshift_to_bin`) or bin indices (int64, no edges needed).
    """

    _binning = ("bin_edges",)
    _required = ()

    def __init__(self, bin_edges: Optional[Tensor] = None) -> None:
        self.bin_edges = bin_edges
        self._said_range = False

    def check_targets(self, name: str, output: Tensor, y: Tensor) -> None:
        """:meth:`_PhotozHook.check_targets`, and a warning (once per loss) with the count of float
        redshifts outside the bins' range ``[edges[0], edges[-1]]``: the loss counts them in the first or
        last bin, so the model learns "the edge" for them."""
        super().check_targets(name, output, y)
        if self._said_range or not y.is_floating_point() or self.bin_edges is None:
            return
        lo, hi = float(self.bin_edges[0]), float(self.bin_edges[-1])
        below, above = int((y < lo).sum()), int((y > hi).sum())
        if below or above:
            self._said_range = True
            examples = y[(y < lo) | (y > hi)][:3].tolist()
            warnings.warn(f"{name}: {below + above} of {y.numel()} redshifts lie outside the model's range "
                          f"[{lo:g}, {hi:g}] ({below} below, {above} above, e.g. {examples}); "
                          "the loss counts them in its first / last bin (said once)", RuntimeWarning, stacklevel=3)

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        if y.is_floating_point():
            if self.bin_edges is None:
                raise ValueError("PhotozBinCE: float redshifts need bin_edges; pass them, or use a model "
                                 "with a `bin_edges` attribute (advrobust.models.PhotozModel), or int64 bins")
            y = redshift.redshift_to_bin(y, self.bin_edges)
        return F.cross_entropy(logits, y, reduction="none")

    def __repr__(self) -> str:
        return "PhotozBinCE()"


class PhotozDeltaZ(_PhotozHook):
    """``|dz| = |z_phot - y| / (1 + y)`` per sample, ``z_phot`` = p.d.f.-weighted mean of bin centres.

    Untargeted, an attack maximises the redshift error against ``y = z_spec``; targeted
    (``targeted=True``), it pulls ``z_phot`` toward the target redshift ``y``.

    Args:
        bin_centres: ``(n_bins,)`` redshift-bin centres; default: the model's ``bin_centres``.
    """

    def __init__(self, bin_centres: Optional[Tensor] = None) -> None:
        self.bin_centres = bin_centres

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        return self._abs_dz(logits, y)

    def __repr__(self) -> str:
        return "PhotozDeltaZ()"


class ClassifierObjective:
    """Fitness (one-pixel, Su et al.; lower is better) and success for classifiers.

    Untargeted: fitness = softmax probability of the true class ``y``, success = argmax != y.
    Targeted: fitness = -probability of the target ``y``, success = argmax == y.
    """

    def __init__(self, targeted: bool = False) -> None:
        self.targeted = bool(targeted)

    check_targets = CrossEntropy.check_targets

    def __call__(self, logits: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        prob = torch.softmax(logits, dim=1).gather(1, y.view(-1, 1)).squeeze(1)
        hit = logits.argmax(dim=1) == y
        return (-prob, hit) if self.targeted else (prob, ~hit)

    def __repr__(self) -> str:
        return f"ClassifierObjective(targeted={self.targeted})"


class PhotozObjective(_PhotozHook):
    """Fitness (one-pixel; lower is better) and success for photo-z p.d.f. models.

    Untargeted (``y = z_spec``): fitness = -|dz| (maximise the redshift error), success when
    ``|dz| > threshold`` — by default 0.05, the catastrophic-outlier cut of the outlier fraction
    eta (Pasquet et al. 2019; Campagne 2021).
    Targeted (``y`` = target redshift): fitness = ``|z_phot - y| / (1 + y)``, success when it is
    below ``threshold``.

    Args:
        bin_centres: ``(n_bins,)`` bin centres; default: the model's ``bin_centres``.
        targeted: push toward ``y`` instead of away from it.
        threshold: the ``|dz|`` success cut (dimensionless).
    """

    def __init__(self, bin_centres: Optional[Tensor] = None, *, targeted: bool = False,
                 threshold: float = 0.05) -> None:
        self.bin_centres = bin_centres
        self.targeted = bool(targeted)
        self.threshold = check_number("PhotozObjective", "threshold", threshold, positive=True)

    def __call__(self, logits: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        dz = self._abs_dz(logits, y)
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
    return _bind(loss, model)


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
    return _bind(objective, model)


def check_targets(name: str, hook, output: Tensor, y: Tensor) -> None:
    """``hook.check_targets(name, output, y)`` for the built-in losses and objectives (labels in
    ``[0, n_classes)``, redshifts > -1); a user's callable without that method is not checked.
    ``output`` is the model's output on (a few of) the images, for the number of classes."""
    check = getattr(hook, "check_targets", None)
    if check is not None and isinstance(output, Tensor) and output.dim() >= 2:
        check(name, output, y)


def _bind(hook, model: nn.Module):
    """``hook.bind(model)`` where the hook has one (a user's hook may bind in place and return None)."""
    bound = hook.bind(model) if hasattr(hook, "bind") else None
    return hook if bound is None else bound
