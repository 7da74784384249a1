"""The ``veilnet`` command.

Each subpackage contributes its sub-commands through a ``register(subparsers)`` function in its
own ``cli`` module, listed in :data:`COMMAND_MODULES`. A user's mistake (any
:class:`~veilnet.errors.VeilnetError`, or a bad option) prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from veilnet import __version__
from veilnet.errors import ConfigError, VeilnetError

#: Modules that each define ``register(subparsers)``, in the order their commands are listed.
COMMAND_MODULES = (
    "veilnet.training_cli",
    "veilnet.demo",
    "veilnet.data.cli",
    "veilnet.models.cli",
    "veilnet.keys_cli",
    "veilnet.keyed.cli",
    "veilnet.serve.cli",
    "veilnet.robust.cli",
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command with sub-commands (``veilnet NAME SUBCOMMAND``); returns the sub-command set."""
    parser = sub.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar=f"{name.upper()}_COMMAND", parser_class=_Parser)


def add_output(parser: argparse.ArgumentParser, *, required: bool = True, help: str = "output path") -> None:
    parser.add_argument("-o", "--output", required=required, help=help)
    parser.add_argument("--force", action="store_true", help="overwrite existing output")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible run")


def parse_assignments(items: Sequence[str] | None) -> dict[str, Any]:
    """Turn ``["dim=256", "depth=8", "name=x"]`` into ``{"dim": 256, "depth": 8, "name": "x"}``.

    Values are read as YAML scalars, so numbers, booleans and lists work as expected.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"expected key=value, got {item!r}")
        out[name.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="veilnet", description="veilnet: private and robust image classification, with the attacks that test it.")
    parser.add_argument("--version", action="version", version=f"veilnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VeilnetError as exc:
        print(f"veilnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("veilnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
