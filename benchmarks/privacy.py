"""Which method hides what, at what cost: `veilnet bench privacy` on the JPEG CIFAR-10 at the scale the
2-core CPU finishes in under an hour, every registered defence at two settings of its knob
(:data:`CIFAR_SWEEP`; a defence it does not name at its first default setting).

    VEILNET_DATA=../shared/data python benchmarks/privacy.py [--quick] [--resume] [--threads 2]

Runs :func:`veilnet.privacy.bench.run` (the rows under runs/benchmarks/privacy/, resumable), writes
the Markdown report and the privacy–utility plane there, copies the plane to docs/privacy-cifar10.png
and the report with the machine to runs/benchmarks/privacy.json. ``--quick``: the command's quick
mode on the embedded digits (one setting per defence), about a minute per few rows.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from _common import REPO, add_zip, write_result
from veilnet import plugins
from veilnet.paths import write_bytes
from veilnet.privacy import bench, rendering
from veilnet.privacy.cli import QUICK, QUICK_DATA
from veilnet.privacy.defences import Budget

#: The CIFAR-10 scale: 8,000 training images (800 per class) for 15 epochs, accuracy on 2,000 test
#: images, 200 victims, an attacker with 2,000 images of its own and every attack model 10 epochs
#: (U-Net width 8), the optimisation inversion 200 steps. A first run at 3,000 images × 6 epochs and
#: 1,000 attacker images × 5 epochs took 13 minutes of computing on the 2-core machine (LeNet at
#: 0.63 accuracy on the task); this one, about six times the work, about 40 minutes.
CIFAR = Budget(
    train_images=8000,
    epochs=15,
    test_images=2000,
    victim_images=200,
    attacker_images=2000,
    attack_epochs=10,
    unet_width=8,
    optimisation_steps=200,
    timing_images=64,
)
#: Two settings per knob at this scale: the low and the high end of each defence's defaults; NoPeek
#: α = 2 and Shredder β = 0.02, 0.05 added after the first CIFAR-10 run, where α = 5 collapsed the
#: encoder and β ≥ 0.5 drowned the feature (rerun with --resume: the other rows are kept).
CIFAR_SWEEP = {
    "noise": [0.5, 1.0],
    "complex": [0.1, 1.0],
    "dropout": [0.5, 0.8],
    "nopeek": [1.0, 2.0, 5.0],
    "shredder": [0.02, 0.05, 0.5, 2.0],
    "keyed-block": [4.0],
    "keyed-vit": [0.0, 2.0],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick mode on the embedded digits")
    parser.add_argument("--resume", action="store_true", help="keep the rows already run")
    parser.add_argument("--defences", help="comma-separated defences (default: every registered one)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    add_zip(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "privacy_quick" if args.quick else "privacy"
    out = REPO / "runs" / "benchmarks" / name
    data, budget = (QUICK_DATA, Budget(**QUICK)) if args.quick else (f"folder:{args.zip}", CIFAR)
    chosen = [n.strip() for n in args.defences.split(",")] if args.defences else None
    sweep = {} if args.quick else CIFAR_SWEEP
    defences = {n: sweep.get(n, [d.values[0]] if d.knob else None) for n, d in plugins.load_defences(chosen).items()}
    start = time.perf_counter()
    report = bench.run(
        data,
        defences=defences,
        budget=budget,
        out_dir=out,
        resume=args.resume,
        force=not args.resume,
        progress=False,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    md, png = rendering.write(report, out)
    if not args.quick:
        write_bytes(REPO / "docs" / "privacy-cifar10.png", png.read_bytes())
    write_result(name, {"seconds": time.perf_counter() - start, "report": report.to_dict()})
    print(md.read_text())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
