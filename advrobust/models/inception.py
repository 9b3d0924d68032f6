"""The Inception photo-z model of Pasquet et al. (2019), as described in Table A1 of Campagne (2021).

Layout (Table A1): ``conv0`` (5x5, PReLU) -> average pool /2 -> cells ``i0, i1`` -> pool /2 ->
``i2, i3`` -> pool /2 -> ``i4`` -> flatten, append E(B-V) -> ``fc0`` -> ``fc1`` -> ``fc2`` (180 bins).
Convolutions are followed by a per-channel PReLU, the fully connected layers by ReLU (Campagne 2021, section 2).

An inception cell has up to four branches, concatenated in the order of the table:
``s2_2`` (1x1 on the input), ``s2_1(s1_1)`` (1x1 reduction then 5x5), ``s2_0(s1_0)`` (1x1 reduction
then 3x3) and ``pool0(s1_2)`` (1x1 reduction then a 2x2 stride-1 average pool on a zero-padded
map, the table's "(48, 33, 33) -> (48, 32, 32)"). The last cell ``i4`` has no 5x5 branch.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from advrobust.models.base import PhotozModel, xavier_init_

__all__ = ["InceptionCell", "PasquetInception", "PASQUET_CELLS"]

#: Widths of the cells i0..i4 of Table A1, each ``(reduce, out_3x3, out_5x5, out_1x1)``:
#: ``reduce`` is the width of the 1x1 reductions s1_*, ``out_3x3`` of s2_0, ``out_5x5`` of s2_1
#: (0: no 5x5 branch) and ``out_1x1`` of s2_2.
PASQUET_CELLS: tuple[tuple[int, int, int, int], ...] = (
    (48, 64, 64, 64),
    (64, 92, 92, 92),
    (92, 128, 128, 128),
    (92, 128, 128, 128),
    (92, 128, 0, 128),
)


def conv_prelu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """``kernel_size`` convolution with 'same' padding followed by a per-channel PReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.PReLU(out_channels),
    )


class InceptionCell(nn.Module):
    """One inception cell of Table A1 (see the module docstring for the branches).

    Args:
        in_channels: channels of the input map.
        reduce: width of the 1x1 reductions ``s1_0``, ``s1_1``, ``s1_2`` (and of the pool branch).
        out_3x3: width of ``s2_0``.
        out_5x5: width of ``s2_1``; 0 leaves out the 5x5 branch (cell i4).
        out_1x1: width of ``s2_2``.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` with
        ``out_channels = out_1x1 + out_5x5 + out_3x3 + reduce``.
    """

    def __init__(self, in_channels: int, reduce: int, out_3x3: int, out_5x5: int, out_1x1: int) -> None:
        super().__init__()
        if min(in_channels, reduce, out_3x3, out_1x1) < 1 or out_5x5 < 0:
            raise ValueError(
                f"InceptionCell widths must be positive (out_5x5 may be 0), got in_channels={in_channels}, "
                f"reduce={reduce}, out_3x3={out_3x3}, out_5x5={out_5x5}, out_1x1={out_1x1}"
            )
        self.s1_0 = conv_prelu(in_channels, reduce, 1)
        self.s2_0 = conv_prelu(reduce, out_3x3, 3)
        if out_5x5:
            self.s1_1 = conv_prelu(in_channels, reduce, 1)
            self.s2_1 = conv_prelu(reduce, out_5x5, 5)
        self.s1_2 = conv_prelu(in_channels, reduce, 1)
        self.pool0 = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, stride=1))
        self.s2_2 = conv_prelu(in_channels, out_1x1, 1)
        self.out_channels = out_1x1 + out_5x5 + out_3x3 + reduce

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.s2_2(x)]
        if hasattr(self, "s2_1"):
            branches.append(self.s2_1(self.s1_1(x)))
        branches += [self.s2_0(self.s1_0(x)), self.pool0(self.s1_2(x))]
        return torch.cat(branches, dim=1)


class PasquetInception(PhotozModel):
    """Inception photo-z model, Table A1 of Campagne 2021 (Pasquet et al. 2019): 27,596,372 parameters.

    Args:
        in_channels: image bands (5: u, g, r, i, z).
        image_size: side of the square cutouts in pixels (64); a multiple of 8.
        conv0_channels: width of the first 5x5 convolution (64).
        cells: widths of the inception cells, each ``(reduce, out_3x3, out_5x5, out_1x1)``
            (default :data:`PASQUET_CELLS`).
        pool_after: indices of the cells followed by a 2x2 average pool (i1 and i3); the first
            pool follows ``conv0``.
        fc_widths: outputs of ``fc0`` and ``fc1`` ((1096, 1096)); ``fc1``'s output (after ReLU) is the
            latent vector and ``head`` is the table's ``fc2``.
        n_bins: redshift bins of the output (180).
        z_max: redshift range ``[0, z_max)`` of the bins (Campagne 2021: 1.0).
        input_softening: optional asinh input scaling (see :class:`PhotozModel`; None, as in Campagne 2021).

    Campagne (2021)'s variants (section 4.3) are one argument away::

        create("pasquet_inception", fc_widths=(2000, 1096))                         # 48,722,852
        create("pasquet_inception", cells=PASQUET_CELLS[:4] + ((92, 256, 0, 256),))  # 45,720,660

    Shape:
        ``image`` (B, in_channels, image_size, image_size), ``ebv`` (B,) or (B, 1) -> logits (B, n_bins).

    Example:
        >>> model = PasquetInception()
        >>> model(torch.zeros(2, 5, 64, 64), torch.zeros(2)).shape
        torch.Size([2, 180])
    """

    def __init__(
        self,
        in_channels: int = 5,
        image_size: int = 64,
        conv0_channels: int = 64,
        cells: Sequence[Sequence[int]] = PASQUET_CELLS,
        pool_after: Sequence[int] = (1, 3),
        fc_widths: Sequence[int] = (1096, 1096),
        n_bins: int = 180,
        z_max: float = 1.0,
        input_softening: float | None = None,
    ) -> None:
        super().__init__(n_bins, z_max, input_softening)
        n_pools = 1 + len(pool_after)
        if image_size % 2**n_pools:
            raise ValueError(f"image_size must be a multiple of {2**n_pools}, got {image_size}")
        if len(fc_widths) != 2:
            raise ValueError(f"fc_widths must give the outputs of fc0 and fc1, got {tuple(fc_widths)}")
        if any(len(cell) != 4 for cell in cells):
            raise ValueError(f"each cell must be (reduce, out_3x3, out_5x5, out_1x1), got {cells}")
        if any(not 0 <= i < len(cells) for i in pool_after):
            raise ValueError(f"pool_after indices must name cells 0..{len(cells) - 1}, got {tuple(pool_after)}")
        self.input_shape = (in_channels, image_size, image_size)

        self.conv0 = conv_prelu(in_channels, conv0_channels, 5)
        layers: list[nn.Module] = [nn.AvgPool2d(2)]
        channels = conv0_channels
        for index, cell in enumerate(cells):
            block = InceptionCell(channels, *cell)
            layers.append(block)
            channels = block.out_channels
            if index in pool_after:
                layers.append(nn.AvgPool2d(2))
        self.trunk = nn.Sequential(*layers)
        side = image_size // 2**n_pools
        self.fc0 = nn.Linear(channels * side * side + 1, fc_widths[0])
        self.fc1 = nn.Linear(fc_widths[0], fc_widths[1])
        self.head = nn.Linear(fc_widths[1], n_bins)
        self.latent_dim = fc_widths[1]
        xavier_init_(self)

    def features(self, image: Tensor, ebv: Tensor) -> Tensor:
        """Output of ``fc1`` after its ReLU, shape ``(B, fc_widths[1])``."""
        image, ebv = self._prepare(image, ebv)
        maps = self.trunk(self.conv0(image))
        hidden = torch.relu(self.fc0(torch.cat([maps.flatten(1), ebv], dim=1)))
        return torch.relu(self.fc1(hidden))
