"""Evaluation of a saved classifier: accuracy, per-class accuracy and the confusion matrix.

``C[i, j]`` is the number of images of true class ``i`` predicted as class ``j``; the
accuracy of class ``i`` is ``C[i, i] / Σ_j C[i, j]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from veilnet import data, metrics, models
from veilnet.devices import resolve_device
from veilnet.report import Result, plot_backend, save_figure

#: Images per forward pass of ``veilnet eval``.
BATCH = 500


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


def evaluate(model_path: str | os.PathLike[str], spec: str, split: str = "test", *, device: str = "cpu", compile: bool = False) -> Evaluation:
    """Load a saved model and measure it on ``split`` of data set ``spec``; ``compile`` runs it
    through :func:`veilnet.models.prepare` (in chunks of :data:`BATCH`, the last one padded).

    A model that does not take the data's images (channels, size) is a
    :class:`~veilnet.errors.ShapeError` naming both shapes, and a model transformed for encoded
    inputs a :class:`~veilnet.errors.ModelFormatError`, before any prediction.
    """
    torch_device = resolve_device(device)
    model = models.load(model_path, device=torch_device)
    models.check_plain(model, where=str(model_path))
    images = data.load(spec, split)
    models.check_input(model, images.image_shape, data=spec)
    prepared = models.prepare(model, compile=compile, chunk=BATCH)
    pred = metrics.predict(prepared, images.images, batch_size=BATCH, device=torch_device).argmax(1)
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


def plot_confusion(evaluation: Evaluation, path: str | os.PathLike[str]) -> Path:
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
    return save_figure(fig, path, dpi=100)


__all__ = ["Evaluation", "evaluate", "plot_confusion"]
