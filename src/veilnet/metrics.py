"""Metrics shared by every method: predictions, accuracy, confusion matrix, reconstruction error.

Images are ``N×C×H×W``; uint8 images are read as pixels/255, float images are taken as they are.
Pixels are floats in [0, 1] by convention (docs/architecture.md, "Conventions"); the range is checked
where images enter from a user's file (:func:`veilnet.data.images.as_pixels`), not here, because
model inputs legitimately leave it (images encrypted with an orthogonal ViT key, the points
post-averaging samples around an image).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from veilnet.errors import ShapeError


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; float images -> float32, values unchanged.

    Checks the shape (``N×C×H×W``) and the dtype (uint8 or floating point), not the range of
    float values: callers pass model inputs outside [0, 1] on purpose (an orthogonal key's
    encrypted images). Pixels read from users' files are range-checked when read
    (:func:`veilnet.data.images.as_pixels`).
    """
    if images.ndim != 4:
        raise ShapeError(f"expected images of shape N×C×H×W, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ShapeError(f"expected uint8 or float images, got dtype {images.dtype}")
    return images.float()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode for the block, then each of its modules back in the mode it
    was in (attacks and certificates query a model without changing what its owner left it doing;
    a wrapper in training mode around a model in evaluation mode, such as
    :class:`~veilnet.models.Prepared`, leaves both as they were)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 500, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits of ``model`` on ``images`` (uint8 or [0,1] float), computed in batches in evaluation
    mode (:func:`eval_mode`: the model's mode is unchanged afterwards), on the CPU."""
    outs = []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            batch = as_float(images[start : start + batch_size]).to(device)
            outs.append(model(batch).float().cpu())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def accuracy(logits_or_labels: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct predictions; takes logits (N×K) or predicted labels (N)."""
    pred = logits_or_labels.argmax(1) if logits_or_labels.ndim == 2 else logits_or_labels
    if pred.shape != labels.shape:
        raise ShapeError(f"predictions of shape {tuple(pred.shape)} do not match labels of shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        return float("nan")
    return (pred == labels).float().mean().item()


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C[i, j] = number of images of true class i predicted as class j."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error over all elements of two [0,1] image batches."""
    return torch.mean((as_float(x) - as_float(y)) ** 2).item()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for [0,1] images: 10·log10(1 / MSE)."""
    err = mse(x, y)
    return math.inf if err == 0 else 10.0 * math.log10(1.0 / err)
