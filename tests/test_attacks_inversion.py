"""Feature inversion (veilnet.attacks.inversion): the metrics, and every attack measured against
the trivial attack (the attacker's mean image) — an attack that cannot succeed shows nothing, so
each is first shown to beat it on an unprotected network's features.

Attacker images: digits (16×16) train split; victim images: digits test split (disjoint).
"""

from __future__ import annotations

import math

import pytest
import torch

from veilnet import data, models
from veilnet.attacks import inversion as inv
from veilnet.errors import ConfigError, ShapeError

# A tiny U-Net (base width 4) trained 8 epochs on 480 attacker images: a few seconds per attack.
CONFIG = inv.InversionConfig(epochs=8, batch_size=32, lr=5e-3, base_width=4, seed=0)


@pytest.fixture(scope="module")
def splits() -> tuple[torch.Tensor, torch.Tensor]:
    attacker = data.load("digits:size=16", "train").float_images()[:480]
    victim = data.load("digits:size=16", "test").float_images()[:96]
    return attacker, victim


@pytest.fixture(scope="module")
def split_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("split-lenet", num_classes=10, image_size=16).eval()


# --------------------------------------------------------------------------------------------
# Metrics


def test_ssim_is_one_for_equal_images_and_drops_with_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=gen)
    assert torch.allclose(inv.ssim(x, x), torch.ones(4), atol=1e-6)
    values = [inv.ssim((x + s * torch.randn(x.shape, generator=gen)).clamp(0, 1), x).mean().item() for s in (0.02, 0.1, 0.3)]
    assert 1 > values[0] > values[1] > values[2]
    assert inv.ssim(x, 1 - x).mean() < 0.1  # structure inverted
    with pytest.raises(ShapeError):
        inv.ssim(x, x[:, :1])


def test_ssim_on_images_smaller_than_the_window() -> None:
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(inv.ssim(x, x), torch.ones(2), atol=1e-6)


def test_reconstruction_metrics_on_known_differences() -> None:
    images = torch.full((2, 3, 16, 16), 0.5)
    rec = images.clone()
    rec[0] += 0.1  # RMS 0.1
    rec[1] += 0.3  # RMS 0.3
    m = inv.reconstruction_metrics(rec, images)
    assert m.error == pytest.approx(0.2)  # the mean of the per-image RMS errors
    assert m.mae == pytest.approx(0.2)
    assert m.mse == pytest.approx((0.01 + 0.09) / 2)
    assert m.psnr == pytest.approx(10 * math.log10(1 / 0.05))
    assert m.n == 2
    # per-image RMS, not MAE: half the pixels off by 0.2 gives RMS 0.2/√2, MAE 0.1
    rec = images.clone()
    rec[:, :, :8] += 0.2
    m = inv.reconstruction_metrics(rec, images)
    assert m.error == pytest.approx(0.2 / math.sqrt(2)) and m.mae == pytest.approx(0.1)
    assert inv.reconstruction_metrics(images, images).psnr == math.inf
    assert inv.reconstruction_metrics((images * 255).to(torch.uint8), images).error < 3e-3
    with pytest.raises(ShapeError):
        inv.reconstruction_metrics(images[:1], images)


def test_mean_image_baseline_is_the_pixel_spread(splits) -> None:
    attacker, victim = splits
    base = inv.mean_image_baseline(attacker, victim)
    assert 0.1 < base.error < 0.4 and base.n == len(victim)
    assert inv.mean_image_baseline(victim, victim).error <= base.error + 1e-9  # the victim's own mean is the best constant


def test_as_unet_input_folds_the_pair_axis() -> None:
    assert inv.as_unet_input(torch.zeros(2, 2, 6, 5, 5)).shape == (2, 12, 5, 5)
    assert inv.as_unet_input(torch.zeros(2, 6, 5, 5)).shape == (2, 6, 5, 5)
    assert inv.as_unet_input(torch.zeros(2, 2, 10)).shape == (2, 20)
    assert inv.as_unet_input(torch.zeros(2, 10)).shape == (2, 10)
    with pytest.raises(ShapeError):
        inv.as_unet_input(torch.zeros(3))


def test_inversion_config_is_checked() -> None:
    for bad in ({"epochs": 0}, {"loss": "huber"}, {"lr": -1.0}, {"base_width": True}, {"seed": -1}):
        with pytest.raises(ConfigError):
            inv.InversionConfig(**bad)


# --------------------------------------------------------------------------------------------
# Learned inversion


def test_train_inverter_takes_precomputed_features(split_net, splits) -> None:
    attacker, victim = splits
    with torch.no_grad():
        table = split_net.features(attacker)
    dec = inv.train_inverter(table, attacker, **CONFIG.to_dict(), progress=False)
    with torch.no_grad():
        rec = inv.reconstruct(dec, split_net.features(victim))
    assert inv.reconstruction_metrics(rec, victim).error < inv.mean_image_baseline(attacker, victim).error
    with pytest.raises(ShapeError, match="precomputed features"):
        inv.train_inverter(table[:5], attacker, epochs=1, progress=False)


# --------------------------------------------------------------------------------------------
# Optimisation inversion


def test_train_inverter_names_its_progress(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29: a caller that trains several inverters names each one's progress lines."""
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    inv.train_inverter(images, images, epochs=1, batch_size=4, base_width=4, progress=True, desc="inverter: original")
    inv.train_inverter(images, images, epochs=1, batch_size=4, base_width=4, progress=True)
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "1/1:" in line]  # the epoch lines (the bars go to stderr)
    assert [line.split(", epoch 1/1:")[0] for line in lines] == ["inverter: original", "inverter"]


def test_optimisation_inversion_reduces_the_feature_distance_and_beats_the_mean(split_net, splits) -> None:
    attacker, victim = splits
    with torch.no_grad():
        target = split_net.features(victim)
    mean = attacker.mean(0, keepdim=True)
    with torch.no_grad():
        start = (split_net.encoder(mean.expand_as(victim)) - target).flatten(1).square().sum(1) / target.flatten(1).square().sum(1)
    params = [p.clone() for p in split_net.parameters()]
    images, distance = inv.optimisation_inversion(split_net.encoder, target, victim.shape[1:], steps=100, lr=0.1, init=mean)
    assert images.shape == victim.shape and 0 <= images.min() and images.max() <= 1
    assert distance.mean() < 0.1 * start.mean()
    m, base = inv.reconstruction_metrics(images, victim), inv.mean_image_baseline(attacker, victim)
    assert m.error < base.error and m.ssim > base.ssim
    assert all(torch.equal(p, q) for p, q in zip(params, split_net.parameters(), strict=True))  # g unchanged
    assert all(p.requires_grad for p in split_net.parameters())
    with pytest.raises(ShapeError):
        inv.optimisation_inversion(split_net.encoder, target, victim.shape[1:], steps=1, init=attacker[:3])


def test_total_variation_is_zero_for_flat_images() -> None:
    assert torch.equal(inv.total_variation(torch.full((2, 3, 8, 8), 0.3)), torch.zeros(2))
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1.0
    assert inv.total_variation(stripes).item() == pytest.approx(1.0)


def test_grid_png(splits, tmp_path) -> None:
    _, victim = splits
    path = inv.save_inversion_grid(tmp_path / "fig" / "grid.png", victim, {"original": victim.flip(-1), "dec(x)": victim * 0.5}, n=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
