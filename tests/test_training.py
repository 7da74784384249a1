"""The training core and the classifier on it: it learns, it is deterministic, --resume reaches
the same weights (for a classifier and for a two-optimiser alternating toy GAN), and
``train_epochs`` trains in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from veilnet import data, models
from veilnet.cli import main
from veilnet.errors import ConfigError, ModelFormatError, OutputExistsError, ShapeError
from veilnet.training import CHECKPOINT, StepInfo, TrainConfig, augment, fit, learning_rate, train, train_epochs

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
    assert card["classes"] == tr.classes  # the names a server publishes on /v1/info


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


# --- the core: a two-model, two-optimiser alternating toy (the shape of a GAN's training) -----


class _ToyGAN:
    """A generator G: z -> x and a discriminator D: x -> logit with dropout, trained in turn
    (D on real vs G(z) detached, then G to fool D), the non-saturating GAN losses."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.gen = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
        self.disc = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=1e-2)
        self.opt_d = torch.optim.SGD(self.disc.parameters(), lr=5e-2, momentum=0.9)
        self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, step_size=3, gamma=0.5)
        self.noise = torch.Generator().manual_seed(1)
        self.order = torch.Generator().manual_seed(2)
        self.real = torch.randn(40, 2, generator=torch.Generator().manual_seed(3)) * 0.5 + 2.0

    def state(self) -> dict:
        return {"gen": self.gen, "disc": self.disc, "opt_g": self.opt_g, "opt_d": self.opt_d, "sched_d": self.sched_d, "noise": self.noise, "order": self.order}

    def batches(self, epoch: int) -> list[torch.Tensor]:
        perm = torch.randperm(len(self.real), generator=self.order)
        return [self.real[perm[i : i + 8]] for i in range(0, len(self.real), 8)]

    def step(self, real: torch.Tensor, info: StepInfo) -> dict[str, float]:
        bce = nn.functional.binary_cross_entropy_with_logits
        z = torch.randn(len(real), 2, generator=self.noise)
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        d_loss = bce(self.disc(real), ones) + bce(self.disc(self.gen(z).detach()), zeros)
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = bce(self.disc(self.gen(z)), ones)
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        self.sched_d.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "n": len(real)}

    def weights(self) -> dict[str, torch.Tensor]:
        return {**{f"g.{k}": v for k, v in self.gen.state_dict().items()}, **{f"d.{k}": v for k, v in self.disc.state_dict().items()}}


def _fit_toy(toy: _ToyGAN, out, **kwargs) -> list[dict]:
    return fit(toy.step, toy.batches, epochs=4, state=toy.state(), out_dir=out, config={"toy": 1}, progress=False, **kwargs)


def test_fit_resumes_a_two_optimiser_alternating_run_bit_identically(tmp_path):
    full = _ToyGAN()
    full_history = _fit_toy(full, tmp_path / "full")

    def stop_after_second(record: dict) -> None:
        if record["epoch"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _fit_toy(_ToyGAN(), tmp_path / "cut", on_epoch_end=stop_after_second)
    torch.manual_seed(12345)  # a new process: other global RNG state, fresh objects
    resumed = _ToyGAN()
    resumed_history = _fit_toy(resumed, tmp_path / "cut", resume=True)

    a, b = full.weights(), resumed.weights()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.sched_d.state_dict() == full.sched_d.state_dict()
    assert torch.equal(resumed.noise.get_state(), full.noise.get_state())
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full_history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed_history] == strip
    assert [r["epoch"] for r in json.loads((tmp_path / "cut" / "metrics.json").read_text())] == [1, 2, 3, 4]
    # The toy really trains both players and really is random: another noise seed differs.
    other = _ToyGAN()
    other.noise.manual_seed(99)
    _fit_toy(other, tmp_path / "other")
    assert not all(torch.equal(a[k], other.weights()[k]) for k in a)


def test_fit_in_memory_writes_nothing_and_averages_by_weight(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sizes = [3, 1]

    def step(batch: int, info: StepInfo) -> dict[str, float]:
        return {"value": float(batch), "n": sizes[info.index]}

    history = fit(step, lambda epoch: [10, 20], epochs=2, state={}, progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0]["value"] == pytest.approx((3 * 10 + 1 * 20) / 4)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="resume needs an output folder"):
        fit(step, lambda epoch: [1], epochs=1, state={}, resume=True, progress=False)
    with pytest.raises(ConfigError, match="state 'x' is a int"):
        fit(step, lambda epoch: [1], epochs=1, state={"x": 3}, progress=False)


def test_fit_refuses_a_corrupt_truncated_or_foreign_checkpoint(tmp_path):
    toy = _ToyGAN()
    _fit_toy(toy, tmp_path / "run")
    ckpt = tmp_path / "run" / CHECKPOINT
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFormatError, match="corrupt or truncated checkpoint"):
        _fit_toy(_ToyGAN(), tmp_path / "run", resume=True)
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match="corrupt or truncated checkpoint"):
        _fit_toy(_ToyGAN(), tmp_path / "run", resume=True)
    torch.save({"epoch": 1}, ckpt)
    with pytest.raises(ModelFormatError, match="not a veilnet training checkpoint"):
        _fit_toy(_ToyGAN(), tmp_path / "run", resume=True)
    ckpt.write_bytes(blob)
    with pytest.raises(ConfigError, match="toy differ"):
        fit(toy.step, toy.batches, epochs=4, state=toy.state(), out_dir=tmp_path / "run", config={"toy": 2}, resume=True, progress=False)
    with pytest.raises(ConfigError, match="holds the state of"):
        fit(toy.step, toy.batches, epochs=4, state={"gen": toy.gen}, out_dir=tmp_path / "run", config={"toy": 1}, resume=True, progress=False)


def test_checkpoint_keeps_cpu_rng_on_cpu_and_restores_cuda_rng(tmp_path, monkeypatch):
    """On a CUDA machine the CUDA RNG states are saved and restored; the CPU state is loaded on
    the CPU (``torch.set_rng_state`` takes a CPU ByteTensor). CUDA is faked on a CPU machine."""
    fake = [torch.tensor([7, 8, 9], dtype=torch.uint8)]
    restored: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [t.clone() for t in fake])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.extend(states))
    toy = _ToyGAN()
    fit(toy.step, toy.batches, epochs=1, state=toy.state(), out_dir=tmp_path, config={}, progress=False)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert saved["torch_rng"].device.type == "cpu" and saved["torch_rng"].dtype == torch.uint8
    assert [t.tolist() for t in saved["cuda_rng"]] == [[7, 8, 9]]
    fit(toy.step, toy.batches, epochs=1, state=toy.state(), out_dir=tmp_path, config={}, resume=True, progress=False)
    assert [t.tolist() for t in restored] == [[7, 8, 9]]


# --- the classifier on the core ----------------------------------------------------------------


def test_train_epochs_trains_in_memory(tmp_path, monkeypatch, digits_small):
    monkeypatch.chdir(tmp_path)
    tr, te = digits_small
    model = _lenet()
    before = _weights(model)
    history = train_epochs(model, tr, CONFIG, epochs=2, test_split=te)
    assert [r["epoch"] for r in history] == [1, 2] and {"train_loss", "train_accuracy", "lr", "test_accuracy"} <= set(history[-1])
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert list(tmp_path.iterdir()) == []
    # The same as train() into a folder: the in-memory path is the same step on the same core.
    saved = train(_lenet(), tr, tmp_path / "run", config=CONFIG, test_split=te, progress=False)
    on_disk = models.load(saved.model_path).state_dict()
    assert all(torch.equal(on_disk[k], v) for k, v in model.state_dict().items())


def test_resume_with_other_model_arguments_is_refused(tmp_path, digits_small):
    tr, _ = digits_small
    config = TrainConfig(epochs=1, batch_size=64, seed=0)
    train(_lenet(), tr, tmp_path, config=config, progress=False)
    other = models.create("lenet", num_classes=10, mean=0.5, std=0.5)
    with pytest.raises(ConfigError, match="model differ"):
        train(other, tr, tmp_path, config=config, resume=True, progress=False)


def test_a_model_that_does_not_take_the_data_is_refused_before_training(tmp_path, digits_small):
    tr, _ = digits_small
    gray = data.load("digits:channels=1", "train")
    with pytest.raises(ShapeError, match=r"lenet takes 3×32×32 images.*digits:channels=1 has 1×32×32"):
        train(_lenet(), gray, tmp_path / "a", config=CONFIG, progress=False)
    vit = models.create("vit", image_size=16, patch_size=4, dim=8, depth=1, heads=2, mlp_dim=8)
    with pytest.raises(ShapeError, match=r"takes 3×16×16 images.*has 3×32×32"):
        train_epochs(vit, tr, CONFIG)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"epochs": "ten"}, "epochs"),
        ({"lr": [1]}, "lr"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"augment": "yes"}, "augment"),
        ({"lr": float("nan")}, "lr"),
        ({"seed": True}, "seed"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"momentum": -0.1}, "momentum"),
    ],
)
def test_train_config_checks_types_and_names_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict(options)


def test_cli_resume_continues_and_refuses_other_model_args(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "lenet", "--data", "digits", "--subset", "5", "--epochs", "1", "--optimizer", "adam", "--lr", "0.003", "-o", str(out)]
    assert main(argv) == 0
    assert main([*argv, "--resume"]) == 0  # a complete run resumes to itself
    capsys.readouterr()
    assert main([*argv, "--resume", "--arg", "mean=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another training configuration" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("model: lenet\ntrain: {epochs: ten}\n", "epochs must be an integer, got 'ten'"),
        ("model: lenet\ntrain: {lr: [1]}\n", "lr must be a number, got [1]"),
        ("model: lenet\ntrain: {batch_size: 2.5}\n", "batch_size must be an integer, got 2.5"),
        ("model: lenet\ntrain: [1, 2]\n", "train must be a mapping of training options"),
        ("model: lenet\nargs: dim\n", "args must be a mapping of model arguments"),
        ("model: lenet\nsubset: x\n", "subset must be a positive integer"),
        ("model: [lenet]\n", "model must be a model name"),
        ("model: convmixer\nargs: {patch_size: 0}\n", "patch_size must be a positive integer"),
    ],
)
def test_cli_yaml_config_with_wrongly_typed_values_is_one_line(tmp_path, capsys, yaml_text, message):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_resume_from_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "lenet", "--data", "digits", "--subset", "5", "--epochs", "1", "-o", str(out)]
    assert main(argv) == 0
    (out / CHECKPOINT).write_bytes((out / CHECKPOINT).read_bytes()[:100])
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt or truncated checkpoint" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("epochs_done", "line"),
    [
        (1, "veilnet: interrupted; resume with the same command and --resume"),
        (0, "veilnet: interrupted before the first checkpoint (written after each epoch); run the same command again to start over"),
    ],
)
def test_cli_train_interrupted_says_how_to_resume(tmp_path, capsys, monkeypatch, epochs_done, line):
    """Ctrl-C during `veilnet train`: once an epoch's checkpoint is written the one line says to
    resume, and the same command with --resume finishes the run; before it, to start again."""
    import veilnet.training.core as core

    save, saved = core.save_checkpoint, []

    def save_then_interrupt(*args, **kwargs):
        if len(saved) == epochs_done:
            raise KeyboardInterrupt
        saved.append(save(*args, **kwargs))

    monkeypatch.setattr(core, "save_checkpoint", save_then_interrupt)
    argv = ["train", "--model", "lenet", "--data", "digits", "--subset", "5", "--epochs", "2", "--no-compile", "-o", str(tmp_path / "run")]
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == line
    if epochs_done:
        monkeypatch.setattr(core, "save_checkpoint", save)
        assert main([*argv, "--resume"]) == 0
        assert (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_name_no_absolute_path(path, monkeypatch, tmp_path):
    """A config names its data and files relative to $VEILNET_DATA (data specs) or the working
    folder, never a path of the machine it was written on: a data spec then lies under $VEILNET_DATA."""
    from veilnet.data.specs import resolve_path
    from veilnet.training.cli import read_config

    def strings(value):
        if isinstance(value, dict | list):
            return [s for v in (value.values() if isinstance(value, dict) else value) for s in strings(v)]
        return [value] if isinstance(value, str) else []

    doc = read_config(str(path))
    for text in strings(doc):
        for part in (text, text.partition(":")[2]):
            assert not Path(part).is_absolute() and not part.startswith("~"), f"{path.name} names the absolute path {text!r}"
    monkeypatch.setenv("VEILNET_DATA", str(tmp_path))
    if doc.get("data", "digits") != "digits":
        assert resolve_path(doc["data"].partition(":")[2]).is_relative_to(tmp_path)
