"""ResNet18 (He et al. 2016) with a 256-d latent layer and 3 outputs, as used in Ćiprijanović et al. 2022
(DeepAdversaries).

The standard ImageNet ResNet18 trunk (7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks,
widths 64-128-256-512, global average pool) is followed by a 512 -> 256 linear layer with ReLU (the
latent space) and a 256 -> 3 output layer. Written here so that torchvision is not a dependency.
Weights: Kaiming-normal (fan-out) convolutions, batch-norm scale 1 and shift 0, as in He et al.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from advrobust.models.base import LatentModel

__all__ = ["BasicBlock", "ResNet18"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(LatentModel):
    """ResNet18 classifier with a latent layer (Ćiprijanović et al. 2022: 256-d, 3 classes).

    Args:
        in_channels: image bands (3).
        widths: channels of the four stages ((64, 128, 256, 512)).
        latent_dim: width of the latent layer (256).
        n_classes: output classes (3).

    Any image size of at least 32 pixels works (global average pooling).

    Shape:
        ``image`` (B, in_channels, H, W) -> logits (B, n_classes).

    Example:
        >>> ResNet18()(torch.zeros(2, 3, 100, 100)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        latent_dim: int = 256,
        n_classes: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be four positive stage widths, got {tuple(widths)}")
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        width = widths[0]
        for index, out in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages += [BasicBlock(width, out, stride), BasicBlock(out, out)]
            width = out
        self.stages = nn.Sequential(*stages)
        self.latent = nn.Linear(width, latent_dim)
        self.head = nn.Linear(latent_dim, n_classes)
        self.latent_dim = latent_dim
        self.n_outputs = n_classes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, image: Tensor) -> Tensor:
        """Latent layer output after its ReLU, shape ``(B, latent_dim)``."""
        if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != self.in_channels:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"ResNet18: expected an image batch (B, {self.in_channels}, H, W), got {shape}")
        pooled = self.stages(self.stem(image)).mean(dim=(2, 3))
        return torch.relu(self.latent(pooled))
