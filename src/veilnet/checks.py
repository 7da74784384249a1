"""Validation of option values shared by every package: one place that says what an integer or a
number option accepts (a bool is not an integer here, though Python says it is), so every error
reads alike. Imports nothing heavy."""

from __future__ import annotations

import math
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
