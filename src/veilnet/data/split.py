"""One split of a data set in memory, and the ways to cut it: per-class subsets and the
partitions that give each federated client its own images."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from veilnet.errors import ConfigError, ShapeError
from veilnet.metrics import as_float

Seed = int | torch.Generator
Indices = torch.Tensor | Sequence[int]


@dataclass(frozen=True, eq=False)
class ImageSplit:
    """The images of one split with their labels.

    Shape:
        images: ``N×C×H×W`` uint8 (use :meth:`float_images` for [0, 1] floats);
        labels: ``N`` int64 in ``[0, num_classes)``, indexing ``classes``.

    ``coarse_labels``/``coarse_classes`` are CIFAR-100's 20 superclasses (None elsewhere).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    spec: str = ""
    split: str = ""
    coarse_labels: torch.Tensor | None = None
    coarse_classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ShapeError(f"expected uint8 images of shape N×C×H×W, got {self.images.dtype} of shape {tuple(self.images.shape)}")
        for name in ("labels", "coarse_labels"):
            labels = getattr(self, name)
            if labels is not None and (labels.dtype != torch.int64 or labels.shape != self.images.shape[:1]):
                raise ShapeError(f"expected {name} of dtype int64 and shape ({self.images.shape[0]},), got {labels.dtype} of shape {tuple(labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return f"ImageSplit({self.spec!r}, split={self.split!r}, n={len(self)}, shape={c}×{h}×{w}, classes={self.num_classes})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return c, h, w

    def float_images(self) -> torch.Tensor:
        """The images as float32 in [0, 1] (docs/architecture.md, "Pixels")."""
        return as_float(self.images)

    def class_counts(self) -> torch.Tensor:
        """Number of images of each class, shape ``num_classes``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def select(self, indices: Indices) -> ImageSplit:
        """The images at ``indices`` (integer positions or a boolean mask), in that order."""
        idx = torch.as_tensor(indices)
        if idx.dtype != torch.bool:
            idx = idx.long()
        return dataclasses.replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            coarse_labels=None if self.coarse_labels is None else self.coarse_labels[idx],
        )


def _generator(seed: Seed) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)


def _check_k(split: ImageSplit, k: int) -> None:
    if not 1 <= k <= len(split):
        raise ConfigError(f"cannot partition {len(split)} images among k={k} clients (expected 1 ≤ k ≤ {len(split)})")


def _parts(split: ImageSplit, parts: Sequence[torch.Tensor]) -> list[ImageSplit]:
    return [split.select(torch.sort(p).values) for p in parts]


def subset(split: ImageSplit, n_per_class: int, *, seed: Seed | None = None) -> ImageSplit:
    """``n_per_class`` images of every class, kept in the split's order.

    With ``seed=None`` these are the first ``n_per_class`` of each class (a fixed, named
    evaluation subset: "first 100 test images per class"); with a seed or generator, a random
    choice. A class with fewer images is an error, not a smaller class.
    """
    if n_per_class < 1:
        raise ConfigError(f"n_per_class must be at least 1, got {n_per_class}")
    gen = None if seed is None else _generator(seed)
    chosen = []
    for label, name in enumerate(split.classes):
        idx = torch.nonzero(split.labels == label).flatten()
        if len(idx) < n_per_class:
            raise ConfigError(f"class {name!r} has {len(idx)} images in {split.spec or 'the data'} ({split.split}), fewer than n_per_class={n_per_class}")
        if gen is not None:
            idx = idx[torch.randperm(len(idx), generator=gen)]
        chosen.append(idx[:n_per_class])
    return split.select(torch.sort(torch.cat(chosen)).values)


def balanced_head(split: ImageSplit, n: int) -> ImageSplit:
    """The first ``n`` images of ``split`` taken class by class in turn — the first image of every
    class, then the second of every class, … — so that a split stored sorted by class (as the
    JPEG CIFAR-10's folders are) still gives every class its share; kept in the split's order."""
    labels = split.labels
    rank = torch.empty_like(labels)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        rank[idx] = torch.arange(idx.numel())
    order = sorted(range(len(split)), key=lambda i: (int(rank[i]), int(labels[i])))[:n]
    return split.select(torch.sort(torch.tensor(order, dtype=torch.long)).values)


def partition_iid(split: ImageSplit, k: int, *, seed: Seed) -> list[ImageSplit]:
    """Deal the images at random to ``k`` clients of (nearly, ±1) equal size: disjoint and covering."""
    _check_k(split, k)
    perm = torch.randperm(len(split), generator=_generator(seed))
    return _parts(split, torch.tensor_split(perm, k))


def partition_dirichlet(split: ImageSplit, k: int, alpha: float, *, seed: Seed) -> list[ImageSplit]:
    """Label-skewed (non-IID) partition among ``k`` clients: disjoint and covering.

    For each class ``c`` the client shares are drawn as ``q_c ~ Dir(alpha · 1_k)`` and the class's
    images, shuffled, are cut in those proportions (Hsu et al., 2019, "Measuring the effects of
    non-identical data distribution for federated visual classification"). Small ``alpha``
    gives each client few classes (and may leave a client with no images); ``alpha → ∞``
    approaches :func:`partition_iid`.
    """
    _check_k(split, k)
    if not alpha > 0:
        raise ConfigError(f"the Dirichlet concentration alpha must be positive, got {alpha}")
    gen = _generator(seed)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    parts: list[list[torch.Tensor]] = [[] for _ in range(k)]
    for label in range(split.num_classes):
        idx = torch.nonzero(split.labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        cuts = np.round(np.cumsum(rng.dirichlet(np.full(k, float(alpha)))) * len(idx)).astype(int)[:-1]
        for client, piece in enumerate(torch.tensor_split(idx, cuts.tolist())):
            parts[client].append(piece)
    return _parts(split, [torch.cat(p) if p else torch.empty(0, dtype=torch.long) for p in parts])


__all__ = ["ImageSplit", "balanced_head", "partition_dirichlet", "partition_iid", "subset"]
