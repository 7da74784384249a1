"""The gradient attacks' cost in model calls, and torchattacks 3.5.1 as their oracle (issue 26).

Calls: PGD with n steps makes n forward + backward passes per restart and one plain forward pass
at each restart's results, whose verdict is both the next restart's and the success mask the
attack reports (no second pass); the same holds for EOT-PGD (each gradient one pass over the n
draws' copies), FGSM (n = 1) and APGD (n + 1 gradients: one at the start). torchattacks makes the
n gradient passes and no judging pass, as it reports no success.

Oracle: torchattacks' PGD, EOT-PGD and FGSM run the same arithmetic; from the same start (no random
start) they give the same adversarials within 1e-6 on a small network, and the same success on the
pretrained ResNet-20 and real images. torchattacks is installed beside torch without its declared
dependencies (``pip install --no-deps torchattacks==3.5.1``, the Makefile's test target: its
metadata asks for torchvision and requests~=2.25.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from veilnet import data
from veilnet.metrics import as_float, eval_mode
from veilnet.models import load_cifar_resnet
from veilnet.robust import attacks

torchattacks = pytest.importorskip("torchattacks")

EPS = 8 / 255


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class Counting(nn.Module):
    """``model`` that counts its calls: ``gradient`` (the input requires a gradient: a forward
    pass whose backward pass the attack takes) and ``plain``, with the rows of each."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = {"gradient": 0, "plain": 0}
        self.rows = {"gradient": 0, "plain": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = "gradient" if x.requires_grad else "plain"
        self.calls[kind] += 1
        self.rows[kind] += x.shape[0]
        return self.model(x)


def counted(attack: attacks.Attack, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``attack(x, y)`` with its model's counts zeroed after the batch size was measured (once
    per model and machine: :meth:`~veilnet.robust.attacks.base.Attack.work_batch`)."""
    model = attack.model
    assert isinstance(model, Counting)
    with eval_mode(model):  # as the attack measures it
        attack.work_batch(x)
    model.calls, model.rows = {"gradient": 0, "plain": 0}, {"gradient": 0, "plain": 0}
    return attack(x, y)


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10)
    ).eval()  # fmt: skip


class Stubborn(nn.Module):
    """Always predicts class 0 by a wide margin, with a small input-dependent part (a gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_net()
        self.bias = nn.Parameter(torch.tensor([100.0] + [0.0] * 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias + 1e-3 * self.net(x)


def _images(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("name", "settings", "gradients", "rows_per_gradient"),
    [
        ("pgd", {"steps": 7, "restarts": 3}, 7, 1),
        ("eot-pgd", {"steps": 4, "restarts": 2, "eot_samples": 3}, 4, 3),
        ("apgd-ce", {"steps": 5, "restarts": 2, "eot_samples": 2}, 5 + 1, 2),
        ("fgsm", {}, 1, 1),
    ],
)
def test_model_calls_per_restart(name: str, settings: dict, gradients: int, rows_per_gradient: int) -> None:
    """Against a model no sample can fool every restart runs on every sample: per restart, the
    gradients and one plain pass at the results, which is also the reported success."""
    model = Counting(Stubborn())
    x, y = _images(), torch.zeros(8, dtype=torch.long)
    adv, success = counted(attacks.create(name, model, EPS, seed=0, **settings), x, y)
    restarts = settings.get("restarts", 1)
    assert not success.any()
    assert model.calls == {"gradient": gradients * restarts, "plain": restarts}
    assert model.rows == {"gradient": 8 * gradients * rows_per_gradient * restarts, "plain": 8 * restarts}
    assert (adv - x).abs().max() <= EPS + 1e-6


def test_restarts_stop_once_all_are_fooled_and_early_stop_judges_by_the_last_step() -> None:
    """On a model the start already fools: one restart, and with ``early_stop`` no pass beyond
    the first gradient (its logits judged every sample)."""
    model = Counting(Stubborn())
    x, y = _images(), torch.ones(8, dtype=torch.long)  # always predicted 0: fooled from the start
    _, success = counted(attacks.PGD(model, EPS, steps=5, restarts=4, seed=0), x, y)
    assert success.all() and model.calls == {"gradient": 5, "plain": 1}
    model = Counting(Stubborn())
    _, success = counted(attacks.PGD(model, EPS, steps=5, restarts=4, early_stop=True, seed=0), x, y)
    assert success.all() and model.calls == {"gradient": 1, "plain": 0}


@pytest.mark.parametrize("name", ["pgd", "eot-pgd", "apgd-ce", "fgsm", "pgd-min"])
def test_success_is_the_verdict_at_the_returned_images_whatever_the_batch(name: str) -> None:
    """The success mask equals a fresh prediction on the returned images, and the results do not
    depend on how the images are batched (1 image per batch or all together)."""
    model = small_net()
    x = _images(12, seed=2)
    with torch.no_grad():
        y = model(x).argmax(1)
    settings = {} if name == "fgsm" else {"steps": 3}
    runs = [attacks.create(name, model, 2 / 255, seed=3, batch_size=b, **settings)(x, y) for b in (1, 12)]
    for adv, success in runs:
        with torch.no_grad():
            assert torch.equal(success, model(adv).argmax(1) != y)
    assert (runs[0][0] - runs[1][0]).abs().max() <= 1e-5
    assert torch.equal(runs[0][1], runs[1][1])
    assert 0 < runs[1][1].sum() < len(y)  # a budget that fools some, not all


def test_parameters_are_left_as_they_were() -> None:
    """The attack freezes the parameters while it runs and restores each one's requires_grad."""
    model = small_net()
    model[0].weight.requires_grad_(False)
    attacks.PGD(model, EPS, steps=2, seed=0)(_images(4), torch.zeros(4, dtype=torch.long))
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]


def _torchattacks(name: str, model: nn.Module, steps: int):  # type: ignore[no-untyped-def]
    if name == "fgsm":
        return torchattacks.FGSM(model, eps=EPS)
    if name == "eot-pgd":
        return torchattacks.EOTPGD(model, eps=EPS, alpha=2 / 255, steps=steps, eot_iter=2, random_start=False)
    return torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=steps, random_start=False)


def _ours(name: str, model: nn.Module, steps: int) -> attacks.Attack:
    if name == "fgsm":
        return attacks.FGSM(model, EPS, seed=0)
    settings = {"eot_samples": 2} if name == "eot-pgd" else {}
    return attacks.create(name, model, EPS, alpha=2 / 255, steps=steps, random_start=False, seed=0, **settings)


@pytest.mark.parametrize("name", ["pgd", "eot-pgd", "fgsm"])
def test_same_adversarials_as_torchattacks_on_a_small_network(name: str) -> None:
    model = small_net()
    x = _images(16, seed=4)
    with torch.no_grad():
        y = model(x).argmax(1)
    ours, _ = _ours(name, model, 10)(x, y)
    theirs = _torchattacks(name, model, 10)(x, y)
    assert (ours - theirs).abs().max() <= 1e-6


@pytest.mark.shared
def test_same_success_as_torchattacks_on_resnet20(cifar_jpeg_zip: Path, shared_models: Path) -> None:
    """PGD-10 and FGSM on 40 real test images of the pretrained ResNet-20: the same success per
    image as torchattacks', and adversarials equal but for the odd pixel whose gradient is near 0
    (torchattacks differentiates the mean loss, we the summed one: the sign of a component within
    rounding of 0 may differ)."""
    split = data.subset(data.load(f"folder:{cifar_jpeg_zip}", split="test"), 4)
    x, y = as_float(split.images), split.labels
    (checkpoint,) = shared_models.glob("resnet20-*.th")
    model = load_cifar_resnet(checkpoint).eval()
    with torch.no_grad():
        right = model(x).argmax(1) == y
    for name in ("pgd", "fgsm"):
        ours, success = _ours(name, model, 10)(x, y)
        theirs = _torchattacks(name, model, 10)(x, y)
        with torch.no_grad():
            assert torch.equal(success, model(theirs).argmax(1) != y)
        assert ((ours - theirs).abs() > 1e-6).float().mean() < 1e-3
    assert right.sum() >= 30  # most are attacked, not already wrong
