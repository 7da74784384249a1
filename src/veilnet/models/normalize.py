"""Input normalisation as the first layer of every classifier (docs/architecture.md, "Pixels")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from veilnet.errors import ConfigError

#: Per-channel statistics the pretrained CIFAR ResNets were trained with (ImageNet's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Default for inputs that do not have 3 channels: maps [0, 1] pixels to about [-2, 2].
GENERIC_MEAN = 0.5
GENERIC_STD = 0.25


class Normalize(nn.Module):
    """``(x - mean[:, None, None]) / std[:, None, None]`` with ``mean``, ``std`` buffers of shape C.

    The buffers are part of the state dict, so a saved model carries its own preprocessing and a
    keyed-model transform can fold them into the first linear layer. ``mean=0, std=1`` is the
    identity.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.shape != std_t.shape or mean_t.numel() == 0:
            raise ConfigError(f"mean and std must have one value per channel, got {mean_t.numel()} and {std_t.numel()} values")
        if not bool((std_t > 0).all()):
            raise ConfigError(f"std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    @classmethod
    def for_channels(cls, in_channels: int, mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None) -> Normalize:
        """The normalisation of a model with ``in_channels`` inputs.

        ``None`` means the default: ImageNet statistics for 3 channels, 0.5/0.25 per channel
        otherwise. A single number is used for every channel; a list needs one value per channel.
        """
        if mean is None:
            mean = IMAGENET_MEAN if in_channels == 3 else GENERIC_MEAN
        if std is None:
            std = IMAGENET_STD if in_channels == 3 else GENERIC_STD
        return cls(_per_channel(mean, in_channels, "mean"), _per_channel(std, in_channels, "std"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def extra_repr(self) -> str:
        return f"mean={[round(v, 4) for v in self.mean.tolist()]}, std={[round(v, 4) for v in self.std.tolist()]}"


def _per_channel(value: float | Sequence[float], channels: int, name: str) -> list[float]:
    values = [float(value)] * channels if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != channels:
        raise ConfigError(f"{name} needs {channels} values (one per input channel), got {len(values)}")
    return values


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalize"]
