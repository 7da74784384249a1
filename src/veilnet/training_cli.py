"""``veilnet train`` and ``veilnet eval``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from veilnet import data, metrics, models
from veilnet.cli import add_device, add_output, parse_assignments
from veilnet.errors import ConfigError
from veilnet.report import Result, markdown_table, plot_backend
from veilnet.training import TrainConfig, train

#: CLI option -> TrainConfig field, for the options that map one to one.
_TRAIN_OPTIONS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "optimizer": "optimizer",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "schedule": "schedule",
    "warmup": "warmup_epochs",
    "label_smoothing": "label_smoothing",
    "seed": "seed",
}


def _read_config(path: str | None) -> dict[str, Any]:
    """A YAML experiment file: ``model``, ``args`` (model kwargs), ``data``, ``train`` (TrainConfig fields)."""
    if path is None:
        return {}
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"model", "args", "data", "train", "subset", "init"}:
        raise ConfigError(f"config file {path} must be a mapping with keys among model, args, data, train, subset, init")
    return doc


def _train(args: argparse.Namespace) -> int:
    config = _read_config(args.config)
    model_name = args.model or config.get("model")
    if not model_name:
        raise ConfigError("no model given: pass --model NAME (see `veilnet models list`) or a --config file with `model:`")
    spec = args.data or config.get("data") or "digits"
    train_options = dict(config.get("train") or {})
    train_options.update({field: getattr(args, opt) for opt, field in _TRAIN_OPTIONS.items() if getattr(args, opt) is not None})
    if args.no_augment:
        train_options["augment"] = False
    train_config = TrainConfig.from_dict(train_options)

    train_split = data.load(spec, "train", download=args.download)
    test_split = data.load(spec, "test")
    n_per_class = args.subset or config.get("subset")
    if n_per_class:
        train_split = data.subset(train_split, int(n_per_class), seed=train_config.seed)
    kwargs = {"num_classes": train_split.num_classes, "in_channels": train_split.image_shape[0]}
    kwargs.update(config.get("args") or {})
    kwargs.update(parse_assignments(args.arg))
    torch.manual_seed(train_config.seed)  # initial weights depend on the seed only
    model = models.create(model_name, **kwargs)
    init = args.init or config.get("init")
    if init:
        _init_from(model, init)
    result = train(model, train_split, args.output, config=train_config, test_split=test_split, resume=args.resume, force=args.force, device=args.device)
    acc = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"test accuracy {acc} after {result.epochs} epochs ({result.train_seconds / 60:.1f} min); model: {result.model_path}")
    return 0


def _init_from(model: torch.nn.Module, path: str) -> None:
    """Start from the weights of a saved model that fits ``model`` exactly (fine-tuning)."""
    models.load_strict(model, models.load(path).state_dict(), path)


@dataclass(frozen=True)
class Evaluation(Result):
    """Accuracy of a model on a split, per class, and its confusion matrix."""

    model: str
    data: str
    split: str
    n: int
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]


def evaluate(model_path: str, spec: str, split: str = "test", *, device: str = "cpu") -> Evaluation:
    """Load a saved model and measure it on ``split`` of data set ``spec``."""
    model = models.load(model_path, device=device)
    images = data.load(spec, split)
    pred = metrics.predict(model, images.images, device=device).argmax(1)
    confusion = metrics.confusion_matrix(pred, images.labels, images.num_classes)
    totals = confusion.sum(1).clamp(min=1)
    per_class = {name: (confusion[i, i] / totals[i]).item() for i, name in enumerate(images.classes)}
    return Evaluation(
        model=str(model_path),
        data=spec,
        split=split,
        n=len(images),
        accuracy=metrics.accuracy(pred, images.labels),
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    """Confusion matrix as a PNG (rows: true class, columns: predicted)."""
    plt = plot_backend()
    classes = list(evaluation.per_class)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(classes), 1 + 0.45 * len(classes)))
    ax.imshow(evaluation.confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {evaluation.accuracy:.3f} (n={evaluation.n})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _eval(args: argparse.Namespace) -> int:
    evaluation = evaluate(args.model, args.data, args.split, device=args.device)
    print(f"accuracy {evaluation.accuracy:.4f} on {evaluation.n} images ({args.data}, {args.split})")
    print(markdown_table(["class", "accuracy"], [[name, acc] for name, acc in evaluation.per_class.items()]))
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        evaluation.save(out / "eval.json")
        plot_confusion(evaluation, out / "confusion.png")
        print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a zoo model on a data set")
    p.add_argument("--model", help="zoo model name (see `veilnet models list`)")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="model keyword argument (repeatable)")
    p.add_argument("--data", help="data spec (default: digits)")
    p.add_argument("--config", help="YAML experiment file (model, args, data, train, subset, init); options override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"])
    p.add_argument("--warmup", type=float, help="warm-up epochs")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--seed", type=int)
    p.add_argument("--subset", type=int, metavar="N", help="train on N images per class (seeded random choice)")
    p.add_argument("--init", metavar="MODEL", help="start from the weights of a saved model (fine-tuning)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in the output directory")
    p.add_argument("--download", action="store_true", help="fetch a missing CIFAR archive")
    add_output(p, help="output directory (model.safetensors, model.json, metrics.json, checkpoint.pt)")
    add_device(p)
    p.set_defaults(func=_train)

    e = sub.add_parser("eval", help="accuracy, per-class accuracy and confusion matrix of a saved model")
    e.add_argument("model", help="saved model (file, stem or directory)")
    e.add_argument("--data", required=True, help="data spec")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("-o", "--output", help="directory for eval.json and confusion.png")
    add_device(e)
    e.set_defaults(func=_eval)

