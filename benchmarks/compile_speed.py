"""Compiled execution (veilnet.models.prepare: torch.compile, inductor) against eager PyTorch and
its peers, with each compile's warm-up and the run length from which compiling pays (issue 15).

    python benchmarks/compile_speed.py [--quick] [--cold] [--reps N]

Rows, each set timed in turn (one of each per round, ``--reps`` rounds after the warm-up call) so that
all see the same load, ratios from the medians of one run:

1. Post-averaging (pretrained ResNet-20, K = 15, r = 6) over N JPEG CIFAR-10 test images:
   compiled against the authors' algorithm (one image per call, its 91 points as one batch,
   eager) and against the eager floor (the plain model's 91·N forwards at the measured batch size).
2. PGD-10 (ε = 8/255, α = 2/255, one random start) on the same 16 images: ours compiled, ours
   eager, ART's ProjectedGradientDescent (torchattacks' PGD is a column of robust_speed.py).
3. Training steps (batch 128, JPEG CIFAR-10 images, the classifier step of ``veilnet train``) of
   ResNet-20 (SGD) and of the ConvMixer of configs/convmixer-cifar10.yaml (AdamW), compiled
   against eager, extrapolated to one epoch of 50,000 images (391 steps).
4. The service's model pass at 8 images per request (ServedModel.forward, in-process: the HTTP
   layer is the same either way), transformed ConvMixer-256/8 of benchmarks/serve_load.py,
   compiled against eager: images/s.
5. The complex-valued ResNet-20-α's processor (the server's part) on a batch of 50 features.

Warm-up: the first compiled call's time less a steady compiled call's. inductor's on-disk cache
(~/.cache/veilnet/inductor) makes a later run's warm-up shorter; ``--cold`` points it at a fresh
temporary folder, so the warm-up is that of a first run on a machine. Break-even: the calls (and images) after which the compiled run, warm-up included, has
taken less time than the eager one. torch.set_num_threads(1), as in robust_speed.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import CIFAR_ZIP, MODELS, markdown_table, write_result
from robust_speed import interleaved
from veilnet import data, models
from veilnet.complex.models import complex_resnet
from veilnet.data import cache_dir
from veilnet.metrics import as_float
from veilnet.models import load_cifar_resnet, prepare
from veilnet.models.batching import tuned_batch_size
from veilnet.robust import PostAveraging, attacks
from veilnet.training.classifier import ClassifierStep, TrainConfig, make_optimizer
from veilnet.training.core import StepInfo

EPOCH_STEPS = 391  # 50,000 CIFAR-10 training images in batches of 128


def first_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    label: str,
    eager: Callable[[], object],
    compiled: Callable[[], object],
    images_per_call: int,
    reps: int,
    others: dict[str, Callable[[], object]] | None = None,
) -> dict[str, Any]:
    """Warm-up of ``compiled`` (its first call), then eager, compiled and ``others`` timed in turn, ``reps`` rounds."""
    first = first_call(compiled)
    names = ["eager", "compiled", *(others or {})]
    times = interleaved(eager, compiled, *(others or {}).values(), reps=reps)
    med = {name: statistics.median(t) for name, t in zip(names, times)}
    warmup = max(0.0, first - med["compiled"])
    gain = med["eager"] - med["compiled"]
    calls = warmup / gain if gain > 0 else float("inf")
    row = {
        "label": label,
        "seconds": dict(zip(names, times)),
        "median_s": med,
        "first_compiled_call_s": first,
        "warmup_s": warmup,
        "ratio": med["compiled"] / med["eager"],
        "break_even_calls": calls,
        "break_even_images": calls * images_per_call,
        "images_per_call": images_per_call,
    }
    print(f"{label}: compiled {med['compiled'] * 1e3:.1f} ms, eager {med['eager'] * 1e3:.1f} ms ({row['ratio']:.2f}×), warm-up {warmup:.1f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images")
    parser.add_argument("--cold", action="store_true", help="compile into a fresh inductor cache (a first run's warm-up)")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds per row (default 7)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="veilnet-cold-inductor-")
    cache = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or cache_dir() / "inductor")
    n = 5 if args.quick else 20
    split = data.load(f"folder:{CIFAR_ZIP}", split="test")
    x_all, y_all = as_float(split.images), split.labels
    x = x_all[:n]
    resnet = load_cifar_resnet(MODELS / "resnet20-12fca82f.th").eval()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    out: dict[str, Any] = {
        "n": n,
        "reps": args.reps,
        "threads": torch.get_num_threads(),
        "load_before": load,
        "inductor_cache": str(cache),
        "inductor_cache_cold": not cache.exists() or not any(cache.iterdir()),
    }
    rows = []

    # 1. post-averaging
    with torch.no_grad():
        compiled_pa = PostAveraging(resnet, 15, 6.0, generator=torch.Generator().manual_seed(0), compile=True)
        eager_pa = PostAveraging(resnet, 15, 6.0, generator=torch.Generator().manual_seed(0))
        authors = PostAveraging(resnet, 15, 6.0, batch_size=91, generator=torch.Generator().manual_seed(0))
        batch = tuned_batch_size(resnet, x)
        points = eager_pa.neighbours(x, eager_pa.sample_directions(n, x.shape[1:], x.device)).flatten(0, 1)
        rows.append(
            compare(
                f"post-averaging K=15, {n} images (batch {batch})",
                lambda: eager_pa(x),
                lambda: compiled_pa(x),
                n,
                args.reps,
                {"authors": lambda: torch.cat([authors(img[None]) for img in x]), "floor": lambda: [resnet(p) for p in points.split(batch)]},
            )
        )

    # 2. PGD-10
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    n_pgd = 16
    xp, yp = x_all[:n_pgd], y_all[:n_pgd]
    fast = prepare(resnet, chunk=n_pgd)
    pgd = {name: attacks.PGD(m, 8 / 255, alpha=2 / 255, steps=10, seed=0, batch_size=n_pgd) for name, m in (("eager", resnet), ("compiled", fast))}
    classifier = PyTorchClassifier(model=resnet, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=8 / 255, eps_step=2 / 255, max_iter=10, num_random_init=1, batch_size=n_pgd, verbose=False)
    rows.append(
        compare(
            f"PGD-10, {n_pgd} images",
            lambda: pgd["eager"](xp, yp),
            lambda: pgd["compiled"](xp, yp),
            n_pgd,
            args.reps,
            {"ART": lambda: art_pgd.generate(xp.numpy(), yp.numpy())},
        )
    )
    same = torch.equal(pgd["eager"](xp, yp)[1], pgd["compiled"](xp, yp)[1])
    out["pgd_success_masks_equal"] = same

    # 3. training steps
    train = data.subset(split, 13)  # 130 images: one batch of 128 per step (the step draws its own permutation)
    arch = {
        "resnet20": ({}, TrainConfig(batch_size=128, seed=0)),
        "convmixer": (
            {"dim": 128, "depth": 6, "kernel_size": 5, "patch_size": 4},
            TrainConfig(batch_size=128, optimizer="adamw", lr=0.005, weight_decay=0.05, seed=0),
        ),
    }
    for name, (kwargs, config) in arch.items():
        steps = {}
        for mode in ("eager", "compiled"):
            torch.manual_seed(0)
            model = models.create(name, **kwargs)
            steps[mode] = ClassifierStep(
                model, make_optimizer(model, config), train, config, torch.Generator().manual_seed(0), torch.device("cpu"), compile=mode == "compiled"
            )
        idx = torch.arange(128)
        info = StepInfo(0, 0, 0)
        rows.append(
            compare(f"training step {name}, batch 128", lambda s=steps: s["eager"](idx, info), lambda s=steps: s["compiled"](idx, info), 128, args.reps)
        )

    # 4. the service's model pass, 8 images
    from veilnet.keyed import generate_key, public_params
    from veilnet.keyed.transform import transform_model
    from veilnet.serve.app import ServedModel

    torch.manual_seed(0)
    key = generate_key("block", 4, 3, 32, seed=0)
    transformed = transform_model(models.create("convmixer", dim=256, depth=8, kernel_size=5, patch_size=4, num_classes=10), key).eval()
    x8 = torch.rand(8, 3, 32, 32)
    with tempfile.TemporaryDirectory() as tmp:
        path = models.save(transformed, Path(tmp) / "served", extra={"keyed": public_params(key)})
        served = {mode: ServedModel.load(path, compile=mode == "compiled") for mode in ("eager", "compiled")}
    rows.append(
        compare("service model pass, ConvMixer-256/8, 8 images", lambda: served["eager"].forward(x8), lambda: served["compiled"].forward(x8), 8, args.reps)
    )

    # 5. the complex processor
    torch.manual_seed(0)
    net = complex_resnet(20).eval()
    with torch.no_grad():
        features = net.encode(x_all[:50], 0.3)
        processor = prepare(net.processor)
        rows.append(compare("complex ResNet-20-α processor, 50 features", lambda: net.processor(features), lambda: processor(features), 50, args.reps))
        gap = (processor(features) - net.processor(features)).abs().max() / net.processor(features).abs().max()
        out["complex_max_difference_relative_to_max"] = gap.item()

    out["rows"] = rows
    out["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    table = []
    for r in rows:
        med = r["median_s"]
        others = ", ".join(f"{k} {v * 1e3:.0f} ms (compiled {med['compiled'] / v:.2f}×)" for k, v in med.items() if k not in ("eager", "compiled"))
        calls = r["break_even_calls"]
        table.append(
            [
                r["label"],
                f"{med['eager'] * 1e3:.1f}",
                f"{med['compiled'] * 1e3:.1f}",
                f"**{r['ratio']:.2f}**",
                others,
                f"{r['warmup_s']:.1f}",
                "never" if calls == float("inf") else f"{calls:.0f} calls ({r['break_even_images']:.0f} images)",
            ]
        )
    print(
        f"$ python benchmarks/compile_speed.py{' --quick' if args.quick else ''}{' --cold' if args.cold else ''} "
        f"--reps {args.reps}\n\nload average {out['load_before']} before, "
        f"{out['load_after']} after; {torch.get_num_threads()} thread; inductor cache "
        f"{'cold' if out['inductor_cache_cold'] else 'warm'}; PGD success masks equal: {same}\n"
    )
    print(markdown_table(["what", "eager ms", "compiled ms", "compiled / eager", "others (median)", "warm-up s", "break-even"], table))
    print(f"wrote {write_result('compile_speed' + ('_quick' if args.quick else '') + ('_cold' if args.cold else ''), out)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
