"""Training the complex-valued networks — Xiang et al., "Interpretable Complex-Valued Neural
Networks for Privacy Protection" (ICLR 2020), section 4.2 ("learning"), Eq. 8 and Eq. 9.

The network ``[g, Φ, d]`` (:class:`~veilnet.complex.models.ComplexNet`) and a discriminator D
(:class:`Discriminator`, Fig. 1b: one convolution and one fully-connected layer) are trained
together on the joint objective of Eq. 9::

    min_{g,Φ,d} [ max_D L(g, D) + L_task(ŷ, y) ],
    ŷ = d(Re[Φ(e^{iθ}(a + b·i))·e^{−iθ}]),  a = g(I),  b = g(I′),  θ ~ U[0, 2π) per sample,

with the WGAN loss of Eq. 8 (Arjovsky et al., 2017)::

    L(g, D) = E_I [ D(a) − E_{Δθ, b} D(a′) ],   a′ = Re[(a + b·i)·e^{iΔθ}] = a·cos Δθ − b·sin Δθ.

a′ is the feature an adversary decodes with a wrong angle θ′ = θ − Δθ (section 4.2). D learns to
tell the real feature a from the k − 1 decoys; the encoder g learns features whose decoys look
like real features, which is the paper's k-anonymity (section 3): a real feature cannot be told
from at least k − 1 synthetic ones.

Choices the paper leaves open (each a reading of section 4.2, said here once):

* **The k − 1 angles.** "We pick k − 1 such Δθ's uniformly over (0, π) and iterate through these
  k − 1 values as negative samples": the evenly spaced grid ``Δθ_j = jπ/k``, j = 1 … k − 1
  (:func:`decoy_angles`), all of them in every step (``decoys="all"``), so the inner expectation
  of Eq. 8 is the mean over the grid. A grid is the reading of "uniformly … iterate through these
  values" (fixed values, not draws); it excludes 0 (the real feature) and π (−a, its mirror
  image), and it covers (0, π) evenly for every k. Default k = 8 (the paper gives no value).
  ``decoys="one"`` pairs each real feature with one of the k − 1 decoys, its angle drawn
  uniformly from the grid each step: an unbiased estimate of the same mean with k − 1 times
  fewer D evaluations (its cost: docs/benchmarks.md), for budgets where D's cost matters.
* **The fooling counterpart.** b = g(I′) with I′ another image of the same batch, I′ ≠ I
  *guaranteed*: the batch is matched by :func:`derangement` (a random permutation followed by a
  cyclic shift by s ∈ [1, n − 1]), so no sample is its own counterpart — unlike a plain random
  permutation, which maps some sample to itself in about 63 % of batches (the public
  reproduction's bug). Each sample's counterpart is uniform over the other n − 1 samples.
  The gradient flows through b too (b is the encoder's output for I′).
* **The Lipschitz constraint of the WGAN** is kept by a **gradient penalty** (Gulrajani et al.,
  2017, "Improved Training of Wasserstein GANs"): ``gp_weight · E[(‖∇_x̂ D(x̂)‖₂ − 1)²]`` at
  points x̂ on the lines between real features and decoys (one decoy angle per sample, drawn at
  random). Weight clipping (Arjovsky et al.) confines D to a box of weights, which biases it
  towards very simple functions and makes its gradients vanish or explode unless the clip value
  is tuned per architecture; the penalty constrains the gradient norm directly, needs no tuning
  per feature size (gp_weight = 10 as in Gulrajani et al.) and trains stably with Adam. D
  therefore has no batch normalisation (the penalty is per sample) and uses leaky ReLUs.
* **Scale.** D sees features divided by the real batch's RMS ``sqrt(E[a²])`` (real features
  and decoys by the same number). The WGAN value scales with the features, and the complex
  norm (Eq. 7) and δ with ``c_k = E|f|`` (Eq. 6) are blind to the encoder's overall scale, so
  without this the encoder could lower L by shrinking a towards zero instead of making decoys
  realistic.
* **Alternation.** Each step (one batch) first takes ``n_critic`` updates of D on the batch's
  features (detached: D's updates need no extra encoder pass), then one update of g, Φ, d on
  ``L_task + λ·L`` with D fixed (``λ = adversarial_weight``). Default n_critic = 1 (1:1): the
  task, not the GAN, sets the budget on this CPU; raise it for a stronger D.
  D's optimiser is Adam(β = (0.5, 0.9)) at the constant ``d_lr`` (Gulrajani et al.); the
  network's optimiser, learning-rate schedule and augmentation are the classifier's
  (:mod:`veilnet.training.classifier`).

Everything runs on :func:`veilnet.training.fit` (progress, ``metrics.json``, a checkpoint per
epoch, exact ``resume`` of the network, D, both optimisers and the generator every draw comes
from). Per epoch the record holds ``task_loss``, ``adversarial_loss`` (L as the network's step
sees it), ``d_loss`` (D's loss, −L plus the penalty), ``gradient_penalty``, ``wasserstein``
(D's estimate of L, the distance between real features and decoys), ``train_accuracy``,
``lr`` and, with a test split, ``test_accuracy`` (:func:`evaluate_complex`: a fresh θ and a
counterpart per test sample, from a fixed seed, so the epochs are comparable).

Several processes (``torchrun``, :mod:`veilnet.distributed`): every rank makes every draw of a
step for the whole batch (the same generator), keeps its part of the batch and encodes its
samples and their counterparts; the critic's scale and the means of Eq. 8 and of the penalty
are sums over the ranks, and the gradients of the network and of D are summed over the ranks
(:func:`veilnet.distributed.sum_gradients`) — the step calls the network's parts one by one and
differentiates D twice, which DistributedDataParallel does not support. One epoch on N processes
reaches the weights of one process (up to float rounding) for a network without ComplexNorm
(whose training statistics are then each rank's) or dropout (each rank's own stream).

Cost: an epoch's time beside its real baseline's (``split-*`` trained by
:func:`veilnet.training.train`) is measured in docs/benchmarks.md (complex-valued networks, cost
of training). For LeNet, whose whole network is small, D and its gradient penalty on k·N features
are most of the step with ``decoys="all"``; ``"one"`` evaluates D k − 1 times less.

Example::

    net = veilnet.models.create("complex-lenet", num_classes=10)
    result = train_complex(net, train_split, "runs/complex-lenet", config=ComplexTrainConfig(epochs=3, optimizer="adam", lr=3e-3), test_split=test_split)
    accuracy = evaluate_complex(net, test_split, seed=0)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from veilnet import distributed, metrics, models
from veilnet.checks import check_int, is_int, is_number
from veilnet.complex import layers as cl
from veilnet.complex.models import ComplexNet
from veilnet.data import ImageSplit
from veilnet.devices import resolve_device
from veilnet.errors import ConfigError, ModelFormatError, ShapeError
from veilnet.models.io import DIR_STEM
from veilnet.report import Result
from veilnet.training.classifier import TrainConfig, augment, learning_rate, make_optimizer
from veilnet.training.core import CHECKPOINT, StepInfo, fit, prepare_run

#: File of the trained discriminator beside the saved network (its shape is in the card's extra).
DISCRIMINATOR_FILE = "discriminator.safetensors"
#: Adam's betas for D, as in Gulrajani et al. (2017).
D_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class ComplexTrainConfig(TrainConfig):
    """Hyper-parameters of a complex network's run (Eq. 9): every field of
    :class:`~veilnet.training.TrainConfig` (the network's optimiser, schedule, augmentation,
    seed — they mean the same and are checked the same) and the adversarial part:

    * ``k`` — the paper's k-anonymity: D sees k − 1 decoys per real feature, at Δθ_j = jπ/k (≥ 2);
    * ``adversarial_weight`` — λ, the weight of the WGAN loss L (Eq. 8) in the network's loss
      (≥ 0; 0 trains the complex network on the task alone while D still measures L);
    * ``d_lr`` — D's Adam learning rate (constant); ``gp_weight`` — the gradient penalty's weight
      (> 0, it keeps D 1-Lipschitz); ``n_critic`` — D's updates per network update;
    * ``d_channels`` — the channels of D's convolution;
    * ``decoys`` — ``"all"``: every feature against all k − 1 decoys each step; ``"one"``:
      against one decoy, its angle drawn from the grid (see the module docstring).

    Defaults: the classifier's, with Adam at 1e-3 (the complex layers train with it from
    scratch without tuning), k = 8, λ = 0.1, d_lr = 1e-4, gp_weight = 10, n_critic = 1,
    d_channels = 32.
    :meth:`from_dict` (inherited) refuses unknown names; every field is checked for its type.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    k: int = 8
    adversarial_weight: float = 0.1
    d_lr: float = 1e-4
    gp_weight: float = 10.0
    n_critic: int = 1
    d_channels: int = 32
    decoys: str = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("k", "n_critic", "d_channels"):
            check_int(f"training option {name}", getattr(self, name))
        for name in ("adversarial_weight", "d_lr", "gp_weight"):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value):
                raise ConfigError(f"training option {name} must be a number, got {value!r}")
        if not isinstance(self.decoys, str) or self.decoys not in ("all", "one"):
            raise ConfigError(f"decoys must be all or one, got {self.decoys!r}")
        if self.k < 2:
            raise ConfigError(f"k must be at least 2 (k − 1 decoy angles in (0, π)), got {self.k}")
        if self.n_critic < 1 or self.d_channels < 1:
            raise ConfigError(f"n_critic and d_channels must be positive integers, got {self.n_critic} and {self.d_channels}")
        if self.adversarial_weight < 0 or self.d_lr <= 0 or self.gp_weight <= 0:
            raise ConfigError(f"adversarial_weight must be >= 0, d_lr and gp_weight > 0 (got {self.adversarial_weight}, {self.d_lr}, {self.gp_weight})")


@dataclass(frozen=True)
class ComplexTrainResult(Result):
    """What :func:`train_complex` produced: the saved model (None when trained in memory), the
    epochs, the last test accuracy (fresh θ and counterpart per sample), the wall time and the
    per-epoch history."""

    model_path: str | None
    epochs: int
    test_accuracy: float | None
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ComplexEvaluation(Result):
    """Accuracy of a complex network with a fresh θ ~ U[0, 2π) and a counterpart from another
    image per sample (``veilnet complex evaluate``)."""

    model: str
    data: str
    split: str
    n: int
    seed: int
    accuracy: float


# --------------------------------------------------------------------------------------------
# The pieces of Eq. 8


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation σ of ``0 … n−1`` with ``σ[i] ≠ i`` for every i (n ≥ 2).

    A uniform permutation p followed by a cyclic shift by s ∈ [1, n − 1]: ``σ[p[i]] = p[(i + s)
    mod n]``. σ[i] ≠ i because s ≢ 0 (mod n), and for each i, σ[i] is uniform over the other
    n − 1 indices. Used to pick each sample's fooling counterpart I′ ≠ I (section 4.2).
    """
    if not is_int(n) or n < 2:
        raise ConfigError(f"a derangement needs at least 2 elements (each sample's counterpart is another image), got {n!r}")
    p = torch.randperm(n, generator=generator)
    s = int(torch.randint(1, n, (1,), generator=generator))
    sigma = torch.empty_like(p)
    sigma[p] = p.roll(-s)
    return sigma


def device_secrets(
    n: int, generator: torch.Generator, counterparts: Callable[[int, torch.Generator], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The device's secret draws for ``n`` samples (section 4.2, Eq. 2), from ``generator``: first
    θ ~ U[0, 2π) per sample, then each sample's fooling counterpart. ``counterparts``: None — a
    :func:`derangement` of the n samples (another sample, never itself; a lone sample has none);
    or a function ``(n, generator) → n indices`` for counterparts from elsewhere.

    Returns ``(θ, index)``: ``N`` float64 angles and ``N`` indices (None for a lone sample).
    """
    theta = torch.rand(n, generator=generator, dtype=torch.float64) * (2 * math.pi)
    if counterparts is not None:
        return theta, counterparts(n, generator)
    return theta, derangement(n, generator) if n >= 2 else None


def simulate_device(
    a: torch.Tensor, generator: torch.Generator, *, pool: torch.Tensor | None = None, counterparts: Callable[[int, torch.Generator], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The device's step with seeded draws — Xiang et al., "Interpretable Complex-Valued Neural
    Networks for Privacy Protection" (ICLR 2020), Eq. 2::

        x = e^{iθ}(a + b·i),   θ ~ U[0, 2π) per sample,   b = g(I′) with I′ ≠ I,

    for the features ``a = g(I)`` (``N×…``). θ and the counterparts come from
    :func:`device_secrets` (θ first, then the counterparts); ``b`` is taken from ``pool`` (the
    features the counterpart indices point into; None: the batch ``a`` itself, so each sample's
    counterpart is another sample of the batch, and a lone sample gets b = 0). Training,
    evaluation and every attack that plays the device draw through this one function; a deployed
    device draws from the OS's CSPRNG instead (:class:`veilnet.complex.protocol.Device`).

    Returns ``(x, θ, b)``: the pair tensor ``N×2×…`` (a's device and dtype), the ``N`` float64
    angles on the CPU, and the counterparts ``N×…``.
    """
    theta, index = device_secrets(a.shape[0], generator, counterparts)
    b = torch.zeros_like(a) if index is None else (a if pool is None else pool)[index.to(a.device)]
    return cl.encode(a, b, theta.to(device=a.device, dtype=a.dtype)), theta, b


def decoy_angles(k: int) -> torch.Tensor:
    """The k − 1 angles Δθ_j = jπ/k, j = 1 … k − 1: evenly spread over the open interval (0, π)
    (section 4.2, "we pick k − 1 such Δθ's uniformly over (0, π)")."""
    check_int("k", k, minimum=2)
    return torch.arange(1, k, dtype=torch.float64) * (math.pi / k)


def decoys(a: torch.Tensor, b: torch.Tensor, angles: torch.Tensor, *, per_sample: bool = False) -> torch.Tensor:
    """The features an adversary decodes with wrong angles (Eq. 8): ``a′_j = Re[(a + b·i)·e^{iΔθ_j}]
    = a·cos Δθ_j − b·sin Δθ_j``. Shape: ``a``, ``b`` ``N×…``, ``angles`` ``J`` → ``J×N×…`` (every
    angle for every sample); with ``per_sample``, ``angles`` ``N`` (sample i's angle) → ``1×N×…``."""
    if a.shape != b.shape:
        raise ShapeError(f"the fooling counterpart b must have the shape of the feature a {tuple(a.shape)}, got {tuple(b.shape)}")
    t = angles.to(dtype=a.dtype, device=a.device)
    if per_sample:
        if t.shape != a.shape[:1]:
            raise ShapeError(f"per-sample decoy angles must have shape ({a.shape[0]},), got {tuple(t.shape)}")
        t = t.view(1, -1, *([1] * (a.dim() - 1)))
    else:
        t = t.view(-1, *([1] * a.dim()))
    return torch.cos(t) * a.unsqueeze(0) - torch.sin(t) * b.unsqueeze(0)


class Discriminator(nn.Module):
    """The GAN's discriminator D of Fig. 1b: one convolution and one fully-connected layer,
    ``conv 3×3 stride 2 (K → channels) → leaky ReLU(0.2) → flatten → linear → 1``, a WGAN critic
    (an unbounded score, no sigmoid, no normalisation: the gradient penalty is per sample).

    Shape: ``N×K×h×w`` (a feature of the encoder) → ``N``.
    """

    def __init__(self, in_shape: tuple[int, int, int] | list[int], channels: int = 32) -> None:
        super().__init__()
        k, h, w = (int(v) for v in in_shape)
        self.in_shape, self.channels = (k, h, w), int(channels)
        self.conv = nn.Conv2d(k, self.channels, 3, stride=2, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.fc = nn.Linear(self.channels * ((h + 1) // 2) * ((w + 1) // 2), 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if tuple(features.shape[1:]) != self.in_shape:
            raise ShapeError(f"the discriminator takes features of shape N×{'×'.join(map(str, self.in_shape))}, got {tuple(features.shape)}")
        return self.fc(self.act(self.conv(features)).flatten(1)).squeeze(1)


def wasserstein(critic: nn.Module, a: torch.Tensor, fake: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Eq. 8 for one batch: ``mean_i [D(a_i) − mean_j D(a′_ji)]`` with ``fake`` = ``J×N×…`` decoys.
    ``batch``: the mean's N when ``a`` holds only some of the batch's samples (one rank's part,
    whose terms the ranks sum); default ``len(a)``."""
    j, n = fake.shape[:2]
    return (critic(a).sum() - critic(fake.reshape(j * n, *fake.shape[2:])).sum() / j) / (n if batch is None else batch)


def gradient_penalty(
    critic: nn.Module, a: torch.Tensor, fake: torch.Tensor, generator: torch.Generator, share: tuple[int, torch.Tensor] | None = None
) -> torch.Tensor:
    """Gulrajani et al.'s penalty ``E[(‖∇D(x̂)‖₂ − 1)²]``, x̂ = ε·a + (1 − ε)·a′ with one decoy
    a′ per sample (its angle drawn at random) and ε ~ U[0, 1] per sample (``a``, ``fake`` detached).
    ``share``: when ``a`` holds only some samples of a batch of B (one rank's part), ``(B, the
    indices of these samples)``: the draws are made for all B, and these samples' terms of the
    mean are returned (summed over the ranks, the batch's penalty)."""
    j, n = fake.shape[:2]
    batch, mine = (n, None) if share is None else share
    pick = torch.randint(0, j, (batch,), generator=generator)
    eps = torch.rand(batch, generator=generator)
    if mine is not None:
        pick, eps = pick[mine], eps[mine]
    pick = pick.to(a.device)
    eps = eps.to(device=a.device, dtype=a.dtype).view(-1, *([1] * (a.dim() - 1)))
    x = (eps * a + (1 - eps) * fake[pick, torch.arange(n, device=a.device)]).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().sum() / batch


def _critic_scale(a: torch.Tensor, batch: int) -> torch.Tensor:
    """The real batch's RMS, the common scale of what D sees (see the module docstring), over the
    ``batch`` samples of which ``a`` holds this rank's (a sum over the ranks, differentiable)."""
    return (distributed.total(a.square().sum()) / (batch * math.prod(a.shape[1:]))).add(1e-12).sqrt()


# --------------------------------------------------------------------------------------------
# The step


class ComplexStep:
    """The step function of Eq. 9 for :func:`veilnet.training.fit`: ``n_critic`` updates of D,
    then one of the network (see the module docstring). Draws θ, the counterparts, the gradient
    penalty's points and the augmentation from ``generator`` (all in the checkpoint)."""

    def __init__(
        self,
        net: ComplexNet,
        critic: Discriminator,
        optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        split: ImageSplit,
        config: ComplexTrainConfig,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.net, self.critic, self.optimizer, self.d_optimizer = net, critic, optimizer, d_optimizer
        self.split, self.config, self.generator, self.device = split, config, generator, device
        self.angles = decoy_angles(config.k)
        self.world = distributed.current()
        self.steps_per_epoch = len(_cuts(len(split), config.batch_size))
        self.lr = config.lr

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's batches: index tensors cutting one random permutation of the split, none of
        one sample (a lone last sample joins the batch before it: it needs a counterpart)."""
        order = torch.randperm(len(self.split), generator=self.generator)
        return [order[start:stop] for start, stop in _cuts(len(self.split), self.config.batch_size)]

    def __call__(self, idx: torch.Tensor, info: StepInfo) -> dict[str, float]:
        config, net, critic, gen = self.config, self.net, self.critic, self.generator
        net.train()
        n = len(idx)
        images = metrics.as_float(self.split.images[idx])
        if config.augment:
            images = augment(images, gen, config.crop_padding)
        theta, index = device_secrets(n, gen)  # Eq. 2 for the batch: θ, then I′ ≠ I (simulate_device's draws)
        per_sample = config.decoys == "one"
        delta = self.angles[torch.randint(0, len(self.angles), (n,), generator=gen)] if per_sample else self.angles

        # This rank's samples (all of them in one process) and their counterparts, encoded once each (Eq. 1).
        mine = torch.arange(n)[self.world.part(n)]
        assert index is not None  # every batch holds at least 2 samples (_cuts)
        encoded, where = torch.cat([mine, index[mine]]).unique(return_inverse=True)
        features = net.encoder(images[encoded].to(self.device))
        a, b = features[where[: len(mine)]], features[where[len(mine) :]]
        theta = theta[mine].to(device=a.device, dtype=a.dtype)
        x = cl.encode(a, b, theta)  # Eq. 2, b = g(I′)
        y = self.split.labels[idx[mine]].to(self.device)
        if per_sample:
            delta = delta[mine]

        # D: n_critic updates of max_D L(g, D) (Eq. 8) with the gradient penalty.
        critic.requires_grad_(True)
        scale = _critic_scale(a.detach(), n)
        real, fake = a.detach() / scale, decoys(a.detach(), b.detach(), delta, per_sample=per_sample) / scale
        for _ in range(config.n_critic):
            w = wasserstein(critic, real, fake, n)
            gp = gradient_penalty(critic, real, fake, gen, (n, mine))
            d_loss = -w + config.gp_weight * gp
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            distributed.sum_gradients(critic.parameters())
            self.d_optimizer.step()

        # g, Φ, d: L_task + λ·L (Eq. 9) with D fixed.
        critic.requires_grad_(False)
        self.lr = learning_rate(config, info.epoch * self.steps_per_epoch + info.index, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        logits = net.decode(net.process(x), theta)  # Φ, Eq. 3
        task = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing, reduction="sum") / n
        scale = _critic_scale(a, n)
        adversarial = wasserstein(critic, a / scale, decoys(a, b, delta, per_sample=per_sample) / scale, n)
        loss = task + config.adversarial_weight * adversarial if config.adversarial_weight else task
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.sum_gradients(net.parameters())
        if config.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        self.optimizer.step()
        critic.requires_grad_(True)
        # Each term above is this rank's share of the batch's mean; as a mean over its own samples
        # (weighted by their number), the epoch's average over the ranks is the batch's.
        share = n / max(len(mine), 1)
        return {
            "task_loss": task.item() * share,
            "adversarial_loss": adversarial.item() * share,
            "d_loss": d_loss.item() * share,
            "gradient_penalty": gp.item() * share,
            "wasserstein": w.item() * share,
            "train_accuracy": (logits.argmax(1) == y).sum().item() / max(len(mine), 1),
            "n": len(mine),
        }


def _cuts(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch boundaries over ``n`` samples, every batch of at least 2 (see :meth:`ComplexStep.batches`)."""
    cuts = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(cuts) > 1 and cuts[-1][1] - cuts[-1][0] == 1:
        cuts[-2:] = [(cuts[-2][0], n)]
    return cuts


# --------------------------------------------------------------------------------------------
# Entry points


def train_complex(
    net: ComplexNet,
    split: ImageSplit,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    config: ComplexTrainConfig,
    test_split: ImageSplit | None = None,
    resume: bool = False,
    force: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> ComplexTrainResult:
    """Train ``net`` on ``split`` with the joint objective of Eq. 9 (task loss + λ·WGAN loss of
    Eq. 8 against a :class:`Discriminator`), in place.

    With ``out_dir``: a checkpoint per epoch and ``metrics.json`` there (:func:`veilnet.training.fit`),
    ``resume=True`` continues an interrupted run exactly (same config, architecture and data, else
    a :class:`ConfigError`), an existing run is an error unless ``force``; at the end the network
    is saved with :func:`veilnet.models.save` (``model.safetensors`` + card with the data spec, the
    input shape and the metrics) and D beside it (``discriminator.safetensors``, its shape in the
    card's ``extra``). Without ``out_dir`` it trains in memory (``model_path`` None).
    ``test_split`` adds ``test_accuracy`` (:func:`evaluate_complex`, seed ``config.seed``) to
    every epoch's record. Only a :class:`ComplexNet` is accepted: the real baselines
    (``split-*``) train with :func:`veilnet.training.train`. All checks run before any step.
    """
    if not isinstance(net, ComplexNet):
        name = (getattr(net, "veilnet_arch", None) or {}).get("name", type(net).__name__)
        raise ConfigError(
            f"train_complex trains a complex-valued network (complex-*), not {name}; train real baselines with veilnet.training.train (`veilnet train`)"
        )
    if not isinstance(config, ComplexTrainConfig):
        raise ConfigError(f"config must be a ComplexTrainConfig, got {type(config).__name__}")
    if len(split) < 2:
        raise ConfigError(
            f"complex training needs at least 2 training images (each sample's counterpart is another image), {split.spec or 'the split'} has {len(split)}"
        )
    if test_split is not None and len(test_split) < 2:
        raise ConfigError(f"the test split needs at least 2 images (each sample's counterpart is another image), got {len(test_split)}")
    if out_dir is not None and not isinstance(getattr(net, "veilnet_arch", None), dict):
        raise ModelFormatError(
            "cannot save a ComplexNet that was not built by veilnet.models.create (no architecture record); build it with create or train it in memory"
        )
    device = resolve_device(device)
    if out_dir is not None:
        prepare_run(out_dir, resume=resume, force=force, exists=(CHECKPOINT, f"{DIR_STEM}.safetensors"), mkdir=False)
    elif resume:
        raise ConfigError("resume needs an output folder holding a checkpoint")
    models.check_input(net, split.image_shape, data=split.spec or "the training data")
    if test_split is not None:
        models.check_input(net, test_split.image_shape, data=test_split.spec or "the test data")

    net = net.to(device)
    feature_shape = _feature_shape(net, split.image_shape, device)
    torch.manual_seed(config.seed)  # D's initial weights and dropout depend on the seed only
    critic = Discriminator(feature_shape, config.d_channels).to(device)
    if distributed.current().size > 1:
        torch.manual_seed(distributed.rank_seed(config.seed))  # each rank's own dropout
    optimizer = make_optimizer(net, config)
    d_optimizer = torch.optim.Adam(critic.parameters(), lr=config.d_lr, betas=D_BETAS)
    generator = torch.Generator().manual_seed(config.seed)
    step = ComplexStep(net, critic, optimizer, d_optimizer, split, config, generator, device)

    def evaluate(epoch: int) -> dict[str, Any]:
        record: dict[str, Any] = {"lr": step.lr}
        if test_split is not None:
            record["test_accuracy"] = evaluate_complex(net, test_split, seed=config.seed, device=device)
        return record

    identity = {
        "train": dataclasses.asdict(config),
        "model": getattr(net, "veilnet_arch", None),
        "data": {"spec": split.spec, "n": len(split), "shape": list(split.image_shape)},
        "objective": "complex-eq9",
    }
    state = {"model": net, "discriminator": critic, "optimizer": optimizer, "d_optimizer": d_optimizer, "generator": generator}
    history = fit(
        step,
        step.batches,
        epochs=config.epochs,
        state=state,
        out_dir=out_dir,
        config=identity,
        resume=resume,
        force=force,
        evaluate=evaluate,
        on_epoch_end=on_epoch_end,
        progress=progress,
        desc="complex training",
    )
    net.eval()
    test_acc = history[-1].get("test_accuracy") if history else None
    seconds = sum(r["seconds"] for r in history)
    path = None
    if out_dir is not None:
        card_metrics = {
            "test_accuracy": test_acc,
            "test_protocol": f"fresh θ ~ U[0, 2π) and a counterpart from another test image per sample, seed {config.seed}",
            "epochs": config.epochs,
            "train_seconds": seconds,
            "train_config": dataclasses.asdict(config),
        }
        extra = {"discriminator": {"file": DISCRIMINATOR_FILE, "in_shape": list(feature_shape), "channels": config.d_channels}}

        def save_both() -> str:
            from safetensors.torch import save

            from veilnet.paths import write_bytes

            saved = str(models.save(net, out_dir, data=split.spec or None, metrics=card_metrics, extra=extra, input_shape=split.image_shape, force=True))
            write_bytes(Path(out_dir) / DISCRIMINATOR_FILE, save({k: v.detach().cpu().contiguous() for k, v in critic.state_dict().items()}))
            return saved

        path = distributed.from_main(save_both)  # rank 0 alone writes
    return ComplexTrainResult(model_path=path, epochs=config.epochs, test_accuracy=test_acc, train_seconds=seconds, history=history)


@torch.no_grad()
def evaluate_complex(
    net: ComplexNet,
    split: ImageSplit,
    *,
    seed: int = 0,
    counterparts: torch.Tensor | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> float:
    """Accuracy of ``net`` on ``split`` as the device/server protocol runs it: each sample gets a
    fresh angle θ ~ U[0, 2π) and a fooling counterpart b = g(I′) from *another* image I′ of the
    split (never itself), ŷ = d(Re[Φ(e^{iθ}(a + b·i))·e^{−iθ}]) (Eq. 2–3), in eval mode.

    θ and the counterparts are drawn from a generator seeded with ``seed`` for the whole split
    before batching, so the result is reproducible and does not depend on ``batch_size``.
    ``counterparts`` (optional, ``N`` indices into ``split`` with ``counterparts[i] ≠ i``) fixes
    the counterparts instead (θ still from ``seed``). Each batch runs the encoder on its
    counterparts' images too (eval mode: a feature does not depend on its batch).
    """
    if not isinstance(net, ComplexNet):
        name = (getattr(net, "veilnet_arch", None) or {}).get("name", type(net).__name__)
        raise ConfigError(
            f"evaluate_complex measures a complex-valued network (complex-*), not {name}; evaluate real models with veilnet.training.evaluate (`veilnet eval`)"
        )
    check_int("seed", seed)
    check_int("batch_size", batch_size, minimum=1)
    n = len(split)
    if n < 2:
        raise ConfigError(f"evaluation needs at least 2 images (each sample's counterpart is another image), got {n}")
    device = resolve_device(device)
    theta_all, drawn = device_secrets(n, torch.Generator().manual_seed(seed))
    if counterparts is None:
        counterparts = drawn
    else:
        counterparts = torch.as_tensor(counterparts)
        if counterparts.shape != (n,) or counterparts.dtype not in (torch.int64, torch.int32):
            raise ShapeError(f"counterparts must be {n} integer indices into the split, got {counterparts.dtype} of shape {tuple(counterparts.shape)}")
        counterparts = counterparts.long()
        if bool(((counterparts < 0) | (counterparts >= n)).any()):
            raise ShapeError(f"counterparts must index the split's {n} images")
        if bool((counterparts == torch.arange(n)).any()):
            raise ConfigError("a sample cannot be its own fooling counterpart (counterparts[i] == i)")
    correct = 0
    with metrics.eval_mode(net):
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            x = metrics.as_float(split.images[idx]).to(device)
            x_other = metrics.as_float(split.images[counterparts[idx]]).to(device)
            theta = theta_all[idx].float().to(device)
            logits = net.decode(net.process(net.encode(x, theta, counterpart=net.encoder(x_other))), theta)
            correct += int((logits.argmax(1).cpu() == split.labels[idx]).sum())
    return correct / n


def load_discriminator(model_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Discriminator:
    """The :class:`Discriminator` :func:`train_complex` saved beside a model in ``model_dir``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = models.card(model_dir).get("extra", {}).get("discriminator")
    if not isinstance(info, dict) or not isinstance(info.get("in_shape"), list) or not isinstance(info.get("channels"), int):
        raise ModelFormatError(f"{model_dir}: the model card records no discriminator (not trained by train_complex)")
    path = Path(model_dir) / str(info.get("file", DISCRIMINATOR_FILE))
    critic = Discriminator(info["in_shape"], info["channels"])
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a readable safetensors file ({str(exc)[:160]})") from None
    models.load_strict(critic, state, path)
    return critic.to(device).eval()


def _feature_shape(net: ComplexNet, image_shape: tuple[int, int, int], device: torch.device) -> tuple[int, int, int]:
    """The shape ``K×h×w`` of the encoder's feature a for one image (eval mode, no RNG drawn)."""
    with metrics.eval_mode(net), torch.no_grad():
        a = net.encoder(torch.zeros(1, *image_shape, device=device))
    if a.dim() != 4:
        raise ShapeError(f"the discriminator takes feature maps K×h×w, but this encoder outputs shape {tuple(a.shape[1:])}")
    return int(a.shape[1]), int(a.shape[2]), int(a.shape[3])


__all__ = [
    "DISCRIMINATOR_FILE",
    "ComplexEvaluation",
    "ComplexStep",
    "ComplexTrainConfig",
    "ComplexTrainResult",
    "Discriminator",
    "decoy_angles",
    "decoys",
    "derangement",
    "device_secrets",
    "evaluate_complex",
    "gradient_penalty",
    "load_discriminator",
    "simulate_device",
    "train_complex",
    "wasserstein",
]
