"""``veilnet demo``: the whole system in about a minute and a half on the embedded digits data.

Steps, each adding a section to ``runs/demo/report.md``:

1. train a small ConvMixer (patch 4) on scikit-learn's digits and evaluate it;
2. keyed model: draw a block-wise key, transform the model (its card keeps the class names),
   compare plain / transformed / wrong-key accuracy and show one image before and after
   encryption with its class and the keyed model's label;
3. complex-valued network (Xiang et al., ICLR 2020): train a small complex LeNet on the joint
   objective of Eq. 9, split it into the device part (encoder, decoder, counterpart pool) and the
   server part (the processor only), run the protocol, show what the server sees and what it
   reconstructs from it (the angle attacks and inversions of ``veilnet complex attack``);
4. robustness: wrap the model in post-averaging and attack it (FGSM, PGD at the full budget; FGSM
   at the smallest, the paper's setting), paper protocol;
5. federated training: how to run a federation (``veilnet fl run``; not run here);
6. which method hides what: ``veilnet bench privacy --quick`` on four rows — the unprotected split
   network, a complex-valued network, keyed images, dropout on the released feature — with the
   same attacker on the same victim images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from veilnet import data, models
from veilnet.cli import add_command, add_seed
from veilnet.paths import prepare_output, write_text
from veilnet.report import markdown_table, plot_backend
from veilnet.training import TrainConfig, evaluate, plot_confusion, train

if TYPE_CHECKING:
    from veilnet.keyed import KeyedEvaluation

DEMO_MODEL = {"dim": 64, "depth": 4, "kernel_size": 5, "patch_size": 4}
DEMO_TRAINING = TrainConfig(epochs=3, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=0.05)
#: The demo's model in words, for the notes that say why its figures are not a paper's.
DEMO_MODEL_WORDS = f"a small ConvMixer trained {DEMO_TRAINING.epochs} epochs on the digits (8×8 images scaled to 32×32)"


@dataclass
class DemoContext:
    """What the steps share: the output folder, the data, the trained plain model."""

    out: Path
    train: data.ImageSplit
    test: data.ImageSplit
    model: nn.Module
    model_path: Path
    seed: int | None


def _plot_history(history: list[dict[str, Any]], path: Path) -> Path:
    from veilnet.report import save_figure

    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_accuracy"] for r in history], marker="o", label="train")
    ax.plot(epochs, [r["test_accuracy"] for r in history], marker="o", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    return save_figure(fig, path, dpi=100)


def train_step(out: Path, seed: int | None) -> tuple[DemoContext, str]:
    """Train and evaluate the demo ConvMixer; return the context and the report section."""
    train_split, test_split = data.load("digits", "train"), data.load("digits", "test")
    config = DEMO_TRAINING if seed is None else dataclasses.replace(DEMO_TRAINING, seed=seed)
    torch.manual_seed(config.seed)
    model = models.create("convmixer", num_classes=train_split.num_classes, **DEMO_MODEL)
    result = train(model, train_split, out / "model", config=config, test_split=test_split, force=True)
    evaluation = evaluate(result.model_path, "digits", "test")
    evaluation.save(out / "eval.json")
    _plot_history(result.history, out / "training.png")
    plot_confusion(evaluation, out / "confusion.png")
    rows = [[r["epoch"], r["train_loss"], r["train_accuracy"], r["test_accuracy"], r["seconds"]] for r in result.history]
    section = "\n".join(
        [
            "## 1. Training",
            "",
            f"ConvMixer {DEMO_MODEL} on `digits` ({len(train_split)} train / {len(test_split)} test images, 3×32×32), "
            f"{config.epochs} epochs of {config.optimizer} (seed {config.seed}).",
            "",
            markdown_table(["epoch", "train loss", "train acc", "test acc", "seconds"], rows),
            "",
            f"Test accuracy: **{evaluation.accuracy:.4f}** (n={evaluation.n}).",
            "",
            "![training curve](training.png) ![confusion matrix](confusion.png)",
        ]
    )
    ctx = DemoContext(out=out, train=train_split, test=test_split, model=models.load(result.model_path), model_path=Path(result.model_path), seed=seed)
    return ctx, section


def keyed_demo(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    scheme: str | None = None,
    ea: str | None = None,
    random_keys: int = 10,
    seed: int | None = None,
    output_dir: str | Path | None = None,
    data: str | None = None,
) -> KeyedEvaluation:
    """The keyed step's measurement: a fresh key for the PLAIN ``model`` (ConvMixer: block
    scheme; ViT: ViT scheme unless ``scheme`` says otherwise), its evaluation
    (:func:`veilnet.keyed.evaluation.evaluate`: the ConvMixer paper's Table 1 and Fig. 5), and, when
    ``output_dir`` is given, ``key.json`` (0600), the transformed model ``keyed_model.*`` with
    public key parameters in its card, ``evaluation.json``, ``table.md`` and ``random_keys.png``.
    ``seed`` seeds the key (and, through their own stream, the wrong keys); None draws both from
    the OS CSPRNG."""
    from veilnet.keyed import KeyParams, generate_key, transform_model
    from veilnet.keyed import evaluation as keyed

    patch_embed: nn.Conv2d = model.patch_embed
    size = int(getattr(model, "image_size", images.shape[-1]))
    chosen = scheme or ("vit" if getattr(model, "pos_embed", None) is not None else "block")
    key = generate_key(chosen, int(model.patch_size), patch_embed.in_channels, size, ea=ea, seed=seed)
    public = KeyParams.of(key)
    result = keyed.evaluate(model, key, images, labels, random_keys=random_keys, seed=seed, data=data)
    if output_dir is not None:
        out = Path(output_dir)
        key.save(out / "key.json", force=True)
        classes = getattr(model, "veilnet_card", {}).get("classes")
        models.save(transform_model(model, key), out / "keyed_model", data=data, classes=classes, extra={"keyed": public.to_dict()}, force=True)
        result.save(out / "evaluation.json")
        write_text(out / "table.md", keyed.markdown(result) + "\n")
        keyed.plot_random_keys(result, out / "random_keys.png")
    return result


def keyed_step(ctx: DemoContext) -> str:
    """Transform the demo model with a fresh block-wise key and measure Table 1 on digits.

    With ``--seed`` the key is drawn reproducibly from that seed, and the random wrong keys from
    their own stream of it (:data:`veilnet.keyed.evaluation.WRONG_KEYS`), so no wrong key is the key.
    """
    from veilnet import keys, metrics
    from veilnet.keyed import encrypt_images
    from veilnet.keyed.evaluation import markdown
    from veilnet.report import save_figure

    out = ctx.out / "keyed"
    result = keyed_demo(ctx.model, ctx.test.images, ctx.test.labels, random_keys=10, seed=ctx.seed, output_dir=out, data="digits")
    plain = ctx.test.float_images()[:1]
    encrypted = encrypt_images(plain, keys.load(out / "key.json"))
    served = models.load(out / "keyed_model")
    names = served.veilnet_card.get("classes") or [f"class {i}" for i in range(ctx.test.num_classes)]
    predicted = int(metrics.predict(served, encrypted).argmax(1)[0])
    plt = plot_backend()
    fig, axes = plt.subplots(1, 2, figsize=(4, 2.4))
    titles = (f"plain: {names[int(ctx.test.labels[0])]}", f"encrypted → {names[predicted]}")
    for ax, image, title in zip(axes, (plain, encrypted), titles):
        ax.imshow(image[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    save_figure(fig, out / "image.png", dpi=100)
    source = "fresh from the OS CSPRNG" if ctx.seed is None else f"drawn from seed {ctx.seed} (reproducible, so not secret)"
    return "\n".join(
        [
            "## 2. Keyed model (block-wise encryption, ConvMixer paper)",
            "",
            f"A key {source} (`keyed/key.json`, mode 0600) transforms the model's patch embedding; "
            "the server would hold `keyed/keyed_model.*` and see only encrypted images. "
            "The random wrong keys come from a stream of their own and are never the key.",
            "",
            markdown(result),
            "",
            _keyed_comparison(result, seeded=ctx.seed is not None),
            "",
            "![one test image before and after encryption, with its class and the keyed model's label for the encrypted image](keyed/image.png) "
            "![accuracy with random wrong keys](keyed/random_keys.png)",
        ]
    )


def _keyed_comparison(result: KeyedEvaluation, *, seeded: bool) -> str:
    """Why the keyed table's "ours" and "paper" columns differ: what the paper measured, what
    carries over to the demo's small model, and (with ``--seed``) why so few bits were drawn."""
    from veilnet.keyed.evaluation import PAPER_CONDITIONS

    conditions = PAPER_CONDITIONS.get(result.architecture or "")
    lines = []
    if result.paper and conditions is not None:
        same = "the same label on every image" if result.labels_identical else "not the same label on every image"
        lines.append(
            f"The paper column is {conditions}; ours is {DEMO_MODEL_WORDS}, "
            "so the accuracies are not comparable. What should carry over is the pattern: the transformed model on "
            f"encrypted images scores what the plain model scores on plain ones ({100 * result.transformed_model_encrypted_images:.2f} "
            f"and {100 * result.plain_model_plain_images:.2f} here, {same}), and plain images or wrong keys fall towards chance "
            f"({100 * result.random_keys.chance:.0f} %). The paper's key space also counts an order of the blocks, which the block "
            'scheme does not permute (docs/benchmarks.md, "Key space").'
        )
    if seeded:
        lines.append(
            f"The entropy drawn is {result.key_entropy_bits:g} bit{'' if result.key_entropy_bits == 1 else 's'} because the key came from a seed, "
            "which holds only that many; "
            "without --seed the key is drawn from the OS CSPRNG."
        )
    return " ".join(lines)


#: The demo's complex LeNet: full width, 3 epochs of the joint objective (Eq. 9) on digits.
DEMO_COMPLEX_EPOCHS = 3


def complex_step(ctx: DemoContext) -> str:
    """Train a small complex LeNet (Eq. 9), split it by role and run the device/server protocol.

    Shows the clean accuracy with a fresh secret angle θ and fooling counterpart per image, the
    same through the split parts, the accuracy a server would get decoding with a wrong θ, and
    what crosses the wire: only ``x = e^{iθ}(a + b·i)`` (Eq. 2).
    """
    import math

    from safetensors import safe_open

    from veilnet.complex import protocol
    from veilnet.complex.layers import decode
    from veilnet.complex.training import ComplexTrainConfig, evaluate_complex, train_complex

    out = ctx.out / "complex"
    seed = 0 if ctx.seed is None else ctx.seed
    config = ComplexTrainConfig(epochs=DEMO_COMPLEX_EPOCHS, batch_size=64, seed=seed, decoys="one")
    torch.manual_seed(config.seed)
    net = models.create("complex-lenet", num_classes=ctx.train.num_classes, in_channels=ctx.train.image_shape[0])
    result = train_complex(net, ctx.train, out / "model", config=config, test_split=ctx.test, force=True, progress=False)
    net = models.load(result.model_path)
    clean = evaluate_complex(net, ctx.test, seed=seed)
    pool = ctx.train.images[torch.randperm(len(ctx.train), generator=torch.Generator().manual_seed(seed))[:64]]
    files = protocol.split_model(net, out / "split", pool=pool, force=True)
    device = protocol.Device(files.device, seed=seed)
    server = protocol.Server(files.server)
    images, labels = ctx.test.images, ctx.test.labels
    split_accuracy = protocol.accuracy(device, server, images, labels)
    x, secret = device.encode(images)
    h = server.process(x)
    wrong = device.decoder(decode(h, secret.theta + math.pi / 2)).argmax(1)
    wrong_accuracy = (wrong == labels).float().mean().item()
    with safe_open(str(files.server), "pt") as fh:
        server_tensors = list(fh.keys())
    rows = [
        ["end to end, fresh θ and counterpart per image", clean],
        ["through the split parts (device ⇄ server)", split_accuracy],
        ["decoded with a wrong angle (θ + π/2)", wrong_accuracy],
    ]
    return "\n".join(
        [
            "## 3. Complex-valued network (Xiang et al., ICLR 2020)",
            "",
            f"A complex LeNet trained {config.epochs} epochs on task loss + {config.adversarial_weight}·WGAN loss "
            f"(k = {config.k}, seed {config.seed}); `veilnet.complex.protocol.split_model` wrote the device part "
            f"(`complex/split/device.*`, mode 0600: encoder, decoder, a pool of {pool.shape[0]} counterpart images) "
            f"and the server part (`complex/split/server.*`: {len(server_tensors)} tensors, named "
            f"{', '.join(sorted({'`' + name.split('.')[0] + '.*`' for name in server_tensors}))}).",
            "",
            markdown_table(["test accuracy on digits", "accuracy"], rows),
            "",
            f"What the server receives per image: `x`, a float32 tensor of shape {'×'.join(map(str, x.shape[1:]))} "
            f"(real and imaginary part of e^(iθ)(a + b·i)); θ and the counterpart b never leave the device.",
            "",
            _reconstruction_rows(net, ctx, out, seed),
        ]
    )


#: The demo's attack on its complex LeNet: the attacker's images, the victim's, the models' epochs.
DEMO_ATTACK = {"attacker_images": 800, "victim_images": 200, "epochs": 5, "unet_width": 16}


def _reconstruction_rows(net: nn.Module, ctx: DemoContext, out: Path, seed: int) -> str:
    """One reconstruction row of ``veilnet complex attack`` at demo scale: the supervised angle
    regression finds θ̂ from x, and a U-Net trained on the attacker's own (g(I), I) inverts
    a* = Re[x·e^{−iθ̂}] (inversion attack 1 with the stronger angle attack), beside the
    attacker's mean image (an attacker that learns nothing)."""
    from veilnet.attacks import inversion as inv
    from veilnet.complex.attacks import angle
    from veilnet.complex.attacks import inversion as cinv
    from veilnet.data import balanced_head

    n_own, n_victim, epochs, width = (DEMO_ATTACK[k] for k in ("attacker_images", "victim_images", "epochs", "unet_width"))
    attacker, victim = balanced_head(ctx.train, n_own), balanced_head(ctx.test, n_victim)
    regressor, _ = angle.train_angle_regressor(net, attacker, epochs=epochs, seed=seed + angle.ATTACKER_SEED_OFFSET, progress=False)
    x, theta = angle.victim_features(net, victim, seed=seed)
    theta_hat = regressor.angles(x)
    own, images = attacker.float_images(), victim.float_images()
    dec = inv.train_inverter(net.encoder, own, epochs=epochs, base_width=width, seed=seed, progress=False)
    result, rec = cinv.inversion_attack_1(net, own, images, x, theta_hat, inverter=dec)
    inv.save_inversion_grid(out / "reconstructions.png", images, {"dec(a*)": rec}, title="the server's reconstruction from x (regression θ̂)")
    error = float(angle.angle_error(theta_hat, theta).mean())
    rows = [
        ["dec(a*), θ̂ from the angle regression", result.metrics.error, result.metrics.ssim],
        ["the attacker's mean image (learns nothing)", result.baseline.error, result.baseline.ssim],
    ]
    return "\n".join(
        [
            f"What the server reconstructs from x (`veilnet complex attack` runs this and every other attack): it trains on "
            f"{n_own} images of its own, finds θ̂ by supervised regression (mean error {error:.2f} rad on {n_victim} victim "
            f"test images; chance 1.57) and inverts a* = Re[x·e^(−iθ̂)] with a U-Net (width {width}, {epochs} epochs).",
            "",
            markdown_table(["reconstruction", "error E‖Î − I‖ (RMS)", "SSIM"], rows),
            "",
            "![reconstructions](complex/reconstructions.png)",
        ]
    )


#: The attacks of the demo's robustness step: the fast ones, a few seconds on the demo model.
DEMO_ROBUST_ATTACKS = ("fgsm", "pgd", "fgsm-min")


def robust_demo(model: nn.Module, split: data.ImageSplit, out_dir: str | Path, *, n_per_class: int = 10, seed: int = 0) -> dict[str, Any]:
    """The robustness step's measurement: post-averaging ("Bandlimiting Neural Networks Against
    Adversarial Attacks", section 3.1, Eq. 7–8) under the paper's protocol (section 4, Table 1)
    with FGSM and PGD at the full budget and FGSM at the smallest one (the paper's setting) on the
    first ``n_per_class`` test images per class, K = 15, r = 6, defended accuracies over 5 draws;
    writes ``out_dir/report.md`` and returns the rows as a dict. Takes a few seconds on a small model."""
    from veilnet import robust

    evaluation = robust.evaluate(model, split, robust.Setting(seed=seed), attacks=DEMO_ROBUST_ATTACKS, n_per_class=n_per_class, model_name="demo")
    report = robust.write_report(out_dir, evaluation)
    return {"report": str(report), "n": evaluation.paper[0].n, "rows": [row.to_dict() for row in evaluation.paper]}


def robust_step(ctx: DemoContext) -> str:
    """Post-averaging around the demo model against FGSM and PGD (the paper's protocol, both
    budgets), with the attacks it leaves out and why its figures are not the paper's."""
    from veilnet.robust.evaluation import ADAPTIVE_ATTACKS, PAPER_ATTACKS
    from veilnet.robust.results import PAPER_CIFAR10, PAPER_CIFAR10_CONDITIONS, PAPER_ROW_OF, PaperRow

    result = robust_demo(ctx.model, ctx.test, ctx.out / "robust", n_per_class=10, seed=ctx.seed or 0)
    body = Path(result["report"]).read_text().replace("\n## ", "\n### ").split("\n", 1)[1]
    skipped = [a for a in PAPER_ATTACKS + ADAPTIVE_ATTACKS if a not in DEMO_ROBUST_ATTACKS]
    rows = [PaperRow.from_dict(row) for row in result["rows"]]
    compared = [
        f"{row.attack} {row.defence_rate.mean:.3f} against {PAPER_CIFAR10[PAPER_ROW_OF[row.attack]]['defence_rate']}"
        for row in rows
        if row.attack in PAPER_ROW_OF
    ]
    return "\n".join(
        [
            "## 4. Robustness (post-averaging, bandlimiting paper)",
            "",
            f"Not run here, to keep the demo short: {', '.join(skipped)} (`veilnet robust evaluate` runs them; docs/robust.md).",
            "",
            f"The paper's figures ({PAPER_CIFAR10_CONDITIONS}) are not comparable to this demo's (defence rate here against the "
            f"paper's: {'; '.join(compared)}): this is {DEMO_MODEL_WORDS}, "
            f"attacked on {result['n']} test images; docs/benchmarks.md has the CIFAR-10 run. The full-budget rows "
            f"({', '.join(a for a in DEMO_ROBUST_ATTACKS if a not in PAPER_ROW_OF)}) have no paper figure at all: the paper's attacks "
            "stop at the smallest ε that fools the model.",
            body,
        ]
    )


#: How to run a federation (not run by the demo: Flower's simulation engine takes longer than the demo).
FEDERATION = (
    "veilnet fl run --model vit --arg patch_size=8 --arg dim=32 --arg depth=1 --arg heads=2 --arg mlp_dim=64 "
    "--data digits --clients 3 --rounds 2 --lr 0.05 --batch-size 32 -o runs/fl"
)


def federated_step(ctx: DemoContext) -> str:
    """How to train one model across owners with FedAvg and give each its own key (not run here)."""
    return "\n".join(
        [
            "## 5. Federated training (federated ViT paper)",
            "",
            "Not run by the demo. Many owners train one model with FedAvg on Flower's simulation engine without pooling "
            "their images, then each transforms its copy with a key of its own (keyed accuracy equals the global model's):",
            "",
            f"    {FEDERATION}",
            "",
            "A real deployment runs `veilnet fl server` and one `veilnet fl client --partition i` per owner (see the README).",
        ]
    )


#: The privacy step's rows: the reference and one defence per method at its first setting.
PRIVACY_ROWS = {"none": None, "complex": [0.1], "keyed-block": [4.0], "dropout": [0.5]}


def privacy_step(ctx: DemoContext) -> str:
    """Four rows of the privacy benchmark in its quick mode (:mod:`veilnet.privacy`): accuracy,
    time, the worst reconstruction and the hidden attribute, one attacker for all."""
    from veilnet.privacy import Budget, bench, rendering
    from veilnet.privacy.cli import QUICK, QUICK_DATA

    budget = Budget(**{**QUICK, "seed": ctx.seed or 0})
    report = bench.run(QUICK_DATA, defences=PRIVACY_ROWS, budget=budget, out_dir=ctx.out / "privacy", force=True, progress=False)
    rendering.write(report, ctx.out / "privacy")
    return "\n".join(
        [
            "## 6. Which method hides what (`veilnet bench privacy --quick`)",
            "",
            f"{report.task.described}. Every row trained {budget.epochs} epochs on {budget.train_images} images and attacked "
            f"by the same attacker ({budget.attacker_images} images of its own) on the same {budget.victim_images} victims — "
            "far too small a budget for the numbers to mean much; docs/benchmarks.md has the CIFAR-10 run.",
            "",
            rendering.summary_table(report),
            "",
            "![privacy–utility plane](privacy/privacy.png)",
        ]
    )


#: The steps after training: each takes the context and returns its report section.
STEPS: list[Callable[[DemoContext], str]] = [keyed_step, complex_step, robust_step, federated_step, privacy_step]


def run(out_dir: str | Path = "runs/demo", *, seed: int | None = None) -> Path:
    """Run every step and write ``report.md`` (and ``summary.json``) into ``out_dir``."""
    out = prepare_output(out_dir, force=True, mkdir=True)  # the demo rewrites its own folder
    tic = time.perf_counter()
    ctx, section = train_step(out, seed)
    sections = [section]
    for step in STEPS:
        sections.append(step(ctx))
    seconds = time.perf_counter() - tic
    report = "\n\n".join(["# veilnet demo", f"Generated by `veilnet demo` in {seconds:.0f} s.", *sections]) + "\n"
    path = write_text(out / "report.md", report)
    write_text(out / "summary.json", json.dumps({"seconds": seconds, "seed": seed}, indent=2) + "\n")
    return path


def _demo(args: argparse.Namespace) -> int:
    path = run(args.output, seed=args.seed)
    print(f"demo report: {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo")
    p.add_argument("-o", "--output", default="runs/demo", help="output folder (default: runs/demo)")
    add_seed(p)
    p.set_defaults(func=_demo)
