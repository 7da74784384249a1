"""CIFAR ResNets of He et al. 2016 ("Deep Residual Learning for Image Recognition", section 4.2).

Depth 6n+2: a 3×3 convolution with 16 filters, then three stages of n basic blocks with 16, 32
and 64 filters (the first block of stages 2 and 3 halves the feature map), global average
pooling and a linear layer. Shortcuts are the paper's option A: identity, and where the shape
changes, stride-2 subsampling ``x[:, :, ::2, ::2]`` with zero-padding of planes//4 channels on
each side (no parameters). Parameter names match the public akamaster checkpoints
(``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv{1,2}``/``bn{1,2}``, ``linear``); see
:func:`veilnet.models.load_cifar_resnet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.errors import ConfigError
from veilnet.models.normalize import Normalize

#: Depths with a registered name (``resnet20`` ... ``resnet110``).
DEPTHS = (20, 32, 44, 56, 110)


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad ``pad`` channels on each side."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a ReLU between and the shortcut added before the last ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = ShortcutA(planes // 4) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """CIFAR ResNet of depth 6n+2 (20, 32, 44, 56, 110 in the paper's Table 6).

    Arguments:
        depth: 6n+2.
        num_classes: outputs of the linear layer.
        in_channels: image channels.
        mean, std: per-channel input statistics of ``self.normalize`` (default ImageNet's, which
            the pretrained checkpoints used; see :class:`Normalize`).

    Shape: ``N×in_channels×H×W`` in [0, 1] → ``N×num_classes`` (any H, W ≥ 4; 32 in the paper).
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.normalize = Normalize.for_channels(in_channels, mean, std)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride), *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 64-dimensional representation before the linear layer."""
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


__all__ = ["ResNetCIFAR"]
