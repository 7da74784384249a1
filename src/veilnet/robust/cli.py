"""``veilnet robust``: evaluate post-averaging under both protocols, and sweep its parameters.

    veilnet robust evaluate MODEL --data SPEC --attacks fgsm,pgd,deepfool,cw,eot-pgd,square \\
        --defense postavg --radius 6 --directions 15 --n-per-class 100 --seed 0 -o DIR
    veilnet robust sweep MODEL --data SPEC --radii 1,2,4,6,8,12 --directions-list 6,15,30,60 -o DIR

MODEL is a veilnet model (``.safetensors``/``.json``/stem/directory) or a pretrained CIFAR ResNet
checkpoint (``.th``, read by :func:`veilnet.models.load_cifar_resnet`).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from typing import TYPE_CHECKING

from torch import nn

from veilnet.cli import add_device, add_group, add_output, add_seed, parse_assignments
from veilnet.errors import ConfigError, OutputExistsError

if TYPE_CHECKING:
    from veilnet.data import ImageSplit
    from veilnet.robust.evaluation import Sweep


def load_model(path: str) -> nn.Module:
    """A veilnet model file, or an akamaster CIFAR ResNet checkpoint (``.th``)."""
    from veilnet import models

    if path.endswith(".th"):
        return models.load_cifar_resnet(path)
    return models.load(path)


def _eps(text: str) -> float:
    """``8/255`` or ``0.031``."""
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction like 8/255, got {text!r}") from None


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _out_dir(args: argparse.Namespace) -> Path:
    """The output directory, once the arguments that fail only late (sweep attack, overwrite) are checked."""
    from veilnet.robust.attacks import SETTINGS

    if args.sweep_attack not in SETTINGS:
        raise ConfigError(f"unknown --sweep-attack {args.sweep_attack!r}; expected one of {', '.join(SETTINGS)}")
    out = Path(args.output)
    if (out / "report.md").exists() and not args.force:
        raise OutputExistsError(f"{out / 'report.md'} exists (pass --force to overwrite)")
    return out


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (veilnet .safetensors/.json/dir) or CIFAR ResNet checkpoint (.th)")
    parser.add_argument("--data", default="digits", help="data spec, e.g. folder:/path/cifar10-jpeg.zip (default: digits)")
    parser.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    parser.add_argument("--n-per-class", type=int, default=100, help="first N images of each class (default: 100)")
    parser.add_argument("--eps", type=_eps, default=8 / 255, help="L∞ budget in pixels (default: 8/255)")
    parser.add_argument("--defense", choices=["postavg"], default="postavg", help="defence (default: postavg)")
    parser.add_argument("--radius", type=float, default=6.0, help="post-averaging radius r (default: 6)")
    parser.add_argument("--directions", type=int, default=15, help="post-averaging directions K (default: 15)")
    parser.add_argument("--space", choices=["normalized", "pixel"], default="normalized", help="space the radius is measured in (default: normalized)")
    parser.add_argument("--sweep-attack", default="pgd-min", help="attack whose adversarials the sweeps defend against (default: pgd-min, the paper's)")
    add_seed(parser)
    add_device(parser)
    add_output(parser, help="output directory (JSON, report.md, PNG plots)")


def _evaluate(args: argparse.Namespace) -> int:
    from veilnet import data
    from veilnet.robust import evaluation as ev

    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not names:
        raise ConfigError("--attacks needs at least one attack name")
    overrides: dict[str, dict[str, object]] = {}
    for key, value in parse_assignments(args.set).items():
        attack, dot, option = key.partition(".")
        if not dot or attack.replace("_", "-") not in names:
            raise ConfigError(f"--set expects ATTACK.KEY=VALUE for one of the attacks run ({', '.join(names)}), got {key!r}")
        overrides.setdefault(attack.replace("_", "-"), {})[option] = value
    out = _out_dir(args)
    model = load_model(args.model)
    split = data.load(args.data, split=args.split)
    evaluation = ev.evaluate(
        model, split, attacks=names, overrides=overrides, n_per_class=args.n_per_class, slow_n_per_class=args.slow_n_per_class, eps=args.eps,
        directions=args.directions, radius=args.radius, space=args.space, seed=args.seed, model_name=Path(args.model).name, device=args.device,
    )  # fmt: skip
    sweeps = _sweeps(args, model, split, args.sweep_radii, args.sweep_directions, args.sweep_n_per_class, evaluation.seed)
    report = ev.write_report(out, evaluation, sweeps)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


def _sweeps(args: argparse.Namespace, model: nn.Module, split: ImageSplit, radii: list[float] | None, directions: list[float] | None, n_per_class: int, seed: int | None) -> list[Sweep]:
    """The radius sweep (at K = --directions) and the directions sweep (at r = --radius) asked for."""
    from veilnet.robust.evaluation import sweep

    grid = {name: values for name, values in (("radius", radii), ("directions", directions)) if values}
    if not grid:
        return []
    return sweep(
        model, split, grid, attack=args.sweep_attack, n_per_class=n_per_class, eps=args.eps, directions=args.directions, radius=args.radius,
        space=args.space, seed=seed, model_name=Path(args.model).name, device=args.device,
    )  # fmt: skip


def _sweep(args: argparse.Namespace) -> int:
    from veilnet import data
    from veilnet.robust import evaluation as ev

    if not args.radii and not args.directions_list:
        raise ConfigError("sweep needs --radii and/or --directions-list")
    out = _out_dir(args)
    model = load_model(args.model)
    split = data.load(args.data, split=args.split)
    sweeps = _sweeps(args, model, split, args.radii, args.directions_list, args.n_per_class, args.seed)
    report = ev.write_report(out, None, sweeps)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    robust_sub = add_group(sub, "robust", "post-averaging defence and evasion attacks")
    evaluate = robust_sub.add_parser("evaluate", help="the paper's protocol (attacks on the undefended model) and the adaptive one (attacks on the defence)")
    _common(evaluate)
    evaluate.add_argument("--attacks", default="fgsm,pgd,fgsm-min,pgd-min,deepfool,cw,eot-pgd,square", help="comma-separated: fgsm,pgd,fgsm-min,pgd-min,deepfool,cw (paper protocol; -min: smallest budget, Foolbox 2 defaults), eot-pgd,square (adaptive)")
    evaluate.add_argument("--slow-n-per-class", type=int, default=None, help="images per class for cw, eot-pgd and square (default: --n-per-class)")
    evaluate.add_argument("--set", nargs="*", metavar="ATTACK.KEY=VALUE", help="change an attack's settings, e.g. square.queries=100 cw.steps=30")
    evaluate.add_argument("--sweep-radii", type=_numbers, default=None, help="also sweep the radius over these values (paper Fig. 2)")
    evaluate.add_argument("--sweep-directions", type=_numbers, default=None, help="also sweep K over these values, with time per image (paper Table 2)")
    evaluate.add_argument("--sweep-n-per-class", type=int, default=10, help="images per class for the sweeps (default: 10)")
    evaluate.set_defaults(func=_evaluate)
    sweep = robust_sub.add_parser("sweep", help="defence rate against PGD and time per image over radii and numbers of directions")
    _common(sweep)
    sweep.set_defaults(n_per_class=10)
    sweep.add_argument("--radii", type=_numbers, default=None, help="radii to try, e.g. 1,2,4,6,8,12")
    sweep.add_argument("--directions-list", type=_numbers, default=None, help="numbers of directions to try, e.g. 6,15,30,60")
    sweep.set_defaults(func=_sweep)
