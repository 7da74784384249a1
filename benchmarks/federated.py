"""Federated ViT paper, Sec. 4 (Table 1) with Flower's simulation engine: FedAvg against the
centralised baseline at the same epoch budget, the keyed accuracy per client, cross-key accuracy,
and Flower's overhead per round.

    nice -n 10 python benchmarks/federated.py --data folder:cifar10-jpeg.zip \\
        --model vit --clients 10 --rounds 10 [--alpha 0.5] [--subset N] [--test-subset N] [--secagg]

One row per partition (IID unless ``--no-iid``, and Dirichlet(α) for each ``--alpha``): the final
central accuracy of the integrated model and of the baseline (same model, same initial weights,
trained on the union of the partitions — the whole training split, whatever the partition — for
rounds × local epochs epochs with the same optimiser; trained once per run, or not at all with
``--no-baseline``), the gap,
how many clients' keyed accuracy equals the plain model's on the same images, the mean
cross-key accuracy (client i's encrypted images on its copy of the model keyed with a fresh
key standing for client j's; measured on client i, which sends only the numbers), the mean wall time per
round and Flower's overhead per round: (round wall time − the clients' summed local training
time) / that training time. Clients train one after another (each simulated client gets all
the CPUs), so that sum is the round's training time; the overhead includes Ray, the messages,
the clients' evaluation of the global model on their own test images and the central evaluation.
``--secagg`` runs each partition a second time with SecAgg+ (no baseline) right after the plain
run, for its cost per round beside plain FedAvg's on the same machine and load. Each run's outputs
(federated.json, report.md, rounds.png) go under runs/benchmarks/federated/.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from _common import REPO, markdown_table, write_result
from veilnet.cli import parse_assignments
from veilnet.federated import simulation
from veilnet.federated.task import PAPER_TRAIN, FederatedConfig


def row(result: Any, label: str, base: dict[str, Any] | None) -> dict[str, Any]:
    rounds = result.rounds
    overhead = [(r["seconds"] - r["local_train_seconds"]) / r["local_train_seconds"] for r in rounds if r.get("local_train_seconds")]
    baseline = base["final_accuracy"] if base else float("nan")
    return {
        "partition": label,
        "federated_accuracy": result.final_accuracy,
        "baseline_accuracy": baseline,
        "gap_points": 100 * (baseline - result.final_accuracy),
        "keyed_equal": sum(k.keyed_accuracy == k.plain_accuracy for k in result.keyed),
        "clients": len(result.keyed),
        "max_relative_logit_difference": max((k.max_relative_logit_difference for k in result.keyed), default=float("nan")),
        "cross_key_accuracy": result.cross_key_mean,
        "chance": result.chance,
        "round_seconds": statistics.mean(r["seconds"] for r in rounds),
        "round_seconds_after_first": statistics.mean(r["seconds"] for r in rounds[1:]) if len(rounds) > 1 else float("nan"),
        "round_seconds_median_after_first": statistics.median(r["seconds"] for r in rounds[1:]) if len(rounds) > 1 else float("nan"),
        "overhead_median": statistics.median(overhead) if overhead else float("nan"),
        "overhead_after_first": statistics.median(overhead[1:]) if len(overhead) > 1 else float("nan"),
        "baseline_seconds": base["seconds"] if base else float("nan"),
        "federation_seconds": result.seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--model", default="vit")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="model keyword argument")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--alpha", type=float, action="append", default=[], help="also a Dirichlet(α) row (repeatable)")
    p.add_argument("--subset", type=int, help="training images per class")
    p.add_argument("--test-subset", type=int, help="test images per class")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=PAPER_TRAIN.lr)
    p.add_argument("--batch-size", type=int, default=PAPER_TRAIN.batch_size)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--no-iid", action="store_true", help="only the Dirichlet rows of --alpha")
    p.add_argument("--no-baseline", action="store_true", help="skip the centralised baseline (it does not depend on the partition: an IID run's serves)")
    p.add_argument("--secagg", action="store_true", help="also run each partition with SecAgg+ (a second row, no baseline)")
    p.add_argument("--name", default="federated", help="JSON name under runs/benchmarks/")
    args = p.parse_args()
    if args.no_iid and not args.alpha:
        p.error("--no-iid needs at least one --alpha")
    train = PAPER_TRAIN.from_dict({**PAPER_TRAIN.__dict__, "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size, "augment": args.augment})
    rows = []
    base = None
    for alpha in [*([] if args.no_iid else [None]), *args.alpha]:
        label = "iid" if alpha is None else f"dirichlet α={alpha}"
        for secagg in [False, True] if args.secagg else [False]:
            config = FederatedConfig(
                model=args.model,
                data=args.data,
                clients=args.clients,
                rounds=args.rounds,
                local_epochs=args.local_epochs,
                model_args=parse_assignments(args.arg),
                partition="iid" if alpha is None else "dirichlet",
                alpha=alpha or 0.5,
                train=train,
                subset=args.subset,
                test_subset=args.test_subset,
                secagg=secagg,
            )
            name = label + (" secagg+" if secagg else "")
            out = REPO / "runs" / "benchmarks" / args.name / name.replace(" ", "-").replace("α=", "alpha")
            result = simulation.run(config, out, force=True, baseline=not (secagg or args.no_baseline or base))
            base = base or result.baseline
            rows.append({**row(result, name, base), "output": str(out.relative_to(REPO))})
            print(markdown_table(list(rows[-1]), [list(rows[-1].values())]))
    path = write_result(args.name, {"args": vars(args), "rows": rows})
    headers = [
        "partition",
        "federated",
        "baseline",
        "gap (points)",
        "keyed = plain",
        "cross-key",
        "s / round",
        "s / round (median, after the first)",
        "overhead",
    ]
    print(
        markdown_table(
            headers,
            [
                [
                    r["partition"],
                    r["federated_accuracy"],
                    r["baseline_accuracy"],
                    r["gap_points"],
                    f"{r['keyed_equal']}/{r['clients']}",
                    r["cross_key_accuracy"],
                    r["round_seconds"],
                    r["round_seconds_median_after_first"],
                    r["overhead_median"],
                ]
                for r in rows
            ],
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
