"""VGG-16 (Simonyan & Zisserman, 2015, configuration D) with batch normalisation, CIFAR variant:
the thirteen 3×3 convolutions and five max-pools of configuration D, each convolution followed
by BN and ReLU, then global average pooling and one linear layer (for 32×32 inputs the last
feature map is already 1×1×512, so the three large fully connected layers are dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from veilnet.models.normalize import Normalize

#: Configuration D: output channels of each 3×3 convolution, "M" for a 2×2 max-pool.
CONFIG_D: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """VGG-16 with BN.

    Shape: ``N×in_channels×H×W`` in [0, 1] (H, W ≥ 32) → ``N×num_classes``.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.normalize = Normalize.for_channels(in_channels, mean, std)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIG_D:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)).mean(dim=(2, 3)))


__all__ = ["VGG16"]
