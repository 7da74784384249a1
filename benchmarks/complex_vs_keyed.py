"""Complex-valued networks beside keyed images under the same learned inversion (issue 11): the
U-Net inverter of Xiang et al., "Interpretable Complex-Valued Neural Networks for Privacy
Protection" (ICLR 2020), section 5.1, trained on the attacker's own images, against the complex
network's features (Tables 1–2) and against block-keyed images (Kiya et al., "An Encryption Method
of ConvMixer Models without Performance Degradation", the block-wise encryption) on the same
victim images.

    VEILNET_DATA=../shared/data python benchmarks/complex_vs_keyed.py --arch lenet [--keyed block:4 ...]

It reads the report ``benchmarks/complex_attacks.py`` wrote (``runs/benchmarks/complex_attacks/ARCH/report.json``:
the complex network's and its baselines' rows), runs the learned inversion of keyed images
(:func:`veilnet.keyed.attacks.learned_inversion.keyed_inversion`, an unseen victim key) on the
report's attacker and victim images with the report's U-Net budget and seed, and writes the
report with the keyed rows after the others (report.json, report.md, keyed.png) to
``runs/benchmarks/complex_vs_keyed/ARCH``. It imports both methods: comparing methods is a
benchmark's job, never a method's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from _common import DATA, REPO
from veilnet.attacks.inversion import InversionConfig
from veilnet.complex.attacks.suite import AttackReport, markdown, save_grid
from veilnet.data import ImageSplit, balanced_head
from veilnet.errors import ConfigError
from veilnet.paths import write_text


def keyed_scheme(spec: str) -> tuple[str, int]:
    """``"block:4"`` → ``("block", 4)``; a one-line error for anything else."""
    scheme, _, size = str(spec).partition(":")
    if scheme not in ("block", "vit") or not size.isdigit() or int(size) < 1:
        raise ConfigError(f"keyed scheme must be block:M or vit:M with a block size M >= 1, got {spec!r}")
    return scheme, int(size)


def check_keyed(specs: Sequence[str], image_shape: Sequence[int]) -> list[tuple[str, int]]:
    """Each ``scheme:M`` of ``specs`` as ``(scheme, M)``, with the one-line error of a bad spec or
    of a block size the images' size does not divide — before any training."""
    from veilnet.keyed.schemes import generate_key

    c, h, _ = image_shape
    schemes = [keyed_scheme(spec) for spec in specs]
    for scheme, block in schemes:
        generate_key(scheme, block, c, h, seed=0)
    return schemes


def compare(
    report: AttackReport,
    attacker: ImageSplit,
    victim: ImageSplit,
    keyed: Sequence[str] = ("block:4",),
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[AttackReport, dict[str, torch.Tensor]]:
    """``report`` (of :func:`veilnet.complex.attacks.suite.run_attacks` on ``attacker`` and
    ``victim``) with one row per keyed scheme of ``keyed`` appended: the learned inversion of keyed
    images on the same attacker and victim images (:func:`~veilnet.data.balanced_head`
    of the report's sizes), with the report's U-Net budget and seed. Returns the report and the
    keyed rows' reconstructions of the victim's images."""
    from veilnet.keyed.attacks.learned_inversion import keyed_inversion

    schemes = check_keyed(keyed, victim.image_shape)
    s = report.settings
    own = balanced_head(attacker, s.attacker_images).float_images()
    victims = balanced_head(victim, s.max_images).float_images()
    config = InversionConfig(epochs=s.epochs, batch_size=s.batch_size, base_width=s.unet_width, seed=s.seed)
    start = time.perf_counter()
    rows, reconstructions = [], {}
    for scheme, block in schemes:
        result, rec = keyed_inversion(
            own,
            victims,
            scheme=scheme,
            block_size=block,
            config=config,
            attacker_split=report.attacker,
            victim_split=report.victim,
            seed=s.seed,
            device=device,
            progress=progress,
        )
        rows.append(result)
        reconstructions[result.attack] = rec
    seconds = {**report.seconds, "keyed": time.perf_counter() - start}
    return dataclasses.replace(report, inversion=[*report.inversion, *rows], seconds=seconds), reconstructions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=["lenet", "resnet20-alpha", "resnet20-beta", "resnet56-alpha"])
    parser.add_argument(
        "--keyed", action="append", metavar="SCHEME:M", help="keyed scheme and block size, e.g. block:4 or vit:4 (default block:4; repeat for several)"
    )
    parser.add_argument("--report", help="the complex attacks' report.json (default runs/benchmarks/complex_attacks/ARCH/report.json)")
    parser.add_argument("--out", help="output folder (default runs/benchmarks/complex_vs_keyed/ARCH)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    os.environ["VEILNET_DATA"] = str(DATA)
    from veilnet import data
    from veilnet.paths import prepare_output

    source = Path(args.report or REPO / "runs" / "benchmarks" / "complex_attacks" / args.arch / "report.json")
    if not source.exists():
        raise SystemExit(f"no report at {source}: run benchmarks/complex_attacks.py --arch {args.arch} first")
    out = prepare_output(
        args.out or REPO / "runs" / "benchmarks" / "complex_vs_keyed" / args.arch,
        force=args.force,
        exists=["report.json", "report.md", "keyed.png"],
        mkdir=True,
    )
    report = AttackReport.load(source)
    attacker, victim = data.load(report.data, "train"), data.load(report.data, "test")
    report, reconstructions = compare(report, attacker, victim, args.keyed or ["block:4"], device=args.device)
    report.save(out / "report.json")
    write_text(out / "report.md", markdown(report))
    save_grid(out / "keyed.png", report, balanced_head(victim, report.settings.max_images).float_images(), reconstructions)
    for row in report.inversion:
        print(f"inversion {row.attack}: error {row.metrics.error:.4f} (mean image {row.baseline.error:.4f})")
    print(f"wrote {out / 'report.json'}, report.md, keyed.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
