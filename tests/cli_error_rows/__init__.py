"""Rows of the CLI error table (tests/test_cli_errors.py), one module per command group.

Each module defines ``ROWS``: a list of ``(id, argv, expected)`` where ``argv`` is the list of
arguments after ``veilnet`` and ``expected`` a substring of the one stderr line. In ``argv``,
``{name}`` is replaced by the path of a file of the table's world (see ``WORLD`` in
tests/test_cli_errors.py), ``{tmp}`` by the test's empty working folder.
"""

import importlib
import pkgutil


def all_rows() -> list[tuple[str, list[str], str]]:
    rows = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        rows += [(f"{info.name}:{row[0]}", *row[1:]) for row in module.ROWS]
    return rows
