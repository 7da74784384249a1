"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?", 2022), as used with a secret key in
``papers/convmixer-key-encryption.txt`` (section 2.1, Eqs. (3)-(5)).

Patch embedding (Eq. (3)): ``z0 = BN(σ(Conv_{k=P, stride=P}(x)))``; then ``depth`` ConvMixer
layers (Eqs. (4)-(5)): ``z' = BN(σ(ConvDepthwise(z))) + z`` and ``z = BN(σ(ConvPointwise(z')))``;
global average pooling and a linear head. σ is GELU.

The keyed transform in :mod:`veilnet.keyed` rewrites ``model.patch_embed`` (an
``nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)``); the
input normalisation ``model.normalize`` runs before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from veilnet.errors import ShapeError
from veilnet.models.normalize import Normalize


class Residual(nn.Module):
    """``x + fn(x)``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class ConvMixer(nn.Module):
    """ConvMixer-``dim``/``depth`` with depthwise kernel ``kernel_size`` and patch size ``patch_size``.

    Defaults are the keyed-ConvMixer paper's CIFAR-10 model (section 4.1): d = 256, 8 layers,
    kernel 9, patch 4.

    Shape: ``N×in_channels×H×W`` in [0, 1] (H, W multiples of ``patch_size``) → ``N×num_classes``.
    """

    def __init__(
        self,
        dim: int = 256,
        depth: int = 8,
        kernel_size: int = 9,
        patch_size: int = 4,
        num_classes: int = 10,
        in_channels: int = 3,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.normalize = Normalize.for_channels(in_channels, mean, std)
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)
        self.embed_act = nn.GELU()
        self.embed_bn = nn.BatchNorm2d(dim)
        self.layers = nn.Sequential(
            *(
                nn.Sequential(
                    Residual(nn.Sequential(nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"), nn.GELU(), nn.BatchNorm2d(dim))),
                    nn.Conv2d(dim, dim, kernel_size=1),
                    nn.GELU(),
                    nn.BatchNorm2d(dim),
                )
                for _ in range(depth)
            )
        )
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ShapeError(f"ConvMixer with patch size {self.patch_size} takes images whose sides are multiples of it, got {tuple(x.shape[-2:])}")
        z = self.embed_bn(self.embed_act(self.patch_embed(self.normalize(x))))
        z = self.layers(z)
        return self.head(z.mean(dim=(2, 3)))


__all__ = ["ConvMixer"]
