"""veilnet.models.folded: batch norm folded into the convolutions, channels-last, for inference;
and post-averaging's no-gradient path through it (same outputs and predictions as the model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from veilnet import data
from veilnet.metrics import as_float
from veilnet.models import load_cifar_resnet
from veilnet.models.folded import FoldedCache, fold
from veilnet.robust import PostAveraging


@pytest.fixture(scope="module")
def resnet_and_images(cifar_jpeg_zip: Path, shared_models: Path) -> tuple[nn.Module, torch.Tensor]:
    """The pretrained ResNet-20 and 6 JPEG CIFAR-10 test images."""
    model = load_cifar_resnet(shared_models / "resnet20-12fca82f.th").eval()
    return model, as_float(data.load(f"folder:{cifar_jpeg_zip}", split="test").images[:6])


def test_folding_keeps_the_resnets_logits_and_removes_every_batch_norm(resnet_and_images) -> None:
    model, x = resnet_and_images
    folded = fold(model)
    assert folded is not None and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19  # the model itself is untouched
    with torch.no_grad():
        plain = model(x)
        assert (folded(x) - plain).abs().max() <= 1e-5 * plain.abs().max()


def test_post_averaging_without_gradients_runs_the_folded_copy_with_the_same_outputs(resnet_and_images) -> None:
    """Same seed and directions: the folded inference path's log-probabilities equal the model's
    within 1e-5 and its predictions are identical; with gradients the model itself runs."""
    model, x = resnet_and_images
    folded_pa = PostAveraging(model, directions=15, radius=6.0, seed=0)
    plain_pa = PostAveraging(model, directions=15, radius=6.0, seed=0, fold=False)
    with torch.no_grad():
        fast, slow = folded_pa(x), plain_pa(x)
    assert (fast - slow).abs().max() <= 1e-5
    assert torch.equal(fast.argmax(1), slow.argmax(1))
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))  # after the copy was built: it is not copied
    try:
        with torch.no_grad():
            folded_pa(x[:1])
        assert not calls  # the folded copy ran
        folded_pa(x[:1].requires_grad_())  # an attack's query: the model itself, differentiable
        assert calls
    finally:
        model._forward_hooks.clear()


def test_the_folded_copy_follows_changed_weights_and_training_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    model[1].running_mean.uniform_(-1, 1)
    cache = FoldedCache(model)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        first = cache.get()
        torch.testing.assert_close(first(x), model(x), rtol=1e-5, atol=1e-5)
        assert cache.get() is first  # unchanged weights: the same copy
        model[0].weight.mul_(2)  # an in-place change (an optimiser step, load_state_dict)
        second = cache.get()
        assert second is not first
        torch.testing.assert_close(second(x), model(x), rtol=1e-5, atol=1e-5)
    assert cache.get() is second
    model.train()
    assert cache.get() is None
    with pytest.raises(ValueError, match="eval mode"):
        fold(model)


def test_a_model_fx_cannot_trace_is_not_folded_and_post_averaging_still_answers() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn(self.conv(x)).flatten(1)
            return out if out.sum() > 0 else -out  # control flow on a tensor's value

    model = DataDependent().eval()
    assert fold(model) is None
    defended = PostAveraging(model, directions=2, radius=1.0, space="pixel", seed=0, batch_size=4)
    with torch.no_grad():
        assert defended(torch.rand(2, 3, 6, 6)).shape == (2, 32)
