"""DeepAdversaries ConvNet, Table 1 of Ćiprijanović et al. 2022: (3, 100, 100) -> 3 classes, 1,187,203
parameters.

Three blocks of convolution -> ReLU -> batch normalisation -> 2x2 max pool (kernels 5, 3, 3 with
'same' padding; widths 8, 16, 32), a 256-d bottleneck (the latent space, after its ReLU) and a
3-neuron output. The softmax of Table 1 is left to the loss: ``forward`` returns logits.
Class indices of the morphology data: 0 spiral, 1 elliptical, 2 merger.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from advrobust.models.base import LatentModel, check_image

__all__ = ["ConvNet"]


class ConvNet(LatentModel):
    """Galaxy-morphology ConvNet of Ćiprijanović et al. 2022 (Table 1).

    Args:
        in_channels: image bands (3: g, r, i).
        image_size: side of the square cutouts in pixels (100).
        channels: widths of the three convolutions ((8, 16, 32)).
        kernel_sizes: their kernel sizes ((5, 3, 3)).
        latent_dim: width of the bottleneck, the latent vector (256).
        n_classes: output classes (3).

    Shape:
        ``image`` (B, in_channels, image_size, image_size) -> logits (B, n_classes).

    Example:
        >>> ConvNet()(torch.zeros(2, 3, 100, 100)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 100,
        channels: Sequence[int] = (8, 16, 32),
        kernel_sizes: Sequence[int] = (5, 3, 3),
        latent_dim: int = 256,
        n_classes: int = 3,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernel_sizes) or not channels:
            raise ValueError(
                f"channels and kernel_sizes must be non-empty and of equal length, got {tuple(channels)} "
                f"and {tuple(kernel_sizes)}"
            )
        if any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd ('same' padding), got {tuple(kernel_sizes)}")
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} 2x2 pools")
        self.input_shape = (in_channels, image_size, image_size)
        layers: list[nn.Module] = []
        width = in_channels
        for out, kernel in zip(channels, kernel_sizes):
            layers += [
                nn.Conv2d(width, out, kernel, padding=kernel // 2),
                nn.ReLU(),
                nn.BatchNorm2d(out),
                nn.MaxPool2d(2),
            ]
            width = out
        self.trunk = nn.Sequential(*layers)
        self.bottleneck = nn.Linear(width * side * side, latent_dim)
        self.head = nn.Linear(latent_dim, n_classes)
        self.latent_dim = latent_dim
        self.n_outputs = n_classes

    def features(self, image: Tensor) -> Tensor:
        """Bottleneck output after its ReLU, shape ``(B, latent_dim)``.

        Their Table 1 names no activation for the bottleneck; without one the bottleneck and the
        output layer would be a single linear map, so a ReLU follows it here (the latent is >= 0).
        """
        check_image(image, self.input_shape, type(self).__name__)
        return torch.relu(self.bottleneck(self.trunk(image).flatten(1)))
