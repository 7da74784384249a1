"""Post-averaging: the prediction averaged over a small neighbourhood of the input.

Paper: "Bandlimiting Neural Networks Against Adversarial Attacks" (ICLR 2020 submission),
section 3 ("The proposed defence approach: post-averaging"). The defended classifier is the integral of the
network over a ball C of radius r around the input (Eq. 5), which damps the network's
high-frequency components (Eq. 6). It is approximated by an average over sampled points (Eq. 7)
taken along K random unit directions v at offsets λ ∈ {±r/3, ±2r/3, ±r} (Eq. 8), plus the input
itself: 6K + 1 points.

Readings of the paper's public code that its text leaves out, followed here:

* r is an L2 radius in the model's *normalised* input space (after mean/std). A model's
  ``normalize`` layer is affine, ``normalize(x + δ·std) = normalize(x) + δ``, so a step of λ·v in
  normalised space is fed as the pixel image ``x + λ·(std ⊙ v)`` (v scaled by each channel's std);
  the result equals feeding ``normalize(x) + λ·v`` to the layers after ``normalize``, up to float
  rounding. ``space="pixel"`` takes r as an L2 radius in [0, 1] pixel space instead.
* The neighbours are not clipped to the pixel range.
* The directions are drawn from a standard normal over all C·H·W values and normalised to unit
  L2 length, independently for every image and every call (``seed=None``), or drawn once from
  ``seed`` and shared by every image and every call (a deterministic defence).

Threat model: the defence is a wrapper around any classifier and needs no retraining; the paper
evaluates it against adversarial examples made on the undefended model. ``veilnet.robust.evaluation``
also attacks the wrapper itself (EOT-PGD and the Square attack).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.errors import ConfigError, ShapeError
from veilnet.models.batching import CIFAR_VALUES, tuned_batch_size
from veilnet.models.folded import FoldedCache
from veilnet.models.prepared import Prepared, prepare

SPACES = ("normalized", "pixel")
REDUCTIONS = ("softmax", "logits")


class PostAveraging(nn.Module):
    """A classifier defended by post-averaging (Eq. 7–8).

    Arguments:
        model: classifier taking [0, 1] pixels ``N×C×H×W`` to logits ``N×classes``.
        directions: K, the number of random directions (6K + 1 points per image).
        radius: r, the L2 radius of the neighbourhood (in the space chosen by ``space``).
        space: ``"normalized"`` (the paper's: r is measured after the model's mean/std, read from
            ``model.normalize.std`` or given as ``std``) or ``"pixel"``.
        reduce: ``"softmax"`` averages the softmax outputs (the paper's); ``"logits"`` averages logits.
        seed: None draws fresh directions for every image on every call; an int fixes one set of
            K directions, drawn once from it and shared by every image and call.
        std: per-channel std of the normalisation, for a model without ``normalize``.
        max_points: memory cap: the most points built at once; the points of many images are
            built together up to this size (at least one image's 6K + 1). None: 4,096 points on a
            CPU, 65,536 CIFAR-sized points on a GPU (fewer for larger images, never below 4,096);
            it depends only on the device, so a seeded run draws the same directions on any
            machine of that kind.
        batch_size: points per forward pass of the model. The points of many images run back to
            back in batches of this size. None (the default) measures it on the running machine
            with :func:`tuned_batch_size`, once per device and model signature; the result does
            not depend on it beyond float rounding.
        compile: run ``model`` compiled (:func:`veilnet.models.prepare`: inductor, one batch size,
            the first batch's, so every batch of points after it runs at that size, the last one
            padded), eagerly where compiling is off or impossible. A model already prepared is
            used as it is.
        fold: calls without gradients (``torch.no_grad``, ``torch.inference_mode``) on a model in
            eval mode run an inference copy of it: batch norm folded into the convolutions, in
            channels-last memory format (:mod:`veilnet.models.folded`; compiled too with
            ``compile``), rebuilt when the model's weights change. Its outputs equal the model's
            up to float rounding. Calls with gradients (attacks) always run the model itself.
        generator: source of the fresh directions when ``seed`` is None (default: torch's global RNG).
            Inside :meth:`sample_generators`, each image draws from its own generator instead.

    Shape: ``N×C×H×W`` in [0, 1] → ``N×classes``. The output is the log of the averaged softmax
    (``reduce="softmax"``) or the averaged logits (``reduce="logits"``); either acts as logits for
    argmax, cross-entropy and margins, and is differentiable in the input.

    Example::

        defended = PostAveraging(model, directions=15, radius=6.0)
        pred = defended(images).argmax(1)
    """

    offsets: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        directions: int = 15,
        radius: float = 6.0,
        space: str = "normalized",
        reduce: str = "softmax",
        seed: int | None = None,
        *,
        std: Sequence[float] | None = None,
        max_points: int | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        compile: bool = False,
        fold: bool = True,
    ) -> None:
        super().__init__()
        if directions < 1:
            raise ConfigError(f"post-averaging needs at least one direction, got directions={directions}")
        if not radius > 0:
            raise ConfigError(f"post-averaging radius must be positive, got {radius}")
        if space not in SPACES:
            raise ConfigError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        if reduce not in REDUCTIONS:
            raise ConfigError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        if (max_points is not None and max_points < 1) or (batch_size is not None and batch_size < 1):
            raise ConfigError(f"max_points and batch_size must be positive, got {max_points} and {batch_size}")
        self.model = prepare(model) if compile else model
        eager = model.eager if isinstance(model, Prepared) else model
        self._folded = FoldedCache(eager, wrap=prepare if compile else None) if fold else None
        self.directions = int(directions)
        self.radius = float(radius)
        self.space = space
        self.reduce = reduce
        self.seed = seed
        self.max_points = max_points
        self.batch_size = batch_size
        self.generator = generator
        self.register_buffer("offsets", torch.tensor([1.0, -1.0, 2.0, -2.0, 3.0, -3.0]) * (self.radius / 3.0), persistent=False)
        self._scale = self._direction_scale(model, space, std)
        self._fixed: torch.Tensor | None = None
        self._row_generators: list[torch.Generator] | None = None

    @staticmethod
    def _direction_scale(model: nn.Module, space: str, std: Sequence[float] | None) -> torch.Tensor | None:
        """Per-channel factor from a unit direction in the chosen space to a pixel-space step."""
        if space == "pixel":
            return None
        if std is not None:
            scale = torch.as_tensor(std, dtype=torch.float32).flatten()
        else:
            normalize = getattr(model, "normalize", None)
            model_std = getattr(normalize, "std", None)
            if not isinstance(model_std, torch.Tensor):
                raise ConfigError(
                    f"space='normalized' needs the model's input std: {type(model).__name__} has no normalize.std; pass std=[...] or space='pixel'"
                )
            scale = model_std.detach().float().flatten().cpu()
        if scale.numel() == 0 or not bool((scale > 0).all()):
            raise ConfigError(f"std must be positive, one value per channel, got {scale.tolist()}")
        return scale

    @property
    def points_per_image(self) -> int:
        """6K + 1: the points whose outputs are averaged for one image."""
        return 6 * self.directions + 1

    def extra_repr(self) -> str:
        return f"directions={self.directions}, radius={self.radius}, space={self.space!r}, reduce={self.reduce!r}, seed={self.seed}"

    @contextmanager
    def sample_generators(self, generators: Sequence[torch.Generator]) -> Iterator[None]:
        """Within this context, row r of every batch draws its fresh directions from
        ``generators[r % len(generators)]`` (CPU generators), so an image's directions do not depend
        on the batch it is in; a batch repeated k times (EOT) draws k times from each generator, in
        the order of the copies. Attacks use it through
        :meth:`~veilnet.robust.attacks.base.Attack.query`. No effect with a fixed ``seed``."""
        previous, self._row_generators = self._row_generators, list(generators)
        try:
            yield
        finally:
            self._row_generators = previous

    def sample_directions(self, n: int, shape: torch.Size, device: torch.device, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Unit directions, already scaled to pixel-space steps: ``n×K×C×H×W`` (``1×K×...`` when fixed).

        Each direction is standard normal over C·H·W values, divided by its L2 norm (so it has unit
        length in the chosen space), then multiplied by the per-channel std when the radius is
        measured in normalised space. ``generators``: one per image (row i draws from the i-th).
        """
        if self.seed is not None:
            if self._fixed is None or self._fixed.shape[2:] != shape:
                gen = torch.Generator().manual_seed(self.seed)
                self._fixed = self._unit(torch.randn(1, self.directions, *shape, generator=gen))
            return self._fixed.to(device)
        if generators is not None:
            raw = torch.stack([torch.randn(self.directions, *shape, generator=g) for g in generators])
            return self._unit(raw).to(device)
        gen = self.generator
        cpu = gen is not None and gen.device.type == "cpu"
        raw = torch.randn(n, self.directions, *shape, generator=gen, device="cpu" if cpu else device)
        return self._unit(raw).to(device)

    def _unit(self, raw: torch.Tensor) -> torch.Tensor:
        unit = raw / raw.flatten(2).norm(dim=2)[:, :, None, None, None]
        if self._scale is None:
            return unit
        c = raw.shape[2]
        if self._scale.numel() != c:
            raise ShapeError(f"the normalisation has {self._scale.numel()} channels but the images have {c}")
        return unit * self._scale.to(unit.device)[None, None, :, None, None]

    def neighbours(self, images: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """The 6K + 1 points of Eq. 8 for each image: ``N×(6K+1)×C×H×W``, the input first.

        ``dirs`` are pixel-space unit steps from :meth:`sample_directions` (``N×K×...`` or ``1×K×...``).
        """
        n = images.shape[0]
        steps = self.offsets.to(images.device)[None, None, :, None, None, None] * dirs[:, :, None]
        moved = images[:, None, None] + steps  # N×K×6×C×H×W
        return torch.cat([images[:, None], moved.reshape(n, 6 * self.directions, *images.shape[1:])], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ShapeError(f"expected images of shape N×C×H×W, got shape {tuple(images.shape)}")
        max_points = self.max_points or default_max_points(images.device, images.shape[1:])
        per_chunk = max(1, max_points // self.points_per_image)
        rows = self._row_generators
        if rows is not None and (not rows or images.shape[0] % len(rows)):
            raise ShapeError(f"a batch of {images.shape[0]} images does not repeat the {len(rows)} per-sample generators")
        outs = []
        for start in range(0, images.shape[0], per_chunk):
            chunk = images[start : start + per_chunk]
            generators = None if rows is None else [rows[(start + r) % len(rows)] for r in range(chunk.shape[0])]
            outs.append(self._average(chunk, generators))
        return torch.cat(outs) if outs else images.new_zeros(0)

    def _average(self, images: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Eq. 7 for a chunk of images whose points fit under the memory cap."""
        n, points = images.shape[0], self.points_per_image
        dirs = self.sample_directions(n, images.shape[1:], images.device, generators)
        batch_size = self.batch_size or tuned_batch_size(self.model, images)
        batches = self.neighbours(images, dirs).flatten(0, 1).split(batch_size)
        model = self.model
        if self._folded is not None and not torch.is_grad_enabled():
            model = self._folded.get() or model
        logits = torch.cat([model(batch) for batch in batches]).reshape(n, points, -1)
        if self.reduce == "logits":
            return logits.mean(1)
        return torch.logsumexp(F.log_softmax(logits, dim=2), dim=1) - math.log(points)


def default_max_points(device: torch.device, shape: Sequence[int]) -> int:
    """The memory cap on points built at once when ``max_points`` is None: 4,096 on a CPU; on a GPU
    65,536 CIFAR-sized points' worth of values, never fewer than 4,096 points."""
    if device.type == "cpu":
        return 4096
    return max(4096, 65536 * CIFAR_VALUES // math.prod(shape))


__all__ = ["PostAveraging"]
