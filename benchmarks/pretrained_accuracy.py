"""Top-1 accuracy of the pretrained CIFAR ResNets on the JPEG CIFAR-10 test split.

Question: do our CIFAR ResNets (veilnet.models.resnet_cifar) with the akamaster checkpoints
reproduce the published accuracies? They were trained on the original CIFAR-10; the shared data
set is a JPEG re-encoding, which costs about 10 points (../shared/data/README.md), so the JPEG
column is the figure to match. Columns side by side: He et al. 2016 Table 6 (100 − error),
the checkpoints' own table (original CIFAR-10), the expected JPEG figure from
../shared/models/README.md, and ours.

    python benchmarks/pretrained_accuracy.py           # all 10,000 test images
    python benchmarks/pretrained_accuracy.py --quick   # first 100 test images per class
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import MODELS, REPO, add_zip, markdown_table, write_result
from veilnet import data, metrics, models

# He et al. 2016, Table 6 (CIFAR-10 test error %, original data): 8.75, 7.51, 7.17, 6.97.
PAPER = {20: 91.25, 32: 92.49, 44: 92.83, 56: 93.03}
# akamaster/pytorch_resnet_cifar10 README table, original CIFAR-10 test (../shared/models/README.md).
CHECKPOINT_TABLE = {20: 91.73, 32: 92.63, 44: 93.10, 56: 93.39}
# ../shared/models/README.md: measured on the JPEG test split (only these two are stated).
EXPECTED_JPEG = {20: 81.0, 56: 83.2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 100 test images per class instead of all 10,000")
    parser.add_argument(
        "--models",
        type=Path,
        default=MODELS,
        help=f"the folder holding the checkpoints (default: models/ beside $VEILNET_DATA: {MODELS})",
    )
    add_zip(parser)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = data.load(f"folder:{args.zip}", split="test")
    subset_name = "first 100 test images per class" if args.quick else "full test split"
    if args.quick:
        split = data.subset(split, 100)
    n = len(split.labels)

    rows, results = [], []
    for depth in PAPER:
        (checkpoint,) = args.models.glob(f"resnet{depth}-*.th")
        model = models.load_cifar_resnet(checkpoint)
        start = time.perf_counter()
        acc = 100 * metrics.accuracy(metrics.predict(model, split.images), split.labels)
        seconds = time.perf_counter() - start
        expected = EXPECTED_JPEG.get(depth)
        results.append(
            {
                "model": f"resnet{depth}",
                "checkpoint": checkpoint.name,
                "paper": PAPER[depth],
                "checkpoint_table": CHECKPOINT_TABLE[depth],
                "expected_jpeg": expected,
                "accuracy": acc,
                "n": n,
                "seconds": seconds,
            }
        )
        rows.append(
            [
                f"ResNet-{depth}",
                f"{PAPER[depth]:.2f}",
                f"{CHECKPOINT_TABLE[depth]:.2f}",
                "–" if expected is None else f"{expected:.1f}",
                f"{acc:.2f}",
                n,
                f"{n / seconds:,.0f}",
            ]
        )

    print(f"Pretrained CIFAR ResNets, JPEG CIFAR-10 test ({subset_name}, n = {n}), top-1 %, {args.threads} threads\n")
    print(markdown_table(["model", "He et al. Table 6 (orig.)", "checkpoint table (orig.)", "expected (JPEG)", "ours (JPEG)", "n", "images/s"], rows))
    out = write_result("pretrained_accuracy" + ("_quick" if args.quick else ""), {"subset": subset_name, "n": n, "results": results})
    print(f"\nwritten {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
