"""The split-inference defences of the privacy benchmark (veilnet.splitdefences): the distance
correlation NoPeek penalises, dropout's mask, Shredder's learned noise, the knobs' refusals."""

from __future__ import annotations

import math

import pytest
import torch

from veilnet import data, metrics, plugins
from veilnet.errors import ConfigError
from veilnet.privacy.defences import Budget, Setup
from veilnet.privacy.task import privacy_task
from veilnet.splitdefences.layers import FeatureDropout, distance_correlation
from veilnet.splitdefences.plugin import METHOD


@pytest.fixture(scope="module")
def defences() -> dict:
    plugins.register(METHOD)  # until the entry point is installed
    return plugins.load_defences(["dropout", "nopeek", "shredder"])


def _setup(**budget: object) -> Setup:
    return Setup(Budget(**budget), (3, 16, 16), 2, torch.device("cpu"))


def _dcor_by_definition(x: torch.Tensor, y: torch.Tensor) -> float:
    """Székely et al.'s sample dCor, element by element."""
    n = x.shape[0]

    def centred(z: torch.Tensor) -> list[list[float]]:
        d = [[float((z[j] - z[k]).norm()) for k in range(n)] for j in range(n)]
        row = [sum(d[j]) / n for j in range(n)]
        col = [sum(d[j][k] for j in range(n)) / n for k in range(n)]
        total = sum(row) / n
        return [[d[j][k] - row[j] - col[k] + total for k in range(n)] for j in range(n)]

    a, b = centred(x.flatten(1)), centred(y.flatten(1))
    cov = lambda p, q: sum(p[j][k] * q[j][k] for j in range(n) for k in range(n)) / n**2  # noqa: E731
    return math.sqrt(cov(a, b) / math.sqrt(cov(a, a) * cov(b, b)))


def test_distance_correlation_matches_its_definition_and_known_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, 2, 2, generator=g, dtype=torch.float64)
    y = x.flatten(1)[:, :5] ** 2 + 0.3 * torch.randn(9, 5, generator=g, dtype=torch.float64)
    assert float(distance_correlation(x, y)) == pytest.approx(_dcor_by_definition(x, y), rel=1e-9)
    assert float(distance_correlation(x, x)) == pytest.approx(1.0, abs=1e-9)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert float(distance_correlation(x, -3.0 * x.flatten(1) @ q + 7.0)) == pytest.approx(1.0, abs=1e-9)
    assert float(distance_correlation(2.5 * x, 0.01 * y)) == pytest.approx(float(distance_correlation(x, y)), rel=1e-9)
    independent = float(distance_correlation(torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)))
    assert independent < 0.1
    assert float(distance_correlation(x, torch.ones(9, 4, dtype=torch.float64))) == 0.0
    # a training penalty: finite gradients on a float32 batch
    z = torch.randn(16, 8, generator=g, requires_grad=True)
    distance_correlation(torch.rand(16, 3, 4, 4, generator=g), z).backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())


def test_dropout_drops_at_its_rate_in_inference_with_the_devices_draws(defences: dict) -> None:
    layer = FeatureDropout(0.8).eval()
    ones = torch.ones(200, 8, 5, 5)
    y = layer(ones, generator=torch.Generator().manual_seed(1))
    assert float((y == 0).float().mean()) == pytest.approx(0.8, abs=0.01)
    assert torch.allclose(y[y != 0], torch.tensor(5.0))
    row = defences["dropout"].build(0.5, _setup())
    row.eval()
    images = torch.rand(4, 3, 16, 16)
    sent = [row.send(images, torch.Generator().manual_seed(s))[0] for s in (3, 3, 4)]
    assert torch.equal(sent[0], sent[1]) and not torch.equal(sent[0], sent[2])
    assert sent[0].shape == row.encoder(images).shape  # the released encoder is dropout-free
    assert torch.equal(row.encoder(images), row.encoder(images))
    assert row.receive(row.serve(sent[0]), None).shape == (4, 2)


def test_shredder_noise_grows_with_beta(defences: dict) -> None:
    """σ is trained up by β (the noise-to-signal ratio starts at 1 for both); the row sends a fresh draw per
    generator and the server's answer decodes to the task's logits. (The benchmark's training does
    not lift LeNet above chance on the two-class digits within this test's budget, so accuracy
    under the noise is the benchmark's figure, not this test's.)"""
    train = data.load("digits:size=16", "train")
    train = privacy_task(train.classes).apply(data.subset(train, 16))
    setup = _setup(train_images=160, epochs=2, batch_size=32)
    images = metrics.as_float(train.images[:8])
    ratio = {}
    for beta in (0.0, 1.0):
        row = defences["shredder"].build(beta, setup)
        ratio[beta] = row.fit(train)["noise_to_signal"]
        row.eval()
        sent = [row.send(images, torch.Generator().manual_seed(s))[0] for s in (0, 0, 1)]
        assert torch.equal(sent[0], sent[1]) and not torch.equal(sent[0], sent[2])
        assert row.receive(row.serve(sent[0]), None).shape == (8, 2)
    assert ratio[1.0] > 1.1 * ratio[0.0], ratio


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("dropout", 1.0, "dropout p must be a finite number in [0, 1), got 1.0"),
        ("dropout", -0.1, "dropout p must be a finite number in [0, 1)"),
        ("nopeek", -1.0, "nopeek alpha must be a finite number in [0, inf]"),
        ("shredder", float("nan"), "shredder beta must be a finite number"),
        ("shredder", True, "shredder beta must be a finite number"),
    ],
)
def test_knobs_refuse_bad_values(defences: dict, name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        defences[name].build(value, _setup())
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
