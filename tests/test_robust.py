"""Post-averaging (veilnet.robust.PostAveraging): the points of Eq. 8, the average of Eq. 7, the
normalised-space reading of the radius, batching and randomness."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from veilnet.errors import ConfigError, ShapeError
from veilnet.models import Normalize, batching
from veilnet.robust import PostAveraging, postavg

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


class TinyNet(nn.Module):
    """A small CNN with its normalisation as the first layer (docs/architecture.md, "Pixels")."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = Normalize(MEAN, STD) if normalize else nn.Identity()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))


@pytest.fixture()
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_neighbours_follow_eq8(net: TinyNet, images: torch.Tensor) -> None:
    defended = PostAveraging(net, directions=4, radius=6.0, seed=3)
    dirs = defended.sample_directions(len(images), images.shape[1:], images.device)
    points = defended.neighbours(images, dirs)
    assert points.shape == (7, 25, 3, 8, 8) and defended.points_per_image == 25
    assert torch.equal(points[:, 0], images)
    std = torch.tensor(STD)[None, None, :, None, None]
    steps = ((points[:, 1:] - images[:, None]) / std).flatten(2).norm(dim=2)  # L2 in normalised space
    expected = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0]).repeat(4) * 2.0
    torch.testing.assert_close(steps, expected.expand_as(steps), rtol=1e-5, atol=1e-5)
    # ±λ pairs are symmetric around the input and the neighbours are not clipped to [0, 1]
    torch.testing.assert_close(points[:, 1::2] + points[:, 2::2], 2 * images[:, None].expand(-1, 12, -1, -1, -1))
    assert points.min() < 0 and points.max() > 1


def test_average_equals_manual_eq7_in_normalised_space(net: TinyNet, images: torch.Tensor) -> None:
    defended = PostAveraging(net, directions=3, radius=4.0, seed=5)
    gen = torch.Generator().manual_seed(5)
    raw = torch.randn(1, 3, 3, 8, 8, generator=gen)
    unit = raw / raw.flatten(2).norm(dim=2)[:, :, None, None, None]
    z = net.normalize(images)
    probs = [F.softmax(net.body(z), 1)]
    for k in range(3):
        for lam in (4 / 3, -4 / 3, 8 / 3, -8 / 3, 4.0, -4.0):
            probs.append(F.softmax(net.body(z + lam * unit[:, k]), 1))
    expected = torch.stack(probs).mean(0)
    with torch.no_grad():
        got = defended(images).exp()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_pixel_space_and_logit_average(net: TinyNet, images: torch.Tensor) -> None:
    defended = PostAveraging(net, directions=2, radius=0.5, space="pixel", reduce="logits", seed=0)
    dirs = defended.sample_directions(len(images), images.shape[1:], images.device)
    points = defended.neighbours(images, dirs)
    norms = (points[:, 1:] - images[:, None]).flatten(2).norm(dim=2)
    torch.testing.assert_close(norms[0], torch.tensor([1, 1, 2, 2, 3, 3] * 2) * 0.5 / 3)
    with torch.no_grad():
        expected = net(points.flatten(0, 1)).reshape(7, 13, -1).mean(1)
        torch.testing.assert_close(defended(images), expected, rtol=1e-5, atol=1e-5)


def test_batched_chunks_equal_one_image_at_a_time(net: TinyNet, images: torch.Tensor) -> None:
    big = PostAveraging(net, directions=5, seed=11, max_points=10_000)
    small = PostAveraging(net, directions=5, seed=11, max_points=70, batch_size=7)  # two images built at once, 7 points per forward
    with torch.no_grad():
        one_by_one = torch.cat([big(img[None]) for img in images])
        torch.testing.assert_close(big(images), one_by_one, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(small(images), one_by_one, rtol=1e-5, atol=1e-6)
    assert math.isclose(big(images).exp().sum(1).mean().item(), 1.0, rel_tol=1e-5)


def test_fresh_directions_every_call_unless_seeded(net: TinyNet, images: torch.Tensor) -> None:
    fresh = PostAveraging(net, directions=2, radius=20.0)
    fixed = PostAveraging(net, directions=2, radius=20.0, seed=1)
    with torch.no_grad():
        assert not torch.allclose(fresh(images), fresh(images))
        assert torch.equal(fixed(images), fixed(images))
        a = PostAveraging(net, directions=2, radius=20.0, generator=torch.Generator().manual_seed(9))(images)
        b = PostAveraging(net, directions=2, radius=20.0, generator=torch.Generator().manual_seed(9))(images)
    assert torch.equal(a, b)
    # fresh directions differ between the images of one batch
    dirs = fresh.sample_directions(2, images.shape[1:], images.device)
    assert not torch.allclose(dirs[0], dirs[1])


def test_small_radius_keeps_the_models_prediction(net: TinyNet, images: torch.Tensor) -> None:
    with torch.no_grad():
        defended = PostAveraging(net, directions=3, radius=1e-4)(images)
        torch.testing.assert_close(defended, F.log_softmax(net(images), 1), rtol=1e-3, atol=1e-4)


def test_gradient_flows_through_the_average(net: TinyNet, images: torch.Tensor) -> None:
    x = images.clone().requires_grad_(True)
    PostAveraging(net, directions=2)(x).logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_normalised_space_needs_a_std() -> None:
    plain = TinyNet(normalize=False)
    with pytest.raises(ConfigError, match="std"):
        PostAveraging(plain)
    assert PostAveraging(plain, std=STD)(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    assert PostAveraging(plain, space="pixel", radius=0.3)(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    for bad in ({"directions": 0}, {"radius": 0.0}, {"space": "latent"}, {"reduce": "max"}, {"std": [0.1, -1.0, 0.2]}):
        with pytest.raises(ConfigError):
            PostAveraging(plain, **bad)  # type: ignore[arg-type]


def test_per_sample_generators_make_directions_independent_of_the_batch(net: TinyNet, images: torch.Tensor) -> None:
    """Inside ``sample_generators`` image i draws from generator i whatever batch it is in, and a
    batch repeated k times (EOT) draws k times from each generator, copy by copy."""
    defended = PostAveraging(net, directions=3, radius=6.0, max_points=40)  # two images per chunk

    def gens(seeds: range) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(s) for s in seeds]

    with torch.no_grad():
        with defended.sample_generators(gens(range(7))):
            together = defended(images)
        alone = []
        for i in range(7):
            with defended.sample_generators(gens(range(i, i + 1))):
                alone.append(defended(images[i : i + 1]))
        torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-6)
        g = gens(range(7))
        with defended.sample_generators(g):
            twice = defended(images.repeat(2, 1, 1, 1))
        g = gens(range(7))
        with defended.sample_generators(g):
            first, second = defended(images), defended(images)
        torch.testing.assert_close(twice, torch.cat([first, second]), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(first, second)
        with pytest.raises(ShapeError, match="does not repeat"), defended.sample_generators(gens(range(3))):
            defended(images)
    assert defended._row_generators is None, "the context restores the shared generator"


def test_batch_size_is_measured_once_then_cached_in_memory_and_on_disk(
    net: TinyNet, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 13 part 5: with batch_size=None the points-per-forward size is measured on this machine
    once per device and model signature, kept in memory and under $XDG_CACHE_HOME (a temporary
    folder in tests), and the output equals that of any explicit batch size."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(batching, "_tuned", {})
    calls: list[int] = []
    measure = batching._measure
    monkeypatch.setattr(batching, "_measure", lambda m, x: calls.append(1) or measure(m, x))
    auto = PostAveraging(net, directions=3, seed=2)
    with torch.no_grad():
        first = auto(images)
        auto(images)
        size = batching.tuned_batch_size(net, images)
        assert calls == [1] and size in batching.batch_candidates(images.device, images.shape[1:])
        torch.testing.assert_close(first, PostAveraging(net, directions=3, seed=2, batch_size=5)(images), rtol=1e-5, atol=1e-6)
        monkeypatch.setattr(batching, "_tuned", {})  # a new process: read back from disk, not measured
        assert batching.tuned_batch_size(net, images) == size and calls == [1]
        assert (tmp_path / "veilnet" / "batch_size.json").exists()
        with torch.enable_grad():  # another signature (grad mode) is measured anew
            assert batching.tuned_batch_size(net, images) and calls == [1, 1]
    assert batching.tuned_batch_size(net.train(), images) == 100  # a training-mode model is not run to measure


def test_batch_candidates_and_memory_cap_scale_to_a_gpu() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert batching.batch_candidates(cpu, (3, 32, 32)) == [16, 32, 64, 128, 256, 512]
    assert batching.batch_candidates(gpu, (3, 32, 32))[-1] == 16384
    assert batching.batch_candidates(gpu, (3, 224, 224))[-1] == 256 and batching.batch_candidates(cpu, (3, 224, 224)) == [16]
    assert postavg.default_max_points(cpu, (3, 32, 32)) == 4096
    assert postavg.default_max_points(gpu, (3, 32, 32)) == 65536 and postavg.default_max_points(gpu, (3, 224, 224)) == 4096
