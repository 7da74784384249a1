"""Names of the zoo's models and :func:`create`, which builds one by name and records how.

The zoo's own models are listed here; a method's models are added by its package with
:func:`register` (the method's :class:`veilnet.plugins.Method` names the module that does it by the
models' name prefix, so this module never imports a method).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from torch import nn

from veilnet import plugins
from veilnet.checks import is_int, is_number
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


def register(name: str, constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Add model ``name`` (a method's model: its package calls this when imported); returns the
    constructor. Another constructor under a name registered already, or claimed by a method whose
    module registers it, is a RegistrationError."""
    if not known(name):
        MODELS[name] = constructor
    if MODELS[name] is not constructor:
        raise plugins.RegistrationError(f"model {name!r} is already registered (by {getattr(MODELS[name], '__module__', '?')})")
    return constructor


def known(name: str) -> bool:
    """Whether :func:`create` can build model ``name`` (a method's models are imported to tell)."""
    if name not in MODELS:
        plugins.load_models(name)
    return name in MODELS


def names() -> list[str]:
    """The model names :func:`create` knows: the zoo's, then every registered method's."""
    plugins.load_models()
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
    Unknown names raise :class:`ModelFormatError`; unknown keyword arguments, non-JSON values,
    values of the wrong type or range (an integer argument such as ``dim``, ``depth``,
    ``kernel_size`` or ``patch_size`` must be a positive integer, ``dropout`` a number in
    [0, 1)) and any other value the constructor refuses raise :class:`ConfigError` naming the
    argument; the errors list what is accepted.
    """
    constructor = _constructor(name)
    allowed = signature(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(f"{name} does not take {', '.join(map(str, unknown))}; it takes {', '.join(allowed)}")
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"keyword arguments of {name} must be JSON values (numbers, strings, lists): {exc}") from None
    for arg, value in kwargs.items():
        _check_argument(name, arg, value, allowed[arg])
    try:
        model = constructor(**kwargs)
    except VeilnetError:
        raise
    except (TypeError, ValueError, RuntimeError, ArithmeticError, MemoryError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(f"cannot build {name} with {given}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    model.veilnet_arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def _check_argument(name: str, arg: str, value: Any, default: Any) -> None:
    """Type and range of one keyword argument, judged by its default (int -> positive integer)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} argument {arg} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if not is_int(value) or value < 1:
            raise ConfigError(f"{name} argument {arg} must be a positive integer, got {value!r}")
    elif isinstance(default, float):
        if not is_number(value):
            raise ConfigError(f"{name} argument {arg} must be a number, got {value!r}")
        if arg == "dropout" and not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} argument dropout must be in [0, 1), got {value!r}")


def _constructor(name: str) -> Callable[..., nn.Module]:
    if not known(name):
        raise ModelFormatError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return MODELS[name]


__all__ = ["MODELS", "create", "known", "names", "register", "signature"]
