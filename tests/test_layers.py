"""The layers of docs/architecture.md, read off the source: the core and the toolkits never import a
method, a method never imports another method or what sits on top, and no module imports itself
back through others (no circle). Every ``import`` counts, at module level or inside a function
(only ``if TYPE_CHECKING:`` blocks are skipped); ``from PACKAGE import NAME`` counts as an import of
the submodule that defines NAME (the package's lazy exports, :mod:`veilnet._lazy`)."""

from __future__ import annotations

import ast
from pathlib import Path

import veilnet
from veilnet import plugins
from veilnet._lazy import public_names

SRC = Path(veilnet.__file__).parent
#: What sits on top of the methods and may import any of them.
TOP = ("veilnet.federated", "veilnet.demo")
#: Toolkits that live inside a method's package but are method-agnostic (the evasion attacks and
#: the attack budget they take), so they are held to the core's rule.
TOOLKITS_IN_METHODS = ("veilnet.robust.attacks", "veilnet.robust.setting")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _method_packages() -> dict[str, str]:
    """Method name -> its package, from where each registered method's plugin module lives."""
    out = {}
    for method in plugins.methods().values():
        modules = [m for m, _ in method.commands.values()] + list(method.models.values()) + list(method.kinds.values()) + list(method.defences.values())
        out[method.name] = ".".join(modules[0].split(".")[:2])
    return out


def _layer(module: str, methods: dict[str, str]) -> str:
    if any(_within(module, t) for t in TOOLKITS_IN_METHODS):
        return "core"
    for name, package in methods.items():
        if _within(module, package):
            return f"method:{name}"
    if any(_within(module, t) for t in TOP):
        return "top"
    return "core"


def _resolve(target: str) -> str | None:
    """The veilnet module an import of ``target`` loads (a lazily exported name -> its submodule)."""
    if target in MODULES:
        return target
    package, _, name = target.rpartition(".")
    if package in MODULES:
        where = _lazy_table(package)
        if name in where:
            return f"{package}.{where[name]}"
        return package
    return None


def _lazy_table(package: str) -> dict[str, str]:
    """A package's lazy exports (name -> submodule), read from its source without importing it."""
    for node in ast.walk(ast.parse(MODULES[package].read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "exports":
            return public_names(str(MODULES[package]), ast.literal_eval(node.args[2]))
    return {}


def _imports(module: str) -> dict[str, int]:
    """veilnet modules imported by ``module`` -> the line of the first such import."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" for a in node.names]
        for target in targets:
            if target.split(".")[0] != "veilnet":
                continue
            resolved = _resolve(target)
            if resolved is not None and resolved != module:
                out.setdefault(resolved, node.lineno)
    return out


GRAPH = {module: _imports(module) for module in MODULES}


def test_the_core_and_toolkits_import_no_method_and_a_method_no_other() -> None:
    methods = _method_packages()
    assert {"keyed", "complex", "postavg"} <= set(methods)
    wrong = []
    for module, targets in GRAPH.items():
        mine = _layer(module, methods)
        for target, line in targets.items():
            theirs = _layer(target, methods)
            if mine == "core" and theirs != "core":
                wrong.append(f"{module}:{line} (core) imports {target} ({theirs})")
            elif mine.startswith("method") and theirs != "core" and theirs != mine:
                wrong.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle() -> None:
    """Tarjan's strongly connected components of the module graph: each must be one module
    (a package's ``__init__`` importing its own submodules is no circle: it is not imported back)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in GRAPH.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_a_forbidden_import() -> None:
    """The rule above is not vacuous: the old registry's import of a method is caught."""
    methods = _method_packages()
    assert _layer("veilnet.models.registry", methods) == "core"
    assert _layer(_resolve("veilnet.complex.models") or "", methods) == "method:complex"
    assert _layer("veilnet.robust.attacks.pgd", methods) == "core"
    assert _layer("veilnet.robust.postavg", methods) == "method:postavg"
