"""Angle recovery: how well an adversary finds the secret angle θ of a complex-valued network —
Xiang et al., "Interpretable Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020),
section 4.3 ("inversion attack 1") and Table 4.

Threat model (section 3, issue 11): the adversary is the server or an eavesdropper. It sees the
encoded feature ``x = e^{iθ}(a + b·i)`` of each victim image (Eq. 2; and h = Φ(x), which adds
nothing it cannot compute), knows the released encoder g, processor Φ and decoder d (architecture
and weights), and trains its attack models on **its own images** (the *attacker split*, e.g. the
data set's train split). It never sees the victim's θ, counterpart b = g(I′) or I′; the victim's
images are another split (the *victim split*, e.g. the test split), disjoint from the attacker's.
The victim draws θ ~ U[0, 2π) per image and its counterpart from another image of its own split
(as :func:`veilnet.complex.training.evaluate_complex` does), from a seeded generator here so that
the measurement is reproducible.

The angle is only defined up to what x reveals: ``x = e^{i(θ+π)}(−a − b·i)``, so
``Re[x·e^{−i(θ+π)}] = −a``. An attacker that cannot tell a feature from its negative confuses θ
with θ + π; :func:`mirror_fraction` counts how often it lands there. Worse for the paper's
attack: ``x = e^{i(θ+π/2)}(b − a·i)``, so ``Re[x·e^{−i(θ+π/2)}] = b`` — the counterpart, a *real*
feature of another image, which no discriminator of real features can tell from a. A D′ that
scores only the real part therefore cannot separate θ from θ + π/2; picking either half the time
gives a mean error of π/4 ≈ 0.785 rad, the paper's own Table 4 figure (0.78–0.84 on CIFAR-10).
:func:`counterpart_fraction` counts θ̂ near θ + π/2. The regression sees the imaginary part as
well (−a at θ + π/2, which is not distributed like a feature) and has no such ambiguity.

The attacks
-----------
* :func:`paper_angle_attack` — the paper's (section 4.3): a new discriminator D′ scores "real
  feature" against "feature decoded with a wrong angle", and ``θ̂ = argmax_θ D′(Re[x·e^{−iθ}])``
  over a grid of angles (:func:`discriminator_angles`). D′ is the architecture of the training
  discriminator (:class:`veilnet.complex.training.Discriminator`, Fig. 1b) trained by the
  attacker on its own images (:func:`train_angle_discriminator`): positives a = g(I), negatives
  the decoys ``Re[(a + b·i)·e^{iΔ}] = a·cos Δ − b·sin Δ`` (Eq. 8;
  :func:`veilnet.complex.training.decoys`) with b = g(I′) from another of its images. Choices the
  paper leaves open: D′ is a plain logistic classifier (binary cross-entropy on its score) — the
  attacker needs a ranking of candidate features, not a Wasserstein estimate; Δ is drawn
  uniformly from ``[m, 2π − m]`` with a margin m = π/36 around the true angle, the whole circle
  and not only (0, π) as in training, so −a (Δ = π) is a negative D′ sees; ``decoys_per_image``
  decoys per real feature (default 4, the positives weighted to balance them).
* :func:`regression_angle_attack` — a stronger attack the paper did not try: a small CNN
  (:class:`AngleRegressor`) trained on (x, θ) pairs the attacker makes itself with the public
  encoder (its own images, counterparts from its own images, θ ~ U[0, 2π) fresh at every step),
  predicting (cos θ, sin θ); θ̂ = atan2 (:func:`train_angle_regressor`). The public
  reproduction of the paper ran only the paper's attack (0.245 rad on its LeNet).

Both return an :class:`AngleAttackResult` (mean and median error, fraction within a tolerance of
θ and of θ + π, the splits, sizes and seeds). Chance — θ̂ independent of θ — has mean error π/2.

Measurements on the reproduced networks are in docs/benchmarks.md (complex-valued networks).

Memory: the attacker's features a = g(I) are computed once (the released encoder is fixed) and
kept on the device, ``N·K·h·w`` floats (2,000 CIFAR-10 images through the LeNet encoder: 9 MB).

Example::

    net = veilnet.models.load("runs/complex-lenet")
    attacker = veilnet.data.load("folder:cifar10-jpeg.zip", "train")
    victim = veilnet.data.load("folder:cifar10-jpeg.zip", "test")
    result = regression_angle_attack(net, attacker, victim, epochs=10, seed=0)
    print(result.mean_error, result.near_mirror)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from veilnet import metrics
from veilnet.checks import check_int, check_number
from veilnet.complex import layers as cl
from veilnet.complex.models import ComplexNet, batched
from veilnet.complex.training import Discriminator, decoys, simulate_device
from veilnet.data import ImageSplit
from veilnet.devices import resolve_device
from veilnet.errors import ConfigError, ShapeError
from veilnet.progress import bar
from veilnet.report import Result
from veilnet.training.core import fit

#: Mean |θ̂ − θ| (wrapped) of a guess independent of θ: E|U[−π, π]| = π/2.
CHANCE_ERROR = math.pi / 2
#: Default tolerance of :func:`mirror_fraction` and of the "recovered" fraction (radians).
TOLERANCE = math.pi / 8
#: The decoy angles of D′ avoid this margin around the true angle (radians).
DECOY_MARGIN = math.pi / 36
#: Offset of the attacker's generator from the victim's (each side draws from its own).
ATTACKER_SEED_OFFSET = 1_000_003

TWO_PI = 2 * math.pi


# --------------------------------------------------------------------------------------------
# The metric


def angle_error(theta_hat: torch.Tensor, theta: torch.Tensor, *, reduction: str = "none") -> torch.Tensor:
    """``|θ̂ − θ|`` on the circle: the distance wrapped to ``[0, π]`` (θ = 0.1, θ̂ = 2π − 0.1 → 0.2).

    ``reduction``: ``"none"`` (per sample, the shape of the broadcast inputs), ``"mean"`` or
    ``"median"`` (a 0-dimensional tensor). Angles are in radians, any real values.
    """
    if reduction not in ("none", "mean", "median"):
        raise ConfigError(f"reduction must be none, mean or median, got {reduction!r}")
    theta_hat, theta = torch.as_tensor(theta_hat, dtype=torch.float64), torch.as_tensor(theta, dtype=torch.float64)
    d = torch.remainder(theta_hat - theta.to(theta_hat.device), TWO_PI)
    err = torch.minimum(d, TWO_PI - d)
    if reduction == "mean":
        return err.mean()
    if reduction == "median":
        return err.median()
    return err


def mirror_fraction(theta_hat: torch.Tensor, theta: torch.Tensor, *, tolerance: float = TOLERANCE) -> float:
    """The fraction of θ̂ within ``tolerance`` of θ + π, the angle that decodes −a."""
    return within_fraction(theta_hat, torch.as_tensor(theta, dtype=torch.float64) + math.pi, tolerance=tolerance)


def counterpart_fraction(theta_hat: torch.Tensor, theta: torch.Tensor, *, tolerance: float = TOLERANCE) -> float:
    """The fraction of θ̂ within ``tolerance`` of θ + π/2, the angle that decodes the fooling
    counterpart: ``Re[x·e^{−i(θ+π/2)}] = b`` — a real feature of another image."""
    return within_fraction(theta_hat, torch.as_tensor(theta, dtype=torch.float64) + math.pi / 2, tolerance=tolerance)


def within_fraction(theta_hat: torch.Tensor, theta: torch.Tensor, *, tolerance: float = TOLERANCE) -> float:
    """The fraction of θ̂ within ``tolerance`` (radians, wrapped distance) of θ."""
    tolerance = _check_tolerance(tolerance)
    err = angle_error(theta_hat, theta)
    return float((err <= tolerance).double().mean()) if err.numel() else math.nan


@dataclass(frozen=True)
class AngleAttackResult(Result):
    """One angle attack against one network (JSON through :class:`veilnet.report.Result`).

    ``mean_error``/``median_error``: |θ̂ − θ| wrapped to [0, π] over the victim's ``n`` images
    (chance: ``chance_error`` = π/2); ``within_tolerance``: the fraction of θ̂ within
    ``tolerance`` of θ; ``near_mirror``: within ``tolerance`` of θ + π (which decodes −a);
    ``near_counterpart``: within ``tolerance`` of θ + π/2 (which decodes the counterpart b).
    ``attacker_data``/``victim_data``: the spec and split each side used (disjoint images);
    ``attacker_seed`` seeds the attacker's model and draws, ``victim_seed`` the victim's θ and
    counterparts. ``grid``: the number of candidate angles (the paper's attack only).
    """

    attack: str
    model: str
    attacker_data: str
    victim_data: str
    n_attacker: int
    n: int
    mean_error: float
    median_error: float
    within_tolerance: float
    near_mirror: float
    near_counterpart: float
    tolerance: float
    chance_error: float
    epochs: int
    grid: int | None
    attacker_seed: int
    victim_seed: int
    train_seconds: float
    attack_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# What each side has


def _check_net(net: Any) -> ComplexNet:
    if not isinstance(net, ComplexNet):
        name = (getattr(net, "veilnet_arch", None) or {}).get("name", type(net).__name__)
        raise ConfigError(f"angle recovery attacks a complex-valued network (complex-*), not {name}: a real network hides no angle")
    return net


def encoder_features(net: ComplexNet, images: torch.Tensor, *, batch_size: int = 500, device: str | torch.device = "cpu") -> torch.Tensor:
    """``a = g(I)`` for every image (eval mode), on ``device``: ``N×C×H×W`` → ``N×K×h×w``."""
    net = _check_net(net)
    device = resolve_device(device)
    if images.shape[0] == 0:
        raise ConfigError("no images to encode")
    with metrics.eval_mode(net):
        return batched(lambda batch: net.encoder(metrics.as_float(batch).to(device)), images, batch_size=batch_size)


def victim_features(
    net: ComplexNet, victim: ImageSplit, *, seed: int = 0, batch_size: int = 500, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the victim sends: ``x = e^{iθ}(g(I) + g(I′)·i)`` (Eq. 2) for each image of ``victim``,
    θ ~ U[0, 2π) and I′ another image of the victim split (a derangement), both drawn from a
    generator seeded with ``seed`` (:func:`veilnet.complex.training.simulate_device`; in
    deployment the device draws them from a CSPRNG).
    Returns ``(x, θ)``: ``N×2×K×h×w`` on ``device`` and ``N`` float64 angles on the CPU."""
    n = len(victim)
    if n < 2:
        raise ConfigError(f"the victim needs at least 2 images (each one's counterpart is another image), got {n}")
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    x, theta, _ = simulate_device(encoder_features(net, victim.images, batch_size=batch_size, device=device), generator)
    return x, theta


def _scale(a: torch.Tensor) -> float:
    """The attacker's fixed feature scale, ``sqrt(E[a²])`` over its own features."""
    return float(a.pow(2).mean().sqrt().clamp_min(1e-12))


def _other(n: int, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each index of the batch, another index of ``0 … n−1`` (uniform over the n − 1 others)."""
    return (idx + torch.randint(1, n, idx.shape, generator=generator)) % n


def _batches(n: int, batch_size: int, order: torch.Generator) -> Any:
    def batches(epoch: int) -> list[torch.Tensor]:
        parts = list(torch.randperm(n, generator=order).split(batch_size))
        if len(parts) > 1 and parts[-1].shape[0] == 1:  # batch norm needs two samples per batch
            parts[-2:] = [torch.cat(parts[-2:])]
        return parts

    return batches


# --------------------------------------------------------------------------------------------
# The paper's attack: a discriminator D′ and an argmax over a grid of angles


class AngleCritic(nn.Module):
    """The attacker's discriminator D′: :class:`~veilnet.complex.training.Discriminator`
    (Fig. 1b) on features divided by the attacker's fixed scale ``sqrt(E[a²])``. A higher score
    means "more like a real feature g(I)". Shape: ``N×K×h×w`` → ``N``."""

    def __init__(self, in_shape: tuple[int, int, int] | list[int], channels: int = 32, scale: float = 1.0) -> None:
        super().__init__()
        self.critic = Discriminator(in_shape, channels)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features / self.scale)


def _attacker_features(net: Any, attacker: Any, device: Any, who: str) -> tuple[Any, torch.Tensor, torch.device]:
    """The checks every attack's training shares, then the attacker's own features a = g(I)."""
    net = _check_net(net)
    if len(attacker) < 2:
        raise ConfigError(f"the attacker needs at least 2 images, got {len(attacker)}")
    device = resolve_device(device)
    a = encoder_features(net, attacker.images, device=device)
    if a.dim() != 4:
        raise ShapeError(f"{who} takes feature maps K×h×w, but this encoder outputs shape {tuple(a.shape[1:])}")
    return net, a, device


def train_angle_discriminator(
    net: ComplexNet,
    attacker: ImageSplit,
    *,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    channels: int = 32,
    decoys_per_image: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[AngleCritic, list[dict[str, Any]]]:
    """Train D′ on the attacker's own images (section 4.3): real features a = g(I) against
    ``decoys_per_image`` decoys ``a·cos Δ − b·sin Δ`` each (Eq. 8), b = g(I′) of another attacker
    image, Δ ~ U[π/36, 2π − π/36] drawn fresh every step; binary cross-entropy on D′'s score
    with the positives weighted ``decoys_per_image`` times; Adam at ``lr``. Everything is drawn
    from generators seeded with ``seed``. Returns D′ (eval mode) and the per-epoch history."""
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("decoys_per_image", decoys_per_image, minimum=1)
    net, a, device = _attacker_features(net, attacker, device, "D′")
    n = a.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed, minimum=0))
        critic = AngleCritic(tuple(a.shape[1:]), channels, _scale(a)).to(device)
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(seed)
    order = torch.Generator().manual_seed(seed + 1)
    span = TWO_PI - 2 * DECOY_MARGIN
    weight = float(decoys_per_image)

    def step(idx: torch.Tensor, info: Any) -> dict[str, float]:
        m = idx.shape[0]
        idx_d, other_d = idx.to(device), _other(n, idx, draws).to(device)
        delta = (DECOY_MARGIN + span * torch.rand(decoys_per_image * m, generator=draws)).to(device=device, dtype=a.dtype)
        real, b = a[idx_d], a[other_d]
        fake = decoys(real.repeat(decoys_per_image, 1, 1, 1), b.repeat(decoys_per_image, 1, 1, 1), delta, per_sample=True)[0]
        s_real, s_fake = critic(real), critic(fake)
        loss = (weight * F.softplus(-s_real).sum() + F.softplus(s_fake).sum()) / (2 * weight * m)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        acc = ((s_real > 0).float().sum() * weight + (s_fake <= 0).float().sum()) / (2 * weight * m)
        return {"d_loss": float(loss.detach()), "d_accuracy": float(acc), "n": m}

    critic.train()
    history = fit(
        step,
        _batches(n, batch_size, order),
        epochs=epochs,
        state={"critic": critic, "optimizer": optimizer, "draws": draws, "order": order},
        progress=progress,
        desc="angle attack: training D′",
    )
    return critic.eval(), history


def angle_grid(grid: int) -> torch.Tensor:
    """``grid`` candidate angles ``2πj/grid``, j = 0 … grid − 1 (float64)."""
    check_int("grid", grid, minimum=2)
    return torch.arange(grid, dtype=torch.float64) * (TWO_PI / grid)


@torch.no_grad()
def discriminator_angles(critic: nn.Module, x: torch.Tensor, *, grid: int = 360, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """The paper's estimate ``θ̂ = argmax_θ D′(Re[x·e^{−iθ}])`` (section 4.3) over the ``grid``
    angles of :func:`angle_grid`, batched over samples and angles. ``x``: ``N×2×…`` on D′'s
    device → θ̂, ``N`` float64 on the CPU."""
    cl.check_pair(x, "x", min_dim=3)
    thetas = angle_grid(grid)
    cos, sin = (f(thetas).to(device=x.device, dtype=x.dtype) for f in (torch.cos, torch.sin))
    shape = (1, grid) + (1,) * (x.dim() - 2)
    best = []
    for start in bar(range(0, x.shape[0], batch_size), desc=f"angle attack: D′ over a {grid}-angle grid", unit="batch", enabled=progress):
        xb = x[start : start + batch_size]
        # Re[x·e^{−iθ}] = cos θ·Re x + sin θ·Im x (Eq. 3), for every sample × angle: m×grid×K×h×w
        cand = cos.view(shape) * xb[:, 0:1] + sin.view(shape) * xb[:, 1:2]
        scores = critic(cand.flatten(0, 1)).view(xb.shape[0], grid)
        best.append(scores.argmax(1).cpu())
    return thetas[torch.cat(best)]


# --------------------------------------------------------------------------------------------
# The stronger attack: supervised angle regression


class AngleRegressor(nn.Module):
    """The attacker's angle regressor: a small CNN on the encoded feature x (its pair axis folded
    into the channels, ``N×2K×h×w``, divided by the fixed scale ``sqrt(E[a²])``) →
    ``(cos θ, sin θ)``. Three 3×3 convolutions (``width``, 2·``width``, 2·``width`` channels; the
    last two with stride 2), each with batch norm and ReLU, global average pooling, a linear
    layer to 2. Shape: ``N×2×K×h×w`` → ``N×2``; :meth:`angles` gives θ̂ = atan2 in [0, 2π)."""

    def __init__(self, in_channels: int, width: int = 32, scale: float = 1.0) -> None:
        super().__init__()
        w = int(width)
        self.in_channels = int(in_channels)

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(2 * self.in_channels, w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 2)
        )
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cl.check_pair(x, "x", min_dim=5)
        if x.shape[2] != self.in_channels:
            raise ShapeError(f"the regressor takes features with {self.in_channels} channels, got shape {tuple(x.shape)}")
        return self.body(x.flatten(1, 2) / self.scale)

    def angles(self, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """θ̂ = atan2(sin, cos) of the prediction, in [0, 2π), ``N`` float64 on the CPU."""
        out = batched(lambda batch: self(batch).double().cpu(), x, batch_size=batch_size)
        return torch.remainder(torch.atan2(out[:, 1], out[:, 0]), TWO_PI)


def train_angle_regressor(
    net: ComplexNet,
    attacker: ImageSplit,
    *,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[AngleRegressor, list[dict[str, Any]]]:
    """Train :class:`AngleRegressor` on pairs the attacker makes itself with the public encoder:
    each step, for each of its images I, a counterpart I′ among its other images and θ ~ U[0, 2π)
    drawn fresh, ``x = e^{iθ}(g(I) + g(I′)·i)`` (Eq. 2), loss ``‖ŷ − (cos θ, sin θ)‖²``; Adam at
    ``lr`` with cosine decay. Draws from generators seeded with ``seed``. Returns the regressor
    (eval mode) and the per-epoch history (``loss``, ``train_error`` — mean angle error, rad)."""
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=2)
    check_int("width", width, minimum=1)
    net, a, device = _attacker_features(net, attacker, device, "the regressor")
    n = a.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed, minimum=0))
        model = AngleRegressor(a.shape[1], width, _scale(a)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(n / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, epochs * steps_per_epoch) / (epochs * steps_per_epoch)))
    )
    draws = torch.Generator().manual_seed(seed)
    order = torch.Generator().manual_seed(seed + 1)

    def step(idx: torch.Tensor, info: Any) -> dict[str, float]:
        x, theta, _ = simulate_device(a[idx.to(device)], draws, pool=a, counterparts=lambda m, gen: _other(n, idx, gen))
        target = torch.stack((torch.cos(theta), torch.sin(theta)), 1).to(device=device, dtype=a.dtype)
        pred = model(x)
        loss = (pred - target).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        est = torch.atan2(pred[:, 1].detach(), pred[:, 0].detach()).double().cpu()
        return {"loss": float(loss.detach()), "train_error": float(angle_error(est, theta, reduction="mean")), "n": idx.shape[0]}

    model.train()
    history = fit(
        step,
        _batches(n, batch_size, order),
        epochs=epochs,
        state={"regressor": model, "optimizer": optimizer, "scheduler": scheduler, "draws": draws, "order": order},
        progress=progress,
        desc="angle attack: training the angle regressor",
    )
    return model.eval(), history


# --------------------------------------------------------------------------------------------
# The attacks end to end


def _label(split: ImageSplit) -> str:
    return f"{split.spec or '(in memory)'} [{split.split or '?'}] ({len(split)} images)"


def angle_result(
    attack: str,
    net: ComplexNet,
    attacker: ImageSplit,
    victim: ImageSplit,
    theta_hat: torch.Tensor,
    theta: torch.Tensor,
    *,
    epochs: int,
    grid: int | None,
    seed: int,
    tolerance: float,
    train_seconds: float,
    attack_seconds: float,
    history: list[dict[str, Any]],
) -> AngleAttackResult:
    """Score the estimates θ̂ of one attack against the victim's true θ: an :class:`AngleAttackResult`."""
    err = angle_error(theta_hat, theta)
    return AngleAttackResult(
        attack=attack,
        model=(getattr(net, "veilnet_arch", None) or {}).get("name", type(net).__name__),
        attacker_data=_label(attacker),
        victim_data=_label(victim),
        n_attacker=len(attacker),
        n=int(err.numel()),
        mean_error=float(err.mean()),
        median_error=float(err.median()),
        within_tolerance=within_fraction(theta_hat, theta, tolerance=tolerance),
        near_mirror=mirror_fraction(theta_hat, theta, tolerance=tolerance),
        near_counterpart=counterpart_fraction(theta_hat, theta, tolerance=tolerance),
        tolerance=float(tolerance),
        chance_error=CHANCE_ERROR,
        epochs=epochs,
        grid=grid,
        attacker_seed=seed + ATTACKER_SEED_OFFSET,
        victim_seed=seed,
        train_seconds=train_seconds,
        attack_seconds=attack_seconds,
        history=history,
    )


def _check_tolerance(tolerance: Any) -> float:
    return float(check_number("tolerance (radians)", tolerance, low=0.0, high=math.pi))


def paper_angle_attack(
    net: ComplexNet,
    attacker_split: ImageSplit,
    victim_split: ImageSplit,
    *,
    epochs: int = 10,
    grid: int = 360,
    seed: int = 0,
    batch_size: int = 64,
    tolerance: float = TOLERANCE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> AngleAttackResult:
    """The paper's angle attack (section 4.3, Table 4): D′ trained on ``attacker_split``
    (:func:`train_angle_discriminator`), then ``θ̂ = argmax_θ D′(Re[x·e^{−iθ}])`` over ``grid``
    angles for every image of ``victim_split`` (:func:`victim_features`,
    :func:`discriminator_angles`). The victim draws θ and its counterparts from ``seed``, the
    attacker from ``seed + 1,000,003``."""
    net = _check_net(net)
    tolerance = _check_tolerance(tolerance)
    check_int("seed", seed, minimum=0)
    angle_grid(grid)
    device = resolve_device(device)
    start = time.perf_counter()
    critic, history = train_angle_discriminator(
        net, attacker_split, epochs=epochs, seed=seed + ATTACKER_SEED_OFFSET, batch_size=batch_size, device=device, progress=progress
    )
    trained = time.perf_counter()
    x, theta = victim_features(net, victim_split, seed=seed, device=device)
    theta_hat = discriminator_angles(critic, x, grid=grid, progress=progress)
    done = time.perf_counter()
    return angle_result(
        "paper-discriminator",
        net,
        attacker_split,
        victim_split,
        theta_hat,
        theta,
        epochs=epochs,
        grid=grid,
        seed=seed,
        tolerance=tolerance,
        train_seconds=trained - start,
        attack_seconds=done - trained,
        history=history,
    )


def regression_angle_attack(
    net: ComplexNet,
    attacker_split: ImageSplit,
    victim_split: ImageSplit,
    *,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    width: int = 32,
    tolerance: float = TOLERANCE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> AngleAttackResult:
    """The supervised angle regression (not in the paper): :class:`AngleRegressor` trained on
    ``attacker_split`` (:func:`train_angle_regressor`), applied to the encoded features of every
    image of ``victim_split``. Seeds as in :func:`paper_angle_attack`."""
    net = _check_net(net)
    tolerance = _check_tolerance(tolerance)
    check_int("seed", seed, minimum=0)
    device = resolve_device(device)
    start = time.perf_counter()
    model, history = train_angle_regressor(
        net, attacker_split, epochs=epochs, seed=seed + ATTACKER_SEED_OFFSET, batch_size=batch_size, width=width, device=device, progress=progress
    )
    trained = time.perf_counter()
    x, theta = victim_features(net, victim_split, seed=seed, device=device)
    theta_hat = model.angles(x)
    done = time.perf_counter()
    return angle_result(
        "regression",
        net,
        attacker_split,
        victim_split,
        theta_hat,
        theta,
        epochs=epochs,
        grid=None,
        seed=seed,
        tolerance=tolerance,
        train_seconds=trained - start,
        attack_seconds=done - trained,
        history=history,
    )


__all__ = [
    "ATTACKER_SEED_OFFSET",
    "CHANCE_ERROR",
    "TOLERANCE",
    "AngleAttackResult",
    "AngleCritic",
    "AngleRegressor",
    "angle_error",
    "angle_grid",
    "angle_result",
    "counterpart_fraction",
    "discriminator_angles",
    "encoder_features",
    "mirror_fraction",
    "paper_angle_attack",
    "regression_angle_attack",
    "train_angle_discriminator",
    "train_angle_regressor",
    "victim_features",
    "within_fraction",
]
