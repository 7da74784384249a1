"""Feature inversion: reconstruct the input image from what a server sees, whichever method
produced it — the learned inverter of Xiang et al., "Interpretable Complex-Valued Neural Networks
for Privacy Protection" (ICLR 2020), section 5.1 ("Attacks"), its error E‖Î − I‖ (Tables 1–2) and
its reconstruction grid (Fig. 2); plus the optimisation-based inversion ("input optimisation")
of split-inference privacy benchmarks.

Threat model (issue 11, the paper's section 3): the adversary is the server or an eavesdropper.
It sees the features ``f(I)`` of the victim's images — whatever a method sends the server —,
knows the released encoder's architecture and weights, and trains its attack models on *its own*
images (by convention the data set's ``train`` split), disjoint from the victim's images it is
tested on (the ``test`` split). It never sees the victim's secrets.

The learned attack is generic over "features of images": any callable ``features(images) ->
tensor`` (``N×C×H×W`` pixels in [0, 1] → a feature of any shape) gives the attacker's training
pairs ``(features(I), I)``; :func:`train_inverter` fits the zoo's U-Net
(:class:`veilnet.models.unet.UNet`, the paper's attacker, section 5.1) on them and
:func:`reconstruct` applies it to the victim's features. A feature of more than four dimensions
(e.g. a pair tensor ``N×2×K×h×w``) is fed with its leading axes folded into the channels
(``N×2K×h×w``, :func:`as_unet_input`). The stronger, training-free **optimisation inversion**
(:func:`optimisation_inversion`) finds ``Î = argmin ‖g(Î) − a*‖² / ‖a*‖² + λ_TV·TV(Î)`` by Adam
through a released encoder g.

Each attack is scored by :func:`evaluate_reconstruction`: an :class:`InversionResult` holding the
metrics of :func:`reconstruction_metrics`, the trivial baseline's metrics — every victim image
predicted as the attacker's mean image —, the splits and the seeds; :func:`save_inversion_grid`
draws the reconstructions like Fig. 2. An attack is worth reporting only where it beats that
trivial baseline. The attacks that need one method's secrets or features live beside that method.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.checks import is_int, is_number
from veilnet.errors import ConfigError, ShapeError
from veilnet.metrics import as_float
from veilnet.progress import bar
from veilnet.report import Result

__all__ = [
    "InversionConfig",
    "InversionResult",
    "ReconstructionMetrics",
    "as_unet_input",
    "evaluate_reconstruction",
    "mean_image_baseline",
    "optimisation_inversion",
    "reconstruct",
    "reconstruction_metrics",
    "save_inversion_grid",
    "ssim",
    "total_variation",
    "train_inverter",
]

Features = Callable[[torch.Tensor], torch.Tensor]

#: Losses :func:`train_inverter` minimises between Î and I: mean squared error (the default: it
#: fits the paper's error, a root mean square, directly) or mean absolute error.
LOSSES = ("mse", "l1")


# --------------------------------------------------------------------------------------------
# Metrics


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, *, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al., 2004, Eq. 13) of each image pair, ``N×C×H×W`` → ``N``.

    A Gaussian window (``window_size``, σ = 1.5) per channel, no padding (only the window's valid
    positions), constants ``C1 = (0.01·L)²``, ``C2 = (0.03·L)²`` with ``L = data_range``; the map
    is averaged over channels and positions. 1 for identical images, lower the less alike; a
    window larger than the image shrinks to the image's smaller side.
    """
    x, y = as_float(x), as_float(y)
    if x.shape != y.shape:
        raise ShapeError(f"SSIM compares images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, c, h, w = x.shape
    size = min(window_size, h, w)
    win = _gaussian_window(size, sigma, x.device, x.dtype).expand(c, 1, size, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


@dataclass(frozen=True)
class ReconstructionMetrics(Result):
    """How close reconstructions Î are to the images I (pixels in [0, 1]).

    * ``error`` — the paper's ``E‖Î − I‖`` (section 5.1, Tables 1–2): per image the root mean
      square of ``Î − I`` over its pixels and channels (the L2 norm divided by the square root of
      the number of values), averaged over the images. Why this norm: the paper's dec(x) errors
      sit at 0.24–0.25 for every model and data set — the level of an attacker that learns
      nothing and whose best guess is the mean image. Measured on the JPEG CIFAR-10 (2,000 test
      images against the mean of 5,000 others): this error 0.235 (``sqrt(mse)`` 0.2425), while
      that guess's per-pixel mean absolute error is 0.201 — an MAE reading would put the
      paper's dec(x) *worse* than guessing. Its original-network figures (0.07–0.10) are then
      the RMS error of a good U-Net reconstruction. (``sqrt(mse)``, the RMS over all images
      at once, is at least this error and follows from ``mse``/``psnr``.)
    * ``mae`` — per-pixel mean absolute error; ``mse`` — mean squared error over all values;
      ``psnr`` — ``10·log10(1/mse)`` dB (:func:`veilnet.metrics.psnr`); ``ssim`` — mean
      :func:`ssim`; ``n`` — images.
    """

    error: float
    mae: float
    mse: float
    psnr: float
    ssim: float
    n: int


def reconstruction_metrics(reconstructed: torch.Tensor, images: torch.Tensor) -> ReconstructionMetrics:
    """:class:`ReconstructionMetrics` of ``reconstructed`` against ``images`` (both ``N×C×H×W``,
    uint8 or float in [0, 1], the same shape)."""
    rec, img = as_float(reconstructed), as_float(images)
    if rec.shape != img.shape:
        raise ShapeError(f"reconstructions of shape {tuple(rec.shape)} do not match images of shape {tuple(img.shape)}")
    if rec.shape[0] == 0:
        raise ShapeError("no images to compare (N = 0)")
    rec, img = rec.to(torch.float64), img.to(torch.float64)
    diff = (rec - img).flatten(1)
    mse = float(diff.square().mean())
    return ReconstructionMetrics(
        error=float(diff.square().mean(1).sqrt().mean()),
        mae=float(diff.abs().mean()),
        mse=mse,
        psnr=math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse),
        ssim=float(ssim(rec, img).mean()),
        n=int(rec.shape[0]),
    )


def mean_image_baseline(attacker_images: torch.Tensor, victim_images: torch.Tensor) -> ReconstructionMetrics:
    """The trivial attack: every victim image "reconstructed" as the attacker's mean image. An
    attack that does not beat it has learnt nothing about the victim's images from the features."""
    mean = as_float(attacker_images).mean(0, keepdim=True)
    victims = as_float(victim_images)
    if mean.shape[1:] != victims.shape[1:]:
        raise ShapeError(f"attacker images {tuple(mean.shape[1:])} and victim images {tuple(victims.shape[1:])} differ in shape")
    return reconstruction_metrics(mean.expand_as(victims), victims)


# --------------------------------------------------------------------------------------------
# The learned inverter (U-Net)


@dataclass(frozen=True)
class InversionConfig(Result):
    """How the attacker trains its U-Net: ``epochs``, ``batch_size``, Adam's ``lr``, the
    ``loss`` between Î and I (``"mse"`` or ``"l1"``), the U-Net's ``base_width`` (32 in the zoo;
    smaller for quick runs) and the ``seed`` of its initial weights, its batch order and of any
    draws the attack's features need."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    loss: str = "mse"
    base_width: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "base_width", "seed"):
            value = getattr(self, name)
            if not is_int(value) or value < (0 if name == "seed" else 1):
                raise ConfigError(f"inverter option {name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, got {value!r}")
        if not is_number(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"inverter option lr must be a positive number, got {self.lr!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"inverter loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")


def as_unet_input(features: torch.Tensor) -> torch.Tensor:
    """A feature of any shape as the U-Net's input: ``N×C×H×W`` and ``N×C`` unchanged, a pair
    tensor ``N×2×K×h×w`` (or any ``N×…×h×w`` of more dimensions) with its leading axes folded
    into the channels (``N×2K×h×w``), ``N×A×B`` flattened to ``N×AB``."""
    if features.ndim in (2, 4):
        return features
    if features.ndim > 4:
        return features.flatten(1, features.ndim - 3)
    if features.ndim == 3:
        return features.flatten(1)
    raise ShapeError(f"features must have a batch axis and at least one more, got shape {tuple(features.shape)}")


def train_inverter(
    features_fn: Features | torch.Tensor,
    attacker_images: torch.Tensor,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    loss: str = "mse",
    base_width: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "inverter",
) -> nn.Module:
    """Train the zoo's U-Net (``veilnet.models.create("unet", ...)``) to map
    ``features_fn(I)`` back to ``I`` over the attacker's own images (section 5.1, "Attacks").

    ``features_fn`` is called on every batch of every epoch (under ``torch.no_grad``), so a
    randomised feature — one drawn with fresh secrets, a noisy network's ``a + γ·ε`` — gives
    fresh draws each epoch (the attacker's own augmentation). It may also be a tensor of
    features computed once, one per attacker image (e.g. features whose secrets the attacker
    estimates at a cost too high to redraw every epoch). Loss: ``"mse"``
    (mean squared error, the default) or ``"l1"``; Adam at ``lr``; the batch order and the
    initial weights come from ``seed``. The loop is :func:`veilnet.training.fit` in memory; its
    progress bar is labelled ``desc`` (a caller that trains several names each, ``"inverter: …"``).
    Returns the U-Net in eval mode; it takes :func:`as_unet_input` of a feature.
    """
    from veilnet import models
    from veilnet.devices import resolve_device
    from veilnet.training import fit

    config = InversionConfig(epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, base_width=base_width, seed=seed)
    images = as_float(attacker_images)
    if images.shape[0] < 1:
        raise ConfigError("the attacker needs at least one training image")
    c, h, w = images.shape[1:]
    if h != w:
        raise ShapeError(f"the U-Net inverter reconstructs square images, got {h}×{w}")
    dev = resolve_device(device)
    table = features_fn if isinstance(features_fn, torch.Tensor) else None
    if table is not None and table.shape[0] != images.shape[0]:
        raise ShapeError(f"{table.shape[0]} precomputed features for {images.shape[0]} attacker images")

    def features_of(idx: torch.Tensor) -> torch.Tensor:
        if table is not None:
            return table[idx].to(dev)
        with torch.no_grad():
            return features_fn(images[idx].to(dev))

    torch.manual_seed(seed)  # the U-Net's initial weights and features_fn's global draws
    probe = as_unet_input(features_of(torch.arange(min(2, images.shape[0]))))
    unet = models.create("unet", in_channels=int(probe.shape[1]), out_channels=int(c), image_size=int(h), base_width=base_width).to(dev)
    optimizer = torch.optim.Adam(unet.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    criterion = F.mse_loss if loss == "mse" else F.l1_loss

    def batches(epoch: int) -> list[torch.Tensor]:
        return list(torch.randperm(images.shape[0], generator=order).split(batch_size))

    def step(idx: torch.Tensor, info: Any) -> dict[str, float]:
        unet.train()
        target = images[idx].to(dev)
        out = unet(as_unet_input(features_of(idx)))
        value = criterion(out, target)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        return {"loss": value.item(), "n": len(idx)}

    fit(step, batches, epochs=epochs, state={"unet": unet, "optimizer": optimizer, "order": order}, config=config.to_dict(), progress=progress, desc=desc)
    return unet.eval()


@torch.no_grad()
def reconstruct(inverter: nn.Module, features: torch.Tensor, *, batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """``Î = dec(features)``: the inverter applied to a batch of features (any shape, see
    :func:`as_unet_input`), in batches, in eval mode. Returns float images on the CPU."""
    inverter.eval()
    dev = torch.device(device)
    outs = [inverter(as_unet_input(features[i : i + batch_size]).to(dev)).float().cpu() for i in range(0, features.shape[0], batch_size)]
    if not outs:
        raise ShapeError("no features to invert (N = 0)")
    return torch.cat(outs)


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class InversionResult(Result):
    """One inversion attack on one model's features.

    ``attack`` names it (``"original"``, ``"optimisation"``, …),
    ``features`` says what the attacker saw; ``metrics`` scores the reconstructions of the
    victim's images, ``baseline`` the trivial attack on the same images (the attacker's mean
    image, :func:`mean_image_baseline`). ``attacker_split`` / ``victim_split`` name the disjoint
    image sets (e.g. ``digits:train`` / ``digits:test``), ``n_attacker`` / ``n`` their sizes;
    ``seed`` seeds the attack, ``victim_seed`` the victim's secret draws (None: from the OS's
    CSPRNG); ``config`` the attack's settings and ``extra`` further numbers (e.g. the angle
    estimate's error, the final feature distance)."""

    attack: str
    features: str
    metrics: ReconstructionMetrics
    baseline: ReconstructionMetrics
    attacker_split: str
    victim_split: str
    n_attacker: int
    n: int
    seed: int
    victim_seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def beats_baseline(self) -> bool:
        """The reconstructions are closer to the victim's images than the mean image is."""
        return self.metrics.error < self.baseline.error


def evaluate_reconstruction(
    attack: str,
    features: str,
    reconstructed: torch.Tensor,
    victim_images: torch.Tensor,
    attacker_images: torch.Tensor,
    *,
    attacker_split: str = "train",
    victim_split: str = "test",
    seed: int = 0,
    victim_seed: int | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, float] | None = None,
) -> InversionResult:
    """Score reconstructions of ``victim_images`` and the mean-image baseline: an :class:`InversionResult`."""
    return InversionResult(
        attack=attack,
        features=features,
        metrics=reconstruction_metrics(reconstructed, victim_images),
        baseline=mean_image_baseline(attacker_images, victim_images),
        attacker_split=attacker_split,
        victim_split=victim_split,
        n_attacker=int(attacker_images.shape[0]),
        n=int(victim_images.shape[0]),
        seed=seed,
        victim_seed=victim_seed,
        config=dict(config or {}),
        extra={k: float(v) for k, v in (extra or {}).items()},
    )


# --------------------------------------------------------------------------------------------
# Optimisation-based inversion


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image, ``N×C×H×W`` → ``N``: the mean absolute difference
    of vertically and of horizontally neighbouring pixels, summed."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def optimisation_inversion(
    encoder: nn.Module,
    target: torch.Tensor,
    image_shape: Sequence[int],
    *,
    steps: int = 300,
    lr: float = 0.05,
    tv_weight: float = 0.05,
    init: torch.Tensor | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimisation-based inversion ("input optimisation"): for each target feature ``a*``,
    ``Î = argmin_I ‖g(I) − a*‖² / ‖a*‖² + λ_TV·TV(I)`` (:func:`total_variation`) by Adam through
    the released encoder ``g``, pixels kept in [0, 1] by the parametrisation ``I = sigmoid(z)``.

    Arguments:
        encoder: g, in eval mode; its weights are not changed.
        target: ``N×…`` features a* (an encoder output, or what an attacker recovered of one).
        image_shape: ``(C, H, W)`` of the images to find.
        steps, lr, tv_weight: Adam's steps and step size, λ_TV.
        init: ``N×C×H×W`` or ``1×C×H×W`` starting images in [0, 1] (e.g. the attacker's mean
            image); None: ``0.5`` plus a little noise drawn from ``seed``.
        batch_size: images optimised together (each image's loss is its own: the objective is
            a sum over images, Adam's updates are per pixel).

    Returns ``(Î, distance)``: images ``N×C×H×W`` on the CPU and each image's final relative
    feature distance ``‖g(Î) − a*‖² / ‖a*‖²`` (``N``).
    """

    if steps < 1 or not (lr > 0) or not (tv_weight >= 0):
        raise ConfigError(f"optimisation inversion needs steps >= 1, lr > 0 and tv_weight >= 0, got {steps}, {lr}, {tv_weight}")
    image_shape = tuple(int(v) for v in image_shape)
    if init is not None:
        start_images = as_float(init).cpu()
        if start_images.shape[1:] != image_shape or start_images.shape[0] not in (1, target.shape[0]):
            raise ShapeError(f"init must be 1×{'×'.join(map(str, image_shape))} or one image per target ({target.shape[0]}), got {tuple(start_images.shape)}")
    dev = torch.device(device)
    encoder = encoder.eval()
    params = [p.requires_grad for p in encoder.parameters()]
    for p in encoder.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    n = target.shape[0]
    images, distances = [], []
    batches = range(0, n, batch_size)
    shown = bar(desc=f"optimisation inversion: {steps} Adam steps on {n} images", total=len(batches) * steps, unit="step", enabled=progress)
    try:
        for start in batches:
            a = target[start : start + batch_size].to(dev).float()
            m = a.shape[0]
            if init is None:
                x0 = 0.5 + 0.05 * torch.randn((m, *image_shape), generator=gen)
            else:
                x0 = start_images[start : start + m] if start_images.shape[0] == n else start_images.expand(m, *image_shape)
            z = torch.logit(x0.clamp(1e-3, 1 - 1e-3)).to(dev).clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            scale = a.flatten(1).square().sum(1).clamp_min(1e-12)
            for _ in range(steps):
                img = torch.sigmoid(z)
                dist = (encoder(img) - a).flatten(1).square().sum(1) / scale
                loss = (dist + tv_weight * total_variation(img)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                shown.update()
            with torch.no_grad():
                img = torch.sigmoid(z)
                distances.append(((encoder(img) - a).flatten(1).square().sum(1) / scale).cpu())
                images.append(img.cpu())
    finally:
        shown.close()
        for p, flag in zip(encoder.parameters(), params, strict=True):
            p.requires_grad_(flag)
    return torch.cat(images), torch.cat(distances)


# --------------------------------------------------------------------------------------------
# Figure


def save_inversion_grid(path: str | os.PathLike[str], images: torch.Tensor, rows: Mapping[str, torch.Tensor], *, n: int = 8, title: str | None = None) -> Path:
    """A PNG grid like the paper's Fig. 2: the first row the input images, then one row per
    attack (``rows``: label → reconstructions of the same images), ``n`` columns; written with
    :func:`veilnet.report.save_figure`. Returns the path."""
    from veilnet.report import plot_backend, save_figure

    plt = plot_backend()
    inputs = as_float(images)[:n]
    cols = inputs.shape[0]
    all_rows = {"input": inputs, **{k: as_float(v)[:cols] for k, v in rows.items()}}
    fig, axes = plt.subplots(len(all_rows), cols, figsize=(1.1 * cols + 1.2, 1.15 * len(all_rows)), squeeze=False)
    for r, (label, batch) in enumerate(all_rows.items()):
        for j in range(cols):
            ax = axes[r][j]
            img = batch[j].clamp(0, 1).permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
