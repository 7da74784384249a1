"""The classifier's training: a step function on the training core (:func:`veilnet.training.fit`).

Cross-entropy with optional label smoothing, minimised by SGD (with Nesterov momentum) or
Adam/AdamW; cosine, step or constant learning-rate schedule with optional linear warm-up
(:func:`learning_rate`); random-crop + horizontal-flip augmentation done in torch on whole
batches (:func:`augment`), optionally followed by Gaussian noise of σ ``noise_sigma`` (the base
classifier of randomised smoothing, :class:`veilnet.robust.Smoothing`). No weight decay on biases and normalisation parameters.

:func:`train` runs it into an output folder (checkpoint per epoch, ``metrics.json``, exact
resume, the saved model with its card); :func:`train_epochs` runs it in memory for callers that
keep the model themselves (a federated client's local epochs on its partition).

Determinism: shuffling and augmentation draw from one ``torch.Generator`` seeded by
``TrainConfig.seed``; the global torch RNG (dropout) is seeded too, and both states are in the
checkpoint, so a resumed run replays the same batches and the same draws.

Several processes (``torchrun``, :mod:`veilnet.distributed`): every rank holds the same
shuffling generator, so all draw the same permutation and the same augmentation of each global
batch of ``batch_size`` images; each rank keeps its contiguous part of the batch
(:meth:`veilnet.distributed.World.part`) and the model runs under DistributedDataParallel. Each
rank's loss is the *sum* of its images' losses times ``world size / batch size``, so DDP's mean of
the ranks' gradients is the gradient of the mean loss over the whole batch even when the parts
differ in size (an epoch's last batch): one epoch on N processes reaches the weights of one
process with the same ``batch_size``, up to float rounding, for a model without batch
normalisation (with it, each rank normalises by its own part's statistics, as DDP does by
default) or dropout (each rank's global RNG is seeded by :func:`veilnet.distributed.rank_seed`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from veilnet import distributed, metrics, models
from veilnet.checks import is_int, is_number
from veilnet.data import ImageSplit
from veilnet.devices import resolve_device
from veilnet.errors import ConfigError
from veilnet.models.io import DIR_STEM
from veilnet.report import Result
from veilnet.training.core import CHECKPOINT, StepInfo, fit, prepare_run

_INT, _FLOAT, _BOOL, _STR = "an integer", "a number", "true or false", "a string"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run. ``lr`` is the peak learning rate (after warm-up).

    Every field is checked for its type and range on construction (a YAML ``epochs: "ten"``,
    ``lr: [1]`` or ``batch_size: 2.5`` is a :class:`ConfigError` naming the field).
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant
    step_epochs: int = 30  # step schedule: multiply by step_gamma every step_epochs
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = True
    crop_padding: int = 4
    grad_clip: float | None = None
    seed: int = 0
    #: σ of Gaussian noise added to every training image after the augmentation, in [0, 1] pixel
    #: space, not clipped (Cohen et al. 2019, "Certified Adversarial Robustness via Randomized
    #: Smoothing", section 4: the base classifier of a smoothed one is trained under its noise); 0: off.
    noise_sigma: float = 0.0

    def __post_init__(self) -> None:
        kinds = {
            "epochs": _INT,
            "batch_size": _INT,
            "optimizer": _STR,
            "lr": _FLOAT,
            "momentum": _FLOAT,
            "weight_decay": _FLOAT,
            "schedule": _STR,
            "step_epochs": _INT,
            "step_gamma": _FLOAT,
            "warmup_epochs": _FLOAT,
            "label_smoothing": _FLOAT,
            "augment": _BOOL,
            "crop_padding": _INT,
            "grad_clip": _FLOAT,
            "seed": _INT,
            "noise_sigma": _FLOAT,
        }
        for name, kind in kinds.items():
            value = getattr(self, name)
            if name == "grad_clip" and value is None:
                continue
            if not _is(kind, value):
                raise ConfigError(f"training option {name} must be {kind}, got {value!r}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"schedule must be cosine, step or constant, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"epochs, batch_size and lr must be positive (got {self.epochs}, {self.batch_size}, {self.lr})")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("momentum", "weight_decay", "warmup_epochs", "crop_padding", "noise_sigma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training option {name} must be >= 0, got {getattr(self, name)}")
        if self.step_epochs < 1 or self.step_gamma <= 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ConfigError(f"step_epochs, step_gamma and grad_clip must be positive (got {self.step_epochs}, {self.step_gamma}, {self.grad_clip})")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a mapping (a YAML file's ``train:``); unknown names are a :class:`ConfigError`."""
        if not isinstance(values, dict):
            raise ConfigError(f"training options must be a mapping of option: value, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}")
        return cls(**values)


def _is(kind: str, value: Any) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return is_int(value)
    return is_number(value) and math.isfinite(value)


@dataclass(frozen=True)
class TrainResult(Result):
    """What a run produced: the saved model, the per-epoch history and the wall time."""

    model_path: str
    epochs: int
    test_accuracy: float | None
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``padding``, then an H×W window at a random offset) and random
    horizontal flip with probability 1/2, for a whole batch at once.

    Each image gets its own offset (oy, ox) ∈ [0, 2·padding]²: out[n, :, i, j] =
    padded[n, :, oy_n + i, ox_n + j], gathered with one advanced-indexing operation.
    """
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    if padding == 0:
        return images
    padded = F.pad(images, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # N×1×H×1
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # N×1×1×W
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at optimisation ``step`` (0-based):

    warm-up: lr · (step+1) / warmup_steps; then cosine: lr · ½(1 + cos(π·t)) with t the fraction
    of post-warm-up steps done; step: lr · γ^⌊epoch / step_epochs⌋; constant: lr.
    """
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch - warmup
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(total, 1)))
    if config.schedule == "step":
        return config.lr * config.step_gamma ** ((step // steps_per_epoch) // config.step_epochs)
    return config.lr


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names, with no weight decay on biases and normalisation
    parameters (1-d tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


class ClassifierStep:
    """The classifier's step function for :func:`veilnet.training.fit`.

    :meth:`batches` shuffles the split with ``generator`` (one permutation per epoch);
    calling the step on a batch of indices augments the images and adds their noise (same generator), sets the
    scheduled learning rate, and takes one optimiser step on the cross-entropy
    ``-Σ_k q_k log softmax(f(x))_k`` with ``q`` the one-hot label smoothed by ``label_smoothing``,
    plus ``penalty(x)`` when given (a scalar computed after the forward pass, e.g. a defence's
    regulariser on what the model recorded of ``x``: NoPeek's distance correlation). It returns
    ``train_loss`` and ``train_accuracy`` weighted by the batch size. ``compile`` runs the forward
    (and so the backward) pass compiled (:func:`veilnet.models.prepare`; an epoch's last, smaller
    batch runs eagerly). Under several processes each rank trains on its part of each batch (see
    the module docstring; ``penalty`` is then computed on the rank's part, and its gradient
    averaged over the ranks).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        split: ImageSplit,
        config: TrainConfig,
        generator: torch.Generator,
        device: torch.device,
        compile: bool = False,
        penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.model, self.optimizer, self.split, self.config = model, optimizer, split, config
        self.penalty = penalty
        self.world = distributed.current()
        part = self.world.part(config.batch_size)
        self.forward = models.prepare(distributed.wrap(model, device), compile=compile, chunk=part.stop - part.start)
        self.generator, self.device = generator, device
        self.steps_per_epoch = math.ceil(len(split) / config.batch_size)
        self.lr = config.lr

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's batches: index tensors cutting one random permutation of the split."""
        order = torch.randperm(len(self.split), generator=self.generator)
        size = self.config.batch_size
        return [order[i * size : (i + 1) * size] for i in range(self.steps_per_epoch)]

    def __call__(self, idx: torch.Tensor, info: StepInfo) -> dict[str, float]:
        config = self.config
        self.model.train()
        x = metrics.as_float(self.split.images[idx])
        if config.augment:
            x = augment(x, self.generator, config.crop_padding)
        if config.noise_sigma:
            x = x + config.noise_sigma * torch.randn(x.shape, generator=self.generator)
        part = self.world.part(len(idx))
        x, y = x[part].to(self.device), self.split.labels[idx[part]].to(self.device)
        self.lr = learning_rate(config, info.epoch * self.steps_per_epoch + info.index, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        logits = self.forward(x)
        total = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing, reduction="sum")
        loss = total * (self.world.size / len(idx))
        mean = total / max(len(y), 1)
        if self.penalty is not None:
            penalty = self.penalty(x)
            loss, mean = loss + penalty, mean + penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        return {"train_loss": mean.item(), "train_accuracy": (logits.argmax(1) == y).sum().item() / max(len(y), 1), "n": len(y)}


def train(
    model: nn.Module,
    train_split: ImageSplit,
    out_dir: str | os.PathLike[str],
    *,
    config: TrainConfig = TrainConfig(),
    test_split: ImageSplit | None = None,
    resume: bool = False,
    force: bool = False,
    device: str | torch.device = "cpu",
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    compile: bool = False,
) -> TrainResult:
    """Train ``model`` on ``train_split`` and save it (``model.safetensors`` + card) in ``out_dir``.

    ``out_dir`` receives ``checkpoint.pt`` after every epoch and ``metrics.json`` (one record per
    epoch: lr, train loss/accuracy, test accuracy, seconds). ``resume=True`` continues from the
    checkpoint (same configuration, model architecture and data; else a :class:`ConfigError`);
    without it an existing run in ``out_dir`` is an error unless ``force``. ``on_epoch_end`` is
    called with each epoch's record. The card records the data spec, the input shape ``C×H×W``,
    the class names and the metrics. A model that does not take the split's images is a
    :class:`~veilnet.errors.ShapeError` before any step. ``compile``: see :class:`ClassifierStep`.
    Under several processes (the module docstring) rank 0 alone writes the folder.
    """
    device = resolve_device(device)
    prepare_run(out_dir, resume=resume, force=force, exists=(CHECKPOINT, f"{DIR_STEM}.safetensors"), mkdir=False)
    step, evaluate, state, run_config = _classifier(model, train_split, config, test_split=test_split, device=device, compile=compile)
    history = fit(
        step,
        step.batches,
        epochs=config.epochs,
        state=state,
        out_dir=out_dir,
        config=run_config,
        resume=resume,
        force=force,
        evaluate=evaluate,
        on_epoch_end=on_epoch_end,
        progress=progress,
    )
    test_acc = history[-1].get("test_accuracy") if history else None
    seconds = sum(r["seconds"] for r in history)
    card_metrics = {"test_accuracy": test_acc, "epochs": config.epochs, "train_seconds": seconds, "train_config": dataclasses.asdict(config)}
    path = distributed.from_main(
        lambda: models.save(
            step.model,
            out_dir,
            data=train_split.spec or None,
            metrics=card_metrics,
            input_shape=train_split.image_shape,
            classes=train_split.classes,
            force=True,
        )
    )
    return TrainResult(model_path=str(path), epochs=config.epochs, test_accuracy=test_acc, train_seconds=seconds, history=history)


def train_epochs(
    model: nn.Module,
    split: ImageSplit,
    config: TrainConfig,
    *,
    epochs: int | None = None,
    test_split: ImageSplit | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place for ``epochs`` (default ``config.epochs``) epochs on ``split``,
    in memory: no output folder, no checkpoint. Returns the per-epoch records (train loss and
    accuracy, lr, seconds; test accuracy with ``test_split``).

    For callers that keep the model themselves, e.g. a federated client's local epochs on its
    partition. A fresh optimiser is made per call and the shuffling generator is seeded with
    ``config.seed`` (pass another seed per round for other batches); the learning-rate schedule
    spans these ``epochs``. ``penalty``: see :class:`ClassifierStep`.
    """
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    device = resolve_device(device)
    step, evaluate, state, _ = _classifier(model, split, config, test_split=test_split, device=device, penalty=penalty)
    return fit(step, step.batches, epochs=config.epochs, state=state, evaluate=evaluate, progress=progress)


def _classifier(
    model: nn.Module,
    split: ImageSplit,
    config: TrainConfig,
    *,
    test_split: ImageSplit | None,
    device: torch.device,
    compile: bool = False,
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[ClassifierStep, Callable[[int], dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The classifier's step, its evaluation hook, the state a resume restores and the run's identity."""
    if len(split) == 0:
        raise ConfigError(f"no training images in {split.spec or 'the split'}")
    models.check_input(model, split.image_shape, data=split.spec or "the training data")
    model = model.to(device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)  # the same on every rank: one order, one augmentation
    torch.manual_seed(distributed.rank_seed(config.seed))  # each rank's own (dropout)
    step = ClassifierStep(model, optimizer, split, config, generator, device, compile, penalty)

    def evaluate(epoch: int) -> dict[str, Any]:
        record: dict[str, Any] = {"lr": step.lr}
        if test_split is not None:
            record["test_accuracy"] = metrics.accuracy(metrics.predict(model, test_split.images, device=device), test_split.labels)
        return record

    arch = getattr(model, "veilnet_arch", None)
    identity = {"train": dataclasses.asdict(config), "model": arch, "data": {"spec": split.spec, "n": len(split), "shape": list(split.image_shape)}}
    return step, evaluate, {"model": model, "optimizer": optimizer, "generator": generator}, identity


__all__ = ["ClassifierStep", "TrainConfig", "TrainResult", "augment", "learning_rate", "make_optimizer", "train", "train_epochs"]
