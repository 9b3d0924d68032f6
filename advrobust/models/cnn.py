"""Campagne's simpler photo-z CNN, Table A2 of Campagne 2021 (13,461,008 parameters), and a small fast photo-z CNN.

Layout: ``conv0`` (5x5, padding 2) -> average pool /2 -> ``conv1`` (3x3, padding 2) -> average pool /2
-> ``conv2`` (3x3, padding 2) -> average pool /2 (ceil mode: 19 -> 10) -> flatten, append E(B-V) ->
``fc0`` -> ``fc1`` (180 bins). Table A2 counts no PReLU parameters, so the activations are ReLU;
initialisation as in Campagne (2021): Xavier-uniform weights, bias 0.1.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from advrobust.models.base import PhotozModel, xavier_init_

__all__ = ["CampagneCNN", "SmallPhotozCNN"]


def _check_widths(model: PhotozModel, *, in_channels: int, image_size: int, channels: Sequence[int],
                  min_size: int) -> tuple[int, int, int]:
    """Check the three-convolution widths and the image size; set ``model.input_shape``; return the widths."""
    if len(channels) != 3 or min(channels) < 1:
        raise ValueError(f"channels must be three positive widths, got {tuple(channels)}")
    if image_size < min_size:
        raise ValueError(f"image_size must be at least {min_size}, got {image_size}")
    model.input_shape = (in_channels, image_size, image_size)
    c0, c1, c2 = (int(c) for c in channels)
    return c0, c1, c2


class CampagneCNN(PhotozModel):
    """Three-convolution photo-z CNN of Table A2 of Campagne (2021).

    Args:
        in_channels: image bands (5).
        image_size: side of the square cutouts in pixels (64).
        channels: widths of ``conv0``, ``conv1``, ``conv2`` ((64, 92, 128)).
        fc_width: output of ``fc0``, the latent vector (1024).
        n_bins: redshift bins of the output (180).
        z_max: redshift range ``[0, z_max)`` of the bins.
        input_softening: optional asinh input scaling (see :class:`PhotozModel`; None, as in Campagne 2021).

    Shape:
        ``image`` (B, in_channels, image_size, image_size), ``ebv`` (B,) or (B, 1) -> logits (B, n_bins).

    Example:
        >>> model = CampagneCNN()
        >>> model(torch.zeros(2, 5, 64, 64), torch.zeros(2)).shape
        torch.Size([2, 180])
    """

    def __init__(
        self,
        in_channels: int = 5,
        image_size: int = 64,
        channels: Sequence[int] = (64, 92, 128),
        fc_width: int = 1024,
        n_bins: int = 180,
        z_max: float = 1.0,
        input_softening: float | None = None,
    ) -> None:
        super().__init__(n_bins, z_max, input_softening)
        c0, c1, c2 = _check_widths(self, in_channels=in_channels, image_size=image_size, channels=channels,
                                   min_size=2)
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, c0, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
            nn.Conv2d(c0, c1, 3, padding=2), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c2, 3, padding=2), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
        )
        side = -(-image_size // 2)  # conv0 keeps the size, its pool halves it (rounding up)
        for _ in range(2):  # conv1, conv2 (3x3, padding 2) grow the map by 2, their pools halve it
            side = -(-(side + 2) // 2)
        self.fc0 = nn.Linear(c2 * side * side + 1, fc_width)
        self.head = nn.Linear(fc_width, n_bins)
        self.latent_dim = fc_width
        xavier_init_(self)

    def features(self, image: Tensor, ebv: Tensor) -> Tensor:
        """Output of ``fc0`` after its ReLU, shape ``(B, fc_width)``."""
        image, ebv = self._prepare(image, ebv)
        maps = self.trunk(image)
        return torch.relu(self.fc0(torch.cat([maps.flatten(1), ebv], dim=1)))


class SmallPhotozCNN(PhotozModel):
    """Small, fast photo-z CNN for tests and the CPU demo (``photoz_small``, 28,500 parameters).

    Three 3x3 convolutions with ReLU separated by 2x2 average pools, a global average pool (so
    the network summarises the colours of the galaxy rather than its layout, which lets it learn
    from a few hundred galaxies), E(B-V) appended, one ReLU layer (the latent vector) and the
    output bins. Images enter as ``asinh(image / input_softening)`` by default (fluxes in
    nanomaggies per pixel, as :func:`advrobust.data.simulate_photoz` writes them). Initialisation
    as the papers' photo-z models (Xavier-uniform, bias 0.1).

    Args:
        in_channels: image bands (5).
        image_size: side of the square cutouts in pixels (64); at least 4.
        channels: widths of the three convolutions ((16, 32, 32)).
        fc_width: width of the latent layer (64).
        n_bins: redshift bins of the output (180).
        z_max: redshift range ``[0, z_max)`` of the bins.
        input_softening: asinh input scaling in image units (0.01), or None.

    Shape:
        ``image`` (B, in_channels, image_size, image_size), ``ebv`` (B,) or (B, 1) -> logits (B, n_bins).
    """

    def __init__(
        self,
        in_channels: int = 5,
        image_size: int = 64,
        channels: Sequence[int] = (16, 32, 32),
        fc_width: int = 64,
        n_bins: int = 180,
        z_max: float = 1.0,
        input_softening: float | None = 0.01,
    ) -> None:
        super().__init__(n_bins, z_max, input_softening)
        c0, c1, c2 = _check_widths(self, in_channels=in_channels, image_size=image_size, channels=channels,
                                   min_size=4)
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(c0, c1, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
        )
        self.fc0 = nn.Linear(c2 + 1, fc_width)
        self.head = nn.Linear(fc_width, n_bins)
        self.latent_dim = fc_width
        xavier_init_(self)

    def features(self, image: Tensor, ebv: Tensor) -> Tensor:
        """Output of ``fc0`` after its ReLU, shape ``(B, fc_width)``."""
        image, ebv = self._prepare(image, ebv)
        pooled = self.trunk(image).mean(dim=(2, 3))
        return torch.relu(self.fc0(torch.cat([pooled, ebv], dim=1)))
