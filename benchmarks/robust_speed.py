"""Cost of post-averaging against its floor, and our PGD's throughput against ART's (issue:
post-averaging defence and evasion attacks).

    python benchmarks/robust_speed.py [--quick]

1. Defence cost: PostAveraging(K=15, r=6) on ResNet-20 over N JPEG CIFAR-10 test images (all
   their 6K + 1 = 91 points of many images run back to back, in batches whose size the defence
   measured on this machine, issue 13 part 5), against its floor: the plain model's forward passes
   over the same 91·N points at the measured size, half of it and twice it (the best of the three
   is the floor), and against the authors' algorithm: one image per call, its 91 points as one
   batch. Also the cost per image against one plain forward.
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

from _common import CIFAR_ZIP, MODELS, markdown_table, timeit, write_result
from veilnet import data
from veilnet.metrics import as_float
from veilnet.models import load_cifar_resnet
from veilnet.robust import PostAveraging, attacks
from veilnet.robust.postavg import default_max_points, tuned_batch_size

REPS = 5


def interleaved(*fns: Callable[[], object], reps: int = REPS) -> list[list[float]]:
    """Seconds of each of ``fns`` timed in turn (one of each per round), ``reps`` rounds after one
    warm-up of each, so that all see the same load on a shared machine."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(reps):
        for fn, out in zip(fns, times):
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
    model = load_cifar_resnet(MODELS / "resnet20-12fca82f.th").eval()
    split = data.subset(data.load(f"folder:{CIFAR_ZIP}", split="test"), max(1, n // 10))
    x, y = as_float(split.images), split.labels
    rows, out = [], {"n": n, "n_pgd": n_pgd, "model": "resnet20", "threads": torch.get_num_threads()}

    # 1. the defence against its floors and the authors' algorithm, timed in turn; each ratio is
    #    the median of the per-round ratios against the best floor (the lowest median)
    defended = PostAveraging(model, directions=15, radius=6.0, generator=torch.Generator().manual_seed(0))
    authors = PostAveraging(model, directions=15, radius=6.0, batch_size=defended.points_per_image, generator=torch.Generator().manual_seed(0))
    points = defended.neighbours(x, defended.sample_directions(n, x.shape[1:], x.device)).flatten(0, 1)
    with torch.no_grad():
        tuned = tuned_batch_size(model, x)
        sizes = [tuned // 2, tuned, tuned * 2]
        *floor_t, ours_t, authors_t = interleaved(
            *[(lambda b=b: [model(p) for p in points.split(b)]) for b in sizes], lambda: defended(x), lambda: torch.cat([authors(img[None]) for img in x])
        )
    best = min(range(len(sizes)), key=lambda i: statistics.median(floor_t[i]))
    ratio = {name: sorted(t / f for t, f in zip(times, floor_t[best])) for name, times in (("ours", ours_t), ("authors", authors_t))}
    ppi = defended.points_per_image
    floor_img = statistics.median(floor_t[best]) / n
    plain_img = floor_img / ppi
    out["defence"] = {
        "batch_sizes": sizes,
        "tuned_batch_size": tuned,
        "best_floor_batch_size": sizes[best],
        "floor_s": floor_t,
        "postavg_s": ours_t,
        "authors_s": authors_t,
        "ratio_median": statistics.median(ratio["ours"]),
        "authors_ratio_median": statistics.median(ratio["authors"]),
        "max_points": default_max_points(x.device, x.shape[1:]),
    }
    rows.append([f"plain forward, batch {sizes[best]} (per image)", f"{plain_img * 1e3:.3f}", "", "1"])
    for b, times in zip(sizes, floor_t):
        rows.append(
            [
                f"{ppi} plain forwards at batch {b}{' (best: the floor)' if b == sizes[best] else ''} (per image)",
                f"{statistics.median(times) / n * 1e3:.2f}",
                f"{statistics.median(times) / statistics.median(floor_t[best]):.3f}",
                f"{ppi}",
            ]
        )
    for label, key in (
        (f"PostAveraging K=15, {n} images batched, measured batch {tuned} (per image)", "ours"),
        (f"authors' algorithm: one image per call, {ppi} points as one batch (per image)", "authors"),
    ):
        times = ours_t if key == "ours" else authors_t
        r = ratio[key]
        rows.append(
            [
                label,
                f"{statistics.median(times) / n * 1e3:.2f}",
                f"{statistics.median(r):.3f} ({r[0]:.3f}–{r[-1]:.3f})",
                f"{statistics.median(times) / n / plain_img:.1f}",
            ]
        )

    # 2. PGD throughput, ours against ART's
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    xp, yp = x[:n_pgd], y[:n_pgd]
    ours = attacks.PGD(model, 8 / 255, alpha=2 / 255, steps=10, seed=0, batch_size=n_pgd)
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=8 / 255, eps_step=2 / 255, max_iter=10, num_random_init=1, batch_size=n_pgd, verbose=False)
    ours_pgd, art_pgd_t = interleaved(lambda: ours(xp, yp), lambda: art_pgd.generate(xp.numpy(), yp.numpy()))
    t_ours, t_art = summary(ours_pgd), summary(art_pgd_t)
    ips = {name: n_pgd * 10 / t["median"] for name, t in (("ours", t_ours), ("art", t_art))}
    out["pgd"] = {"ours": {**t_ours, "image_steps_per_s": ips["ours"]}, "art": {**t_art, "image_steps_per_s": ips["art"]}, "ratio": ips["ours"] / ips["art"]}
    rows.append(
        [
            f"PGD ours: {n_pgd} images × 10 steps",
            f"{t_ours['median'] * 1e3:.0f} ms ({ips['ours']:.0f} image·steps/s)",
            "",
            f"{ips['ours'] / ips['art']:.2f}× ART",
        ]
    )
    rows.append([f"PGD ART: {n_pgd} images × 10 steps", f"{t_art['median'] * 1e3:.0f} ms ({ips['art']:.0f} image·steps/s)", "", "1.00× ART"])

    table = markdown_table(["what", "ms (median)", "× best floor (median of 5 per-round ratios, min–max)", "× plain / ART"], rows)
    print(
        f"$ python benchmarks/robust_speed.py{' --quick' if args.quick else ''}\n\nResNet-20, "
        f"{n} JPEG CIFAR-10 test images, {torch.get_num_threads()} threads\n\n{table}"
    )
    print(f"wrote {write_result('robust_speed' + ('_quick' if args.quick else ''), out)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
