"""Whether a model takes a data set's images (plain ones, of its shape): checked before any work, naming both shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from veilnet import plugins
from veilnet.errors import ModelFormatError, ShapeError, VeilnetError
from veilnet.metrics import eval_mode
from veilnet.models.registry import known, signature


def input_shape(model: nn.Module) -> tuple[int | None, int | None, int | None]:
    """What ``model`` takes, ``(C, H, W)``, as far as its record says (None where unknown).

    The card's ``input_shape`` (written by training) is exact; otherwise ``in_channels`` and
    ``image_size`` of the architecture's keyword arguments (default 3 channels).
    """
    card = getattr(model, "veilnet_card", None) or {}
    shape = card.get("input_shape")
    if isinstance(shape, list) and len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    arch = getattr(model, "veilnet_arch", None)
    if not isinstance(arch, dict) or not known(str(arch.get("name"))):
        return None, None, None
    kwargs: dict[str, Any] = {**signature(arch["name"]), **arch.get("kwargs", {})}
    size = None if arch["name"] == "unet" else kwargs.get("image_size")  # the U-Net resizes its input
    return kwargs.get("in_channels"), size, size


def check_input(model: nn.Module, image_shape: Sequence[int], *, data: str = "the data") -> None:
    """Raise :class:`ShapeError` unless ``model`` takes images of ``image_shape`` (``C×H×W``).

    Compares with :func:`input_shape` and then runs the model on one zero image (eval mode, no
    gradient, on the model's device), so a size the architecture cannot take is caught too. The
    model's mode and state are unchanged and no random number is drawn.
    """
    c, h, w = (int(v) for v in image_shape)
    name = (getattr(model, "veilnet_arch", None) or {}).get("name", type(model).__name__)
    expected = input_shape(model)
    takes = "×".join("?" if v is None else str(v) for v in expected)
    if any(e is not None and e != v for e, v in zip(expected, (c, h, w), strict=True)):
        raise ShapeError(f"model {name} takes {takes} images (C×H×W), but {data} has {c}×{h}×{w}")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, c, h, w, device=device))
    except (RuntimeError, ValueError, VeilnetError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ShapeError(f"model {name} (takes {takes} images, C×H×W) cannot run on {data}'s {c}×{h}×{w} images: {reason}") from None


def check_plain(model: nn.Module, *, where: str) -> None:
    """Raise :class:`ModelFormatError` when ``model``'s card names a serving kind
    (:func:`veilnet.plugins.serving_kind`): it was transformed for encoded inputs, so what it
    computes on plain images means nothing; the message says how its method evaluates it."""
    card = getattr(model, "veilnet_card", None) or {}
    found = plugins.serving_kind(card.get("extra"))
    if found is None:
        return
    kind, method = found
    advice = method.evaluate or f"see veilnet {next(iter(method.commands), method.name)} --help"
    raise ModelFormatError(
        f"{where} was transformed for encoded inputs (its card names serving kind {kind!r}); its results on plain images mean nothing: {advice}"
    )


__all__ = ["check_input", "check_plain", "input_shape"]
