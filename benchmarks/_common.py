"""What every benchmark shares (the conventions at the top of docs/benchmarks.md): where the shared
data and models are, timing with warm-up and medians, the machine description, and writing the
JSON result under runs/benchmarks/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from veilnet.report import markdown_table  # noqa: F401  (re-exported for the scripts)

REPO = Path(__file__).resolve().parents[1]
#: The data sets: ``$VEILNET_DATA``, as veilnet.data reads it (the root of relative data specs),
#: else ``shared/data`` beside the checkout; made absolute, so that a spec built from it is not
#: read under ``$VEILNET_DATA`` a second time. tests/conftest.py and .ci/run read the same.
DATA = Path(os.environ.get("VEILNET_DATA") or REPO.parent / "shared" / "data").expanduser().resolve()
#: The pretrained checkpoints: ``models/`` beside :data:`DATA` (the shared folder's layout,
#: ``data/`` and ``models/``).
MODELS = DATA.parent / "models"
#: The JPEG CIFAR-10 the benchmarks on real images read.
CIFAR_ZIP = DATA / "cifar10-jpeg.zip"


def add_zip(parser: argparse.ArgumentParser) -> None:
    """``--zip PATH``: the JPEG CIFAR-10 (default :data:`CIFAR_ZIP`)."""
    parser.add_argument(
        "--zip", type=Path, default=CIFAR_ZIP, help=f"the JPEG CIFAR-10 (default: cifar10-jpeg.zip in $VEILNET_DATA, else in ../shared/data: {CIFAR_ZIP})"
    )


def machine() -> dict[str, Any]:
    """CPU model, cores, torch version, thread count and git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "commit": commit + ("-dirty" if dirty else ""),
    }


def timeit(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; seconds as median/min/max."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "repeats": repeats}


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` plus the machine description to runs/benchmarks/NAME.json."""
    from veilnet.paths import write_text

    return write_text(REPO / "runs" / "benchmarks" / f"{name}.json", json.dumps({"machine": machine(), **result}, indent=2) + "\n")
