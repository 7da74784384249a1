"""Lazy package exports (PEP 562): a package's public names imported on first use.

Every package of veilnet exports its names this one way, so that importing a package (and so
registering its commands) imports no torch::

    __getattr__, __dir__ = exports(__name__, {"fit": "core", "train": "classifier"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: name -> its submodule (relative name),
    imported on first use and then cached in the package's namespace. A name mapped to itself
    is the submodule of that name."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{where[name]}")
        value = module if where[name] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
