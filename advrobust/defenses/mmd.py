"""MMD domain adaptation (Ciprijanovic et al. 2022): cross-entropy on the labelled source domain plus
``lambda * MMD^2`` between the source and the unlabelled target latent vectors, on the fused
:func:`advrobust.ops.mk_mmd`.

:class:`MMDAdaptation` is an extra loss of the :class:`~advrobust.train.Trainer`: the source latents
are those of the training forward (the input of the model's ``head``, :attr:`Trainer.latent`); each
step draws a target batch of the same size from the trainer's generator and takes its latents with
``model.features``. :func:`domain_mmd` measures the MMD^2 between the domains' latents of a model.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

from advrobust.modes import eval_mode
from advrobust.checks import check_batch, check_float_tensor, check_number
from advrobust.ops import dan_sigmas, mk_mmd, sigmas_from_variances

__all__ = ["MMDAdaptation", "domain_mmd", "latent_mmd", "resolve_sigmas"]

Sigmas = Union[str, Sequence[float], Tensor]


def resolve_sigmas(sigmas: Sigmas, xs: Tensor, xt: Tensor) -> list:
    """Kernel widths: ``"deepadversaries"`` (the 19 fixed variances of Ciprijanovic et al.'s code),
    ``"dan"`` (the DAN ladder from the pair's distances, :func:`advrobust.ops.dan_sigmas`) or a
    sequence of widths (standard deviations, latent units).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(sigmas, str):
        if sigmas == "deepadversaries":
            return sigmas_from_variances()
        if sigmas == "dan":
            return dan_sigmas(xs, xt)
        raise ValueError(f"MMD sigmas must be 'deepadversaries', 'dan' or a sequence of widths, got {sigmas!r}")
    return [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]


class MMDAdaptation:
    """Extra loss ``lam * MMD^2(source latents, target latents)``.

    Args:
        target: unlabelled target-domain images ``(N_t, C, H, W)`` (e.g. the Y1 images), in the
            source images' units; moved to the trainer's device once.
        lam: lambda (Ciprijanovic et al.'s code: 0.01).
        sigmas: kernel widths, see :func:`resolve_sigmas` (default: ``"deepadversaries"``).
        unbiased: the unbiased MMD^2 estimate.

    Raises:
        ValueError, TypeError: bad ``target`` or ``lam``; at the first step, a model without ``head``.
    """

    def __init__(self, target: Tensor, lam: float = 0.01, sigmas: Sigmas = "deepadversaries", *,
                 unbiased: bool = False) -> None:
        check_float_tensor("MMDAdaptation", target, "target")
        check_batch("MMDAdaptation", target, "target", min_dim=2)
        self.target = target
        self.lam = check_number("MMDAdaptation", "lam", lam)
        self.sigmas = sigmas
        self.unbiased = bool(unbiased)

    def __call__(self, trainer, batch, output: Tensor) -> Tensor:
        if trainer.latent is None:
            raise ValueError("MMDAdaptation: the trainer saw no latent vector; the model needs a `head` "
                             "module (advrobust.models.LatentModel) whose input is the latent")
        if self.target.device != trainer.device:
            self.target = self.target.to(trainer.device)
        g = trainer.generator
        idx = torch.randint(self.target.shape[0], (batch.x.shape[0],), generator=g, device=g.device)
        zs = trainer.latent.float()
        zt = trainer.module.features(self.target[idx.to(self.target.device)]).float()
        return self.lam * mk_mmd(zs, zt, resolve_sigmas(self.sigmas, zs, zt), unbiased=self.unbiased)


@torch.no_grad()
def domain_mmd(model: nn.Module, source: Tensor, target: Tensor, sigmas: Sigmas = "deepadversaries", *,
               batch_size: int = 256) -> float:
    """MMD^2 between ``model.features`` of the source and target images, model in eval mode.

    Args:
        model: a :class:`advrobust.models.LatentModel` (single-input, e.g. the morphology models).
        source, target: ``(N, C, H, W)`` image batches.
        sigmas: as :func:`resolve_sigmas`.

    Returns:
        the biased MMD^2 (latent units squared over kernel widths: dimensionless, >= 0).
    """
    def latents(x):
        return torch.cat([model.features(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]).float()
    with torch.no_grad(), eval_mode(model):
        zs, zt = latents(source), latents(target)
    return latent_mmd(zs, zt, sigmas)


def latent_mmd(source: Tensor, target: Tensor, sigmas: Sigmas = "deepadversaries") -> float:
    """Biased MMD^2 between two sets of latent vectors ``(N, D)`` and ``(M, D)`` (e.g. already
    computed ``model.features``), kernel widths as :func:`resolve_sigmas`; what :func:`domain_mmd`
    returns for the latents of its images."""
    with torch.no_grad():
        return float(mk_mmd(source.float(), target.float(), resolve_sigmas(sigmas, source.float(), target.float())))
