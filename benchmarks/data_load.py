"""How long loading the JPEG CIFAR-10 takes: the first (cold) load that decodes every JPEG, and a
cached load, against the floor of reading the cached ``.npy`` arrays with ``np.load``.

    python benchmarks/data_load.py [--quick] [--zip PATH]

``--quick`` loads only the test split (10,000 images). The cache goes to a fresh temporary
folder, so the cold load really decodes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from _common import add_zip, markdown_table, timeit, write_result
from veilnet import data
from veilnet.data import folder


def _interleaved(fns: list[Callable[[], object]], repeats: int) -> list[dict[str, float]]:
    """``timeit`` of each function, with their repetitions interleaved so that both see the
    same load on a shared machine."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            spent.append(timeit(fn, repeats=1, warmup=1 if not spent else 0)["median"])
    return [{"median": statistics.median(t), "min": min(t), "max": max(t), "repeats": repeats} for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="test split only")
    add_zip(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = f"folder:{args.zip}"
    splits = ("test",) if args.quick else ("train", "test")

    def load_all() -> int:
        return sum(len(data.load(spec, split)) for split in splits)

    rows, result = [], {"spec": spec, "splits": list(splits), "workers": folder._workers(10**6)}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        cold_serial = None
        if not args.quick:  # the same decode in one process, for the speed-up of the worker pool
            os.environ["VEILNET_DATA_WORKERS"] = "1"
            start = time.perf_counter()
            load_all()
            cold_serial = time.perf_counter() - start
            del os.environ["VEILNET_DATA_WORKERS"]
            shutil.rmtree(Path(cache) / "veilnet")
        start = time.perf_counter()
        n = load_all()
        cold = time.perf_counter() - start
        arrays = sorted((Path(cache) / "veilnet" / "data").glob("*/*.npy"))
        cached, floor = _interleaved([load_all, lambda: [np.load(p) for p in arrays]], repeats=5)
        size = sum(p.stat().st_size for p in arrays)

    result.update(
        load_average=os.getloadavg(),
        images=n,
        cold_s=cold,
        cold_serial_s=cold_serial,
        cached=cached,
        floor=floor,
        cache_bytes=size,
        ratio=cached["median"] / floor["median"],
    )
    if cold_serial is not None:
        rows.append(["cold, 1 process (decode every JPEG)", f"{cold_serial:.2f}", "", ""])
    rows.append([f"cold, {result['workers']} worker processes", f"{cold:.2f}", "", ""])
    rows.append(["cached `data.load`", f"{cached['median']:.3f}", f"{cached['min']:.3f}–{cached['max']:.3f}", f"{result['ratio']:.2f}×"])
    rows.append([f"floor: `np.load` of the cached .npy ({size / 2**20:.0f} MiB)", f"{floor['median']:.3f}", f"{floor['min']:.3f}–{floor['max']:.3f}", "1.00×"])
    print(
        f"JPEG CIFAR-10, {' + '.join(splits)} ({n} images), torch threads 1, cached: median of 5 after 1 warm-up, "
        f"interleaved with the floor; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(markdown_table(["load", "seconds", "min–max", "vs floor"], rows))
    print(f"\nwrote {write_result('data_load' + ('_quick' if args.quick else ''), result)}")


if __name__ == "__main__":
    main()
