"""Names of the zoo's models and :func:`create`, which builds one by name and records how."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from torch import nn

from veilnet.errors import ConfigError, ModelFormatError, VeilnetError
from veilnet.models.alexnet import AlexNet
from veilnet.models.convmixer import ConvMixer
from veilnet.models.lenet import LeNet
from veilnet.models.resnet_cifar import DEPTHS, ResNetCIFAR
from veilnet.models.unet import UNet
from veilnet.models.vgg import VGG16
from veilnet.models.vit import ViT

#: name -> constructor taking the user's keyword arguments.
MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{d}": functools.partial(ResNetCIFAR, depth=d) for d in DEPTHS},
    "lenet": LeNet,
    "vgg16": VGG16,
    "alexnet": AlexNet,
    "convmixer": ConvMixer,
    "vit": ViT,
    "unet": UNet,
}


def names() -> list[str]:
    """The model names :func:`create` knows, in the zoo's order."""
    return list(MODELS)


def signature(name: str) -> dict[str, Any]:
    """Keyword arguments of model ``name`` with their defaults (``depth`` of a ResNet is fixed)."""
    constructor = _constructor(name)
    fixed = constructor.keywords if isinstance(constructor, functools.partial) else {}
    params = inspect.signature(constructor).parameters.values()
    return {p.name: p.default for p in params if p.name not in fixed and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build zoo model ``name`` with ``kwargs`` and record ``model.veilnet_arch`` for :func:`save`.

    Every classifier takes ``num_classes``, ``in_channels`` and optional ``mean``/``std``
    (numbers or per-channel lists) for its :class:`Normalize` layer; see each class for the rest.
    Unknown names raise :class:`ModelFormatError`, unknown or non-JSON keyword arguments
    :class:`ConfigError`; both list what is accepted.
    """
    constructor = _constructor(name)
    allowed = signature(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(f"{name} does not take {', '.join(unknown)}; it takes {', '.join(allowed)}")
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"keyword arguments of {name} must be JSON values (numbers, strings, lists): {exc}") from None
    try:
        model = constructor(**kwargs)
    except VeilnetError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build {name} with {kwargs}: {exc}") from None
    model.veilnet_arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def _constructor(name: str) -> Callable[..., nn.Module]:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelFormatError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
