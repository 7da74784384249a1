"""Validation of option values shared by every package: one place that says what an integer or a
number option accepts (a bool is not an integer here, though Python says it is), so every error
reads alike. Imports nothing heavy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from veilnet.errors import ConfigError, VeilnetError


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float and not a bool (NaN and ±inf included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int_list(value: Any, *, minimum: int | None = None) -> bool:
    """Whether ``value`` is a list of integers (no bools), each ≥ ``minimum`` when given (a JSON
    document's shape or permutation)."""
    return isinstance(value, list) and all(is_int(v) and (minimum is None or v >= minimum) for v in value)


def check_int(name: str, value: Any, *, minimum: int | None = None, error: type[VeilnetError] = ConfigError) -> int:
    """``value`` if it is an integer (not a bool) ≥ ``minimum``; else ``error`` naming ``name``."""
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else " ≥ 1" if minimum == 1 else f" ≥ {minimum}"
        raise error(f"{name} must be an integer{bound}, got {value!r}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    error: type[VeilnetError] = ConfigError,
) -> float:
    """``value`` if it is a finite number (not a bool) in the interval from ``low`` to ``high``
    (ends closed unless ``low_open`` / ``high_open``); else ``error`` naming ``name`` and the interval."""
    inside = is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise error(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def check_budget(name: str, value: Any, *, norm: str, shape: Sequence[int] = (), error: type[VeilnetError] = ConfigError) -> float:
    """``value`` if it is a perturbation budget on [0, 1] pixels that can be meant: a finite number
    ≥ 0, at most 1 for ``norm="linf"`` (no pixel moves further) and at most the diagonal √(C·H·W)
    of the image cube for ``norm="l2"`` (``shape`` is C×H×W); else ``error`` asking whether
    ``value``/255 was meant (a budget given in 0-255 pixels)."""
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise error(f"{name} must be a finite number >= 0, got {value!r}")
    if norm == "linf":
        bound, what = 1.0, "an L∞ budget on [0, 1] pixels cannot exceed 1"
    else:
        bound = math.sqrt(math.prod(shape))
        what = f"an L2 budget on [0, 1] pixels cannot exceed the images' diagonal √(C·H·W) = {bound:.4g} ({'×'.join(map(str, shape))})"
    if value > bound:
        raise error(f"{name} {value:g}: {what}; did you mean {value:g}/255?")
    return value
