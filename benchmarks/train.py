"""Train the models of configs/*.yaml with `veilnet train` on the JPEG CIFAR-10 and report test
accuracy and wall time (issue: foundation, training benchmark).

    python benchmarks/train.py [CONFIG ...] [--quick]

Each config is trained into runs/train/CONFIG with the command printed in the table; a run
that is already complete is resumed (a no-op) rather than repeated. --quick trains 20 images
per class for one epoch, to check the pipeline in about a minute. The configs' data specs are
read under $VEILNET_DATA, else ../shared/data (benchmarks/_common.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _common import DATA, MODELS, REPO, markdown_table, write_result

DEFAULT = ["resnet20-finetune-cifar10", "convmixer-cifar10", "vit-cifar10", "resnet20-cifar10"]
PRETRAINED = MODELS / "resnet20-12fca82f.th"


def _run(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return its wall seconds and the CPU seconds (user + system) it used."""
    print("$", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - tic, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="*", default=DEFAULT)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("VEILNET_DATA", str(DATA))
    veilnet = [sys.executable, "-m", "veilnet.cli"]
    pretrained = REPO / "runs" / "pretrained" / "resnet20"
    if any("finetune" in c for c in args.configs) and not (pretrained / "model.safetensors").exists():
        pretrained.mkdir(parents=True, exist_ok=True)
        _run([*veilnet, "models", "import-cifar-resnet", str(PRETRAINED), "-o", str(pretrained), "--force"])
    rows, results = [], {}
    for name in args.configs:
        out = REPO / "runs" / ("train-quick" if args.quick else "train") / name
        cmd = [*veilnet, "train", "--config", f"configs/{name}.yaml", "-o", str(out.relative_to(REPO))]
        if args.quick:
            cmd += ["--subset", "20", "--epochs", "1", "--force"]
        elif (out / "checkpoint.pt").exists():
            cmd += ["--resume"]
        wall, cpu = _run(cmd)
        history = json.loads((out / "metrics.json").read_text())
        card = json.loads((out / "model.json").read_text())
        minutes = sum(r["seconds"] for r in history) / 60
        acc = history[-1]["test_accuracy"]
        results[name] = {
            "command": " ".join(["veilnet", *cmd[3:]]),
            "architecture": card["architecture"],
            "kwargs": card["kwargs"],
            "epochs": len(history),
            "train_minutes": minutes,
            "wall_minutes_this_invocation": wall / 60,
            "cpu_minutes_this_invocation": cpu / 60,
            "test_accuracy": acc,
            "history": history,
        }
        rows.append([name, len(history), f"{minutes:.1f}", f"{wall / 60:.1f}", f"{cpu / 60:.1f}", f"{100 * acc:.2f}", "`" + results[name]["command"] + "`"])
        write_result(f"train-{name}" + ("-quick" if args.quick else ""), {"run": results[name]})
    print(markdown_table(["config", "epochs", "train min (loop)", "wall min (incl. data load, per-epoch eval)", "CPU min", "test acc %", "command"], rows))


if __name__ == "__main__":
    main()
