"""``veilnet models``: list the zoo, import pretrained CIFAR ResNets, show a saved model's card.

torch is imported inside the handlers, so ``veilnet --help`` stays quick.
"""

from __future__ import annotations

import argparse
import json

from veilnet.cli import add_group, add_output


def _list(args: argparse.Namespace) -> int:
    from veilnet import models

    for name in models.names():
        kwargs = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in models.signature(name).items())
        print(f"{name:<10} {kwargs}")
    return 0


def _import_cifar_resnet(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.models.io import prepare_save

    prepare_save(args.output, force=args.force)
    model = models.load_cifar_resnet(args.checkpoint, depth=args.depth)
    weights = models.save(
        model, args.output, metrics=model.veilnet_card["metrics"], extra={k: model.veilnet_card[k] for k in ("source", "source_sha256")}, force=args.force
    )
    print(f"{model.veilnet_card['architecture']} -> {weights} (+ {weights.with_suffix('.json').name})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from veilnet import models

    model = models.load(args.model)
    print(json.dumps(model.veilnet_card, indent=2))
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    models_sub = add_group(sub, "models")

    listing = models_sub.add_parser("list", help="model names and their keyword arguments with defaults")
    listing.set_defaults(func=_list)

    imp = models_sub.add_parser("import-cifar-resnet", help="convert a pretrained akamaster CIFAR ResNet .th (read safely, strictly) to safetensors + card")
    imp.add_argument("checkpoint", help="the .th file")
    imp.add_argument("--depth", type=int, default=None, help="expected depth (default: inferred from the checkpoint)")
    add_output(imp, help="output stem (writes STEM.safetensors and STEM.json) or directory")
    imp.set_defaults(func=_import_cifar_resnet)

    info = models_sub.add_parser("info", help="a saved model's card and parameter count")
    info.add_argument("model", help=".safetensors, .json, their stem, or a directory with model.safetensors")
    info.set_defaults(func=_info)
