"""``veilnet robust``: evaluate post-averaging under both protocols, and sweep its parameters.

    veilnet robust evaluate MODEL --data SPEC --attacks fgsm,pgd,deepfool,cw,eot-pgd,square,apgd-ce,apgd-dlr \\
        --defense postavg --radius 6 --directions 15 --draws 5 --n-per-class 100 --seed 0 -o DIR
    veilnet robust sweep MODEL --data SPEC --radii 1,2,4,6,8,12 --directions-list 6,15,30,60 -o DIR
    veilnet robust certify MODEL --data SPEC --sigma 0.25 --n 10000 --radii 0.25,0.5,0.75,1 -o DIR

MODEL is a veilnet model (``.safetensors``/``.json``/stem/directory) or a pretrained CIFAR ResNet
checkpoint (``.th``, read by :func:`veilnet.models.load_cifar_resnet`). The options both commands
share are the fields of :class:`veilnet.robust.setting.Setting`. Every option (the attacks, their
``--set`` overrides, the sweep values, the device and the output folder) is checked before the
model is loaded. torch is imported only when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veilnet.cli import add_compile, add_device, add_group, add_output, add_seed, finite_float, finite_floats, model_data, parse_assignments, positive_int
from veilnet.errors import ConfigError
from veilnet.robust.setting import Setting

if TYPE_CHECKING:
    from torch import nn

    from veilnet.data import ImageSplit
    from veilnet.robust.results import Sweep


def load_model(path: str) -> nn.Module:
    """A veilnet model file, or an akamaster CIFAR ResNet checkpoint (``.th``)."""
    from veilnet import models

    if path.endswith(".th"):
        return models.load_cifar_resnet(path)
    return models.load(path)


def _model_and_data(args: argparse.Namespace) -> tuple[nn.Module, ImageSplit]:
    """The model and the split the options name, checked before any work: a plain classifier
    (not one transformed for encoded inputs) that takes the split's images, of the data set it
    was trained on (:func:`veilnet.cli.model_data`)."""
    from veilnet import data, models

    model = load_model(args.model)
    models.check_plain(model, where=args.model)
    spec = model_data(getattr(model, "veilnet_card", None), args.data, model=args.model)
    split = data.load(spec, split=args.split)
    models.check_input(model, split.image_shape, data=spec)
    return model, split


DATA_HELP = "data spec, e.g. folder:/path/cifar10-jpeg.zip (default: the data the model's card records; another data set is refused)"


def _names(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (veilnet .safetensors/.json/dir) or CIFAR ResNet checkpoint (.th)")
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    parser.add_argument("--n-per-class", type=positive_int, default=100, help="first N images of each class (default: 100)")
    parser.add_argument("--defense", choices=["postavg"], default="postavg", help="defence (default: postavg)")
    parser.add_argument("--sweep-attack", default="pgd-min", help="attack whose adversarials the sweeps defend against (default: pgd-min, the paper's)")
    Setting.add_arguments(parser)
    add_output(parser, help="output directory (JSON, report.md, PNG plots)")


def _prepare(args: argparse.Namespace, names: list[str], overrides: dict[str, dict[str, Any]], grid: dict[str, list[float]]) -> tuple[Setting, Path]:
    """Check everything that can be checked without the model: the setting, the device, the
    attacks and their overrides, the sweep values, the output folder."""
    from veilnet.devices import resolve_device
    from veilnet.paths import prepare_output
    from veilnet.robust import evaluation as ev

    setting = Setting.from_args(args)
    resolve_device(setting.device)
    ev.check_attacks(names, overrides, setting)
    if grid:
        ev.check_attacks([args.sweep_attack], None, setting)
        for parameter, values in grid.items():
            for value in values:
                setting.replace(**{parameter: ev.sweep_value(parameter, value)})
    out = prepare_output(args.output, force=args.force, exists=["report.md"], mkdir=False)
    return setting, out


def _overrides(items: list[str] | None, names: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(items).items():
        attack, dot, option = key.partition(".")
        attack = attack.replace("_", "-")
        if not dot or not option or attack not in names:
            raise ConfigError(f"--set expects ATTACK.KEY=VALUE for one of the attacks run ({', '.join(names)}), got {key!r}")
        overrides.setdefault(attack, {})[option] = value
    return overrides


def _grid(radii: list[float] | None, directions: list[float] | None) -> dict[str, list[float]]:
    return {name: values for name, values in (("radius", radii), ("directions", directions)) if values}


def _evaluate(args: argparse.Namespace) -> int:
    """``veilnet robust evaluate``, alone or under torchrun (the ranks share the attacks, rank 0 reports)."""
    from veilnet import distributed
    from veilnet.devices import resolve_device
    from veilnet.robust import evaluation as ev

    names = _names(args.attacks)
    if not names:
        raise ConfigError("--attacks needs at least one attack name")
    overrides = _overrides(args.set, names)
    grid = _grid(args.sweep_radii, args.sweep_directions)
    setting, out = _prepare(args, names, overrides, grid)
    with distributed.session(resolve_device(setting.device)) as device:
        setting = setting.replace(device=str(device))
        model, split = _model_and_data(args)
        evaluation = ev.evaluate(
            model,
            split,
            setting,
            attacks=names,
            overrides=overrides,
            n_per_class=args.n_per_class,
            slow_n_per_class=args.slow_n_per_class,
            model_name=Path(args.model).name,
            compile=args.compile,
        )
        if not distributed.is_main():  # under torchrun: rank 0 has the merged evaluation and writes it
            return 0
    sweeps = _sweeps(args, model, split, grid, args.sweep_n_per_class, evaluation.setting)
    return _report(out, evaluation, sweeps)


def _sweeps(args: argparse.Namespace, model: nn.Module, split: ImageSplit, grid: dict[str, list[float]], n_per_class: int, setting: Setting) -> list[Sweep]:
    """The radius sweep (at K = --directions) and the directions sweep (at r = --radius) asked for."""
    from veilnet.robust.evaluation import sweep

    if not grid:
        return []
    return sweep(model, split, grid, setting, attack=args.sweep_attack, n_per_class=n_per_class, model_name=Path(args.model).name)


def _report(out: Path, evaluation: Any, sweeps: list[Sweep]) -> int:
    from veilnet.robust.rendering import write_report

    report = write_report(out, evaluation, sweeps)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    grid = _grid(args.radii, args.directions_list)
    if not grid:
        raise ConfigError("sweep needs --radii and/or --directions-list")
    if args.randomness != "fresh":
        raise ConfigError("--randomness applies to the adaptive attacks of evaluate; the sweeps' defence always draws fresh directions")
    setting, out = _prepare(args, [args.sweep_attack], {}, grid)
    model, split = _model_and_data(args)
    return _report(out, None, _sweeps(args, model, split, grid, args.n_per_class, setting))


def _probability(text: str) -> float:
    """argparse ``type``: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _certify(args: argparse.Namespace) -> int:
    """``veilnet robust certify``: every option checked, then the model loaded and certified."""
    from veilnet.checks import check_budget
    from veilnet.devices import resolve_device
    from veilnet.paths import prepare_output
    from veilnet.robust import certification
    from veilnet.robust.rendering import write_certification

    setting = Setting(directions=args.directions, radius=args.postavg_radius, draws=args.draws, seed=args.seed, device=args.device)
    resolve_device(setting.device)
    options = {"sigma": args.sigma, "n0": args.n0, "n": args.n, "alpha": args.alpha, "batch": args.batch, "radii": args.radii}
    certification.check(**options)
    out = prepare_output(args.output, force=args.force, exists=["report.md"], mkdir=False)
    model, split = _model_and_data(args)
    for radius in args.radii:
        check_budget("--radii", radius, norm="l2", shape=split.image_shape)
    result = certification.certify(
        model, split, **options, n_per_class=args.n_per_class, setting=setting, attack_batch=args.attack_batch, model_name=Path(args.model).name
    )
    report = write_certification(out, result)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    robust_sub = add_group(sub, "robust")
    evaluate = robust_sub.add_parser("evaluate", help="the paper's protocol (attacks on the undefended model) and the adaptive one (attacks on the defence)")
    _common(evaluate)
    evaluate.add_argument(
        "--attacks",
        default="fgsm,pgd,fgsm-min,pgd-min,deepfool,cw,eot-pgd,square",
        help="comma-separated: fgsm,pgd,fgsm-min,pgd-min,deepfool,cw (paper protocol; -min: smallest budget, Foolbox 2 "
        "defaults), eot-pgd,square,apgd-ce,apgd-dlr (adaptive; the report heads with the per-image worst case over them)",
    )
    evaluate.add_argument(
        "--slow-n-per-class", type=positive_int, default=None, help="images per class for cw, eot-pgd, square, apgd-ce and apgd-dlr (default: --n-per-class)"
    )
    add_compile(
        evaluate,
        default=True,
        why="post-averaging ran 0.67-0.73x eager here and an evaluation runs it on thousands of images (docs/benchmarks.md, Compiled execution)",
    )
    evaluate.add_argument("--set", nargs="*", metavar="ATTACK.KEY=VALUE", help="change an attack's settings, e.g. square.queries=100 cw.steps=30")
    evaluate.add_argument("--sweep-radii", type=finite_floats, default=None, help="also sweep the radius over these values (paper Fig. 2)")
    evaluate.add_argument("--sweep-directions", type=finite_floats, default=None, help="also sweep K over these values, with time per image (paper Table 2)")
    evaluate.add_argument("--sweep-n-per-class", type=positive_int, default=10, help="images per class for the sweeps (default: 10)")
    evaluate.set_defaults(func=_evaluate, torchrun=True)
    sweep = robust_sub.add_parser("sweep", help="defence rate against PGD and time per image over radii and numbers of directions")
    _common(sweep)
    sweep.set_defaults(n_per_class=10)
    sweep.add_argument("--radii", type=finite_floats, default=None, help="radii to try, e.g. 1,2,4,6,8,12")
    sweep.add_argument("--directions-list", type=finite_floats, default=None, help="numbers of directions to try, e.g. 6,15,30,60")
    sweep.set_defaults(func=_sweep)
    certify = robust_sub.add_parser(
        "certify", help="randomised smoothing's certified accuracy against L2 radius, beside post-averaging's under L2 EOT-PGD on the same images"
    )
    certify.add_argument("model", help="model file (veilnet .safetensors/.json/dir) or CIFAR ResNet checkpoint (.th)")
    certify.add_argument(
        "--sigma", type=finite_float, required=True, help="σ of the smoothing noise in [0, 1] pixel space (that the model was trained with, e.g. 0.25)"
    )
    certify.add_argument("--n", type=positive_int, default=10_000, help="noise samples estimating p_A per image (default: 10000)")
    certify.add_argument("--n0", type=positive_int, default=100, help="noise samples selecting the top class per image (default: 100)")
    certify.add_argument("--alpha", type=_probability, default=0.001, help="failure probability of each certificate (default: 0.001)")
    certify.add_argument("--batch", type=positive_int, default=1000, help="noisy copies per forward pass (default: 1000)")
    certify.add_argument(
        "--radii", type=finite_floats, default=[0.25, 0.5, 0.75, 1.0], help="L2 radii in [0, 1] pixels to compare at (default: 0.25,0.5,0.75,1)"
    )
    certify.add_argument("--data", help=DATA_HELP)
    certify.add_argument("--split", default="test", help="split to certify (default: test)")
    certify.add_argument("--n-per-class", type=positive_int, default=10, help="first N images of each class (default: 10)")
    certify.add_argument("--directions", type=int, default=15, help="post-averaging directions K (default: 15)")
    certify.add_argument("--postavg-radius", type=finite_float, default=6.0, help="post-averaging radius r, normalised space (default: 6)")
    certify.add_argument("--draws", type=int, default=5, help="draws of post-averaging's directions each of its accuracies is averaged over (default: 5)")
    certify.add_argument(
        "--attack-batch", type=positive_int, default=8, help="images per batch of the attack on post-averaging (default: 8; raise it on a GPU)"
    )
    add_seed(certify)
    add_device(certify)
    add_output(certify, help="output directory (certification.json, report.md, certify.png)")
    certify.set_defaults(func=_certify)
