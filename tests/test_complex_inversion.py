"""Feature inversion of a complex-valued network and its real baselines
(veilnet.complex.attacks.inversion; Xiang et al., ICLR 2020, section 4.3): inversion attacks 1
and 2, the baselines' features, the attacker's simulation of the device and the phase-invariant
inversion, each measured against the trivial attack (the attacker's mean image).

Attacker images: digits (16×16) train split; victim images: digits test split (disjoint).
"""

from __future__ import annotations

import math

import pytest
import torch

from test_attacks_inversion import CONFIG, split_net, splits  # noqa: F401  (fixtures: the digits, an untrained split-lenet)
from veilnet import models
from veilnet.attacks import inversion as inv
from veilnet.complex import layers as cl
from veilnet.complex.attacks import inversion as cinv


@pytest.fixture(scope="module")
def complex_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return models.create("complex-lenet", num_classes=10, image_size=16).eval()


@pytest.fixture(scope="module")
def encoded(complex_net, splits) -> tuple[torch.Tensor, torch.Tensor]:
    """The victim's x = e^{iθ}(a + b·i), b the feature of the previous victim image."""
    _, victim = splits
    theta = torch.rand(len(victim), generator=torch.Generator().manual_seed(7)) * (2 * math.pi)
    with torch.no_grad():
        a = complex_net.encoder(victim)
        return complex_net.encode(victim, theta, a.roll(1, 0)), theta


@pytest.fixture(scope="module")
def true_angle_inverter(complex_net, splits) -> torch.nn.Module:
    """dec trained on the attacker's own (g(I), I): what inversion attack 1 trains."""
    return inv.train_inverter(complex_net.encoder, splits[0], **CONFIG.to_dict(), progress=False)


def test_inverter_beats_the_mean_image_on_an_unprotected_network(split_net, splits, tmp_path) -> None:
    attacker, victim = splits
    result, rec = cinv.split_inversion(split_net, attacker, victim, config=CONFIG, attacker_split="digits:train", victim_split="digits:test")
    assert rec.shape == victim.shape and 0 <= rec.min() and rec.max() <= 1
    assert result.beats_baseline
    assert result.metrics.error < 0.75 * result.baseline.error
    assert result.metrics.ssim > result.baseline.ssim + 0.3
    assert (result.attacker_split, result.victim_split, result.n_attacker, result.n) == ("digits:train", "digits:test", 480, 96)
    assert inv.InversionResult.load(result.save(tmp_path / "r.json")) == result


def test_noisy_baseline_victim_noise_is_reproducible(splits) -> None:
    attacker, victim = splits
    torch.manual_seed(0)
    net = models.create("split-lenet", num_classes=10, image_size=16, noise=1.0).eval()
    config = inv.InversionConfig(epochs=1, batch_size=64, base_width=4)
    r1, rec1 = cinv.split_inversion(net, attacker[:64], victim[:16], name="noisy", config=config, victim_seed=3)
    r2, rec2 = cinv.split_inversion(net, attacker[:64], victim[:16], name="noisy", config=config, victim_seed=3)
    assert torch.equal(rec1, rec2) and r1 == r2 and r1.victim_seed == 3
    assert net.noise.generator is None  # the victim's generator does not stay on the model


def test_inversion_attack_1_with_the_true_angle_and_a_wrong_one(complex_net, splits, encoded, true_angle_inverter) -> None:
    """dec(a*) with θ̂ = θ is the attack's upper bound (a* = a); θ̂ = θ + π/2 gives
    a* = Re[(a + b·i)·e^{−iπ/2}] = b, the counterpart's feature: the reconstruction is then the
    previous victim image (the counterpart), not the victim's own."""
    attacker, victim = splits
    x, theta = encoded
    dec = true_angle_inverter
    right, rec = cinv.inversion_attack_1(complex_net, attacker, victim, x, theta, inverter=dec, config=CONFIG)
    assert right.attack == "dec(a*)" and right.beats_baseline
    assert right.metrics.ssim > right.baseline.ssim + 0.3
    wrong, rec_wrong = cinv.inversion_attack_1(complex_net, attacker, victim, x, theta + math.pi / 2, inverter=dec, config=CONFIG)
    assert not wrong.beats_baseline
    assert inv.reconstruction_metrics(rec_wrong, victim.roll(1, 0)).error == pytest.approx(right.metrics.error, rel=0.05)


def test_inversion_attack_1_can_train_on_estimated_angles(complex_net, splits, encoded) -> None:
    attacker, victim = splits
    x, theta = encoded
    seen = []

    def estimate(x_own: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x_own.shape))
        return torch.zeros(x_own.shape[0])

    config = inv.InversionConfig(epochs=1, batch_size=64, base_width=4)
    result, _ = cinv.inversion_attack_1(complex_net, attacker[:128], victim, x, theta, config=config, estimate_angle=estimate)
    assert seen and all(s[1] == 2 for s in seen)  # the attacker's own pair tensors x′
    assert math.isfinite(result.metrics.error)


def test_inversion_attack_2_on_an_untrained_complex_network(complex_net, splits, encoded, true_angle_inverter) -> None:
    """dec(x): measured, not required to fail — an untrained complex network was not trained
    against it. It must do worse than knowing θ (dec(a*) with the true angle)."""
    attacker, victim = splits
    x, theta = encoded
    result, rec = cinv.inversion_attack_2(complex_net, attacker, victim, x, config=CONFIG)
    assert result.attack == "dec(x)" and rec.shape == victim.shape
    upper, _ = cinv.inversion_attack_1(complex_net, attacker, victim, x, theta, inverter=true_angle_inverter, config=CONFIG)
    assert result.metrics.error > upper.metrics.error


def test_complex_features_simulate_the_device(complex_net, splits) -> None:
    attacker, _ = splits
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = cinv.complex_features(complex_net, generator=gen)(attacker[:8])
        a = complex_net.encoder(attacker[:8])
    assert x.shape == (8, 2, *a.shape[1:])
    # |x|² = a² + b² with b another image's feature: never the sample's own (b ≠ a)
    b2 = x.square().sum(1) - a.square()
    assert not torch.allclose(b2, a.square(), atol=1e-5)
    assert torch.allclose(cinv.rotate_back(x, torch.zeros(8)), x[:, 0])


def test_phase_invariant_features_do_not_depend_on_the_angle(complex_net, splits) -> None:
    attacker, _ = splits
    with torch.no_grad():
        a = complex_net.encoder(attacker[:6])
    b = a.roll(1, 0)
    theta = torch.rand(6, generator=torch.Generator().manual_seed(3)) * (2 * math.pi)
    p0 = cinv.phase_invariant(cl.encode(a, b, torch.zeros(6)))
    p1 = cinv.phase_invariant(cl.encode(a, b, theta))
    k = a.shape[1]
    assert p0.shape == (6, 3 * k - 2, *a.shape[2:])
    assert torch.allclose(p0, p1, atol=1e-4)
    # ... but they do depend on the features: another counterpart changes them
    assert not torch.allclose(p0, cinv.phase_invariant(cl.encode(a, b.roll(1, 0), theta)), atol=1e-3)


def test_phase_invariant_inversion_beats_the_mean_image_on_an_untrained_network(complex_net, splits, encoded) -> None:
    """An untrained complex network was not trained against it, so the invariants still carry
    the image: the attack must beat the attacker's mean image (it can fail: random invariants
    would not)."""
    attacker, victim = splits
    x, _ = encoded
    result, rec = cinv.phase_invariant_inversion(complex_net, attacker, victim, x, config=CONFIG)
    assert result.attack == "phase-invariant" and rec.shape == victim.shape
    assert result.beats_baseline
