"""Lazy package exports (PEP 562): a package's public names imported on first use.

Packages whose command line must register without importing torch (``veilnet.models``,
``veilnet.training``, ``veilnet.robust``) export their names through :func:`exports`::

    __getattr__, __dir__ = exports(__name__, {"fit": "core", "train": "classifier"})
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def public_names(package_file: str, modules: Sequence[str]) -> dict[str, str]:
    """Name -> submodule for every name in the ``__all__`` of ``modules`` (files beside
    ``package_file``), read from their source without importing them (so without torch)."""
    where: dict[str, str] = {}
    for module in modules:
        tree = ast.parse((Path(package_file).parent / f"{module}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                where.update(dict.fromkeys(ast.literal_eval(node.value), module))
    return where


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
