"""The training loop: it learns, it is deterministic, and --resume reaches the same weights."""

from __future__ import annotations

import json

import pytest
import torch

from veilnet import data, models
from veilnet.cli import main
from veilnet.errors import ConfigError, OutputExistsError
from veilnet.training import TrainConfig, augment, learning_rate, train

CONFIG = TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=3e-3, weight_decay=0.0, seed=3)


@pytest.fixture(scope="module")
def digits_small() -> tuple[data.ImageSplit, data.ImageSplit]:
    tr = data.subset(data.load("digits", "train"), 20)
    te = data.subset(data.load("digits", "test"), 5)
    return tr, te


def _lenet() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights for every run compared
    return models.create("lenet", num_classes=10)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


class _Interrupt(Exception):
    pass


def test_resume_reaches_the_same_weights(tmp_path, digits_small):
    tr, te = digits_small
    full = train(_lenet(), tr, tmp_path / "full", config=CONFIG, test_split=te, progress=False)

    def stop_after_first(record: dict) -> None:
        if record["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(_lenet(), tr, tmp_path / "cut", config=CONFIG, test_split=te, on_epoch_end=stop_after_first, progress=False)
    # A fresh process would start from a fresh model; resume must restore everything.
    resumed = train(_lenet(), tr, tmp_path / "cut", config=CONFIG, test_split=te, resume=True, progress=False)

    a, b = models.load(full.model_path).state_dict(), models.load(resumed.model_path).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["test_accuracy"] == full.test_accuracy


def test_same_seed_same_weights_other_seed_differs(tmp_path, digits_small):
    tr, _ = digits_small
    one_epoch = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=3e-3, seed=1)
    a = train(_lenet(), tr, tmp_path / "a", config=one_epoch, progress=False)
    b = train(_lenet(), tr, tmp_path / "b", config=one_epoch, progress=False)
    c = train(_lenet(), tr, tmp_path / "c", config=TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=3e-3, seed=2), progress=False)
    wa, wb, wc = (models.load(r.model_path).state_dict() for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_learns_digits(tmp_path):
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    config = TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=3e-3, weight_decay=0.0)
    result = train(_lenet(), tr, tmp_path, config=config, test_split=te, progress=False)
    assert result.test_accuracy > 0.8
    card = models.card(tmp_path)
    assert card["data"] == "digits" and card["metrics"]["test_accuracy"] == result.test_accuracy


def test_refuses_to_overwrite_and_to_resume_other_config(tmp_path, digits_small):
    tr, _ = digits_small
    config = TrainConfig(epochs=1, batch_size=64, seed=0)
    train(_lenet(), tr, tmp_path, config=config, progress=False)
    with pytest.raises(OutputExistsError):
        train(_lenet(), tr, tmp_path, config=config, progress=False)
    with pytest.raises(ConfigError, match="another training configuration"):
        train(_lenet(), tr, tmp_path, config=TrainConfig(epochs=2, batch_size=64), resume=True, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(_lenet(), tr, tmp_path / "empty", config=config, resume=True, progress=False)


def test_augment_is_a_crop_of_the_padded_image_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = augment(x, g, padding=2)
    assert y.shape == x.shape
    for n in range(16):
        sources = [torch.nn.functional.pad(img, (2, 2, 2, 2)) for img in (x[n], x[n].flip(2))]
        crops = [p[:, i : i + 8, j : j + 8] for p in sources for i in range(5) for j in range(5)]
        assert any(torch.equal(y[n], c) for c in crops)
    assert not torch.equal(y, x)


def test_learning_rate_schedules():
    cos = TrainConfig(epochs=10, lr=1.0, warmup_epochs=1)
    assert learning_rate(cos, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cos, 9, 10) == pytest.approx(1.0)
    assert learning_rate(cos, 99, 10) < 0.01
    step = TrainConfig(epochs=10, lr=1.0, schedule="step", step_epochs=3, step_gamma=0.5)
    assert learning_rate(step, 35, 10) == pytest.approx(0.5)


def test_cli_train_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "lenet", "--data", "digits", "--subset", "10", "--epochs", "1", "--optimizer", "adam", "--lr", "0.003", "-o", str(out)])
    assert rc == 0 and (out / "model.safetensors").exists() and (out / "metrics.json").exists()
    assert main(["eval", str(out), "--data", "digits", "-o", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 0
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["n"] == len(data.load("digits", "test"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "lenet", "--optimizer", "sgd", "--lr", "-1", "-o", "X"], "must be positive"),
        (["train", "--model", "lenet", "--arg", "depth", "-o", "X"], "expected key=value"),
        (["train", "--model", "lenet", "--arg", "bogus=1", "-o", "X"], "does not take bogus"),
        (["train", "-o", "X"], "no model given"),
        (["eval", "nowhere", "--data", "digits"], "nowhere"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
