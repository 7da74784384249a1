"""The complex method's rows of the privacy benchmark (veilnet.complex.privacy): each row's device,
server and device again compute the network's own forward; the noise and the complex secrets
follow the device's generator; the complex row's own attacks are real attacks (no true-θ bound);
bad knob values are refused. Digits 16×16, reduced to the benchmark's 2-class task."""

from __future__ import annotations

import math

import pytest
import torch

from veilnet import data, plugins
from veilnet.attacks.inversion import InversionResult, evaluate_reconstruction
from veilnet.complex.models import ComplexNet, SplitNet
from veilnet.complex.privacy import DEFENCES
from veilnet.complex.training import simulate_device
from veilnet.data import balanced_head
from veilnet.errors import ConfigError
from veilnet.privacy.defences import AttackContext, Budget, Setup
from veilnet.privacy.task import privacy_task

BUDGET = Budget(
    train_images=32,
    epochs=1,
    batch_size=32,
    test_images=16,
    victim_images=16,
    attacker_images=32,
    attack_epochs=1,
    unet_width=4,
    optimisation_steps=2,
)


@pytest.fixture(scope="module")
def splits() -> tuple:
    train, test = data.load("digits:size=16", "train"), data.load("digits:size=16", "test")
    task = privacy_task(train.classes)
    return task.apply(balanced_head(train, 32)), task.apply(balanced_head(test, 16))


@pytest.fixture(scope="module")
def setup() -> Setup:
    return Setup(BUDGET, (3, 16, 16), 2, torch.device("cpu"))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_defences_are_the_complex_methods(setup) -> None:
    assert plugins.load_defences(list(DEFENCES)) == DEFENCES
    assert [d.name for d in DEFENCES.values() if d.reference_row] == ["none"]
    assert {d.method for d in DEFENCES.values()} == {"complex"}
    assert DEFENCES["noise"].settings() == [0.2, 0.5, 1.0] and DEFENCES["layers"].settings() == [None]


@pytest.mark.parametrize("name", ["none", "layers"])
def test_real_rows_compute_the_split_network_exactly(name, setup, splits) -> None:
    row = DEFENCES[name].build(None, setup).eval()
    net = row.net
    assert isinstance(net, SplitNet) and row.encoder is net.encoder
    images = splits[1].float_images()
    sent, state = row.send(images, _gen(0))
    assert torch.equal(sent, net.encoder(images).detach())
    with torch.no_grad():
        assert torch.equal(row.receive(row.serve(sent), state), net(images))


def test_noise_follows_the_generator_and_the_encoder_is_noise_free(setup, splits) -> None:
    row = DEFENCES["noise"].build(0.5, setup).eval()
    images = splits[1].float_images()
    sent = row.send(images, _gen(3))[0]
    assert torch.equal(sent, row.send(images, _gen(3))[0])
    assert not torch.allclose(sent, row.send(images, _gen(4))[0])
    clean = row.encoder(images).detach()
    assert not torch.allclose(sent, clean)
    row.net.noise.generator = _gen(3)
    with torch.no_grad():
        assert torch.equal(row.receive(row.serve(sent), None), row.net(images))


def test_complex_row_decodes_whatever_theta_and_its_attacks_are_real(setup, splits) -> None:
    train, victim = splits
    row = DEFENCES["complex"].build(0.1, setup)
    assert isinstance(row.net, ComplexNet) and row.encoder is None
    figures = row.fit(train)
    assert set(figures) == {"train_accuracy", "wasserstein"} and all(math.isfinite(v) for v in figures.values())
    row.eval()
    images = victim.float_images()
    x, theta = row.send(images, _gen(5))
    logits = row.receive(row.serve(x), theta)
    x_again, theta_again, b = simulate_device(row.net.encoder(images).detach(), _gen(5))  # the same draws: θ, then I′
    assert torch.equal(x, x_again) and torch.equal(theta, theta_again)
    with torch.no_grad():  # Eq. 4: another θ with the same counterpart gives the same logits
        for other in (torch.zeros(len(images)), theta + 1.234):
            torch.testing.assert_close(logits, row.net(images, other, b), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(theta, row.send(images, _gen(6))[1])
    torch.testing.assert_close(row.observe(images, _gen(5)), x)

    attacker = balanced_head(train, BUDGET.attacker_images)
    own = attacker.float_images()

    def score(name, described, reconstructions, extra=None, config=None):  # as veilnet.privacy.bench.run_row's
        return evaluate_reconstruction(name, described, reconstructions, images, own, extra=extra, config=config)

    context = AttackContext(attacker, victim, x, BUDGET, torch.device("cpu"), score)
    results = row.attacks(context)
    assert all(isinstance(r, InversionResult) and r.n == len(images) for r in results)
    assert [r.attack for r in results] == ["dec(a*) paper θ̂", "dec(a*) regression θ̂", "phase-invariant", "optimisation"]
    assert all(0 <= r.extra["angle_error"] <= math.pi for r in results[:2])


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("none", 0.5, "has no knob"),
        ("layers", 1.0, "has no knob"),
        ("noise", 0.0, "noise level γ"),
        ("noise", -1.0, "noise level γ"),
        ("noise", True, "noise level γ"),
        ("noise", None, "noise level γ"),
        ("complex", -0.1, "adversarial weight λ"),
        ("complex", math.nan, "adversarial weight λ"),
    ],
)
def test_bad_knob_values_are_refused(name, value, message, setup) -> None:
    with pytest.raises(ConfigError, match=message):
        DEFENCES[name].build(value, setup)
