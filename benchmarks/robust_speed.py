"""Cost of post-averaging against its floor, and our PGD's time against torchattacks' and ART's
(issues 13 and 26).

    python benchmarks/robust_speed.py [--quick] [--pgd-images N]

1. Defence cost: PostAveraging(K=15, r=6) on ResNet-20 over N JPEG CIFAR-10 test images (all
   their 6K + 1 = 91 points of many images run back to back, in batches whose size the defence
   measured on this machine, issue 13 part 5), against its floor: the plain model's forward passes
   over the same 91·N points at the measured size, half of it and twice it (the best of the three
   is the floor), and against the same PostAveraging called one image at a time, its 91 points as
   one batch (the way the authors' algorithm runs; our transcription of their algorithm is the peer
   of benchmarks/postavg_speed.py). Also the cost per image against one plain forward.
2. PGD-10 (L∞, ε = 8/255, α = 2/255, one random start) on the same model and ``--pgd-images``
   JPEG test images (200 by default), all given in one call: ours eager, ours compiled
   (veilnet.models.prepare, timed after its warm-up call), torchattacks 3.5.1's PGD, torchattacks
   on the same images cut into our attack's batch size (what our batching alone is worth), and
   ART's ProjectedGradientDescent. CPU seconds of this process (one thread, so a busy machine's
   other work is not counted), each variant once per round in turn; ratios ours / peer are the
   medians of the per-round ratios; success rates beside them (equal success: the same attack).

Medians of 5 timed repetitions after a warm-up; torch.set_num_threads(1)  # 2 threads ran 5× slower than 1 on the shared, oversubscribed 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from _common import CIFAR_ZIP, MODELS, markdown_table, write_result
from veilnet import data
from veilnet.metrics import as_float, eval_mode
from veilnet.models import load_cifar_resnet, prepare
from veilnet.models.batching import tuned_batch_size
from veilnet.robust import PostAveraging, attacks
from veilnet.robust.postavg import default_max_points

REPS = 5


def interleaved(*fns: Callable[[], object], reps: int = REPS, clock: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Seconds (by ``clock``) of each of ``fns`` timed in turn (one of each per round), ``reps``
    rounds after one warm-up of each, so that all see the same load on a shared machine."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(reps):
        for fn, out in zip(fns, times):
            if i == 0:
                fn()
            start = clock()
            fn()
            out.append(clock() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "repeats": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images")
    parser.add_argument("--pgd-images", type=int, default=None, help="images of the PGD rows (default 200, --quick 32)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2 threads ran 5× slower than 1 on the shared, oversubscribed 2-core machine
    n = 10 if args.quick else 40
    n_pgd = args.pgd_images or (32 if args.quick else 200)
    model = load_cifar_resnet(MODELS / "resnet20-12fca82f.th").eval()
    split = data.load(f"folder:{CIFAR_ZIP}", split="test")
    x = as_float(data.subset(split, max(1, n // 10)).images)
    pgd_split = data.subset(split, -(-n_pgd // 10))
    xp, yp = as_float(pgd_split.images)[:n_pgd], pgd_split.labels[:n_pgd]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows, out = [], {"n": n, "n_pgd": n_pgd, "model": "resnet20", "threads": torch.get_num_threads(), "load_before": load}

    # 1. the defence against its floors and against itself one image per call, timed in turn; each ratio is
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
        (f"PostAveraging one image per call, {ppi} points as one batch (per image)", "authors"),
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

    # 2. PGD-10: ours eager and compiled, torchattacks (whole and in our batches), ART; CPU seconds
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    ours = attacks.PGD(model, 8 / 255, alpha=2 / 255, steps=10, seed=0, batch_size=n_pgd)
    with eval_mode(model):
        batch = ours.work_batch(xp)
    compiled = attacks.PGD(prepare(model, chunk=batch), 8 / 255, alpha=2 / 255, steps=10, seed=0, batch_size=n_pgd)
    ta = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=8 / 255, eps_step=2 / 255, max_iter=10, num_random_init=1, batch_size=n_pgd, verbose=False)
    warm = time.perf_counter()
    compiled(xp[:1], yp[:1])  # compiles the forward and backward passes at the batch size
    warmup_s = time.perf_counter() - warm
    predicted: dict[str, torch.Tensor] = {}

    def judged(name: str, adv: torch.Tensor | np.ndarray) -> None:
        with torch.no_grad():
            predicted[name] = model(torch.as_tensor(adv)).argmax(1)

    variants: dict[str, Callable[[], object]] = {
        "ours, eager": lambda: judged("ours, eager", ours(xp, yp)[0]),
        "ours, compiled": lambda: judged("ours, compiled", compiled(xp, yp)[0]),
        "torchattacks": lambda: judged("torchattacks", ta(xp, yp)),
        f"torchattacks in batches of {batch}": lambda: judged(
            f"torchattacks in batches of {batch}", torch.cat([ta(a, b) for a, b in zip(xp.split(batch), yp.split(batch))])
        ),
        "ART": lambda: judged("ART", art_pgd.generate(xp.numpy(), yp.numpy())),
    }
    seconds = dict(zip(variants, interleaved(*variants.values(), clock=time.process_time)))
    success = {name: (p != yp).float().mean().item() for name, p in predicted.items()}
    peers = [name for name in variants if not name.startswith("ours")]
    ratios = {(mine, peer): sorted(a / b for a, b in zip(seconds[mine], seconds[peer])) for mine in ("ours, eager", "ours, compiled") for peer in peers}
    out["pgd"] = {
        "images": n_pgd,
        "steps": 10,
        "work_batch": batch,
        "compiled_warmup_wall_s": warmup_s,
        "cpu_s": seconds,
        "median_cpu_s": {name: statistics.median(t) for name, t in seconds.items()},
        "success_rate": success,
        "ratio_median": {f"{mine} / {peer}": statistics.median(r) for (mine, peer), r in ratios.items()},
        "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    pgd_rows = []
    for name, times in seconds.items():
        cells = [
            f"{statistics.median(ratios[(name, peer)]):.2f} ({ratios[(name, peer)][0]:.2f}–{ratios[(name, peer)][-1]:.2f})" if name.startswith("ours") else ""
            for peer in peers
        ]
        pgd_rows.append([name, f"{statistics.median(times):.2f}", f"{success[name]:.3f}", *cells])
    pgd_table = markdown_table(
        ["PGD-10", "CPU s (median)", "success rate", *[f"ours / {peer} (median of {REPS} per-round ratios, min–max)" for peer in peers]], pgd_rows
    )

    table = markdown_table(["what", "ms (median)", "× best floor (median of 5 per-round ratios, min–max)", "× plain"], rows)
    print(
        f"$ python benchmarks/robust_speed.py{' --quick' if args.quick else ''}{f' --pgd-images {n_pgd}' if args.pgd_images else ''}\n\n"
        f"load average {load} before, {out['pgd']['load_after']} after; ResNet-20, {n} JPEG CIFAR-10 test images, "
        f"{torch.get_num_threads()} threads\n\n{table}\n\nPGD-10, {n_pgd} images, our batch {batch}, compiled warm-up "
        f"{warmup_s:.1f} s (wall clock)\n\n{pgd_table}"
    )
    print(f"wrote {write_result('robust_speed' + ('_quick' if args.quick else ''), out)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
