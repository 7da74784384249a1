"""One training loop for every model in the zoo.

SGD (with Nesterov momentum) or Adam/AdamW; cosine, step or constant learning-rate schedule with
optional linear warm-up; random-crop + horizontal-flip augmentation done in torch on whole
batches; optional label smoothing; a tqdm progress bar; per-epoch metrics appended to
``metrics.json``; a checkpoint after each epoch from which ``resume=True`` continues an
interrupted run to exactly the weights an uninterrupted run reaches.

Determinism: shuffling and augmentation draw from one ``torch.Generator`` seeded by
``TrainConfig.seed``; the global torch RNG (dropout) is seeded too, and both states are saved in
the checkpoint, so a resumed run replays the same batches and the same draws.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from veilnet import metrics, models
from veilnet.data import ImageSplit
from veilnet.errors import ConfigError, OutputExistsError
from veilnet.models.io import DIR_STEM
from veilnet.report import Result

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run. ``lr`` is the peak learning rate (after warm-up)."""

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

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"schedule must be cosine, step or constant, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"epochs, batch_size and lr must be positive (got {self.epochs}, {self.batch_size}, {self.lr})")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


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


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation parameters (1-d tensors).
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def train(
    model: nn.Module,
    train_split: ImageSplit,
    out_dir: str | Path,
    *,
    config: TrainConfig = TrainConfig(),
    test_split: ImageSplit | None = None,
    resume: bool = False,
    force: bool = False,
    device: str | torch.device = "cpu",
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``train_split`` and save it (``model.safetensors`` + card) in ``out_dir``.

    ``out_dir`` receives ``checkpoint.pt`` after every epoch and ``metrics.json`` (one record per
    epoch: lr, train loss/accuracy, test accuracy, seconds). ``resume=True`` continues from the
    checkpoint (the configuration must be the same); without it an existing run in ``out_dir``
    is an error unless ``force``. ``on_epoch_end`` is called with each epoch's record.
    """
    out = Path(out_dir)
    ckpt_path, metrics_path = out / CHECKPOINT, out / METRICS
    if not resume and not force and (ckpt_path.exists() or (out / f"{DIR_STEM}.safetensors").exists()):
        raise OutputExistsError(f"{out} already holds a training run; pass --resume to continue it or --force to start over")
    out.mkdir(parents=True, exist_ok=True)

    model = model.to(device)
    optimizer = _optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        if not ckpt_path.exists():
            raise ConfigError(f"nothing to resume: {ckpt_path} does not exist")
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state["config"] != dataclasses.asdict(config):
            raise ConfigError(f"{ckpt_path} was written with another training configuration; resume with the same options")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])
        history = json.loads(metrics_path.read_text()) if metrics_path.exists() else []
        history = history[:start_epoch]

    n = len(train_split)
    steps_per_epoch = math.ceil(n / config.batch_size)
    seconds = sum(r["seconds"] for r in history)
    for epoch in range(start_epoch, config.epochs):
        tic = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=None if progress else True, leave=False)
        for i in bar:
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            x = metrics.as_float(train_split.images[idx])
            if config.augment:
                x = augment(x, generator, config.crop_padding)
            x, y = x.to(device), train_split.labels[idx].to(device)
            lr = learning_rate(config, epoch * steps_per_epoch + i, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / n,
            "train_accuracy": correct / n,
            "seconds": time.perf_counter() - tic,
        }
        if test_split is not None:
            record["test_accuracy"] = metrics.accuracy(metrics.predict(model, test_split.images, device=device), test_split.labels)
        seconds += record["seconds"]
        history.append(record)
        # Checkpoint first, then metrics: a crash between the two only repeats nothing.
        torch.save(
            {
                "epoch": epoch + 1,
                "config": dataclasses.asdict(config),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            ckpt_path,
        )
        metrics_path.write_text(json.dumps(history, indent=1) + "\n")
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}, train acc {record['train_accuracy']:.4f}"
                + (f", test acc {record['test_accuracy']:.4f}" if "test_accuracy" in record else "")
                + f" ({record['seconds']:.1f} s)"
            )
        if on_epoch_end is not None:
            on_epoch_end(record)

    test_acc = history[-1].get("test_accuracy") if history else None
    card_metrics = {"test_accuracy": test_acc, "epochs": config.epochs, "train_seconds": seconds, "train_config": dataclasses.asdict(config)}
    path = models.save(model, out, data=train_split.spec or None, metrics=card_metrics, force=True)
    return TrainResult(model_path=str(path), epochs=config.epochs, test_accuracy=test_acc, train_seconds=seconds, history=history)
