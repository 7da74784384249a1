"""Compiled execution on a GPU: does ``veilnet.models.prepare`` compile there, agree with eager,
and pay? (issue 15; the CPU rows are benchmarks/compile_speed.py.)

    python benchmarks/compile_gpu.py [--th ../shared/models/resnet20-12fca82f.th] [--device cuda]

On the pretrained ResNet-20: the largest relative difference of compiled against eager logits,
the compile warm-up, and the median time of a forward pass at batch 256 and of post-averaging
(K = 15, r = 6, fixed directions) on 200 images, eager against compiled, alternating, after one
warm-up call each. Prints a JSON line per stage.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from veilnet.models import load_cifar_resnet, prepare
from veilnet.robust import PostAveraging


def timed(call: Callable[[], torch.Tensor], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--th", default="../shared/models/resnet20-12fca82f.th")
    p.add_argument("--device", default="cuda")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    device = torch.device(args.device)
    model = load_cifar_resnet(args.th).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    batch = torch.rand(256, 3, 32, 32, generator=gen).to(device)
    images = torch.rand(200, 3, 32, 32, generator=gen).to(device)
    compiled = prepare(model, compile=True)
    with torch.no_grad():
        warm_up = timed(lambda: compiled(batch), device)
        eager_logits, compiled_logits = model(batch), compiled(batch)
        rows = {"forward, batch 256": (lambda: model(batch), lambda: compiled(batch))}
        eager_pa = PostAveraging(model, seed=0)
        compiled_pa = PostAveraging(model, seed=0, compile=True)
        pa_warm_up = timed(lambda: compiled_pa(images), device)
        timed(lambda: eager_pa(images), device)
        rows["post-averaging, 200 images"] = (lambda: eager_pa(images), lambda: compiled_pa(images))
        result: dict[str, object] = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "torch": torch.__version__,
            "prepare": compiled.status,
            "max_relative_logit_difference": ((compiled_logits - eager_logits).abs().max() / eager_logits.abs().max()).item(),
            "post_averaging_same_prediction": bool((eager_pa(images).argmax(1) == compiled_pa(images).argmax(1)).all()),
            "warm_up_s": {"forward": warm_up, "post-averaging": pa_warm_up},
        }
        print(json.dumps(result), flush=True)
        for name, (eager, fast) in rows.items():
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(args.reps):
                times["eager"].append(timed(eager, device))
                times["compiled"].append(timed(fast, device))
            e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
            result[name] = {"eager_ms": 1000 * e, "compiled_ms": 1000 * c, "compiled_over_eager": c / e}
            print(json.dumps({name: result[name]}), flush=True)


if __name__ == "__main__":
    main()
