"""``veilnet train`` and ``veilnet eval``.

``veilnet train`` runs alone or as each of the processes ``torchrun`` starts
(:mod:`veilnet.distributed`; docs/distributed.md).

Thin: every check a user's mistake can fail (device, output path, options, the YAML file's
types, whether the model takes the data) runs before any training or prediction, and the work
is :mod:`veilnet.training`'s. torch is imported inside the handlers, so ``veilnet --help`` stays quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veilnet.checks import is_int
from veilnet.cli import add_command, add_compile, add_device, add_output, finite_float, model_data, parse_assignments, positive_int, seed
from veilnet.errors import ConfigError

#: CLI option -> TrainConfig field, for the options that map one to one.
TRAIN_OPTIONS = {
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
#: Keys of a YAML experiment file and the type of each value.
_CONFIG_KEYS: dict[str, tuple[type, str]] = {
    "model": (str, "a model name"),
    "args": (dict, "a mapping of model arguments"),
    "data": (str, "a data spec"),
    "train": (dict, "a mapping of training options"),
    "subset": (int, "a positive integer"),
    "init": (str, "a saved model's path"),
}


def read_config(path: str | None) -> dict[str, Any]:
    """A YAML experiment file: ``model``, ``args`` (model kwargs), ``data``, ``train`` (TrainConfig
    fields), ``subset``, ``init``; each key's value is checked for its type."""
    if path is None:
        return {}
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    if not isinstance(doc, dict) or not set(doc) <= set(_CONFIG_KEYS):
        raise ConfigError(f"config file {path} must be a mapping with keys among {', '.join(_CONFIG_KEYS)}")
    for key, (kind, what) in _CONFIG_KEYS.items():
        value = doc.get(key)
        if value is not None and not (is_int(value) and value >= 1 if kind is int else isinstance(value, kind)):
            raise ConfigError(f"config file {path}: {key} must be {what}, got {value!r}")
    return doc


@dataclass
class Run:
    """A training run as the command line set it up: every user error already checked."""

    device: Any
    config: Any
    model: Any
    train_split: Any
    test_split: Any


def setup_run(
    args: argparse.Namespace,
    config_type: Any,
    options: dict[str, str],
    *,
    init: Callable[[Any, str, Any], None],
    check: Callable[[Any, str], None] | None = None,
) -> Run:
    """What ``veilnet train`` and ``veilnet complex train`` share: the device, the YAML file and
    the options merged into ``config_type`` (CLI option -> field in ``options``), the output
    folder checked, the data loaded (and subset), the model built (seeded) and checked by
    ``check(model, name)``, and started from ``--init`` by ``init(model, path, split)``."""
    from veilnet.devices import resolve_device
    from veilnet.training import CHECKPOINT, prepare_run

    device = resolve_device(args.device)
    config = read_config(args.config)
    model_name = args.model or config.get("model")
    if not model_name:
        raise ConfigError("no model given: pass --model NAME (see `veilnet models list`) or a --config file with `model:`")
    train_options = dict(config.get("train") or {})
    train_options.update({field: getattr(args, opt) for opt, field in options.items() if getattr(args, opt) is not None})
    if args.no_augment:
        train_options["augment"] = False
    train_config = config_type.from_dict(train_options)
    n_per_class = args.subset or config.get("subset")
    model_args = {**(config.get("args") or {}), **parse_assignments(args.arg)}
    prepare_run(args.output, resume=args.resume, force=args.force, exists=(CHECKPOINT, "model.safetensors"), mkdir=False)

    import torch

    from veilnet import data, models

    models.signature(model_name)  # an unknown name fails before the data is read
    spec = args.data or config.get("data") or "digits"
    train_split = data.load(spec, "train", download=args.download)
    test_split = data.load(spec, "test")
    if n_per_class:
        train_split = data.subset(train_split, int(n_per_class), seed=train_config.seed)
    kwargs = {"num_classes": train_split.num_classes, "in_channels": train_split.image_shape[0], **model_args}
    torch.manual_seed(train_config.seed)  # initial weights depend on the seed only
    model = models.create(model_name, **kwargs)
    if check is not None:
        check(model, model_name)
    init_path = args.init or config.get("init")
    if init_path:
        init(model, init_path, train_split)
    return Run(device=device, config=train_config, model=model, train_split=train_split, test_split=test_split)


def _train(args: argparse.Namespace) -> int:
    from veilnet import distributed
    from veilnet.devices import resolve_device
    from veilnet.training import TrainConfig, train

    with distributed.session(resolve_device(args.device)) as device:
        run = setup_run(args, TrainConfig, TRAIN_OPTIONS, init=init_from)
        result = train(
            run.model,
            run.train_split,
            args.output,
            config=run.config,
            test_split=run.test_split,
            resume=args.resume,
            force=args.force,
            device=device,
            compile=args.compile,
        )
        main = distributed.is_main()
    if not main:
        return 0
    acc = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"test accuracy {acc} after {result.epochs} epochs ({result.train_seconds / 60:.1f} min); model: {result.model_path}")
    return 0


def load_init(path: str, split: Any) -> Any:
    """The saved model ``--init`` names, checked to take the training data."""
    from veilnet import models

    saved = models.load(path)
    models.check_input(saved, split.image_shape, data=split.spec or "the training data")
    return saved


def init_exactly(model: Any, saved: Any, path: str) -> None:
    """Copy ``saved``'s weights into ``model``: the same architecture and arguments, or a one-line error."""
    from veilnet import models

    mine, theirs = model.veilnet_arch, saved.veilnet_arch
    if mine["name"] != theirs["name"] or {**models.signature(mine["name"]), **mine["kwargs"]} != {**models.signature(theirs["name"]), **theirs["kwargs"]}:
        raise ConfigError(f"--init {path} is {_describe(theirs)}, but this run builds {_describe(mine)}; give the same model arguments")
    models.load_strict(model, saved.state_dict(), path)


def init_from(model: Any, path: str, split: Any) -> None:
    """Start from the weights of a saved model that takes the data and fits ``model`` exactly (fine-tuning)."""
    init_exactly(model, load_init(path, split), path)


def _describe(arch: dict[str, Any]) -> str:
    return f"{arch['name']}({', '.join(f'{k}={v!r}' for k, v in arch['kwargs'].items())})"


def add_training_options(p: argparse.ArgumentParser, *, init_help: str, output_help: str) -> None:
    """The options of ``veilnet train`` that every training command shares (model, data, YAML
    config, :class:`~veilnet.training.TrainConfig` fields, subset, init, resume, output, device)."""
    p.add_argument("--model", help="zoo model name (see `veilnet models list`)")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="model keyword argument (repeatable)")
    p.add_argument("--data", help="data spec (default: digits)")
    p.add_argument("--config", help="YAML experiment file (model, args, data, train, subset, init); options override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=finite_float, help="peak learning rate")
    p.add_argument("--weight-decay", type=finite_float)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"])
    p.add_argument("--warmup", type=finite_float, help="warm-up epochs")
    p.add_argument("--label-smoothing", type=finite_float)
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--seed", type=seed)
    p.add_argument("--subset", type=positive_int, metavar="N", help="train on N images per class (seeded random choice)")
    p.add_argument("--init", metavar="MODEL", help=init_help)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in the output directory")
    p.add_argument("--download", action="store_true", help="fetch a missing CIFAR archive")
    add_output(p, help=output_help)
    add_device(p)


def _eval(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.devices import resolve_device
    from veilnet.paths import prepare_output
    from veilnet.report import markdown_table
    from veilnet.training import evaluate, plot_confusion

    device = resolve_device(args.device)
    out = prepare_output(args.output, force=args.force, exists=("eval.json", "confusion.png")) if args.output else None
    spec = model_data(models.card(args.model), args.data, model=args.model)
    evaluation = evaluate(args.model, spec, args.split, device=str(device), compile=args.compile)
    print(f"accuracy {evaluation.accuracy:.4f} on {evaluation.n} images ({spec}, {args.split})")
    print(markdown_table(["class", "accuracy"], [[name, acc] for name, acc in evaluation.per_class.items()]))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        evaluation.save(out / "eval.json")
        plot_confusion(evaluation, out / "confusion.png")
        print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train")
    add_training_options(
        p,
        init_help="start from the weights of a saved model (fine-tuning)",
        output_help="output directory (model.safetensors, model.json, metrics.json, checkpoint.pt)",
    )
    add_compile(
        p,
        default=True,
        why="a ResNet-20 step ran 0.66-0.69x eager here, a ConvMixer step 0.95-1.13x; the warm-up is under a minute (docs/benchmarks.md, Compiled execution)",
    )
    p.set_defaults(func=_train, torchrun=True)

    e = add_command(sub, "eval")
    e.add_argument("model", help="saved model (file, stem or directory)")
    e.add_argument("--data", help="data spec (default: the data the model's card records; another data set is refused)")
    e.add_argument("--split", default="test", choices=["train", "test"])
    add_output(e, required=False, help="directory for eval.json and confusion.png")
    add_device(e)
    add_compile(e, default=False, why="one pass over a test set takes less time than the compile warm-up (docs/benchmarks.md, Compiled execution)")
    e.set_defaults(func=_eval)
