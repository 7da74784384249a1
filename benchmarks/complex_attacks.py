"""The privacy attacks on the reproduced complex-valued networks (issue 11): Xiang et al.,
"Interpretable Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020), Tables 1–2
(reconstruction), Table 4 (angle), Fig. 3 / Table 5 (property inference) and Fig. 2.

    VEILNET_DATA=../shared/data python benchmarks/complex_attacks.py --arch lenet \\
        [--attacker-images N] [--max-images M] [--epochs E] [--angle-epochs E] [--unet-width W] \\
        [--attacks LIST] [--out DIR]

For one architecture it runs ``veilnet complex attack`` on the models that
``benchmarks/complex_reproduce.py`` trained into ``runs/benchmarks/complex_reproduce/ARCH/`` —
the complex network (row ``complex``) with every real baseline found beside it (``original``,
``additional``, ``noisy-γ``) — on the JPEG CIFAR-10: the attacker trains on N images
of the train split and the victim's images are M of the test split, both balanced over the classes. The report
(report.json, report.md, reconstructions.png) goes to ``runs/benchmarks/complex_attacks/ARCH``;
the tables in docs/benchmarks.md are copied from report.md, with this command line.

Every setting is the command's (``veilnet complex attack --help``); this script only finds the
models and fixes the budget that fits a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import DATA, REPO

TRAINED = REPO / "runs" / "benchmarks" / "complex_reproduce"
BASELINES = ("original", "additional", "noisy-0.2", "noisy-0.5", "noisy-1.0")


def command(args: argparse.Namespace) -> list[str]:
    """The ``veilnet complex attack`` argument list for ``args.arch``."""
    folder = TRAINED / args.arch
    if not (folder / "complex" / "model.json").exists():
        sys.exit(f"no trained complex model in {folder}/complex: run benchmarks/complex_reproduce.py --arch {args.arch} first")
    argv = ["complex", "attack", str(folder / "complex"), "--data", args.data]
    for row in BASELINES:
        if (folder / row / "model.json").exists():
            argv += ["--baseline", str(folder / row)]
    argv += [
        "--attacker-images",
        str(args.attacker_images),
        "--max-images",
        str(args.max_images),
        "--epochs",
        str(args.epochs),
        "--angle-epochs",
        str(args.angle_epochs),
        "--grid",
        str(args.grid),
        "--unet-width",
        str(args.unet_width),
        "--seed",
        str(args.seed),
        *(["--attacks", args.attacks] if args.attacks else []),
        "-o",
        args.out or str(REPO / "runs" / "benchmarks" / "complex_attacks" / args.arch),
    ]
    return argv + (["--force"] if args.force else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=["lenet", "resnet20-alpha", "resnet20-beta", "resnet56-alpha"])
    parser.add_argument("--data", default="folder:cifar10-jpeg.zip", help="data spec (relative paths under $VEILNET_DATA, default ../shared/data)")
    parser.add_argument("--attacker-images", type=int, default=2000)
    parser.add_argument("--max-images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--angle-epochs", type=int, default=5)
    parser.add_argument("--grid", type=int, default=180)
    parser.add_argument("--unet-width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacks", help="as the command's --attacks (default: all)")
    parser.add_argument("--out", help="output folder (default runs/benchmarks/complex_attacks/ARCH)")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    os.environ["VEILNET_DATA"] = str(DATA)
    from veilnet.cli import main as veilnet

    argv = command(args)
    print("veilnet " + " ".join(argv), flush=True)
    return veilnet(argv)


if __name__ == "__main__":
    raise SystemExit(main())
