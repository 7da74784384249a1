"""U-Net (Ronneberger et al., 2015) used as an inversion attacker: it maps whatever a server
sees (a feature map of any shape ``N×C_f×H_f×W_f``, or a flat ``N×C_f`` vector) back to an image.

The feature is first resized bilinearly to ``image_size``×``image_size``, then passes an
encoder of 4 down blocks (2×2 max-pool, two 3×3 conv-BN-ReLU) and a decoder of 4 up blocks
(bilinear ×2 upsampling, concatenation with the skip connection of the same scale, two 3×3
conv-BN-ReLU), and a 1×1 convolution with a sigmoid, so the output is an image in [0, 1].
It is not a classifier and has no ``normalize`` layer: its input is a feature, not pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.errors import ConfigError, ShapeError


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )  # fmt: skip


class Up(nn.Module):
    """Upsample ×2, concatenate the skip connection, two 3×3 convolutions."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _double_conv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net from a ``in_channels``-channel feature to an ``out_channels``×``image_size``² image.

    Arguments:
        in_channels: C_f, channels of the feature the attacker sees.
        out_channels: channels of the reconstructed image.
        image_size: side of the reconstructed image (a multiple of 16).
        base_width: channels of the first block; doubled at each of the 4 down blocks.

    Shape: ``N×C_f×H_f×W_f`` (or ``N×C_f``) → ``N×out_channels×image_size×image_size`` in [0, 1].
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, image_size: int = 32, base_width: int = 32) -> None:
        super().__init__()
        if image_size % 16:
            raise ConfigError(f"UNet image_size must be a multiple of 16 (4 down blocks), got {image_size}")
        self.in_channels = in_channels
        self.image_size = image_size
        widths = [base_width * 2**i for i in range(5)]
        self.inc = _double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[i], widths[i + 1])) for i in range(4))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(4)))
        self.outc = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.ndim == 2:
            feature = feature[:, :, None, None]
        if feature.ndim != 4 or feature.shape[1] != self.in_channels:
            raise ShapeError(f"UNet built for features N×{self.in_channels}×H×W (or N×{self.in_channels}), got shape {tuple(feature.shape)}")
        x = F.interpolate(feature, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return torch.sigmoid(self.outc(x))


__all__ = ["UNet"]
