"""Randomised smoothing (veilnet.robust.Smoothing, Cohen, Rosenfeld and Kolter 2019): PREDICT and
CERTIFY against the closed form of a linear classifier, abstention on a tie, per-image noise
streams, ART's randomized-smoothing estimator as the oracle, L2 PGD, the noise augmentation of
training, and ``veilnet robust certify`` end to end on the digits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from torch import nn

from test_robust_attacks import _one_thread, digits  # noqa: F401  (fixtures: one thread; the digits CNN)
from veilnet import data
from veilnet.cli import main
from veilnet.errors import ConfigError
from veilnet.robust import ABSTAIN, Smoothing, attacks
from veilnet.robust.rendering import render_certification
from veilnet.robust.results import Certification
from veilnet.robust.smoothing import clopper_pearson_lower, gaussian
from veilnet.training.classifier import ClassifierStep, TrainConfig

SIGMA = 0.25


class HalfPlane(nn.Module):
    """f(x) = 1 if w·x > b else 0 on 1×2×2 images, w = (1, 1, 0, 0): under N(0, σ²I) noise,
    P(f(x + ε) = 1) = Φ((w·x − b) / (σ‖w‖)) and the smoothed classifier's exact certified radius
    is the distance to the hyperplane, |w·x − b| / ‖w‖ = σ |Φ⁻¹(p)|."""

    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    b = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w - self.b
        return torch.stack([-z, z], 1)


def _at_probability(p: float) -> torch.Tensor:
    """An image whose class-1 probability under the noise is ``p``."""
    norm_w = float(HalfPlane.w.norm())
    offset = SIGMA * norm_w * float(norm.ppf(p)) / 2  # shared by the two weighted pixels
    return torch.tensor([0.5 + offset, 0.5 + offset, 0.3, 0.7]).view(1, 2, 2)


@pytest.mark.parametrize("p", [0.7, 0.9, 0.99, 0.2])
def test_certify_against_the_closed_form(p: float) -> None:
    n, alpha = 10_000, 0.001
    cert = Smoothing(HalfPlane(), SIGMA, batch=4096).certify(_at_probability(p)[None], n0=100, n=n, alpha=alpha, seed=1)
    top = max(p, 1 - p)
    exact = SIGMA * norm.ppf(top)
    assert int(cert.labels[0]) == (1 if p > 0.5 else 0)
    radius = float(cert.radii[0])
    # the certificate is sound (never above the exact radius, but with probability α) and tight
    # up to the Clopper–Pearson slack: at least the radius of a count 4 standard deviations short
    assert radius <= exact
    short = round(n * top - 4 * math.sqrt(n * top * (1 - top)))
    assert radius >= SIGMA * norm.ppf(clopper_pearson_lower(short, n, alpha))
    assert abs(int(cert.counts[0]) / n - top) < 4 * math.sqrt(top * (1 - top) / n)


def test_tie_abstains_and_clear_cases_predict() -> None:
    smoothed = Smoothing(HalfPlane(), SIGMA, batch=500)
    images = torch.stack([_at_probability(0.5), _at_probability(0.95), _at_probability(0.05)])
    cert = smoothed.certify(images, n0=100, n=2000, alpha=0.001, seed=0)
    assert int(cert.labels[0]) == ABSTAIN and float(cert.radii[0]) == 0.0 and float(cert.p_lower[0]) < 0.5
    assert cert.labels[1:].tolist() == [1, 0] and bool((cert.radii[1:] > 0).all())
    assert smoothed.predict(images, n=2000, alpha=0.001, seed=0).tolist() == [ABSTAIN, 1, 0]


def test_clopper_pearson_lower_bound() -> None:
    """Ours against scipy's exact two-sided interval at level 1 − 2α (whose lower end is the
    one-sided 1 − α bound) and the closed form α^(1/n) for n successes in n trials."""
    for k, n in ((1, 10), (37, 100), (9_000, 10_000), (999, 1000)):
        exact = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * 0.001, method="exact").low
        assert clopper_pearson_lower(k, n, 0.001) == pytest.approx(exact, rel=1e-9)
    assert clopper_pearson_lower(500, 500, 0.01) == pytest.approx(0.01 ** (1 / 500), rel=1e-9)
    assert clopper_pearson_lower(0, 50, 0.01) == 0.0


def test_noise_streams_are_per_image_and_gaussian(digits) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = digits
    images = x[:3]
    counts = [Smoothing(model, SIGMA, batch=b).certify(images, n0=20, n=300, seed=5).counts for b in (7, 300)]
    assert torch.equal(counts[0], counts[1])
    # image i of a call draws from stream i whatever the other images: image 2 first, alone or with company
    firsts = [int(Smoothing(model, SIGMA).certify(images[rows], n0=20, n=300, seed=5).counts[0]) for rows in ([2], [2, 0], [2, 1])]
    assert len(set(firsts)) == 1
    other_seed = Smoothing(model, SIGMA).certify(images, n0=20, n=300, seed=6).counts
    assert not torch.equal(other_seed, counts[0])
    z = gaussian(torch.Generator().manual_seed(0), 4000, (3, 5), "cpu")
    assert z.shape == (4000, 3, 5)
    assert abs(z.mean().item()) < 0.02 and z.std().item() == pytest.approx(1.0, abs=0.02)
    split = torch.Generator().manual_seed(0)
    assert torch.equal(torch.cat([gaussian(split, 1000, (3, 5), "cpu"), gaussian(split, 3000, (3, 5), "cpu")]), z)


def test_certificate_matches_art(digits) -> None:  # type: ignore[no-untyped-def]
    """ART's PyTorchRandomizedSmoothing.certify on the same model and images, with the same n0
    (its sample_size), n, σ and α. ART bounds p_A with statsmodels (not installed here): its
    ``_lower_confidence_bound`` is replaced by scipy's exact Clopper–Pearson interval at level
    1 − 2α, what statsmodels' ``proportion_confint(alpha=2α, method="beta")`` computes. The noise
    draws differ (ART: numpy's), so the two estimates of p_A differ by sampling: the counts are
    independent Binomial(n, p), their proportions differ by at most 4 standard deviations of the
    difference, 4·√(2p(1 − p)/n), and the radii by σ·(Φ⁻¹(p̂ + d) − Φ⁻¹(p̂ − d)) for that d.
    Predictions must agree wherever p̂ is more than d from 1/2 (else either may abstain)."""
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    model, x, y = digits
    images = x[::2][:24]
    n0, n, alpha = 100, 1000, 0.001
    ours = Smoothing(model, SIGMA, batch=500).certify(images, n0=n0, n=n, alpha=alpha, seed=0)
    art = PyTorchRandomizedSmoothing(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, device_type="cpu", sample_size=n0, scale=SIGMA, alpha=alpha
    )
    art._lower_confidence_bound = lambda k, total: binomtest(int(k), int(total)).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    np.random.seed(0)
    art_labels, art_radii = art.certify(images.numpy(), n=n, batch_size=500)
    p_hat = ours.counts.double() / n
    d = 4 * torch.sqrt(2 * p_hat * (1 - p_hat) / n).clamp_min(1 / n)
    assert ((p_hat > 0.55) & (p_hat < 0.99)).sum() >= 4, "too few images with a radius below the cap to compare radii"
    clear = (p_hat - 0.5).abs() > d
    assert clear.float().mean() >= 0.8, "too few images away from the abstention boundary to compare"
    assert torch.equal(ours.labels[clear], torch.from_numpy(art_labels).long()[clear])
    both = clear & (ours.labels != ABSTAIN)
    assert both.sum() >= 10
    hi = torch.from_numpy(norm.ppf((p_hat + d).clamp(max=1 - 1e-12).numpy()))
    lo = torch.from_numpy(norm.ppf((p_hat - d).clamp(min=1e-12).numpy()))
    gap = (ours.radii - torch.from_numpy(art_radii)).abs()
    assert bool((gap[both] <= SIGMA * (hi - lo)[both]).all()), (gap[both], SIGMA * (hi - lo)[both])
    assert ((ours.labels == y[::2][:24]) & (ours.radii > 0)).float().mean() >= 0.5  # the model is certified somewhere


def test_l2_pgd_stays_in_the_ball_and_matches_art(digits) -> None:  # type: ignore[no-untyped-def]
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    model, x, y = digits
    eps = 1.0
    adv, success = attacks.PGD(model, eps, alpha=eps / 4, steps=10, norm="l2", seed=0)(x, y)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-4 and adv.min() >= 0 and adv.max() <= 1
    classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0))
    theirs = ProjectedGradientDescent(classifier, norm=2, eps=eps, eps_step=eps / 4, max_iter=10, num_random_init=1, verbose=False).generate(
        x.numpy(), y.numpy()
    )
    with torch.no_grad():
        theirs_success = (model(attacks.project(torch.from_numpy(theirs).float(), x, eps, "l2")).argmax(1) != y).float().mean().item()
    assert success.float().mean().item() >= theirs_success - 0.02, (success.float().mean().item(), theirs_success)
    assert 0 < success.float().mean().item() < 1  # the budget is neither trivial nor hopeless for this model


class _Recorder(nn.Module):
    """A linear classifier that keeps the last batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 8 * 8, 2)
        self.seen = torch.empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("sigma", [0.0, 0.25])
def test_noise_augmentation_adds_gaussian_noise_of_sigma(sigma: float) -> None:
    split = data.ImageSplit(images=torch.full((512, 3, 8, 8), 128, dtype=torch.uint8), labels=torch.arange(512) % 2, classes=["a", "b"])
    images = torch.full((512, 3, 8, 8), 128 / 255)
    model = _Recorder()
    config = TrainConfig(batch_size=512, augment=False, noise_sigma=sigma)
    step = ClassifierStep(model, torch.optim.SGD(model.parameters(), lr=0.01), split, config, torch.Generator().manual_seed(0), torch.device("cpu"))
    step(torch.arange(512), step_info())
    noise = model.seen - images
    if sigma == 0:
        assert torch.equal(noise, torch.zeros_like(noise))
    else:
        assert abs(noise.mean().item()) < 0.01 and noise.std().item() == pytest.approx(sigma, rel=0.01)
        assert model.seen.min() < 0  # not clipped to [0, 1], as in the paper


def step_info():  # type: ignore[no-untyped-def]
    from veilnet.training.core import StepInfo

    return StepInfo(epoch=0, index=0, global_step=0)


def test_noise_sigma_is_checked() -> None:
    with pytest.raises(ConfigError, match="noise_sigma must be >= 0"):
        TrainConfig(noise_sigma=-0.1)
    with pytest.raises(ConfigError, match="noise_sigma must be a number"):
        TrainConfig.from_dict({"noise_sigma": "quarter"})


def test_certify_command_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from veilnet import models

    torch.manual_seed(0)
    model = models.create("lenet", num_classes=10)
    train = data.load("digits", split="train")
    x, y = train.float_images(), train.labels
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for i in range(0, len(y), 32):  # one epoch under the smoothing noise
        loss = nn.functional.cross_entropy(model(x[i : i + 32] + SIGMA * torch.randn_like(x[i : i + 32])), y[i : i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = models.save(model.eval(), tmp_path / "lenet", data="digits")
    out = tmp_path / "cert"
    argv = [
        "robust",
        "certify",
        str(path),
        "--sigma",
        "0.25",
        "--n",
        "200",
        "--n0",
        "20",
        "--n-per-class",
        "1",
        "--draws",
        "1",
        "--directions",
        "3",
        "--radii",
        "0.25,1",
        "--seed",
        "0",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    result = json.loads((out / "certification.json").read_text())
    assert (out / "report.md").exists() and (out / "certify.png").stat().st_size > 0
    labels, predicted, radii = (torch.tensor(result[k]) for k in ("labels", "smoothed_labels", "certified_radii"))
    assert len(labels) == 10 and result["radii"] == [0.25, 1.0]
    for r, acc in zip(result["radii"], result["certified_accuracy"]):
        assert acc == pytest.approx(((predicted == labels) & (radii >= r)).float().mean().item())
    # with n = 200 and α = 0.001 no radius above σ Φ⁻¹(α^(1/n)) ≈ 0.53 can be certified
    assert result["certified_accuracy"][1] == 0.0
    assert len(result["postavg"]) == 2 and len(result["undefended_accuracy"]) == 2
    assert "certified accuracy" in capsys.readouterr().out
    assert render_certification(Certification.load(out / "certification.json")) == (out / "report.md").read_text()  # rebuilt from the JSON alone
