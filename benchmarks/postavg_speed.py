"""Post-averaging's cost against the authors' algorithm, and what folding batch norm buys (issue 26).

    python benchmarks/postavg_speed.py [--n 20] [--reps 7] [--agree 1000]

The peer is **our transcription of the authors' algorithm** ("Bandlimiting Neural Networks Against
Adversarial Attacks", section 3, as their public code runs it), written here, not their code: one
image per call; K random directions drawn for that image (standard normal over C·H·W values,
normalised to unit L2 length); the points x, x ± (r/3)v, x ± (2r/3)v, x ± rv (91 for K = 15) as one
batch through the model, which takes *normalised* inputs (the radius is measured there); the
logits copied into a preallocated table; the softmax of each row averaged. Eager, without gradients.
Before timing, it and ``PostAveraging`` are run on the same directions and their averaged
probabilities compared (the largest difference is printed).

Rows, timed in turn (one of each per round, ``--reps`` rounds after one warm-up call each) on the
first ``--n`` JPEG CIFAR-10 test images, pretrained ResNet-20, K = 15, r = 6, 1 torch thread,
without gradients: the transcription; ``PostAveraging`` eager and compiled, each with ``fold=False``
(the model as it is) and with the folded inference copy (:mod:`veilnet.models.folded`, the
default). Each ratio is the median of the per-round ratios to the transcription, with their range.

``--agree N``: predictions of the fastest configuration (compiled, folded) against the model as it
is (eager, ``fold=False``) on the first N test images with the same fixed directions (seed 0):
how many are identical, and the largest difference of the log-probabilities.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from _common import CIFAR_ZIP, MODELS, markdown_table, write_result
from robust_speed import interleaved
from veilnet import data
from veilnet.metrics import as_float
from veilnet.models import load_cifar_resnet
from veilnet.robust import PostAveraging

K, RADIUS = 15, 6.0


def authors_transcription(net: nn.Module, z: torch.Tensor, shifts: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """Our transcription of the authors' post-averaging for one normalised image ``z`` (1×C×H×W):
    the averaged softmax (1×classes). ``net`` takes normalised inputs; ``shifts`` (K×C×H×W unit
    directions) or, when None, K fresh ones from ``generator``."""
    if shifts is None:
        shifts = F.normalize(torch.randn(K, z[0].numel(), generator=generator), p=2, dim=1).view(K, *z.shape[1:])
    shifts = torch.cat([shifts, -shifts])
    points = torch.cat([z, *(z + r * shifts for r in (RADIUS / 3, 2 * RADIUS / 3, RADIUS))])
    with torch.no_grad():
        logits = net(points)
        feats = torch.empty(points.shape[0], logits.shape[1])
        feats[:] = logits
    return F.softmax(feats, dim=1).mean(0, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="images timed (default 20)")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--agree", type=int, default=0, help="also compare predictions on this many test images (e.g. 1000)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_cifar_resnet(MODELS / "resnet20-12fca82f.th").eval()
    net = copy.deepcopy(model)
    net.normalize = nn.Identity()  # the authors' model takes normalised inputs
    split = data.load(f"folder:{CIFAR_ZIP}", split="test")
    x = as_float(split.images[: args.n])
    load = [os.getloadavg()[0]]

    # the transcription against PostAveraging on the same directions
    seeded = PostAveraging(model, K, RADIUS, seed=0, fold=False)
    raw = torch.randn(1, K, *x.shape[1:], generator=torch.Generator().manual_seed(0))
    unit = raw / raw.flatten(2).norm(dim=2)[:, :, None, None, None]
    with torch.no_grad():
        ours = seeded(x).exp()
        theirs = torch.cat([authors_transcription(net, model.normalize(img[None]), unit[0], None) for img in x])
    agreement = (ours - theirs).abs().max().item()
    print(f"transcription vs PostAveraging, same directions, {args.n} images: max |Δ probability| {agreement:.1e}", flush=True)

    variants = {
        "eager, fold=False": PostAveraging(model, K, RADIUS, generator=torch.Generator().manual_seed(0), fold=False),
        "eager, folded": PostAveraging(model, K, RADIUS, generator=torch.Generator().manual_seed(0)),
        "compiled, fold=False": PostAveraging(model, K, RADIUS, generator=torch.Generator().manual_seed(0), compile=True, fold=False),
        "compiled, folded": PostAveraging(model, K, RADIUS, generator=torch.Generator().manual_seed(0), compile=True),
    }
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for pa in variants.values():
            pa(x[:2])  # compiles, measures the batch size, builds the folded copy
        times = interleaved(
            lambda: torch.cat([authors_transcription(net, model.normalize(img[None]), None, gen) for img in x]),
            *[(lambda pa=pa: pa(x)) for pa in variants.values()],
            reps=args.reps,
        )
    load.append(os.getloadavg()[0])
    authors_t, *ours_t = times
    rows = [
        ["our transcription of the authors' algorithm (per image, 91 points as one batch, eager)", f"{statistics.median(authors_t) / args.n * 1e3:.1f}", "1"]
    ]
    result: dict = {"n": args.n, "reps": args.reps, "transcription_max_abs_diff": agreement, "authors_s": authors_t, "variants": {}}
    for name, t in zip(variants, ours_t):
        ratios = sorted(a / b for a, b in zip(t, authors_t))
        rows.append(
            [f"PostAveraging, {name}", f"{statistics.median(t) / args.n * 1e3:.1f}", f"**{statistics.median(ratios):.3f}** ({ratios[0]:.3f}–{ratios[-1]:.3f})"]
        )
        result["variants"][name] = {"seconds": t, "ratio_median": statistics.median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1]}

    if args.agree:
        xs = as_float(split.images[: args.agree])
        fast = PostAveraging(model, K, RADIUS, seed=0, compile=True)
        with torch.no_grad():
            a = torch.cat([fast(p) for p in xs.split(50)])
            b = torch.cat([seeded(p) for p in xs.split(50)])
        same = int((a.argmax(1) == b.argmax(1)).sum())
        gap = (a - b).abs().max().item()
        result["agreement"] = {"images": args.agree, "identical_predictions": same, "max_abs_diff_log_probability": gap}
        print(f"compiled+folded vs eager fold=False, seed 0, {args.agree} images: {same} identical predictions; max |Δ log-probability| {gap:.1e}")
    load.append(os.getloadavg()[0])
    result["load_average_1min"] = load
    print(
        f"\nResNet-20, K = {K}, r = {RADIUS}, {args.n} JPEG CIFAR-10 test images, 1 thread, {args.reps} rounds; "
        f"load average {', '.join(f'{v:.1f}' for v in load)} (start, after timing, end)\n"
    )
    print(markdown_table(["what", "ms per image (median)", "× transcription (median of per-round ratios, min–max)"], rows))
    print(f"wrote {write_result('postavg_speed', result)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
