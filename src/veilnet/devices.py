"""The torch device a command runs on, checked before any work starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from veilnet.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` -> a :class:`torch.device` that exists here.

    Raises :class:`ConfigError` (one line) for an unknown name or a device this machine lacks.
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {str(name)!r} (expected cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r} asked for, but this machine has no CUDA GPU (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(name)!r} asked for, but there are {torch.cuda.device_count()} CUDA GPUs")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {str(name)!r} asked for, but MPS is not available here")
    elif device.type != "cpu":
        raise ConfigError(f"device {str(name)!r} is not supported (expected cpu, cuda, cuda:N or mps)")
    return device
