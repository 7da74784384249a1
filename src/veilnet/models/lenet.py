"""LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition") for
32×32 inputs, with ReLU and max pooling in place of the original squashing and subsampling.

C1: 6 filters 5×5 → pool 2 → C3: 16 filters 5×5 → pool 2 → F5: 120 → F6: 84 → output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from veilnet.errors import ConfigError
from veilnet.models.normalize import Normalize


class LeNet(nn.Module):
    """LeNet-5 for ``image_size``×``image_size`` images (32 in the paper; at least 16).

    Shape: ``N×in_channels×image_size×image_size`` in [0, 1] → ``N×num_classes``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ConfigError(f"LeNet needs image_size >= 16, got {image_size}")
        self.normalize = Normalize.for_channels(in_channels, mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


__all__ = ["LeNet"]
