"""Cost of post-averaging against its floor, and our PGD's throughput against ART's (issue:
post-averaging defence and evasion attacks).

    python benchmarks/robust_speed.py [--quick]

1. Defence cost: PostAveraging(K=15) on ResNet-20 over N JPEG CIFAR-10 test images (all their
   6K + 1 = 91 points of many images run back to back in batches of 100), against its floor: the
   plain model's forward passes over the same 91·N points at batch 100. Also the cost per image
   against one plain forward.
2. PGD throughput (images·steps per second): ours against ART's ProjectedGradientDescent on the
   same model, images, budget (ε = 8/255, α = 2/255, 10 steps, one random start), in this run.

Medians of 5 timed repetitions after a warm-up; torch.set_num_threads(1)  # 2 threads ran 5× slower than 1 on the shared, oversubscribed 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import REPO, markdown_table, timeit, write_result

from veilnet import data
from veilnet.metrics import as_float
from veilnet.models import load_cifar_resnet
from veilnet.robust import PostAveraging, attacks

SHARED = REPO.parent / "shared"
REPS = 5


def paired(first: Callable[[], object], second: Callable[[], object]) -> tuple[list[float], list[float]]:
    """Seconds of ``first`` and ``second`` timed alternately, REPS times each after one warm-up of each."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(REPS):
        for fn, out in zip((first, second), times):
            out.append(timeit(fn, repeats=1, warmup=int(i == 0))["median"])
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "repeats": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images")
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2 threads ran 5× slower than 1 on the shared, oversubscribed 2-core machine
    n, n_pgd = (10, 8) if args.quick else (40, 16)
    model = load_cifar_resnet(SHARED / "models" / "resnet20-12fca82f.th").eval()
    split = data.subset(data.load(f"folder:{SHARED / 'data' / 'cifar10-jpeg.zip'}", split="test"), max(1, n // 10))
    x, y = as_float(split.images), split.labels
    rows, out = [], {"n": n, "n_pgd": n_pgd, "model": "resnet20", "threads": torch.get_num_threads()}

    # 1. the defence against its floor, timed alternately (floor, defence, floor, ...) so that both
    #    see the same load on a shared machine; the ratio is the median of the per-pair ratios
    defended = PostAveraging(model, directions=15, radius=6.0, generator=torch.Generator().manual_seed(0))
    points = defended.neighbours(x, defended.sample_directions(n, x.shape[1:], x.device)).flatten(0, 1)
    with torch.no_grad():
        floor_t, ours_t = paired(lambda: [model(b) for b in points.split(100)], lambda: defended(x))
    ratios = sorted(o / f for o, f in zip(ours_t, floor_t))
    floor_img, ours_img = statistics.median(floor_t) / n, statistics.median(ours_t) / n
    plain_img = floor_img / defended.points_per_image
    out["defence"] = {"floor_s": floor_t, "postavg_s": ours_t, "ratio_median": statistics.median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1], "per_image_s": ours_img, "floor_per_image_s": floor_img, "max_points": defended.max_points, "batch_size": defended.batch_size}
    rows.append(["plain forward, batch 100 (per image)", f"{plain_img * 1e3:.3f}", "", "1"])
    rows.append([f"floor: {defended.points_per_image} plain forwards at batch 100 (per image)", f"{floor_img * 1e3:.2f}", "1.00", f"{defended.points_per_image}"])
    rows.append([f"PostAveraging K=15, {n} images batched (per image)", f"{ours_img * 1e3:.2f}", f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}–{ratios[-1]:.3f})", f"{ours_img / plain_img:.1f}"])

    # 2. PGD throughput, ours against ART's
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    xp, yp = x[:n_pgd], y[:n_pgd]
    ours = attacks.PGD(model, 8 / 255, alpha=2 / 255, steps=10, seed=0, batch_size=n_pgd)
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=8 / 255, eps_step=2 / 255, max_iter=10, num_random_init=1, batch_size=n_pgd, verbose=False)
    ours_pgd, art_pgd_t = paired(lambda: ours(xp, yp), lambda: art_pgd.generate(xp.numpy(), yp.numpy()))
    t_ours, t_art = summary(ours_pgd), summary(art_pgd_t)
    ips = {name: n_pgd * 10 / t["median"] for name, t in (("ours", t_ours), ("art", t_art))}
    out["pgd"] = {"ours": {**t_ours, "image_steps_per_s": ips["ours"]}, "art": {**t_art, "image_steps_per_s": ips["art"]}, "ratio": ips["ours"] / ips["art"]}
    rows.append([f"PGD ours: {n_pgd} images × 10 steps", f"{t_ours['median'] * 1e3:.0f} ms ({ips['ours']:.0f} image·steps/s)", "", f"{ips['ours'] / ips['art']:.2f}× ART"])
    rows.append([f"PGD ART: {n_pgd} images × 10 steps", f"{t_art['median'] * 1e3:.0f} ms ({ips['art']:.0f} image·steps/s)", "", "1.00× ART"])

    table = markdown_table(["what", "ms (median)", "× floor (median of 5 paired ratios, min–max)", "× plain / ART"], rows)
    print(f"$ python benchmarks/robust_speed.py{' --quick' if args.quick else ''}\n\nResNet-20, {n} JPEG CIFAR-10 test images, {torch.get_num_threads()} threads\n\n{table}")
    print(f"wrote {write_result('robust_speed' + ('_quick' if args.quick else ''), out)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
