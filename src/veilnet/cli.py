"""The ``veilnet`` command.

Each subpackage contributes its commands through a ``register(subparsers)`` function in its
own ``cli`` module; :data:`COMMANDS` names the module and the one-line help of the core's commands,
and each method's :class:`veilnet.plugins.Method` names its own (:func:`commands`).
Only the module of the command being run is imported, so ``veilnet --help`` starts without
importing torch; the ``data``, ``demo``, ``serve`` and ``query`` modules import it when their parser
is built, the others only when the command runs. A user's mistake (any
:class:`~veilnet.errors.VeilnetError`, or a bad option) prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path, PurePath
from typing import Any, NoReturn

from veilnet import __version__
from veilnet.errors import ConfigError, VeilnetError

#: The core's commands -> (module whose ``register(subparsers)`` adds it, one-line help), in listing order.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("veilnet.training.cli", "train a zoo model on a data set"),
    "eval": ("veilnet.training.cli", "accuracy, per-class accuracy and confusion matrix of a saved model"),
    "demo": ("veilnet.demo", "train, protect, attack, compare the methods and report on the embedded digits data (about a minute and a half on 2 CPU cores)"),
    "data": ("veilnet.data.cli", "data sets"),
    "models": ("veilnet.models.cli", "the model zoo and model files"),
    "serve": ("veilnet.serve.cli", "serve a transformed model or a complex network's processor over HTTP (the untrusted server: no secret, no plain images)"),
    "query": ("veilnet.serve.cli", "classify images with a served model: encrypt or encode them with the secret here, send only the result"),
    "bench": ("veilnet.privacy.cli", "benchmarks across methods: privacy (which method hides what, from which attacker, at what cost)"),
    "fl": ("veilnet.federated.cli", "federated training with Flower (FedAvg), then a key per client: run (simulation), server, client"),
}


def commands() -> dict[str, tuple[str, str]]:
    """Every command: the core's (:data:`COMMANDS`), then the registered methods' (:mod:`veilnet.plugins`)."""
    from veilnet import plugins

    return {**COMMANDS, **plugins.commands()}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_command(sub: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of top-level command ``name``, with its help from :data:`COMMANDS`."""
    help = commands()[name][1]
    return sub.add_parser(name, help=help, description=help, **kwargs)


def add_group(sub: argparse._SubParsersAction, name: str) -> argparse._SubParsersAction:
    """A command with sub-commands (``veilnet NAME SUBCOMMAND``); returns the sub-command set."""
    parser = add_command(sub, name)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar=f"{name.upper()}_COMMAND", parser_class=_Parser)


def add_output(parser: argparse.ArgumentParser, *, required: bool = True, help: str = "output path") -> None:
    parser.add_argument("-o", "--output", required=required, help=help)
    parser.add_argument("--force", action="store_true", help="overwrite existing output")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def add_compile(parser: argparse.ArgumentParser, *, default: bool, why: str) -> None:
    """``--compile`` / ``--no-compile``: run the model through ``veilnet.models.prepare``
    (torch.compile where it can, eager where not); ``default`` is what measurement on the 2-core
    CPU found faster for the command's typical run, warm-up included (``why`` says so)."""
    state = "on" if default else "off"
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"compile the model with torch.compile (inductor) where it can be (default: {state}; {why})",
    )


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=seed, default=None, help="seed for a reproducible run")


#: Seeds are below 2^63: torch and numpy take no larger one.
SEED_LIMIT = 2**63


def seed(text: str) -> int:
    """argparse ``type`` for every ``--seed``: an integer 0 ≤ seed < 2^63, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a seed, a non-negative integer below 2^63, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse ``type`` for every number option (rates, weights, budgets): a finite number or a
    fraction like ``8/255``; ``nan``, ``inf`` and what overflows a float are a one-line usage error."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number or a fraction like 8/255, got {text!r}")
    return value


def finite_floats(text: str) -> list[float]:
    """argparse ``type`` for a list of numbers: ``1,2,8/255`` -> a non-empty list of :func:`finite_float`."""
    try:
        values = [finite_float(v) for v in text.split(",") if v.strip()]
    except argparse.ArgumentTypeError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (finite numbers or fractions like 8/255), got {text!r}")
    return values


def positive_int(text: str) -> int:
    """argparse ``type`` for counts (``--limit``, ``--holdout``, ...): an integer ≥ 1, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def model_data(card: Mapping[str, Any] | None, given: str | None, *, model: str) -> str:
    """The data spec a command runs saved model ``model`` on: ``--data`` (``given``) when given,
    else the data its card records (it was trained on). A given spec naming another data set than
    the card's (another kind, or another file or folder name: the same data may lie at another
    path) is a one-line :class:`ConfigError` naming both; so is no data at all."""
    trained = (card or {}).get("data")
    if given is None:
        if not trained:
            raise ConfigError(f"{model}'s card records no data set: pass --data SPEC")
        return str(trained)
    if trained and _data_name(given) != _data_name(str(trained)):
        raise ConfigError(f"{model} was trained on {trained!r}, not --data {given!r}: leave out --data to use the model's own data")
    return given


def _data_name(spec: str) -> tuple[str, str]:
    """What names a data set in a spec, wherever it lies: its kind and its argument's last path component."""
    kind, _, arg = spec.partition(":")
    return kind.strip().lower(), PurePath(arg.strip()).name


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``veilnet`` parser with ``command`` fully registered (its module imported) and every
    other command as a name with its help only; ``None`` registers all of them."""
    parser = _Parser(prog="veilnet", description="veilnet: private and robust image classification, with the attacks that test it.")
    parser.add_argument("--version", action="version", version=f"veilnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    every = commands()
    modules = [module for name, (module, _) in every.items() if command is None or name == command]
    for module in dict.fromkeys(modules):
        importlib.import_module(module).register(sub)
    for name, (_, help) in every.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help)
    order = list(every)
    sub._choices_actions.sort(key=lambda action: order.index(action.dest))
    return parser


@contextlib.contextmanager
def _show_log(name: str, *, show: bool) -> Iterator[None]:
    """While the command runs, print the INFO lines of logger ``name`` on stderr as
    ``veilnet: MESSAGE`` (when ``show``); afterwards the logger is as it was, so a command run
    in-process (a test, a notebook) leaves no handler behind for the next one."""
    logger = logging.getLogger(name)
    if not show or logger.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("veilnet: %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command if command in commands() else "").parse_args(argv)
    try:
        if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1") and not getattr(args, "torchrun", False):
            # Each process would run the whole job and write the same files (docs/distributed.md).
            name = " ".join(a for a in argv[:2] if not a.startswith("-"))
            raise ConfigError(f"veilnet {name} runs in one process; start it without torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']})")
        # its one line: whether the model runs compiled (said by rank 0 alone under torchrun)
        with _show_log("veilnet.models.prepared", show=hasattr(args, "compile") and os.environ.get("RANK", "0") == "0"):
            return int(args.func(args) or 0)
    except VeilnetError as exc:
        print(f"veilnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"veilnet: interrupted{_how_to_resume(args)}", file=sys.stderr)
        return 130


def _how_to_resume(args: argparse.Namespace) -> str:
    """What an interrupted command that takes ``--resume`` (its parser sets ``args.resume``) says
    about continuing: resume once its run has a checkpoint (by default a training's, written after
    each epoch; a parser names another file in ``args.resume_marker``), else start again."""
    if "resume" not in vars(args) or not getattr(args, "output", None):
        return ""
    from veilnet.training import CHECKPOINT

    marker = getattr(args, "resume_marker", CHECKPOINT)
    if (Path(args.output) / marker).is_file():
        return "; resume with the same command and --resume"
    when = "written after each epoch" if marker == CHECKPOINT else f"{marker}, written when the run starts"
    return f" before the first checkpoint ({when}); run the same command again to start over"


if __name__ == "__main__":
    sys.exit(main())
