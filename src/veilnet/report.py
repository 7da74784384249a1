"""Results -> JSON -> Markdown.

Every evaluation returns a frozen dataclass that mixes in :class:`Result`, so it serialises to
JSON; reports and plots are built from that JSON, so a report can be rebuilt without rerunning:
``Cls.load(path)`` (or ``Cls.from_dict``) turns the JSON back into the dataclass, nested results,
tuples and tensors' lists included. Non-finite floats are written as JSON ``null`` (JSON has no
NaN) and read back as NaN.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch

from veilnet.paths import atomic_write, write_text


def _plain(value: Any) -> Any:
    """Convert tensors, tuples, paths and nested dataclasses into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


R = TypeVar("R", bound="Result")


def _typed(hint: Any, value: Any) -> Any:
    """The inverse of :func:`_plain` for one field: ``value`` from JSON as type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None if type(None) in args else math.nan
        non_none = [a for a in args if a is not type(None)]
        return _typed(non_none[0], value) if len(non_none) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _from_dict(hint, value)
    if hint is float:
        return math.nan if value is None else float(value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        return tuple(_typed(a, v) for a, v in zip(args, value, strict=False)) if args else tuple(value)
    if origin is list and isinstance(value, list):
        return [_typed(args[0], v) for v in value] if args else value
    if origin is dict and isinstance(value, dict):
        return {k: _typed(args[1], v) for k, v in value.items()} if args else value
    if hint is torch.Tensor and isinstance(value, list):
        return torch.tensor(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    return value


def _from_dict(cls: type[R], doc: dict[str, Any]) -> R:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(doc) - fields
    if unknown:
        from veilnet.errors import DataFormatError

        raise DataFormatError(f"{cls.__name__} JSON has unknown fields {sorted(unknown)}")
    return cls(**{name: _typed(hints[name], value) for name, value in doc.items()})


class Result:
    """Mixin for frozen result dataclasses: ``to_dict``, ``to_json`` and ``save``."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls: type[R], doc: dict[str, Any]) -> R:
        """The result whose :meth:`to_dict` is ``doc``."""
        return _from_dict(cls, doc)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by :meth:`save`; a file that is not one is a DataFormatError."""
        from veilnet.errors import DataFormatError

        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise DataFormatError(f"{path}: not a readable result JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise DataFormatError(f"{path}: a result JSON is an object")
        try:
            return cls.from_dict(doc)
        except (TypeError, ValueError, KeyError) as exc:
            raise DataFormatError(f"{path}: does not hold a {cls.__name__} ({exc})") from None

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (:func:`veilnet.paths.write_text`)."""
        return write_text(path, self.to_json())


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats are shown with 4 significant digits."""

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_backend() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (:func:`veilnet.paths.atomic_write`) and close it; returns the path."""
    plt = plot_backend()
    try:
        fig.tight_layout()
        with atomic_write(path) as fh:
            fig.savefig(fh, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
