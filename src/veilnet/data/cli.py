"""``veilnet data``: inspect a data set spec."""

from __future__ import annotations

import argparse

from veilnet.cli import add_group
from veilnet.data.cache import cache_dir
from veilnet.data.folder import SPLITS
from veilnet.data.specs import SPECS, load
from veilnet.report import markdown_table


def _info(args: argparse.Namespace) -> int:
    splits = {name: load(args.spec, name, download=args.download) for name in SPLITS}
    first = splits[SPLITS[0]]
    print(f"spec:    {args.spec}")
    print(f"classes: {first.num_classes}")
    for name, split in splits.items():
        c, h, w = split.image_shape
        print(f"{name + ':':<9}{len(split)} images, {c}×{h}×{w} uint8")
    counts = {name: split.class_counts().tolist() for name, split in splits.items()}
    rows = [[label, cls, *(counts[name][label] for name in SPLITS)] for label, cls in enumerate(first.classes)]
    print()
    print(markdown_table(["label", "class", *SPLITS], rows))
    if first.coarse_classes is not None:
        print(f"\ncoarse classes: {len(first.coarse_classes)} ({', '.join(first.coarse_classes)})")
    print(f"\ncache:   {cache_dir() / 'data'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data_sub = add_group(sub, "data")
    info = data_sub.add_parser("info", help="images per split and per class, image shape, cache location")
    info.add_argument("spec", help=f"data set: {', '.join(SPECS)}")
    info.add_argument("--download", action="store_true", help="fetch a missing CIFAR archive (MD5-checked)")
    info.set_defaults(func=_info)
