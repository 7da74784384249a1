"""``veilnet bench privacy``: the privacy benchmark (:mod:`veilnet.privacy.bench`) from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from veilnet.cli import add_device, add_group, add_output, finite_float, finite_floats, positive_int, seed
from veilnet.errors import ConfigError

#: The quick mode: the embedded digits at 16 px (LeNet's smallest input), a few hundred images,
#: four training epochs and two of every attack model in batches of 16, one setting per defence — a run of about a minute per few rows on 2 CPU cores.
QUICK_DATA = "digits:size=16"
QUICK = {
    "train_images": 300,
    "epochs": 4,
    "batch_size": 16,
    "test_images": 200,
    "victim_images": 50,
    "attacker_images": 300,
    "attack_epochs": 2,
    "unet_width": 8,
    "optimisation_steps": 30,
    "timing_images": 16,
}


def _sweeps(items: list[str] | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for item in items or ():
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--sweep takes DEFENCE=V1,V2,…, got {item!r}")
        try:
            out[name.strip()] = finite_floats(values)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"--sweep {name.strip()}: {exc}") from None
    return out


def _list(args: argparse.Namespace) -> int:
    from veilnet import plugins
    from veilnet.report import markdown_table

    rows = [
        [d.name, d.method, d.knob or "–", ", ".join(f"{v:g}" for v in d.values) or "–", d.describe + (" (the reference)" if d.reference_row else "")]
        for d in plugins.load_defences().values()
    ]
    print(markdown_table(["defence", "method", "knob", "default settings", "what it does"], rows))
    return 0


def _privacy(args: argparse.Namespace) -> int:
    from veilnet import plugins
    from veilnet.privacy import bench, rendering
    from veilnet.privacy.defences import Budget

    if args.list:
        return _list(args)
    if not args.output:
        raise ConfigError("--output DIR is required (where the rows, report.json, report.md and privacy.png go)")
    sweeps = _sweeps(args.sweep)
    names = [n.strip() for n in args.defences.split(",") if n.strip()] if args.defences else list(plugins.load_defences())
    unknown_sweeps = sorted(set(sweeps) - set(names))
    if unknown_sweeps:
        raise ConfigError(f"--sweep names {', '.join(unknown_sweeps)}, not among the defences run ({', '.join(names)})")
    chosen = plugins.load_defences(names)
    defences: dict[str, list[float] | None] = {}
    for name, defence in chosen.items():
        values = sweeps.get(name)
        if values is None and args.quick and defence.knob:
            values = [defence.values[0]]
        defences[name] = values
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Budget) if getattr(args, f.name, None) is not None}
    budget = Budget(**{**(QUICK if args.quick else {}), **given})
    if not args.data and not args.quick:
        raise ConfigError(f"--data SPEC is required without --quick (the quick mode runs on {QUICK_DATA})")
    data = args.data or QUICK_DATA

    def log(line: str) -> None:
        print(f"veilnet: {line}", file=sys.stderr, flush=True)

    report = bench.run(
        data,
        defences=defences,
        budget=budget,
        out_dir=args.output,
        resume=args.resume,
        force=args.force,
        device=args.device,
        progress=not args.quick,
        log=log,
    )
    md, png = rendering.write(report, args.output)
    print(rendering.summary_table(report))
    print(f"\nreport: {md}\nplot:   {png}\nrows:   {args.output}/rows/")
    if report.failed:
        log(f"{len(report.failed)} row(s) failed: {', '.join(report.failed)}; rerun with --resume")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    bench_sub = add_group(sub, "bench")
    p = bench_sub.add_parser(
        "privacy",
        help="every defence on the same victim images and attacker: accuracy, time, reconstruction (PSNR, SSIM), property inference",
        description="The privacy benchmark: every registered defence (or --defences) at each setting of its knob (or --sweep), "
        "trained for the same reduced task, timed, and attacked by the same attacker on the same victim images. "
        "Writes rows/*.json as each row ends (--resume keeps them), report.json, report.md and privacy.png.",
    )
    p.add_argument("--list", action="store_true", help="list the registered defences, their knobs and default settings, and exit")
    p.add_argument("--data", help=f"data set spec, e.g. folder:cifar10-jpeg.zip (with --quick: {QUICK_DATA})")
    p.add_argument("--defences", help="comma-separated defences to run (default: every registered one; see --list)")
    p.add_argument("--sweep", action="append", metavar="DEFENCE=V1,V2", help="settings of a defence's knob instead of its defaults (repeatable)")
    p.add_argument("--quick", action="store_true", help="a small run on the embedded digits: few images, 2 epochs, one setting per defence")
    p.add_argument("--arch", help="architecture of the split rows: lenet or resnet20-alpha (default: lenet)")
    p.add_argument("--width", type=finite_float, help="channel-width multiplier of the split rows (default: 1)")
    for name, what in (
        ("train-images", "training images of the task, from the train split (default: 2000)"),
        ("epochs", "training epochs of every row (default: 10)"),
        ("batch-size", "batch size of every training (default: 64)"),
        ("test-images", "test images for the accuracy (default: 1000)"),
        ("victim-images", "victim images the attacks reconstruct, the first of the test images (default: 200)"),
        ("attacker-images", "the attacker's own images, from the train split (default: 1000)"),
        ("attack-epochs", "epochs of every attack model (default: 10)"),
        ("unet-width", "base width of the attacker's U-Net (default: 16)"),
        ("optimisation-steps", "Adam steps of the optimisation inversion (default: 200)"),
        ("timing-images", "images per timing pass (default: 64)"),
    ):
        p.add_argument(f"--{name}", dest=name.replace("-", "_"), type=positive_int, help=what)
    p.add_argument("--lr", type=finite_float, help="peak learning rate of the real rows' SGD (default: 0.05)")
    p.add_argument("--seed", type=seed, help="seed of every draw but the victims' keys (default: 0)")
    p.add_argument("--resume", action="store_true", help="keep the rows already in --output and run the others")
    add_output(p, required=False, help="output folder")
    add_device(p)
    p.set_defaults(func=_privacy, resume_marker="run.json")


__all__ = ["QUICK", "QUICK_DATA", "register"]
