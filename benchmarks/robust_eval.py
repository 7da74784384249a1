"""Post-averaging under both protocols on the pretrained CIFAR ResNets, with the paper's figures
beside ours (issue: post-averaging defence and evasion attacks).

    python benchmarks/robust_eval.py [--quick]

Data: the JPEG CIFAR-10 test split, first N images of each class (the same subset every run).
Defence: K = 15, r = 6 in normalised space, fresh directions per call from seed 0; ε = 8/255 (L∞);
every defended accuracy is the mean over 5 draws of the directions (min–max beside it).
1. The paper's protocol (Table 1): FGSM, PGD, DeepFool on N per class; C&W on a smaller stated
   subset. 2. Adaptive: EOT-PGD through the averaging and the Square attack querying it, on a
   smaller stated subset with reduced settings (stated in the output). The paper used ResNet-110
   (not available) on the original PNG CIFAR-10 with 10,000 images and Foolbox's defaults.
Also the radius sweep (Fig. 2) and the directions sweep with time per image (Table 2) on
ResNet-20. One thread (torch.set_num_threads(1)): on the shared 2-core machine two threads ran
five times slower. The full plan takes hours on that CPU; --quick is a small smoke run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from _common import CIFAR_ZIP, MODELS, REPO, write_result
from veilnet import data
from veilnet.models import load_cifar_resnet
from veilnet.robust import evaluation as ev
from veilnet.robust.rendering import write_report
from veilnet.robust.setting import Setting

#: Reduced settings for the expensive attacks on this CPU (2 shared cores).
OVERRIDES: dict[str, dict[str, Any]] = {"cw": {"binary_search_steps": 5, "steps": 30}, "eot-pgd": {"steps": 10, "eot_samples": 1}, "square": {"queries": 50}}
PLANS = {
    # model: (n_per_class, slow_n_per_class, attacks)
    "full": {"resnet20": (20, 1, ev.PAPER_ATTACKS + ev.ADAPTIVE_ATTACKS), "resnet56": (5, 1, ev.PAPER_ATTACKS)},
    "quick": {"resnet20": (2, 1, ev.PAPER_ATTACKS + ev.ADAPTIVE_ATTACKS)},
}
#: --quick checks the pipeline in a few minutes: far fewer steps and queries for the adaptive attacks.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    **OVERRIDES,
    "cw": {"binary_search_steps": 2, "steps": 10},
    "eot-pgd": {"steps": 2, "eot_samples": 1},
    "square": {"queries": 5},
}
CHECKPOINTS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 images per class, ResNet-20 only")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the radius and directions sweeps")
    parser.add_argument("--models", default=None, help="comma-separated subset of the plan's models (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    plan = PLANS["quick" if args.quick else "full"]
    if args.models:
        plan = {name: plan[name] for name in args.models.split(",")}
    split = data.load(f"folder:{CIFAR_ZIP}", split="test")
    out_dir = REPO / "runs" / "benchmarks" / ("robust_eval_quick" if args.quick else "robust_eval")
    command = " ".join(["python benchmarks/robust_eval.py", *sys.argv[1:]])
    overrides = QUICK_OVERRIDES if args.quick else OVERRIDES
    results: dict[str, Any] = {"command": command, "overrides": overrides, "plan": {k: list(v[:2]) + [list(v[2])] for k, v in plan.items()}}
    print(f"$ {command}\n")
    for name, (n, slow_n, attack_names) in plan.items():
        model = load_cifar_resnet(MODELS / CHECKPOINTS[name]).eval()
        attack_overrides = {a: o for a, o in overrides.items() if a in attack_names}
        evaluation = ev.evaluate(
            model, split, Setting(seed=0), attacks=attack_names, n_per_class=n, slow_n_per_class=slow_n, model_name=name, overrides=attack_overrides
        )
        sweeps = []
        if name == "resnet20" and not args.no_sweeps:
            sweep_n = 1 if args.quick else 2
            sweeps = ev.sweep(
                model, split, {"radius": [1, 2, 4, 6, 8, 12], "directions": [6, 15, 30, 60]}, Setting(seed=0), n_per_class=sweep_n, model_name=name
            )
        report = write_report(out_dir / name, evaluation, sweeps)
        print(report.read_text())
        results[name] = {"evaluation": evaluation.to_dict(), "sweeps": [s.to_dict() for s in sweeps]}
    print(f"wrote {write_result('_'.join(['robust_eval', *plan] + (['quick'] if args.quick else [])), results)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
