"""AlexNet (Krizhevsky et al., 2012), small-input variant for 32×32 images.

The five convolutions (64, 192, 384, 256, 256 filters) and three max-pools of the original, with
3×3 kernels (the first with stride 2) instead of 11×11/5×5, which suit 32×32 inputs; the last
feature map is average-pooled to 2×2 and fed to two dropout + fully connected layers of
``hidden`` units (4096 in the original; 1024 by default here, which trains on a CPU) and the
output layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from veilnet.models.normalize import Normalize


class AlexNet(nn.Module):
    """AlexNet for small images.

    Shape: ``N×in_channels×H×W`` in [0, 1] (H, W ≥ 16) → ``N×num_classes``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        hidden: int = 1024,
        dropout: float = 0.5,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize.for_channels(in_channels, mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(256 * 2 * 2, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(self.normalize(x))))


__all__ = ["AlexNet"]
