"""Reduced-scale reproduction of Xiang et al., "Interpretable Complex-Valued Neural Networks for
Privacy Protection" (ICLR 2020): the classification-error rows of Tables 1–2 and the time per
image of Table 5 (issue 10, "Reproduction at reduced scale").

    VEILNET_DATA=../shared/data python benchmarks/complex_reproduce.py --arch lenet \\
        [--epochs E] [--train-per-class N] [--test-per-class M] [--rows ...] [--resume] [--quick]

For one architecture (``lenet``, ``resnet20-alpha``, ``resnet20-beta``, ``resnet56-alpha``) it
trains the rows of the paper's tables with **one budget** (epochs, training subset, optimiser,
learning rate and schedule, batch size, augmentation, seed) on the JPEG CIFAR-10 (default: all
50,000 training images, 20 epochs (the budget of the LeNet table in docs/benchmarks.md), Adam at 10⁻³ with a cosine schedule, batch 128, weight decay
5·10⁻⁴, random crop and flip, seed 0 — Adam because it is the complex trainer's default, with
which the complex layers train from scratch; the paper states no budget). The complex rows use
``ComplexTrainConfig``'s adversarial defaults (k, λ, decoys, D's optimiser) unless
``--complex-arg KEY=VALUE`` sets one (e.g. ``decoys=one``); the budget cannot be set there.

=============  ===========================================================================
row            model (section 5.1 of the paper)
=============  ===========================================================================
original       ``split-ARCH``: the original real network (baseline 1)
additional     ``split-ARCH additional_layers=true``: the GAN generator's 3×3×K convolution
               inserted after the encoder, no adversarial loss (baseline 3)
noisy-γ        ``split-ARCH noise=γ``, γ ∈ {0.2, 0.5, 1.0}: ``a + γ·ε`` after the encoder of the
               original network, ε of the average magnitude of ``a`` (baseline 2)
complex        ``complex-ARCH`` trained with the joint objective of Eq. 9 (task loss plus the
               WGAN loss of Eq. 8) by :func:`veilnet.complex.training.train_complex`
complex-task   (on request, not in the paper) the same with λ = ``adversarial_weight`` = 0:
               the task loss alone, to tell the cost of the complex layers and the counterpart
               from the cost of the adversarial loss
=============  ===========================================================================

The real rows train with :func:`veilnet.training.train`, the complex row with
:func:`veilnet.complex.training.train_complex`; each into
``runs/benchmarks/complex_reproduce/ARCH/ROW`` (checkpoint per epoch, ``metrics.json``, the
model). ``--resume`` continues every row from its checkpoint — a finished row replays no epoch —
and refuses a checkpoint written with another budget; without it each row starts over.

Classification error (%) is measured on a fixed test subset (the first ``M`` test images of
every class; default all 10,000) after training. The noisy rows draw their noise, and the complex
row its angle θ ~ U[0, 2π) and fooling counterpart b = g(I′) from another image (Eq. 2) per sample,
from a generator seeded with the evaluation seed: the table gives seed 0 and the min–max over
seeds 0, 1, 2. Beside each figure: the paper's (Table 1: ResNet-20-α/β on CIFAR-10; Table 2:
LeNet on CIFAR-10) and the public reproduction's finding (its complex LeNet 6.7 points worse than
the original; its ResNets 2.5–5 points; its README gives its tables only as images).

Time per image (Table 5: 0.0004 s for the network with additional layers vs 0.0007 s for the
complex one at batch 100 on CIFAR-100, 1.75×): inference (eval mode, no_grad) at one batch size
for the original, the network with additional layers and the complex network (device encoder,
Eq. 2 with a counterpart from the rest of the batch and a fresh θ per sample, the server's Φ,
Eq. 3 and the decoder), timed interleaved — one repetition of each in turn, after one warm-up of
each — median and min–max of the repetitions, and the ratio of medians; also the server's
processing module alone (complex Φ on x against the real processor on a).

Prints the Markdown tables; writes ``runs/benchmarks/complex_reproduce_ARCH.json`` (machine,
command, budget, per row: config, history, errors by seed, training seconds; the timings), or
``..._ARCH_error.json`` / ``..._ARCH_time.json`` when ``--sections`` names one section.

``--quick`` (about a minute): LeNet on 50 training images per class for 2 epochs, 20 test images
per class, 5 timing repetitions, into ``runs/benchmarks/complex_reproduce-quick``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

import torch

from _common import DATA, REPO, markdown_table, write_result
from complex_layers import interleaved
from veilnet import data, metrics, models
from veilnet.cli import parse_assignments
from veilnet.complex import layers as cl
from veilnet.training import TrainConfig, train

ARCHS = ("lenet", "resnet20-alpha", "resnet20-beta", "resnet56-alpha")
GAMMAS = (0.2, 0.5, 1.0)
ROWS = ("original", "additional", *(f"noisy-{g}" for g in GAMMAS), "complex")
#: Optional rows (not in the paper): the complex network trained on the task loss alone (λ = 0).
EXTRA_ROWS = ("complex-task",)
LABELS = {
    "original": "original",
    "additional": "with additional layers",
    **{f"noisy-{g}": f"noisy, γ = {g}" for g in GAMMAS},
    "complex": "complex-valued",
    "complex-task": "complex-valued, λ = 0 (task loss only; ablation, not in the paper)",
}

#: Classification error (%) on CIFAR-10 in the paper (Table 1: ResNets; Table 2: LeNet); None: not reported.
PAPER: dict[str, dict[str, float | None]] = {
    "lenet": {"original": 19.78, "additional": 21.52, "noisy-0.2": 24.15, "noisy-0.5": 27.53, "noisy-1.0": 34.43, "complex": 17.95},
    "resnet20-alpha": {"original": 11.56, "additional": 9.68, "complex": 10.91},
    "resnet20-beta": {"original": 11.99, "additional": 9.79, "complex": 12.28},
}
#: The public reproduction's finding per architecture (its README's tables, which are images: LeNet
#: as read for issue 29; the ResNets as summarised in issue 10).
REPRODUCTION: dict[str, dict[str, str]] = {
    "lenet": {"complex": "its LeNet: +6.7 points above its original"},
    "resnet20-alpha": {"complex": "its ResNets: 2.5–5 points above their original (issue 10's summary)"},
    "resnet20-beta": {"complex": "its ResNets: 2.5–5 points above their original (issue 10's summary)"},
}
#: Paper Table 5 (CIFAR-100, batch 100): seconds per image.
PAPER_TIME = {"additional": 0.0004, "complex": 0.0007}
EVAL_SEEDS = (0, 1, 2)


def model_spec(arch: str, row: str) -> tuple[str, dict[str, Any]]:
    """The zoo name and keyword arguments of ``row`` for ``arch``."""
    if row.startswith("complex"):
        return f"complex-{arch}", {}
    if row == "original":
        return f"split-{arch}", {}
    if row == "additional":
        return f"split-{arch}", {"additional_layers": True}
    return f"split-{arch}", {"noise": float(row.split("-", 1)[1])}


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The training options every row shares (TrainConfig's names)."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "schedule": "cosine",
        "warmup_epochs": args.warmup_epochs,
        "augment": True,
        "seed": args.seed,
    }


def evaluate(net: torch.nn.Module, row: str, test: data.ImageSplit, seed: int) -> float:
    """Accuracy on ``test``; the noise of a noisy row and the complex row's θ and counterparts
    are drawn from generators seeded with ``seed``."""
    if row.startswith("complex"):
        from veilnet.complex.training import evaluate_complex

        return evaluate_complex(net, test, seed=seed)
    noise = getattr(net, "noise", None)
    if noise is not None and hasattr(noise, "generator"):
        noise.generator = torch.Generator().manual_seed(seed)
    try:
        return metrics.accuracy(metrics.predict(net, test.images), test.labels)
    finally:
        if noise is not None and hasattr(noise, "generator"):
            noise.generator = None


def train_row(
    arch: str, row: str, train_split: data.ImageSplit, monitor: data.ImageSplit, out: Any, args: argparse.Namespace
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or resume) one row into ``out``; returns the trained model and what to record."""
    name, kwargs = model_spec(arch, row)
    torch.manual_seed(args.seed)
    net = models.create(name, **kwargs)
    resume = args.resume and (out / "checkpoint.pt").is_file()
    progress = not args.no_progress
    tic = time.perf_counter()
    if row.startswith("complex"):
        from veilnet.complex.training import ComplexTrainConfig, train_complex

        fields = {f.name for f in dataclasses.fields(ComplexTrainConfig)}
        shared = budget(args)
        missing = sorted(set(shared) - fields)
        if missing:
            raise SystemExit(f"ComplexTrainConfig lacks the shared budget option(s) {', '.join(missing)}")
        adversarial = {**args.complex_options, **({"adversarial_weight": 0.0} if row == "complex-task" else {})}
        clash = sorted(set(adversarial) & set(shared))
        if clash:
            raise SystemExit(f"--complex-arg may not change the shared budget ({', '.join(clash)}); use the budget options")
        config: Any = ComplexTrainConfig(**shared, **adversarial)
        result = train_complex(net, train_split, out, config=config, test_split=monitor, resume=resume, force=not resume, progress=progress)
    else:
        config = TrainConfig(**budget(args))
        result = train(net, train_split, out, config=config, test_split=monitor, resume=resume, force=not resume, progress=progress)
    wall = time.perf_counter() - tic
    record = {
        "model": name,
        "kwargs": kwargs,
        "config": dataclasses.asdict(config),
        "out_dir": str(out.relative_to(REPO)),
        "resumed": resume,
        "epochs": result.epochs,
        "train_seconds": result.train_seconds,
        "wall_seconds_this_invocation": wall,
        "history": result.history,
    }
    return net, record


def time_per_image(arch: str, batch: int, batches: int, repeats: int) -> dict[str, Any]:
    """Inference seconds per image of the original, the network with additional layers and the
    complex network (whole pipeline) and of the server's processing module alone."""
    torch.manual_seed(0)
    original = models.create(f"split-{arch}").eval()
    additional = models.create(f"split-{arch}", additional_layers=True).eval()
    comp = models.create(f"complex-{arch}").eval()
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(batch, 3, 32, 32, generator=gen) for _ in range(batches)]
    with torch.no_grad():
        feats = [additional.encoder(x) for x in images]
        pairs = [cl.encode(comp.encoder(x), comp.encoder(x).roll(1, 0), torch.rand(batch, generator=gen) * 2 * math.pi) for x in images]

    def whole(net: torch.nn.Module) -> Any:
        def run() -> None:
            with torch.no_grad():
                for x in images:
                    net(x)

        return run

    def complex_whole() -> None:
        with torch.no_grad():
            for x in images:
                a = comp.encoder(x)
                theta = torch.rand(len(x), generator=gen) * (2 * math.pi)
                h = comp.process(cl.encode(a, a.roll(1, 0), theta))  # counterpart: another image's feature
                comp.decode(h, theta)

    def processors_real() -> None:
        with torch.no_grad():
            for a in feats:
                additional.processor(a)

    def processors_complex() -> None:
        with torch.no_grad():
            for x in pairs:
                comp.process(x)

    n = batch * batches
    nets = interleaved({"original": whole(original), "additional": whole(additional), "complex": complex_whole}, repeats)
    procs = interleaved({"real": processors_real, "complex": processors_complex}, repeats)
    per = lambda t: {k: v / n if k != "repeats" else v for k, v in t.items()}  # noqa: E731
    return {
        "batch": batch,
        "batches_per_repeat": batches,
        "repeats": repeats,
        "whole": {k: per(v) for k, v in nets.items()},
        "processor": {k: per(v) for k, v in procs.items()},
        "ratio_vs_original": nets["complex"]["median"] / nets["original"]["median"],
        "ratio_vs_additional": nets["complex"]["median"] / nets["additional"]["median"],
        "ratio_processor": procs["complex"]["median"] / procs["real"]["median"],
    }


def _fmt_err(rec: dict[str, Any]) -> str:
    if "error" not in rec:
        return rec.get("status", "–")
    e = rec["error"]
    spread = rec.get("error_by_seed")
    if spread and len(set(spread.values())) > 1:
        return f"**{e:.2f}** ({min(spread.values()):.2f}–{max(spread.values()):.2f})"
    return f"**{e:.2f}**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, default="lenet")
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROWS + EXTRA_ROWS,
        default=list(ROWS),
        help="rows to train and evaluate (default: the paper's; complex-task, the complex network with λ = 0, on request)",
    )
    parser.add_argument("--data", default="folder:cifar10-jpeg.zip", help="data spec (relative paths under $VEILNET_DATA, default ../shared/data)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every row (default 20; quick 2)")
    parser.add_argument("--train-per-class", type=int, default=None, help="train on N images per class, a seeded random choice (default all; quick 50)")
    parser.add_argument("--test-per-class", type=int, default=None, help="evaluate on the first M test images per class (default all; quick 20)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adam", "adamw"),
        default="adam",
        help="optimiser of every row (default adam: ComplexTrainConfig's default, with which the complex layers train from scratch)",
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="training seed of every row (initialisation, batches, augmentation)")
    parser.add_argument(
        "--complex-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of ComplexTrainConfig's adversarial part for the complex rows (k, "
        "adversarial_weight, decoys, d_lr, gp_weight, n_critic, d_channels); default: its defaults",
    )
    parser.add_argument("--resume", action="store_true", help="continue each row from its checkpoint (a finished row replays nothing)")
    parser.add_argument("--sections", nargs="+", choices=("error", "time"), default=["error", "time"])
    parser.add_argument("--time-batch", type=int, default=100, help="batch size of the timing (default 100, the paper's for CIFAR-100)")
    parser.add_argument("--time-batches", type=int, default=None, help="batches per timed repetition (default 20; quick 5)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 9; quick 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2, the machine's cores)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="LeNet, 50 images per class, 2 epochs, 20 test images per class")
    args = parser.parse_args()
    args.complex_options = parse_assignments(args.complex_arg)
    if args.quick:
        args.epochs = args.epochs or 2
        args.train_per_class = args.train_per_class or 50
        args.test_per_class = args.test_per_class or 20
    args.epochs = args.epochs or 20
    args.time_batches = args.time_batches or (5 if args.quick else 20)
    args.repeats = args.repeats or (5 if args.quick else 9)
    torch.set_num_threads(args.threads)
    os.environ["VEILNET_DATA"] = str(DATA)
    command = "python benchmarks/complex_reproduce.py " + " ".join(a for a in sys.argv[1:] if a not in ("--resume", "--no-progress"))
    result: dict[str, Any] = {
        "command": command.strip(),
        "arch": args.arch,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "budget": budget(args),
        "complex_options": args.complex_options,
        "data": args.data,
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
        "eval_seeds": list(EVAL_SEEDS),
        "rows": {},
    }
    root = REPO / "runs" / "benchmarks" / ("complex_reproduce-quick" if args.quick else "complex_reproduce") / args.arch
    only = "" if set(args.sections) == {"error", "time"} else "_" + args.sections[0]  # a partial run keeps the full one's JSON
    name = f"complex_reproduce_{args.arch}{only}" + ("_quick" if args.quick else "")
    print(f"torch.set_num_threads({torch.get_num_threads()}); {args.arch}; budget {budget(args)}", flush=True)

    if "error" in args.sections:
        train_split = data.load(args.data, "train")
        if args.train_per_class:
            train_split = data.subset(train_split, args.train_per_class, seed=args.seed)
        test = data.load(args.data, "test")
        if args.test_per_class:
            test = data.subset(test, args.test_per_class)
        monitor = data.subset(test, min(100, len(test) // test.num_classes))  # per-epoch curve only
        result.update(n_train=len(train_split), n_test=len(test), n_monitor=len(monitor))
        print(
            f"train: {len(train_split)} images; test: {len(test)} images "
            f"({'first ' + str(args.test_per_class) + ' per class' if args.test_per_class else 'all'})",
            flush=True,
        )
        for row in args.rows:
            out = root / row
            print(f"\n== {args.arch} / {row} -> {out.relative_to(REPO)}", flush=True)
            try:
                net, record = train_row(args.arch, row, train_split, monitor, out, args)
            except ImportError as exc:
                result["rows"][row] = {"status": f"not run ({exc})"}
                print(f"not run: {exc}", flush=True)
                continue
            net.eval()
            seeds = EVAL_SEEDS if (row.startswith("complex") or row.startswith("noisy")) else EVAL_SEEDS[:1]
            by_seed = {s: 100.0 * (1.0 - evaluate(net, row, test, s)) for s in seeds}
            record.update(error=by_seed[0], error_by_seed={str(s): e for s, e in by_seed.items()})
            result["rows"][row] = record
            print(
                f"{row}: error {by_seed[0]:.2f}% (seeds {', '.join(f'{e:.2f}' for e in by_seed.values())}); {record['train_seconds'] / 60:.1f} min of training",
                flush=True,
            )
            write_result(name, result)

        paper = PAPER.get(args.arch, {})
        base = result["rows"].get("original", {}).get("error")
        rows = []
        for row in args.rows:
            rec = result["rows"][row]
            delta = f"{rec['error'] - base:+.2f}" if base is not None and "error" in rec else "–"
            p = paper.get(row)
            pdelta = f"{p - paper['original']:+.2f}" if p is not None and paper.get("original") is not None else "–"
            minutes = f"{rec['train_seconds'] / 60:.1f}" if "train_seconds" in rec else "–"
            rows.append([LABELS[row], "–" if p is None else f"{p:.2f}", pdelta, _fmt_err(rec), delta, REPRODUCTION.get(args.arch, {}).get(row, "–"), minutes])
        print(
            f"\n### Classification error (%), {args.arch}, JPEG CIFAR-10: {result['n_train']} "
            f"training images, {args.epochs} epochs; test n = {result['n_test']}\n"
        )
        print(markdown_table(["row", "paper", "paper − original", "ours", "ours − original", "public reproduction", "train min"], rows))

    if "time" in args.sections:
        t = time_per_image(args.arch, args.time_batch, args.time_batches, args.repeats)
        result["time"] = t
        fmt = lambda v: f"{v['median'] * 1e3:.4f} ({v['min'] * 1e3:.4f}–{v['max'] * 1e3:.4f})"  # noqa: E731
        rows = [
            ["original (whole network)", fmt(t["whole"]["original"]), "–", "1.00×"],
            [
                "with additional layers (whole network)",
                fmt(t["whole"]["additional"]),
                f"{PAPER_TIME['additional'] * 1e3:.1f}",
                f"{t['whole']['additional']['median'] / t['whole']['original']['median']:.2f}×",
            ],
            [
                "complex (encode, Φ, decode)",
                fmt(t["whole"]["complex"]),
                f"{PAPER_TIME['complex'] * 1e3:.1f}",
                f"**{t['ratio_vs_original']:.2f}×** ({t['ratio_vs_additional']:.2f}× the additional-layers network; paper 1.75×)",
            ],
            ["server only: real processor on a", fmt(t["processor"]["real"]), "–", "1.00×"],
            ["server only: complex Φ on x", fmt(t["processor"]["complex"]), "–", f"{t['ratio_processor']:.2f}×"],
        ]
        print(
            f"\n### Inference time per image, {args.arch}, batch {args.time_batch} ({args.time_batches} batches per "
            f"repetition, median (min–max) of {args.repeats} interleaved repetitions, {torch.get_num_threads()} threads)\n"
        )
        print(markdown_table(["network", "ms per image (ours)", "paper ms per image (Table 5)", "× original"], rows))

    print(f"\n-> {write_result(name, result)}")
    print("command: " + result["command"])
    json.dumps(result)  # fail loudly here rather than leave a half-written record


if __name__ == "__main__":
    main()
