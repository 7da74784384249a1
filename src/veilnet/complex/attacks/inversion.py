"""Feature inversion of a complex-valued network — Xiang et al., "Interpretable Complex-Valued
Neural Networks for Privacy Protection" (ICLR 2020), section 4.3 ("Feature inversion attacks"),
section 5.1 ("Attacks"), Tables 1–2 and Fig. 2.

Threat model (the paper's section 3): the adversary is the server or an eavesdropper. It sees
``x = e^{iθ}(a + b·i)`` (Eq. 2) for each of the victim's images, knows the released encoder g
(architecture and weights), and trains its attack models on *its own* images, disjoint from the
victim's. It never sees θ, the counterpart ``b`` or ``I′``.

Every attack here trains the zoo's U-Net on the attacker's own (feature, image) pairs with the
method-agnostic inverter of :mod:`veilnet.attacks.inversion` (:func:`~veilnet.attacks.inversion.train_inverter`,
:func:`~veilnet.attacks.inversion.reconstruct`) and scores the victim's reconstructions with
:func:`~veilnet.attacks.inversion.evaluate_reconstruction`, beside the attacker's mean image:

* **inversion attack 1** (:func:`inversion_attack_1`): ``Î = dec(a*)``, ``a* = Re[x·e^{−iθ̂}]``
  with an angle estimate θ̂ (the angle-recovery attacks of :mod:`veilnet.complex.attacks.angle`,
  or the true θ for an upper bound). The inverter is trained on the attacker's own ``(g(I), I)`` —
  the attacker runs the public encoder, so its own features need no angle estimate.
* **inversion attack 2** (:func:`inversion_attack_2`): ``Î = dec(x)`` directly; the attacker
  simulates the device on its own images (:func:`complex_features`: θ ~ U[0, 2π) and a
  counterpart from another of its images, fresh draws every epoch) and trains on ``(x, I)``.
* the same inverter against the real baselines' features (:func:`split_inversion`:
  :meth:`SplitNet.features <veilnet.complex.models.SplitNet.features>` of the original network,
  the one with additional layers and the noisy ones γ).
* the stronger **phase-invariant inversion** (:func:`phase_invariant_inversion`, not in the
  paper): ``Î = dec(P(x))`` from rotation-invariant functions of x (|x_k|, x_k·conj(x_{k+1})),
  no angle needed.

The training-free optimisation inversion through g works on any encoder and lives in
:func:`veilnet.attacks.inversion.optimisation_inversion` (give it ``a* = rotate_back(x, θ̂)``).
Each attack returns an :class:`~veilnet.attacks.inversion.InversionResult` and the reconstructions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from veilnet.attacks.inversion import Features, InversionConfig, InversionResult, evaluate_reconstruction, reconstruct, train_inverter
from veilnet.complex import layers as cl
from veilnet.complex.models import batched
from veilnet.complex.training import simulate_device
from veilnet.errors import ShapeError
from veilnet.metrics import as_float

__all__ = [
    "complex_features",
    "inversion_attack_1",
    "inversion_attack_2",
    "phase_invariant",
    "phase_invariant_inversion",
    "rotate_back",
    "split_inversion",
]


def rotate_back(x: torch.Tensor, theta_hat: float | torch.Tensor) -> torch.Tensor:
    """``a* = Re[x·e^{−iθ̂}]`` (section 4.3): the feature the adversary recovers from the pair
    tensor ``x`` (``N×2×…``) with its angle estimate θ̂ (a number or one per sample)."""
    return cl.decode(x, theta_hat)


def complex_features(net: nn.Module, *, generator: torch.Generator) -> Features:
    """The attacker's simulation of the device (Eq. 1–2) on its own images: ``images → x =
    e^{iθ}(g(I) + g(I′)·i)`` with θ ~ U[0, 2π) per sample and ``I′`` another image of the same
    batch (a random derangement), drawn from ``generator`` by
    :func:`veilnet.complex.training.simulate_device`. A batch of one image gets b = 0."""

    def features(images: torch.Tensor) -> torch.Tensor:
        return simulate_device(net.encoder(images), generator)[0]

    return features


def _check_split(attacker_images: torch.Tensor, victim_images: torch.Tensor) -> None:
    if attacker_images.ndim != 4 or victim_images.ndim != 4 or attacker_images.shape[1:] != victim_images.shape[1:]:
        raise ShapeError(f"attacker and victim images must be N×C×H×W of one shape, got {tuple(attacker_images.shape)} and {tuple(victim_images.shape)}")


def _inverter_kwargs(config: InversionConfig, device: str | torch.device, progress: bool, attack: str) -> dict[str, Any]:
    return {**config.to_dict(), "device": device, "progress": progress, "desc": f"inverter: {attack}"}


def inversion_attack_1(
    net: nn.Module,
    attacker_images: torch.Tensor,
    victim_images: torch.Tensor,
    x: torch.Tensor,
    theta_hat: torch.Tensor,
    *,
    config: InversionConfig | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    victim_seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    inverter: nn.Module | None = None,
    estimate_angle: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[InversionResult, torch.Tensor]:
    """Inversion attack 1 (section 4.3): ``Î = dec(a*)``, ``a* = Re[x·e^{−iθ̂}]``.

    ``x`` (``N×2×K×h×w``) is what the server received for ``victim_images``; ``theta_hat`` (N
    angles) the attacker's estimate of each sample's θ (from an angle-recovery attack; the true θ
    gives the attack's upper bound, since then a* = g(I) exactly). The inverter ``dec`` is trained
    on the attacker's own images, unless a trained ``inverter`` is given: on ``(g(I), I)`` — it
    runs the released encoder g — or, with ``estimate_angle`` (``x′ → θ̂``, the same angle attack
    run on the attacker's own simulated ``x′``, :func:`complex_features`), on ``(Re[x′·e^{−iθ̂}],
    I)`` as the paper's adversary does, so that dec also learns the angle attack's mistakes.
    Returns the result and Î.
    """
    config = config or InversionConfig()
    _check_split(attacker_images, victim_images)
    net.eval()
    if inverter is None:
        features_fn: Features = net.encoder
        if estimate_angle is not None:
            simulate = complex_features(net, generator=torch.Generator().manual_seed(config.seed + 1))

            def features_fn(images: torch.Tensor) -> torch.Tensor:
                x_own = simulate(images)
                return rotate_back(x_own, estimate_angle(x_own))

        inverter = train_inverter(features_fn, attacker_images, **_inverter_kwargs(config, device, progress, "dec(a*)"))
    a_star = rotate_back(x.to(torch.device(device)), torch.as_tensor(theta_hat).to(torch.device(device)))
    rec = reconstruct(inverter, a_star, device=device)
    return evaluate_reconstruction(
        "dec(a*)",
        "Re[x·e^{−iθ̂}] of a complex network",
        rec,
        victim_images,
        attacker_images,
        attacker_split=attacker_split,
        victim_split=victim_split,
        seed=config.seed,
        victim_seed=victim_seed,
        config=config.to_dict(),
    ), rec


def _inversion_of_x(
    attack: str,
    described: str,
    transform: Callable[[torch.Tensor], torch.Tensor],
    seed_offset: int,
    net: nn.Module,
    attacker_images: torch.Tensor,
    victim_images: torch.Tensor,
    x: torch.Tensor,
    *,
    config: InversionConfig | None = None,
    **kwargs: Any,
) -> tuple[InversionResult, torch.Tensor]:
    """What inversion attack 2 and the phase-invariant inversion share: ``Î = dec(T(x))``, dec
    trained on ``(T(x′), I)`` for the attacker's own images, ``x′`` from :func:`complex_features`
    (its own θ and counterparts drawn from ``config.seed + seed_offset``, fresh every epoch)."""
    config = config or InversionConfig()
    _check_split(attacker_images, victim_images)
    net.eval()
    device, progress = kwargs.pop("device", "cpu"), kwargs.pop("progress", False)
    simulate = complex_features(net, generator=torch.Generator().manual_seed(config.seed + seed_offset))
    inverter = train_inverter(lambda images: transform(simulate(images)), attacker_images, **_inverter_kwargs(config, device, progress, attack))
    rec = reconstruct(inverter, transform(x.to(torch.device(device))), device=device)
    return evaluate_reconstruction(attack, described, rec, victim_images, attacker_images, seed=config.seed, config=config.to_dict(), **kwargs), rec


def inversion_attack_2(
    net: nn.Module,
    attacker_images: torch.Tensor,
    victim_images: torch.Tensor,
    x: torch.Tensor,
    *,
    config: InversionConfig | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    victim_seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[InversionResult, torch.Tensor]:
    """Inversion attack 2 (section 4.3): ``Î = dec(x)`` straight from the pair tensor ``x`` the
    server received for ``victim_images``. The attacker trains ``dec`` on ``(x′, I)`` for its own
    images, ``x′`` from :func:`complex_features` (its own θ and counterparts, seeded by
    ``config.seed``, fresh every epoch). Returns the result and Î."""
    return _inversion_of_x(
        "dec(x)",
        "x = e^{iθ}(a + b·i) of a complex network",
        lambda t: t,
        1,
        net,
        attacker_images,
        victim_images,
        x,
        config=config,
        attacker_split=attacker_split,
        victim_split=victim_split,
        victim_seed=victim_seed,
        device=device,
        progress=progress,
    )


def phase_invariant(x: torch.Tensor) -> torch.Tensor:
    """Rotation-invariant functions of a pair tensor ``x`` (``N×2×K×…``), which need no angle:

        |x_k|,   Re[x_k·conj(x_{k+1})],   Im[x_k·conj(x_{k+1})]      (k = 1 … K)

    per position, for each channel k and its neighbouring channel k + 1 — unchanged by
    ``x → e^{iθ}x`` because ``e^{iθ}x_k·conj(e^{iθ}x_{k+1}) = x_k·conj(x_{k+1})``. Returns
    ``N×(3K − 2)×…`` real features. A stronger attack than the paper's (issue 11): the attacker
    inverts these directly, with no angle estimate at all."""
    cl.check_pair(x, "x", min_dim=3)
    re, im = x[:, 0], x[:, 1]
    modulus = torch.sqrt(re.square() + im.square() + 1e-12)
    # x_k·conj(x_{k+1}) = (re_k·re_{k+1} + im_k·im_{k+1}) + i(im_k·re_{k+1} − re_k·im_{k+1})
    cross_re = re[:, :-1] * re[:, 1:] + im[:, :-1] * im[:, 1:]
    cross_im = im[:, :-1] * re[:, 1:] - re[:, :-1] * im[:, 1:]
    return torch.cat((modulus, cross_re, cross_im), 1)


def phase_invariant_inversion(
    net: nn.Module,
    attacker_images: torch.Tensor,
    victim_images: torch.Tensor,
    x: torch.Tensor,
    *,
    config: InversionConfig | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    victim_seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[InversionResult, torch.Tensor]:
    """Phase-invariant inversion (not in the paper): ``Î = dec(P(x))`` with ``P`` =
    :func:`phase_invariant`, which does not depend on θ. The attacker trains ``dec`` on
    ``(P(x′), I)`` for its own images, ``x′`` from :func:`complex_features` (its own θ and
    counterparts, fresh every epoch — θ drops out, the counterpart stays as the noise the
    device adds). Returns the result and Î."""
    return _inversion_of_x(
        "phase-invariant",
        "|x_k|, x_k·conj(x_{k+1}) of a complex network (no angle needed)",
        phase_invariant,
        2,
        net,
        attacker_images,
        victim_images,
        x,
        config=config,
        attacker_split=attacker_split,
        victim_split=victim_split,
        victim_seed=victim_seed,
        device=device,
        progress=progress,
    )


def split_inversion(
    net: nn.Module,
    attacker_images: torch.Tensor,
    victim_images: torch.Tensor,
    *,
    name: str = "original",
    config: InversionConfig | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    victim_seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[InversionResult, torch.Tensor]:
    """The same inverter against a real baseline (section 5.1): ``Î = dec(net.features(I))`` for
    a :class:`~veilnet.complex.models.SplitNet` — the original network's encoder output, the
    network with additional layers, or the noisy network's ``a + γ·ε`` (its noise is drawn from
    ``net.noise.generator``, seeded with ``victim_seed`` for the victim when given, and the
    global RNG for the attacker's pairs). Trained on the attacker's ``(features(I), I)``."""
    config = config or InversionConfig()
    _check_split(attacker_images, victim_images)
    net.eval()
    dev = torch.device(device)
    inverter = train_inverter(net.features, attacker_images, **_inverter_kwargs(config, device, progress, name))
    noise = getattr(net, "noise", None)
    if victim_seed is not None and hasattr(noise, "generator"):
        noise.generator = torch.Generator(device=dev).manual_seed(victim_seed)
    try:
        victim_features = batched(lambda batch: net.features(as_float(batch).to(dev)), victim_images)
    finally:
        if hasattr(noise, "generator"):
            noise.generator = None
    rec = reconstruct(inverter, victim_features, device=device)
    return evaluate_reconstruction(
        name,
        "SplitNet.features (the encoder's output the server receives)",
        rec,
        victim_images,
        attacker_images,
        attacker_split=attacker_split,
        victim_split=victim_split,
        seed=config.seed,
        victim_seed=victim_seed,
        config=config.to_dict(),
    ), rec
