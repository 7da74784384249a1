"""Lazy package exports (PEP 562): a package's public names imported on first use.

Every package of veilnet exports its names this one way: the package names its submodules, each
submodule lists its public names in its own ``__all__``, and a name is imported on its first use,
so that importing a package (and so registering its commands) imports no torch::

    __getattr__, __dir__, __all__ = exports(__name__, __file__, ("core", "classifier"))
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def public_names(package_file: str, modules: Sequence[str]) -> dict[str, str]:
    """Name -> submodule for every name in the ``__all__`` of ``modules`` (files beside
    ``package_file``; a subpackage is exported as itself), read from their source without
    importing them; each submodule also maps to itself."""
    where: dict[str, str] = {}
    for module in modules:
        where[module] = module
        path = Path(package_file).parent / f"{module}.py"
        if not path.is_file():
            continue  # a subpackage: the package itself is the export
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                where.update(dict.fromkeys(ast.literal_eval(node.value), module))
    return where


def exports(package: str, package_file: str, modules: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``: every name of the ``__all__``
    of ``modules`` (:func:`public_names`), imported from its submodule on first use and then
    cached in the package's namespace."""
    where = public_names(package_file, modules)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{where[name]}")
        value = module if where[name] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
