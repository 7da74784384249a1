"""One process against two under torchrun (issue 27): a training epoch and a robust evaluation,
their times and whether the two runs' results are equal.

    python benchmarks/distributed.py [--repeats 5] [--quick]

Each configuration runs as its own command, ``--repeats`` times:

* **1 process, 1 thread**, **1 process, 2 threads** (``OMP_NUM_THREADS``) and **2 processes of
  1 thread each** (``torchrun --standalone --nproc-per-node 2``, gloo), so the processes'
  speed-up is read beside what the same cores give one process;
* training: ``veilnet train --model lenet`` (no batch normalisation, so the two-process weights
  must equal the one-process ones up to float rounding) for one epoch on the JPEG CIFAR-10, its
  epoch time read from ``metrics.json`` (the training loop only, not the start-up);
* evaluation: ``veilnet robust evaluate`` of the pretrained ResNet-20 (../shared/models) with two
  attacks (one per rank), the command's wall time (start-up included), and whether
  ``evaluation.json`` is the same but for the attacks' timings.

The machine's load average (``/proc/loadavg``) is recorded before and after: on a shared machine
the speed-up is the cores' contention as much as the method's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from _common import REPO, SHARED, add_zip, markdown_table, write_result

RUNS = REPO / "runs" / "benchmarks" / "distributed"
#: (label, processes, threads per process)
CONFIGURATIONS = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes × 1 thread (torchrun, gloo)", 2, 1)]


def _command(processes: int, argv: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "veilnet", *argv]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), "-m", "veilnet", *argv]


def _run(processes: int, threads: int, argv: list[str]) -> float:
    """Run the command; its wall seconds."""
    command = _command(processes, argv)
    print("$", f"OMP_NUM_THREADS={threads}", " ".join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    tic = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - tic


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


def train(zip_path: Path, per_class: int, repeats: int) -> dict[str, dict]:
    argv = ["train", "--model", "lenet", "--data", f"folder:{zip_path}", "--subset", str(per_class), "--epochs", "1", "--batch-size", "128"]
    argv += ["--optimizer", "sgd", "--lr", "0.05", "--no-compile", "--force"]
    out: dict[str, dict] = {}
    for label, processes, threads in CONFIGURATIONS:
        folder = RUNS / f"train-{processes}x{threads}"
        seconds = []
        for _ in range(repeats):
            _run(processes, threads, [*argv, "-o", str(folder)])
            seconds.append(json.loads((folder / "metrics.json").read_text())[0]["seconds"])
        out[label] = {"seconds": _summary(seconds), "folder": str(folder.relative_to(REPO)), "command": argv}
    one, threads, two = (load_file(RUNS / f"train-{p}x{t}" / "model.safetensors") for p, t in ((1, 1), (1, 2), (2, 1)))
    out["max_weight_difference"] = max((one[k] - two[k]).abs().max().item() for k in one)
    # The yardstick of float rounding: one process on 2 threads sums in another order than on 1.
    out["max_weight_difference_threads"] = max((one[k] - threads[k]).abs().max().item() for k in one)
    out["max_weight"] = max(w.abs().max().item() for w in one.values())
    return out


def evaluate(model: Path, zip_path: Path, per_class: int, repeats: int) -> dict[str, dict]:
    argv = ["robust", "evaluate", str(model), "--data", f"folder:{zip_path}", "--attacks", "fgsm,pgd", "--n-per-class", str(per_class)]
    argv += ["--directions", "5", "--draws", "2", "--seed", "0", "--no-compile", "--force"]
    out: dict[str, dict] = {}
    for label, processes, threads in CONFIGURATIONS:
        folder = RUNS / f"robust-{processes}x{threads}"
        seconds = [_run(processes, threads, [*argv, "-o", str(folder)]) for _ in range(repeats)]
        out[label] = {"seconds": _summary(seconds), "folder": str(folder.relative_to(REPO)), "command": argv}

    def rows(processes: int) -> dict:
        saved = json.loads((RUNS / f"robust-{processes}x1" / "evaluation.json").read_text())
        for row in saved["paper"] + saved["adaptive"]:
            row.pop("seconds")
        return saved

    out["equal"] = rows(1) == rows(2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zip(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: checks the pipeline")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    train_per_class, eval_per_class = (20, 1) if args.quick else (500, 3)
    load_before = _load()
    trained = train(args.zip, train_per_class, repeats)
    evaluated = evaluate(SHARED / "models" / "resnet20-12fca82f.th", args.zip, eval_per_class, repeats)
    load_after = _load()

    def table(results: dict[str, dict], what: str) -> str:
        base = results[CONFIGURATIONS[0][0]]["seconds"]["median"]
        lines = []
        for label, _, _ in CONFIGURATIONS:
            s = results[label]["seconds"]
            lines.append([label, f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})", f"{base / s['median']:.2f}×"])
        return markdown_table(["configuration", f"{what} s, median (min–max) of {repeats}", "speed-up over 1 process, 1 thread"], lines)

    print(f"load average before {load_before}, after {load_after}; cores {os.cpu_count()}; torch {torch.__version__}")
    print(f"\ntraining epoch (LeNet, {train_per_class * 10} images, batch 128):\n")
    print(table(trained, "epoch"))
    print(
        f"\nmax |w(2 processes) − w(1 process, 1 thread)| = {trained['max_weight_difference']:.2e}; float rounding's yardstick, "
        f"max |w(1 process, 2 threads) − w(1 process, 1 thread)| = {trained['max_weight_difference_threads']:.2e} (max |w| {trained['max_weight']:.3f})"
    )
    print(f"\nrobust evaluate (ResNet-20, fgsm + pgd, {eval_per_class * 10} images, K = 5, 2 draws):\n")
    print(table(evaluated, "command wall"))
    print(f"\nevaluation.json of 2 processes equal to 1 process's (timings aside): {evaluated['equal']}")
    path = write_result(
        "distributed-quick" if args.quick else "distributed",
        {"load_before": load_before, "load_after": load_after, "repeats": repeats, "train": trained, "robust": evaluated},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
