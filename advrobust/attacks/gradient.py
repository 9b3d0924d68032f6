"""Gradient attacks: FGSM, PGD-Linf (BIM, optional random start) and PGD-L2, on the fused ops.

Each step is one forward, one ``torch.autograd.grad`` with respect to the input only, and one
fused operator (:func:`advrobust.ops.linf_step` / :func:`advrobust.ops.l2_step`) that does the
step, the projection onto the eps-ball and the optional clamp in a single pass. Nothing else
runs per step: no ``.item()``, no host sync, no extra copies.

Strength units: ``eps`` and ``alpha`` are in image units, or, with ``unit=u`` (a float or a
per-channel ``(C,)`` tensor, e.g. the per-band sky sigma), in units of ``u``. The attack then runs on
the whitened image ``x_w = x / u[c]`` against ``model_w(x_w) = model(x_w * u[c], *extra)`` with
``lo / u``, ``hi / u``, and returns ``x_w_adv * u[c]`` clamped to [lo, hi]: exactly the attack on the
whitened problem, with the fused operators unchanged. L-inf: channel ``c`` moves by at most
``eps * u[c]`` (a per-band box). L2: the ball is ``||(x_adv - x) / u||_2 <= eps``, the Mahalanobis
(chi) norm in noise units for independent pixel noise of sigma ``u[c]``; a radius from
:func:`eps_l2_equal_volume` is then one in those units. The loss, ``success`` and the model hooks
(``bin_centres``) still use the caller's model on the real images.

``atk(x, y, *extra)`` returns the adversarial batch (nothing more is computed);
``atk.run(x, y, *extra)`` adds ``success`` from one more forward pass, judged by the objective
that matches the loss (``"ce"``: prediction flipped; photo-z losses: ``|dz| > 0.05``; see
:mod:`advrobust.attacks.losses`), or by ``objective=``.

References:
    Goodfellow et al. (2014), FGSM; Kurakin et al. (2016), BIM; Madry et al. (2017), PGD;
    Campagne (2021) (photo-z, sections 3.3-3.4: eps = 0.01, alpha = eps/10, L2 eps scaled by
    sqrt(2n/(e pi))); Mallam Garba, Susini and Kayo (student report; PGD-inf and PGD-2, 10
    steps, step 2/3 eps).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from advrobust import ops
from advrobust.attacks.base import NAN_OUTPUT_HINT, Attack
from advrobust.checks import (
    Bound, ScalarOrPerSample, Unit, broadcast_per_sample, channel_view, check_number, check_radius, check_unit,
    check_within_range, clamp_range, nonfinite_rows, per_sample, raise_nonfinite_rows, unit_per_channel,
)
from advrobust.attacks.losses import CrossEntropy, LossFn, ObjectiveFn, PhotozBinCE, PhotozDeltaZ, resolve_loss

__all__ = ["FGSM", "PGD", "PGDL2", "fgsm", "pgd", "pgd_l2", "eps_l2_equal_volume"]


_BUILTIN_LOSSES = (CrossEntropy, PhotozBinCE, PhotozDeltaZ)


def eps_l2_equal_volume(eps_inf: float, n: int) -> float:
    """L2 radius matching an L-inf radius, ``eps_inf * sqrt(2 n / (e pi))`` (Campagne 2021, Table 1 caption).

    Campagne (2021) scales eps by the change of eps-ball volume between the two norms in ``n``
    dimensions (Stirling's formula); it used ``n = 64**2`` (pixels per band) for its 5x64x64
    cubes.

    Args:
        eps_inf: L-inf radius (image units), >= 0.
        n: number of dimensions, >= 1.

    Example:
        >>> round(eps_l2_equal_volume(0.01, 64 * 64), 4)
        0.3096
    """
    check_number("eps_l2_equal_volume", "eps_inf", eps_inf)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"eps_l2_equal_volume: n must be an integer >= 1, got {n!r}")
    return float(eps_inf) * math.sqrt(2.0 * n / (math.e * math.pi))


class _GradientAttack(Attack):
    """Shared pieces: loss hook, targeted flag, per-sample eps/alpha, strength unit (whitening),
    random start, the step loop."""

    _step_op = None  # ops.linf_step or ops.l2_step

    def __init__(self, model: nn.Module, *, eps: ScalarOrPerSample, alpha: Optional[ScalarOrPerSample],
                 steps: int, random_start: bool, loss: Union[str, LossFn], targeted: bool,
                 lo: Bound, hi: Bound, generator: Optional[torch.Generator],
                 objective: Union[str, ObjectiveFn, None], channels_last: Optional[bool], unit: Unit) -> None:
        super().__init__(model, lo=lo, hi=hi, channels_last=channels_last)
        name = type(self).__name__
        self.eps = check_radius(name, "eps", eps)
        self.unit = check_unit(name, unit)
        self.alpha = None if alpha is None else check_radius(name, "alpha", alpha)
        self.steps = int(check_number(name, "steps", steps, integer=True))
        self.random_start = bool(random_start)
        self.targeted = bool(targeted)
        self.loss = resolve_loss(loss, model)
        self.objective = getattr(self.loss, "success_objective", None) if objective is None else objective
        self.generator = generator

    def _radii(self, x: Tensor) -> Tuple[ScalarOrPerSample, ScalarOrPerSample]:
        name = type(self).__name__
        eps = per_sample(name, "eps", self.eps, x)
        alpha = eps / 10.0 if self.alpha is None else per_sample(name, "alpha", self.alpha, x)
        return eps, alpha

    def _objective_grad(self, x_adv: Tensor, y: Optional[Tensor], extra: Tuple[Tensor, ...],
                        channels_last: bool, scale) -> Tuple[Tensor, Optional[Tensor]]:
        """Gradient of the (signed) summed loss with respect to x_adv only, and the (B,) flags of the
        samples whose model output is NaN/Inf (None when the output is not a (B, ...) tensor).
        ``scale`` (None, or the unit viewed (1, C, 1, ..., 1)): the model gets ``x_adv * scale``."""
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            x_in = x_adv if scale is None else x_adv * scale
            out = self.model(self._model_input(x_in, channels_last), *extra)
            loss = self.loss(out, y).sum()
            if self.targeted:
                loss = -loss
            (grad,) = torch.autograd.grad(loss, x_adv)
        return grad, nonfinite_rows(out.detach() if isinstance(out, Tensor) else out, x_adv.shape[0])

    def _random_start(self, x: Tensor, eps: ScalarOrPerSample, lo: Bound, hi: Bound) -> Tensor:
        raise NotImplementedError

    def forward(self, x, y, lo, hi, extra):
        if y is None and isinstance(self.loss, _BUILTIN_LOSSES):
            raise ValueError(f"{type(self).__name__}: y is required by the {self.loss!r} loss")
        name = type(self).__name__
        self._check_targets(x, y, extra)
        check_within_range(name, x, lo, hi)
        unit = unit_per_channel(name, self.unit, x)
        if unit is None:
            x_adv = self._steps(x, y, lo, hi, extra, None)
            return x.clone() if x_adv is x else x_adv.detach()  # steps=0: never hand back the caller's x
        # whitened problem: x_w = x / u, model_w(x_w) = model(x_w * u), bounds / u
        scale = channel_view(unit, x)
        x_w = x / scale
        lo_w, hi_w = (None if b is None else b / unit for b in (lo, hi))
        x_adv = self._steps(x_w, y, lo_w, hi_w, extra, scale)
        if x_adv is x_w:
            return x.clone()
        return clamp_range(x_adv.detach() * scale, lo, hi)  # (x_w * u could pass lo/hi by a rounding)

    def _steps(self, x, y, lo, hi, extra, scale) -> Tensor:
        """The attack from ``x`` within [lo, hi], the model called on ``x_adv * scale`` (scale None:
        on ``x_adv``); returns ``x`` itself when nothing ran (steps=0, no random start)."""
        name = type(self).__name__
        eps, alpha = self._radii(x)
        x_adv = self._random_start(x, eps, lo, hi) if self.random_start else x
        step = type(self)._step_op
        # the step arguments are checked once here, not once per step (no per-step syncs)
        params = ops.step_params(x, alpha=alpha, eps=eps, lo=lo, hi=hi, name=name)
        cl = self._use_channels_last(x)
        # NaN/Inf outputs and gradients are flagged per sample on the device and raised once at the
        # end (a NaN gradient leaves x unchanged under sign(), or makes the L2 step NaN)
        bad_out = bad_grad = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            grad, out_flags = self._objective_grad(x_adv.detach(), y, extra, cl, scale)
            if out_flags is not None:
                bad_out = bad_out | out_flags
            bad_grad = bad_grad | nonfinite_rows(grad, x.shape[0])
            x_adv = step(x_adv.detach(), grad, x, params=params)
        raise_nonfinite_rows(name, bad_out, "the model's output", NAN_OUTPUT_HINT)
        raise_nonfinite_rows(name, bad_grad, "the gradient of the loss", NAN_OUTPUT_HINT)
        return x_adv


class PGD(_GradientAttack):
    r"""Projected gradient descent in the L-inf ball (BIM; Madry et al. with ``random_start``).

    Distance: L-inf. Each step, fused in :func:`advrobust.ops.linf_step`::

        x_adv <- clamp(clip(x_adv + alpha * sign(grad_x loss), x - eps, x + eps), lo, hi)

    Args:
        model: any ``nn.Module``, called as ``model(x_adv, *extra)``.
        eps: L-inf radius in image units (or in ``unit``), float or per-sample ``(B,)`` tensor, >= 0
            (Campagne 2021 uses 0.01).
        alpha: step size, same units, float or ``(B,)``; default ``eps / 10`` as in Campagne (2021,
            section 3.4) — torchattacks defaults to 2/255, Mallam Garba, Susini and Kayo use ``2 * eps / 3``.
        steps: number of iterations (Campagne 2021: 10 to 40; Mallam Garba, Susini and Kayo: 10).
        random_start: start from ``x + U[-eps, eps]`` (per sample eps, times ``u[c]`` with a unit;
            clamped to lo/hi).
        loss: ``"ce"``, ``"photoz_ce"``, ``"photoz_dz"`` or a callable ``(output, y) -> (B,)``
            (see :mod:`advrobust.attacks.losses`); ascended, or descended when ``targeted``.
        targeted: ``y`` holds targets; the attack minimises the loss toward them.
        lo, hi: valid range: None (no clamp, default), float or per-channel ``(C,)`` tensor.
        generator: ``torch.Generator`` for the random start (reproducibility).
        objective: how :meth:`run` judges success: ``"classifier"``, ``"photoz"`` or a callable
            ``(output, y) -> (fitness, success)`` (:mod:`advrobust.attacks.losses`); default the
            loss's ``success_objective`` (``"ce"`` -> classifier, photo-z losses -> photoz).
        channels_last: model input memory format, see :class:`~advrobust.attacks.Attack`.
        unit: the unit of ``eps`` and ``alpha``: None (image units, default), a float or a per-channel
            ``(C,)`` tensor ``u`` (> 0, image units; e.g. the per-band sky sigma, on x's device). Channel
            ``c`` then moves by at most ``eps * u[c]`` (see the module docstring: the attack is run on
            ``x / u``).

    Shape:
        x: ``(B, ...)`` float, any units; y: ``(B, ...)``; extra: tensors ``(B, ...)`` passed to
        the model unperturbed (e.g. E(B-V)); ``atk(...)`` returns ``(B, ...)`` like x, detached;
        ``atk.run(...)`` an :class:`~advrobust.attacks.AttackResult` (``x_adv``, ``success`` ``(B,)``).

    Example:
        >>> atk = PGD(model, eps=0.01, steps=10, random_start=True)
        >>> x_adv = atk(images, labels)
        >>> res = PGD(photoz_model, eps=0.01, loss="photoz_ce").run(images, z_spec, ebv)
        >>> res.success_rate  # fraction with |dz| > 0.05
        >>> sky = torch.tensor([6.2e-4, 2.9e-4, 3.4e-4, 5.2e-4, 9.8e-4])  # ugriz sky sigma
        >>> x_adv = PGD(photoz_model, eps=2.0, unit=sky, loss="photoz_ce")(images, z_spec, ebv)  # 2 sigma/band
    """

    _step_op = staticmethod(ops.linf_step)

    def __init__(self, model: nn.Module, eps: ScalarOrPerSample = 0.01, alpha: Optional[ScalarOrPerSample] = None,
                 steps: int = 10, random_start: bool = False, *, loss: Union[str, LossFn] = "ce",
                 targeted: bool = False, lo: Bound = None, hi: Bound = None,
                 generator: Optional[torch.Generator] = None, objective: Union[str, ObjectiveFn, None] = None,
                 channels_last: Optional[bool] = None, unit: Unit = None) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, loss=loss,
                         targeted=targeted, lo=lo, hi=hi, generator=generator, objective=objective,
                         channels_last=channels_last, unit=unit)

    def _random_start(self, x, eps, lo, hi):
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=self.generator)
        return clamp_range(x + (2.0 * u - 1.0) * broadcast_per_sample(eps, x), lo, hi)


class FGSM(PGD):
    r"""Fast gradient sign method (Goodfellow et al. 2014; Campagne 2021, section 3.3).

    Distance: L-inf. One step from x: ``x_adv = clamp(x + eps * sign(grad_x loss), lo, hi)``,
    computed by :func:`advrobust.ops.linf_step` with ``alpha = eps``.

    Args:
        model: any ``nn.Module``, called as ``model(x, *extra)``.
        eps: L-inf radius in image units (or in ``unit``), float or per-sample ``(B,)`` tensor
            (Campagne 2021: 0.01). With a unit ``u``: ``x_adv = clamp(x + eps * u[c] * sign(grad_x loss), lo, hi)``.
        loss, targeted, lo, hi, objective, channels_last, unit: as :class:`PGD`.

    Example:
        >>> x_adv = FGSM(model, eps=0.01)(images, labels)
    """

    def __init__(self, model: nn.Module, eps: ScalarOrPerSample = 0.01, *, loss: Union[str, LossFn] = "ce",
                 targeted: bool = False, lo: Bound = None, hi: Bound = None,
                 objective: Union[str, ObjectiveFn, None] = None, channels_last: Optional[bool] = None,
                 unit: Unit = None) -> None:
        super().__init__(model, eps=eps, alpha=None, steps=1, random_start=False, loss=loss, targeted=targeted,
                         lo=lo, hi=hi, objective=objective, channels_last=channels_last, unit=unit)

    def _radii(self, x):
        eps = per_sample(type(self).__name__, "eps", self.eps, x)
        return eps, eps


class PGDL2(_GradientAttack):
    r"""Projected gradient descent in the L2 ball (Madry et al.; Campagne 2021, eq. 8; the PGD-2 of
    Mallam Garba, Susini and Kayo).

    Distance: L2, per sample over all non-batch dimensions. Each step, fused in
    :func:`advrobust.ops.l2_step`::

        x_adv <- clamp(x + P_eps(x_adv - x + alpha * g / ||g||_2), lo, hi),
        P_eps(d) = eps * d / max(eps, ||d||_2)

    A sample whose gradient is exactly zero does not move.

    Args:
        model: any ``nn.Module``.
        eps: L2 radius in image units, float or ``(B,)`` tensor. To match an L-inf radius as
            Campagne (2021) does, use :func:`eps_l2_equal_volume` (``eps_inf * sqrt(2n/(e pi))``).
            With a unit ``u`` the ball is ``||(x_adv - x) / u[c]||_2 <= eps`` (the Mahalanobis, or chi,
            norm in noise units; eps and :func:`eps_l2_equal_volume` then in units of ``u``).
        alpha: L2 step length, default ``eps / 10`` (as the L-inf attack; Mallam Garba, Susini and
            Kayo use 2/3 eps).
        steps: iterations (Campagne 2021 needed 40 for an L-inf-like effect; default 10).
        random_start: start from a point drawn uniformly in the eps-ball (direction Gaussian,
            radius ``eps * u**(1/n)``, n = elements per sample), then clamped to lo/hi.
        loss, targeted, lo, hi, generator, objective, channels_last, unit: as :class:`PGD`.

    Example:
        >>> eps = eps_l2_equal_volume(0.01, 64 * 64)
        >>> x_adv = PGDL2(model, eps=eps, steps=40)(images, labels)
    """

    _step_op = staticmethod(ops.l2_step)

    def __init__(self, model: nn.Module, eps: ScalarOrPerSample, alpha: Optional[ScalarOrPerSample] = None,
                 steps: int = 10, random_start: bool = False, *, loss: Union[str, LossFn] = "ce",
                 targeted: bool = False, lo: Bound = None, hi: Bound = None,
                 generator: Optional[torch.Generator] = None, objective: Union[str, ObjectiveFn, None] = None,
                 channels_last: Optional[bool] = None, unit: Unit = None) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, loss=loss,
                         targeted=targeted, lo=lo, hi=hi, generator=generator, objective=objective,
                         channels_last=channels_last, unit=unit)

    def _random_start(self, x, eps, lo, hi):
        B, n = x.shape[0], x[0].numel()
        g = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=self.generator)
        norm = torch.linalg.vector_norm(g.flatten(1), dim=1).clamp_min(torch.finfo(x.dtype).tiny)
        u = torch.rand(B, dtype=x.dtype, device=x.device, generator=self.generator)
        eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(B)
        radius = eps_t * u.pow(1.0 / n)
        return clamp_range(x + g * broadcast_per_sample(radius / norm, x), lo, hi)


def fgsm(model: nn.Module, x: Tensor, y: Optional[Tensor], *extra: Tensor, eps: ScalarOrPerSample = 0.01,
         **kwargs) -> Tensor:
    """Functional :class:`FGSM`: ``fgsm(model, x, y, *extra, eps=..., loss=..., targeted=..., lo=, hi=, unit=)``."""
    return FGSM(model, eps=eps, **kwargs)(x, y, *extra)


def pgd(model: nn.Module, x: Tensor, y: Optional[Tensor], *extra: Tensor, eps: ScalarOrPerSample = 0.01,
        **kwargs) -> Tensor:
    """Functional :class:`PGD`: ``pgd(model, x, y, *extra, eps=, alpha=, steps=, random_start=, unit=, ...)``."""
    return PGD(model, eps=eps, **kwargs)(x, y, *extra)


def pgd_l2(model: nn.Module, x: Tensor, y: Optional[Tensor], *extra: Tensor, eps: ScalarOrPerSample,
           **kwargs) -> Tensor:
    """Functional :class:`PGDL2`: ``pgd_l2(model, x, y, *extra, eps=, alpha=, steps=, random_start=, unit=, ...)``."""
    return PGDL2(model, eps=eps, **kwargs)(x, y, *extra)
