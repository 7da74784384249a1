"""``veilnet complex``: train a complex-valued privacy network (Eq. 9) and measure its accuracy
with a fresh secret angle and fooling counterpart per image.

* ``veilnet complex train --model complex-lenet --data SPEC -o DIR`` — :func:`veilnet.complex.training.train_complex`
  (options as ``veilnet train``, plus the adversarial ones: ``--k``, ``--adversarial-weight``,
  ``--d-lr``, ``--gp-weight``, ``--n-critic``, ``--decoys``); a YAML ``--config`` (``model``, ``args``, ``data``,
  ``train``, ``subset``, ``init``) as in configs/complex-*.yaml; ``--resume`` continues exactly.
* ``veilnet complex evaluate MODEL --data SPEC`` — :func:`veilnet.complex.training.evaluate_complex`.
* ``veilnet complex attack MODEL --data SPEC [--baseline MODEL …] -o DIR`` —
  :func:`veilnet.complex.attacks.suite.run_attacks`: every attack of issue 11 on the model and
  its real baselines, written as report.json, report.md and reconstructions.png.

Thin: every check a user's mistake can fail (device, output path, options, the YAML file's
types, a real model where a complex one is needed, whether the model takes the data) runs
before any training. The real baselines (``split-*``) train with ``veilnet train``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from veilnet.cli import add_command, add_device, add_group, add_output, add_seed, finite_float, positive_int, seed
from veilnet.errors import ConfigError
from veilnet.training.cli import add_training_options

#: CLI option -> ComplexTrainConfig field, beyond ``veilnet train``'s options.
_ADVERSARIAL_OPTIONS = {
    "k": "k",
    "adversarial_weight": "adversarial_weight",
    "d_lr": "d_lr",
    "gp_weight": "gp_weight",
    "n_critic": "n_critic",
    "decoys": "decoys",
}


def _complex_or_refuse(model: Any, name: str, what: str | None = None) -> None:
    from veilnet.complex.models import ComplexNet

    if not isinstance(model, ComplexNet):
        raise ConfigError(f"{name} is a real network, not a complex-valued one (complex-*); {what or f'train it with `veilnet train --model {name}`'}")


def _train(args: argparse.Namespace) -> int:
    from veilnet import distributed
    from veilnet.complex.training import ComplexTrainConfig, train_complex
    from veilnet.devices import resolve_device
    from veilnet.training.cli import TRAIN_OPTIONS, setup_run

    with distributed.session(resolve_device(args.device)) as device:  # alone or under torchrun (rank 0 writes and reports)
        run = setup_run(args, ComplexTrainConfig, {**TRAIN_OPTIONS, **_ADVERSARIAL_OPTIONS}, init=_init_from, check=_complex_or_refuse)
        result = train_complex(
            run.model, run.train_split, args.output, config=run.config, test_split=run.test_split, resume=args.resume, force=args.force, device=device
        )
        main = distributed.is_main()
    if not main:
        return 0
    acc = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(
        f"test accuracy {acc} (fresh θ and counterpart per image, seed {run.config.seed}) after "
        f"{result.epochs} epochs ({result.train_seconds / 60:.1f} min); model: {result.model_path}"
    )
    return 0


def _init_from(net: Any, path: str, split: Any) -> None:
    """Start from a saved model: a complex network of the same architecture and arguments (its
    weights exactly), or a real one of the same architecture — a zoo model (e.g. a pretrained
    ResNet from ``veilnet models import-cifar-resnet``) or a ``split-*`` original — whose weights
    initialise the encoder, the decoder and the real parts of Φ
    (:func:`veilnet.complex.models.load_real_weights`)."""
    from veilnet.complex.models import ComplexNet, load_real_weights
    from veilnet.training.cli import init_exactly, load_init

    saved = load_init(path, split)
    if isinstance(saved, ComplexNet):
        init_exactly(net, saved, path)
    else:
        load_real_weights(net, saved)


def _evaluate(args: argparse.Namespace) -> int:
    from veilnet.devices import resolve_device
    from veilnet.paths import prepare_output

    device = resolve_device(args.device)
    out = prepare_output(args.output, force=args.force) if args.output else None

    from veilnet import data, models
    from veilnet.complex.training import ComplexEvaluation, evaluate_complex

    net = models.load(args.model)
    name = net.veilnet_arch["name"]
    _complex_or_refuse(net, f"{args.model} ({name})", "evaluate it with `veilnet eval`")
    split = data.load(args.data, args.split)
    models.check_input(net, split.image_shape, data=args.data)
    seed = 0 if args.seed is None else args.seed
    accuracy = evaluate_complex(net, split, seed=seed, batch_size=args.batch_size, device=device)
    print(
        f"accuracy {accuracy:.4f} on {len(split)} images ({args.data}, {args.split}) with "
        f"a fresh θ ~ U[0, 2π) and a counterpart from another image per sample, seed {seed}"
    )
    if out is not None:
        ComplexEvaluation(model=str(args.model), data=args.data, split=args.split, n=len(split), seed=seed, accuracy=accuracy).save(out)
        print(f"wrote {out}")
    return 0


def _attack(args: argparse.Namespace) -> int:
    from veilnet.devices import resolve_device
    from veilnet.paths import prepare_output, write_text

    device = resolve_device(args.device)
    out = prepare_output(args.output, force=args.force, exists=["report.json", "report.md", "reconstructions.png"])

    from veilnet import data, models
    from veilnet.complex.attacks import suite

    settings = suite.AttackSettings(
        attacks=list(suite.ATTACKS) if args.attacks is None else args.attacks,
        attacker_images=args.attacker_images,
        max_images=args.max_images,
        epochs=args.epochs,
        angle_epochs=args.angle_epochs,
        grid=args.grid,
        unet_width=args.unet_width,
        optimisation_steps=args.optimisation_steps,
        seed=args.seed,
    )
    net = models.load(args.model)
    _complex_or_refuse(net, f"{args.model} ({net.veilnet_arch['name']})", "pass it with --baseline beside a complex one")
    baselines = {}
    for path in args.baseline or []:
        base = models.load(path)
        if not isinstance(base, suite.SplitNet):
            raise ConfigError(f"--baseline {path} ({base.veilnet_arch['name']}) is not a real split network (split-*)")
        label = suite.baseline_label(base)
        if label in baselines:
            raise ConfigError(f"two baselines are both '{label}': {path} and an earlier --baseline")
        baselines[label] = base
    attacker, victim = data.load(args.data, "train"), data.load(args.data, "test")
    for model in (net, *baselines.values()):
        models.check_input(model, victim.image_shape, data=args.data)
    suite.check_inputs(net, attacker, victim, baselines, settings)
    out.mkdir(parents=True, exist_ok=True)
    report, reconstructions = suite.run_attacks(
        net, attacker, victim, baselines=baselines, settings=settings, model_label=str(args.model), device=device, progress=True
    )
    report.save(out / "report.json")
    write_text(out / "report.md", suite.markdown(report))
    if reconstructions:
        suite.save_grid(out / "reconstructions.png", report, victim.float_images()[: settings.max_images], reconstructions)
    for angle in report.angle:
        print(f"angle {angle.attack}: mean error {angle.mean_error:.3f} rad (chance {angle.chance_error:.3f})")
    for row in report.inversion:
        print(f"inversion {row.attack}: error {row.metrics.error:.4f} (mean image {row.baseline.error:.4f})")
    print(f"wrote {out / 'report.json'}, report.md" + (", reconstructions.png" if reconstructions else ""))
    return 0


def _split(args: argparse.Namespace) -> int:
    from veilnet.complex.protocol import load_complex_net, pool_from_data, split_model
    from veilnet.paths import prepare_output

    prepare_output(args.output, force=args.force, exists=("server.safetensors", "server.json", "device.safetensors", "device.json"), mkdir=True)
    net = load_complex_net(args.model)
    pool = pool_from_data(args.pool_data, args.pool_size, split=args.pool_split, seed=args.seed) if args.pool_data else None
    files = split_model(net, args.output, pool=pool, force=args.force)
    card = json.loads(files.server.with_suffix(".json").read_text())["extra"]["complex"]
    print(
        f"server: {files.server} (+ .json): the processing module only, for 'veilnet serve'; processor "
        f"{card['processor_sha256'][:16]}…, input N×{'×'.join(map(str, card['input_shape']))}"
    )
    print(
        f"device: {files.device} (+ .json, mode 0600): encoder, decoder and {0 if pool is None else pool.shape[0]} "
        f"counterpart images; keep it on the device, for 'veilnet query --secret'"
    )
    if pool is None:
        print("no counterpart pool stored: give 'veilnet query --pool SPEC' (the person's own images)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "complex")

    p = group.add_parser(
        "train",
        help="train a complex-valued network: task loss + λ·WGAN loss against a discriminator (Eq. 8–9)",
        description="Train a complex-valued network [g, Φ, d] on the joint objective of Eq. 9 (Xiang et al., ICLR 2020).",
    )
    add_training_options(
        p,
        init_help="start from a saved model: a complex one of the same architecture, or a real one (its weights initialise Φ's real parts)",
        output_help="output directory (model.safetensors, model.json, discriminator.safetensors, metrics.json, checkpoint.pt)",
    )
    p.add_argument("--k", type=int, help="k-anonymity: k − 1 decoy angles jπ/k per feature (default 8)")
    p.add_argument("--adversarial-weight", type=finite_float, metavar="LAMBDA", help="λ, the weight of the WGAN loss (default 0.1)")
    p.add_argument("--d-lr", type=finite_float, help="the discriminator's Adam learning rate (default 1e-4)")
    p.add_argument("--gp-weight", type=finite_float, help="gradient-penalty weight (default 10)")
    p.add_argument("--n-critic", type=int, help="discriminator updates per network update (default 1)")
    p.add_argument(
        "--decoys", choices=["all", "one"], help="each feature against all k − 1 decoys per step (default), or one drawn from them (k − 1 times cheaper for D)"
    )
    p.set_defaults(func=_train, torchrun=True)

    e = group.add_parser(
        "evaluate",
        help="accuracy with a fresh secret angle and fooling counterpart per image",
        description="Accuracy of a saved complex-valued network with θ ~ U[0, 2π) and a counterpart from another image per sample, reproducible with --seed.",
    )
    e.add_argument("model", help="saved complex model (file, stem or directory)")
    e.add_argument("--data", required=True, help="data spec")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--seed", type=seed, default=None, help="seed of the angles and counterparts (default 0)")
    e.add_argument("--batch-size", type=positive_int, default=500)
    add_output(e, required=False, help="result JSON file")
    add_device(e)
    e.set_defaults(func=_evaluate)

    a = group.add_parser(
        "attack",
        help="every privacy attack on a complex network beside its real baselines: angle recovery, inversion, property inference",
        description="Attack a complex-valued network as the server would (Xiang et al., ICLR 2020, sections 4.3 "
        "and 5): the paper's angle, inversion and property inference attacks and stronger ones, "
        "trained on the data's train split (the attacker's own images) and measured on its test split (the victim's). "
        "Writes report.json, report.md (tables like the paper's Tables 1–5) and reconstructions.png (like Fig. 2).",
    )
    a.add_argument("model", help="saved complex model (file, stem or directory)")
    a.add_argument("--data", required=True, help="data spec: the attacker uses its train split, the victim its test split")
    a.add_argument(
        "--baseline", action="append", metavar="MODEL", help="a saved real baseline (split-*: original, with additional layers, noisy); repeat for several"
    )
    a.add_argument(
        "--attacks",
        type=lambda v: [n.strip() for n in v.split(",") if n.strip()],
        help="comma-separated subset of angle,inversion,property,dec-x,phase-invariant,optimisation (default: all)",
    )
    a.add_argument(
        "--attacker-images",
        type=positive_int,
        default=5000,
        help="the attacker's training images: N of the train split, the first of each class in turn (default 5000)",
    )
    a.add_argument(
        "--max-images", type=positive_int, default=1000, help="the victim's images: N of the test split, the first of each class in turn (default 1000)"
    )
    a.add_argument("--epochs", type=positive_int, default=10, help="epochs of every inverter and property classifier (default 10)")
    a.add_argument("--angle-epochs", type=positive_int, default=10, help="epochs of the angle attacks' models (default 10)")
    a.add_argument("--grid", type=positive_int, default=360, help="candidate angles of the paper's angle attack (default 360)")
    a.add_argument("--unet-width", type=positive_int, default=32, help="the U-Net inverter's base width (default 32)")
    a.add_argument("--optimisation-steps", type=positive_int, default=200, help="Adam steps of the optimisation inversion (default 200)")
    a.add_argument("--seed", type=seed, default=0, help="seed of the victim's θ and counterparts and of every attack (default 0)")
    add_output(a, help="output directory (report.json, report.md, reconstructions.png)")
    add_device(a)
    a.set_defaults(func=_attack)
    _register_split(sub)


def _register_split(sub: argparse._SubParsersAction) -> None:
    """Add the ``split`` command: a saved complex-valued network into the server's part and the
    device's part (:func:`veilnet.complex.protocol.split_model`)."""
    split = add_command(sub, "split")
    split.add_argument("model", help="saved complex-valued network (complex-*; .safetensors, .json, stem or directory)")
    add_output(split, help="folder for server.* and device.*")
    split.add_argument(
        "--pool-data",
        default=None,
        help="data spec to draw the counterpart pool from, stored in the device part (use the person's "
        "own images: an attacker who could list the pool and knew the encoder could solve for θ)",
    )
    split.add_argument("--pool-size", type=positive_int, default=64, help="images in the pool (default: 64)")
    split.add_argument("--pool-split", default="train", choices=["train", "test"], help="split of --pool-data (default: train)")
    add_seed(split)
    split.set_defaults(func=_split)
