"""The pretrained CIFAR ResNets load strictly and score what the shared README says on the JPEG
CIFAR-10 test split: 81.0% (ResNet-20) and 83.2% (ResNet-56) on all 10,000 images (measured by
benchmarks/pretrained_accuracy.py). Here: the first 100 test images per class (n = 1,000), where
the binomial standard error is about 1.2 points, so the tolerance is ±3 points."""

from __future__ import annotations

from pathlib import Path

import pytest

from veilnet import data, metrics, models
from veilnet.cli import main

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def jpeg_subset(cifar_jpeg_zip: Path) -> data.ImageSplit:
    return data.subset(data.load(f"folder:{cifar_jpeg_zip}", split="test"), 100)


@pytest.mark.parametrize(("depth", "expected"), [(20, 0.810), (56, 0.832)])
def test_pretrained_accuracy_on_jpeg_subset(shared_models: Path, jpeg_subset: data.ImageSplit, depth: int, expected: float) -> None:
    (checkpoint,) = shared_models.glob(f"resnet{depth}-*.th")
    model = models.load_cifar_resnet(checkpoint)
    assert jpeg_subset.images.shape == (1000, 3, 32, 32)
    acc = metrics.accuracy(metrics.predict(model, jpeg_subset.images), jpeg_subset.labels)
    assert acc == pytest.approx(expected, abs=0.03)


def test_import_real_checkpoint_round_trip(shared_models: Path, jpeg_subset: data.ImageSplit, tmp_path: Path) -> None:
    """``veilnet models import-cifar-resnet`` on the real ResNet-20 gives the same logits."""
    (checkpoint,) = shared_models.glob("resnet20-*.th")
    assert main(["models", "import-cifar-resnet", str(checkpoint), "-o", str(tmp_path / "r20")]) == 0
    card = models.card(tmp_path / "r20")
    assert card["architecture"] == "resnet20" and card["metrics"]["best_prec1"] == pytest.approx(91.78, abs=0.01)
    assert card["extra"]["source_sha256"].startswith(checkpoint.stem.split("-")[1])  # akamaster names files by hash prefix
    images = jpeg_subset.images[:50]
    assert (metrics.predict(models.load(tmp_path / "r20"), images) == metrics.predict(models.load_cifar_resnet(checkpoint), images)).all()
