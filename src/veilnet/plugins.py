"""Methods are plugins: what a method package contributes, found by name and imported on first use.

veilnet's core (``data``, ``keys``, ``models`` with its registry, ``metrics``, ``report``,
``training``) and its toolkits (the method-agnostic ``attacks``, ``robust.attacks``, ``serve`` with
its :class:`~veilnet.serve.kinds.Kind` protocol) never import a method package. A method (keyed
images, complex-valued networks, post-averaging, and every defence added later) announces what it
contributes with one :class:`Method`, which names modules as strings:

* ``commands``: top-level commands of ``veilnet`` → (module whose ``register(subparsers)`` adds
  them, one-line help), so ``veilnet --help`` lists them without importing the method;
* ``models``: a prefix of model names → the module that registers those models with
  :func:`veilnet.models.register` when imported (``"complex-" → veilnet.complex.models``), so
  ``veilnet.models.create("complex-lenet")`` and loading a saved card find them;
* ``kinds``: a serving kind's name (the key of a model card's ``extra``) → the module that
  registers it with :func:`veilnet.serve.kinds.register` when imported; a card that names one
  was transformed for encoded inputs, so it is no plain classifier (:func:`serving_kind`);
* ``evaluate``: how to evaluate such a model instead, named when a plain-image command refuses it;
* ``defences``: a defence of the privacy benchmark (``veilnet bench privacy``) → the module whose
  ``DEFENCES`` maps it to its :class:`veilnet.privacy.defences.Defence`, so the benchmark gives
  every registered method its rows without importing any method by name.

A :class:`Method` is found through the entry-point group ``veilnet.methods`` of the installed
distributions (veilnet's own methods are listed in its ``pyproject.toml``; another distribution
adds a method by listing its own), or given to :func:`register` at run time (a notebook, a test).
Registration refuses a silent overwrite: two methods may not claim the same name, command, model
prefix or kind.

Example (a package ``mymethod`` next to veilnet)::

    # mymethod/plugin.py: imports nothing heavy
    METHOD = Method("mymethod", commands={"mymethod": ("mymethod.cli", "train and attack mymethod")},
                    models={"mymethod-": "mymethod.models"}, kinds={"mymethod": "mymethod.serving"})
    # pyproject.toml of mymethod:
    # [project.entry-points."veilnet.methods"]
    # mymethod = "mymethod.plugin:METHOD"
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from veilnet.errors import VeilnetError

#: The entry-point group that lists the installed methods (``name = "module:METHOD"``).
GROUP = "veilnet.methods"


class RegistrationError(VeilnetError):
    """A method, model or kind that would replace one already registered under the same name."""


@dataclass(frozen=True)
class Method:
    """What one method package contributes, by module name (see the module docstring)."""

    name: str
    commands: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    evaluate: str = ""
    defences: Mapping[str, str] = field(default_factory=dict)


_methods: dict[str, Method] | None = None
#: Held while the entry points are read: another thread (several veilnet.serve.Client in threads)
#: would otherwise see the registry half filled and find no method. Re-entrant: loading an entry
#: point may import a module that calls :func:`register`.
_loading = threading.RLock()


def methods() -> dict[str, Method]:
    """The registered methods by name: the entry points of :data:`GROUP` (read once), then those
    given to :func:`register`."""
    global _methods
    with _loading:
        if _methods is None:
            _methods = {}
            for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
                method = point.load()
                if not isinstance(method, Method):
                    raise RegistrationError(f"entry point {point.name} = {point.value} of group {GROUP} is not a veilnet.plugins.Method")
                _add(method)
    return _methods


def register(method: Method) -> Method:
    """Add ``method``; a name, command, model prefix or kind another method already claims is a
    :class:`RegistrationError`. Registering the same :class:`Method` again changes nothing."""
    methods()
    return _add(method)


def unregister(name: str) -> None:
    """Forget method ``name`` (what its modules registered stays registered)."""
    methods().pop(name, None)


def _add(method: Method) -> Method:
    assert _methods is not None
    if _methods.get(method.name) == method:
        return method
    if method.name in _methods:
        raise RegistrationError(f"a method called {method.name!r} is already registered")
    for what in ("commands", "models", "kinds", "defences"):
        claimed = {key: other.name for other in _methods.values() for key in getattr(other, what)}
        for key in getattr(method, what):
            if key in claimed:
                raise RegistrationError(f"method {method.name!r} claims {what[:-1]} {key!r}, already claimed by method {claimed[key]!r}")
    _methods[method.name] = method
    return method


def commands() -> dict[str, tuple[str, str]]:
    """Every method's commands: name → (module with ``register(subparsers)``, one-line help)."""
    return {name: entry for method in methods().values() for name, entry in method.commands.items()}


def load_models(name: str | None = None) -> None:
    """Import the modules that register model ``name`` (those whose prefix it starts with), or
    every method's model modules when ``name`` is None."""
    for method in list(methods().values()):
        for prefix, module in method.models.items():
            if name is None or name.startswith(prefix):
                importlib.import_module(module)


def load_kinds(name: str | None = None) -> None:
    """Import the module that registers serving kind ``name``, or every kind's when None."""
    for method in list(methods().values()):
        for kind, module in method.kinds.items():
            if name is None or name == kind:
                importlib.import_module(module)


def load_defences(names: Sequence[str] | None = None) -> dict[str, Any]:
    """The privacy benchmark's defences by name (:class:`veilnet.privacy.defences.Defence`), in the
    methods' order: those of ``names`` (an unknown name is a :class:`RegistrationError` naming the
    known ones), or every registered method's when None. Imports only the modules that define them."""
    where = {name: module for method in methods().values() for name, module in method.defences.items()}
    unknown = [n for n in names or () if n not in where]
    if unknown:
        raise RegistrationError(f"unknown defence {', '.join(unknown)}; registered: {', '.join(where) or '(none)'}")
    out = {}
    for name, module in where.items():
        if names is None or name in names:
            defence = importlib.import_module(module).DEFENCES[name]
            out[name] = defence
    return out


def serving_kind(extra: object) -> tuple[str, Method] | None:
    """The serving kind a model card's ``extra`` names and the method that registers it, or None
    (no module is imported): a model whose card names one was transformed for encoded inputs."""
    if not isinstance(extra, Mapping):
        return None
    return next(((kind, method) for method in methods().values() for kind in method.kinds if kind in extra), None)
