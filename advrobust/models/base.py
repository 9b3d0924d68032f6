"""Shared interface of every advrobust model.

Every model maps its inputs to a latent vector (:meth:`LatentModel.features`) and the latent vector to
logits with a head (``model.head``): ``forward(*inputs) == head(features(*inputs))``. The attacks,
the MMD domain adaptation and the latent-space plots rely on exactly this split.

Photometric-redshift models (:class:`PhotozModel`) take ``(image, ebv)`` and return logits over
``n_bins`` redshift bins of equal width over ``[0, z_max]``; :meth:`PhotozModel.pdf` is their softmax
and :meth:`PhotozModel.z_phot` the p.d.f.-weighted mean of the bin centres (Campagne 2021, section 2).
The binning and the formulas live in :mod:`advrobust.redshift`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from advrobust import redshift

__all__ = ["LatentModel", "PhotozModel", "xavier_init_"]


def xavier_init_(module: nn.Module, bias: float = 0.1) -> None:
    """Xavier-uniform weights and a constant bias for every convolution and linear layer of ``module``.

    This is the initialisation of Pasquet et al. (2019) that Campagne (2021, section 2) adopts for its models.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, bias)


def check_image(image: Tensor, expected: Sequence[int], model: str) -> None:
    """Raise if ``image`` is not a float batch of shape ``(B, *expected)``."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{model}: image must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{model}: image must be a floating-point tensor, got dtype {image.dtype}")
    if image.dim() != 4 or tuple(image.shape[1:]) != tuple(expected):
        raise ValueError(
            f"{model}: expected an image batch of shape (B, {', '.join(map(str, expected))}), "
            f"got {tuple(image.shape)}"
        )


class LatentModel(nn.Module):
    """A model whose output is ``head(features(*inputs))``.

    Subclasses set ``self.head`` (latent -> logits), ``self.latent_dim`` and ``self.n_outputs``, and
    implement :meth:`features`. Their constructors take named arguments of JSON types (numbers,
    strings, None, lists): :func:`advrobust.models.create` records them.
    """

    latent_dim: int
    n_outputs: int
    head: nn.Module
    #: registry name the model was built under, set by :func:`advrobust.models.create` ("" for a
    #: model built by its class, which :func:`advrobust.models.save` refuses).
    registry_name: str = ""
    #: every constructor argument in JSON form, set by :func:`advrobust.models.create` and written
    #: by :func:`advrobust.models.save`.
    config: dict[str, Any]

    def features(self, *inputs: Tensor) -> Tensor:
        """Latent vector, shape ``(B, latent_dim)``."""
        raise NotImplementedError

    def forward(self, *inputs: Tensor) -> Tensor:
        """Logits, shape ``(B, n_outputs)``."""
        return self.head(self.features(*inputs))


class PhotozModel(LatentModel):
    """Base of the photo-z models: inputs ``(image, ebv)``, logits over redshift bins.

    Args:
        n_bins: number of redshift bins (Campagne 2021 and Pasquet et al. 2019: 180).
        z_max: upper edge of the redshift range ``[0, z_max]`` covered by the bins (Campagne 2021:
            1.0, Pasquet et al. 2019 on SDSS: 0.4).
        input_softening: if given, images (fluxes) enter the network as ``asinh(image / input_softening)``,
            linear below ``input_softening`` and logarithmic above, so that colours become differences;
            None feeds the images unchanged (the papers' models).

    Attributes:
        bin_centres: float buffer of shape ``(n_bins,)``, the bin centres ``(k + 1/2) z_max / n_bins``.
        bin_edges: float64 ``(n_bins + 1,)``, the bin edges ``k z_max / n_bins`` (a property).

    The binning rule (half-open bins, the last one closed, outside clipped) is
    :func:`advrobust.redshift.redshift_to_bin`'s.
    """

    bin_centres: Tensor

    input_shape: tuple[int, int, int]

    def __init__(self, n_bins: int, z_max: float, input_softening: float | None = None) -> None:
        super().__init__()
        if n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}")
        if not z_max > 0:
            raise ValueError(f"z_max must be positive, got {z_max}")
        if input_softening is not None and not input_softening > 0:
            raise ValueError(f"input_softening must be positive or None, got {input_softening}")
        self.input_softening = input_softening
        self.n_bins = int(n_bins)
        self.n_outputs = self.n_bins
        self.z_max = float(z_max)
        self.register_buffer("bin_centres", redshift.bin_centres(self.n_bins, self.z_max).float(), persistent=False)

    def _prepare(self, image: Tensor, ebv: Tensor) -> tuple[Tensor, Tensor]:
        """Checked network inputs: the (optionally asinh-scaled) image and ebv as a (B, 1) column."""
        check_image(image, self.input_shape, type(self).__name__)
        ebv = self._ebv_column(image, ebv)
        if self.input_softening is not None:
            image = torch.asinh(image / self.input_softening)
        return image, ebv

    def _ebv_column(self, image: Tensor, ebv: Tensor) -> Tensor:
        """``ebv`` of shape (B,) or (B, 1) as a (B, 1) column of the image's dtype and device."""
        if not isinstance(ebv, Tensor):
            raise TypeError(f"{type(self).__name__}: ebv must be a torch.Tensor, got {type(ebv).__name__}")
        if ebv.dim() == 1:
            ebv = ebv.unsqueeze(1)
        if ebv.dim() != 2 or ebv.shape[1] != 1 or ebv.shape[0] != image.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: ebv must have shape (B,) or (B, 1) with B = {image.shape[0]}, "
                f"got {tuple(ebv.shape)}"
            )
        return ebv.to(dtype=image.dtype, device=image.device)

    def pdf(self, image: Tensor, ebv: Tensor) -> Tensor:
        """Redshift p.d.f. over the bins, shape ``(B, n_bins)``, rows summing to 1."""
        return torch.softmax(self(image, ebv), dim=1)

    def z_phot(self, image: Tensor, ebv: Tensor) -> Tensor:
        """Photometric redshift, the p.d.f.-weighted mean of the bin centres, shape ``(B,)``."""
        return redshift.z_phot(self(image, ebv), self.bin_centres)

    @property
    def bin_edges(self) -> Tensor:
        """Float64 bin edges ``(n_bins + 1,)`` on the model's device."""
        return redshift.bin_edges(self.n_bins, self.z_max, device=self.bin_centres.device)

    def redshift_to_bin(self, z: Tensor) -> Tensor:
        """Index of the bin holding each redshift, int64 of ``z``'s shape (see
        :func:`advrobust.redshift.redshift_to_bin`: half-open bins, outside clipped)."""
        return redshift.redshift_to_bin(z, self.bin_edges)
