"""Training complex-valued networks (Eq. 8–9): the counterpart is never the sample itself, the
decoys are the features a wrong angle decodes, the penalty measures D's Lipschitz constant, a
complex LeNet learns the digits, --resume reaches the same weights of the network and of D, and
the evaluation with fresh secrets per sample is reproducible."""

from __future__ import annotations

import json
import math

import pytest
import torch

from veilnet import data, models
from veilnet.cli import main
from veilnet.complex import layers as cl
from veilnet.complex.models import ComplexNet
from veilnet.complex.training import (
    ComplexTrainConfig,
    ComplexTrainResult,
    Discriminator,
    decoy_angles,
    decoys,
    derangement,
    evaluate_complex,
    gradient_penalty,
    load_discriminator,
    train_complex,
)
from veilnet.errors import ConfigError, ShapeError

TINY = ComplexTrainConfig(epochs=2, batch_size=32, lr=3e-3, weight_decay=0.0, augment=False, k=4, seed=5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on the shared 2-core machine, two oneDNN threads spin-wait on each
    other while other jobs run (a 1 s epoch took 55 s); the results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[data.ImageSplit, data.ImageSplit]:
    return data.load("digits", "train"), data.load("digits", "test")


@pytest.fixture(scope="module")
def tiny(digits) -> tuple[data.ImageSplit, data.ImageSplit]:
    tr, te = digits
    return data.subset(tr, 10, seed=1), data.subset(te, 4)


def _net() -> ComplexNet:
    torch.manual_seed(0)  # the same initial weights for every run compared
    return models.create("complex-lenet", num_classes=10)


class _Interrupt(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The pieces of Eq. 8


@pytest.mark.parametrize("n", [2, 3, 5, 64, 129])
def test_derangement_never_maps_a_sample_to_itself(n):
    gen = torch.Generator().manual_seed(n)
    for _ in range(300):
        sigma = derangement(n, gen)
        assert sorted(sigma.tolist()) == list(range(n))  # a permutation
        assert not bool((sigma == torch.arange(n)).any())


def test_plain_permutation_would_fail_the_same_check():
    # The reproduction's bug, for contrast: most random permutations have a fixed point.
    gen = torch.Generator().manual_seed(0)
    fixed = sum(bool((torch.randperm(32, generator=gen) == torch.arange(32)).any()) for _ in range(200))
    assert fixed > 100


def test_derangement_counterpart_is_uniform_over_the_others():
    gen = torch.Generator().manual_seed(1)
    counts = torch.zeros(5, 5)
    for _ in range(5000):
        sigma = derangement(5, gen)
        counts[torch.arange(5), sigma] += 1
    assert counts.diagonal().sum() == 0
    off = counts[~torch.eye(5, dtype=torch.bool)]
    assert off.min() > 1250 * 0.85 and off.max() < 1250 * 1.15  # 5000/4 each


def test_derangement_of_one_is_refused():
    with pytest.raises(ConfigError, match="at least 2"):
        derangement(1)


@pytest.mark.parametrize("k", [2, 3, 8, 16])
def test_decoy_angles_spread_evenly_over_the_open_half_turn(k):
    angles = decoy_angles(k)
    assert len(angles) == k - 1
    assert bool((angles > 0).all()) and bool((angles < math.pi).all())
    gaps = torch.diff(torch.cat([torch.zeros(1, dtype=angles.dtype), angles, torch.tensor([math.pi], dtype=angles.dtype)]))
    assert torch.allclose(gaps, torch.full_like(gaps, math.pi / k))


def test_decoys_are_what_a_wrong_angle_decodes():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, 5, 5, generator=gen), torch.randn(4, 6, 5, 5, generator=gen)
    theta = torch.rand(4, generator=gen) * 2 * math.pi
    x = cl.encode(a, b, theta)  # what the server sees
    angles = decoy_angles(5)
    fake = decoys(a, b, angles)
    assert fake.shape == (4, 4, 6, 5, 5)
    for j, delta in enumerate(angles.tolist()):
        wrong = cl.decode(x, theta - delta)  # θ′ = θ − Δθ
        torch.testing.assert_close(fake[j], wrong, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cl.decode(x, theta), a, rtol=1e-5, atol=1e-5)  # the right angle gives a
    torch.testing.assert_close(decoys(a, b, decoy_angles(2))[0], -b, rtol=1e-6, atol=1e-6)  # Δθ = π/2
    # decoys="one": sample i against its own angle.
    pick = angles[torch.tensor([0, 3, 3, 1])]
    one = decoys(a, b, pick, per_sample=True)
    assert one.shape == (1, 4, 6, 5, 5)
    torch.testing.assert_close(one[0], cl.decode(x, theta - pick), rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="per-sample"):
        decoys(a, b, decoy_angles(3), per_sample=True)


def test_gradient_penalty_measures_the_critics_slope():
    critic = Discriminator((2, 4, 4), channels=3)
    linear = torch.nn.Linear(32, 1, bias=False)

    def slope(scale):
        with torch.no_grad():
            w = torch.randn(1, 32)
            linear.weight.copy_(scale * w / w.norm())
        return lambda f: linear(f.flatten(1)).squeeze(1)

    a, fake = torch.randn(8, 2, 4, 4), torch.randn(3, 8, 2, 4, 4)
    gen = torch.Generator().manual_seed(0)
    assert gradient_penalty(slope(1.0), a, fake, gen).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(slope(3.0), a, fake, gen).item() == pytest.approx(4.0, rel=1e-5)
    assert critic(a).shape == (8,)
    with pytest.raises(ShapeError, match="N×2×4×4"):
        critic(torch.randn(8, 3, 4, 4))


# --------------------------------------------------------------------------------------------
# Configuration


def test_config_checks_names_and_types():
    assert ComplexTrainConfig.from_dict({"k": 4, "adversarial_weight": 0.5}).k == 4
    with pytest.raises(ConfigError, match="unknown training option"):
        ComplexTrainConfig.from_dict({"kk": 4})
    with pytest.raises(ConfigError, match="k must be an integer"):
        ComplexTrainConfig.from_dict({"k": "8"})
    with pytest.raises(ConfigError, match="k must be at least 2"):
        ComplexTrainConfig(k=1)
    with pytest.raises(ConfigError, match="adversarial_weight must be a number"):
        ComplexTrainConfig.from_dict({"adversarial_weight": [1]})
    with pytest.raises(ConfigError, match="n_critic"):
        ComplexTrainConfig(n_critic=0)
    with pytest.raises(ConfigError, match="lr must be a number"):  # the classifier's checks apply
        ComplexTrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="decoys must be all or one"):
        ComplexTrainConfig(decoys="some")


def test_real_networks_are_refused_in_one_line(tiny):
    tr, te = tiny
    for name in ("split-lenet", "lenet"):
        with pytest.raises(ConfigError) as err:
            train_complex(models.create(name, num_classes=10), tr, config=TINY, progress=False)
        assert "complex-valued" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="complex-valued"):
        evaluate_complex(models.create("split-lenet", num_classes=10), te)


# --------------------------------------------------------------------------------------------
# Training


def test_counterpart_in_training_is_never_the_sample_itself(tiny, monkeypatch):
    tr, _ = tiny
    pairs = []
    encode = cl.encode

    def spy(a, b, theta):
        pairs.append((a.detach().clone(), b.detach().clone()))
        return encode(a, b, theta)

    monkeypatch.setattr(cl, "encode", spy)
    # 10·10 = 100 images, batches of 33: the last batch would hold one image and joins the one before.
    train_complex(_net(), tr, config=ComplexTrainConfig(epochs=1, batch_size=33, augment=False), progress=False)
    pairs = [p for p in pairs if len(p[0]) > 1]  # not check_input's one zero image
    assert [len(a) for a, _ in pairs] == [33, 33, 34]
    for a, b in pairs:  # every row of b is another row of a, never the same one
        same = (a.flatten(1)[:, None, :] == b.flatten(1)[None, :, :]).all(-1)
        assert same.sum(0).tolist() == [1] * len(a)
        assert not bool(same.diagonal().any())


def test_one_decoy_per_sample_trains_and_resumes_like_all(tmp_path, tiny):
    tr, te = tiny
    config = ComplexTrainConfig(epochs=2, batch_size=32, augment=False, decoys="one", seed=2)
    full = train_complex(_net(), tr, tmp_path / "full", config=config, progress=False)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_complex(_net(), tr, tmp_path / "cut", config=config, on_epoch_end=stop_after_first, progress=False)
    resumed = train_complex(_net(), tr, tmp_path / "cut", config=config, resume=True, progress=False)
    a, b = models.load(full.model_path).state_dict(), models.load(resumed.model_path).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(math.isfinite(r["wasserstein"]) for r in full.history)


def test_complex_lenet_learns_the_digits(digits):
    tr, te = digits
    config = ComplexTrainConfig(epochs=2, batch_size=64, lr=3e-3, weight_decay=0.0, augment=False, seed=0)
    result = train_complex(_net(), tr, config=config, test_split=te, progress=False)
    assert isinstance(result, ComplexTrainResult) and result.model_path is None
    # Measured 0.908 after 2 epochs (0.866 after 1); chance is 0.1.
    assert result.test_accuracy > 0.7
    record = result.history[-1]
    for key in ("task_loss", "adversarial_loss", "d_loss", "gradient_penalty", "wasserstein", "train_accuracy", "test_accuracy", "lr", "seconds"):
        assert math.isfinite(record[key]), key
    assert result.history[-1]["task_loss"] < result.history[0]["task_loss"]


def test_resume_reaches_the_same_network_and_discriminator(tmp_path, tiny):
    tr, te = tiny
    full = train_complex(_net(), tr, tmp_path / "full", config=TINY, test_split=te, progress=False)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_complex(_net(), tr, tmp_path / "cut", config=TINY, test_split=te, on_epoch_end=stop_after_first, progress=False)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = train_complex(_net(), tr, tmp_path / "cut", config=TINY, test_split=te, resume=True, progress=False)

    a, b = models.load(full.model_path).state_dict(), models.load(resumed.model_path).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    da, db = load_discriminator(tmp_path / "full").state_dict(), load_discriminator(tmp_path / "cut").state_dict()
    assert all(torch.equal(da[k], db[k]) for k in da)
    history = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["test_accuracy"] == full.test_accuracy
    assert history[-1]["d_loss"] == full.history[-1]["d_loss"]
    card = models.card(tmp_path / "full")
    assert card["architecture"] == "complex-lenet" and card["input_shape"] == [3, 32, 32]
    assert card["metrics"]["train_config"]["k"] == 4
    # Resuming with another configuration is refused.
    with pytest.raises(ConfigError, match="another training configuration"):
        train_complex(_net(), tr, tmp_path / "cut", config=ComplexTrainConfig(epochs=2, batch_size=32, k=5), resume=True, progress=False)


# --------------------------------------------------------------------------------------------
# Evaluation


def test_evaluation_is_reproducible_and_never_uses_the_sample_as_its_counterpart(tiny, monkeypatch):
    tr, te = tiny
    net = _net()
    train_complex(net, tr, config=ComplexTrainConfig(epochs=1, batch_size=32, augment=False), progress=False)
    first = evaluate_complex(net, te, seed=3)
    assert evaluate_complex(net, te, seed=3, batch_size=7) == first  # batch-size independent

    seen = []
    encode = ComplexNet.encode

    def spy(self, images, theta=0.0, counterpart=None):
        with torch.no_grad():
            seen.append((self.encoder(images), counterpart.clone(), torch.as_tensor(theta).clone()))
        return encode(self, images, theta, counterpart)

    monkeypatch.setattr(ComplexNet, "encode", spy)
    evaluate_complex(net, te, seed=3)
    a = torch.cat([s[0] for s in seen]).flatten(1)
    b = torch.cat([s[1] for s in seen]).flatten(1)
    theta = torch.cat([s[2] for s in seen])
    dist = torch.cdist(b, a, compute_mode="donot_use_mm_for_euclid_dist")  # dist[i, j] = |b_i − g(I_j)|: b_i is the feature of one image j ≠ i
    assert float(dist.min(1).values.max()) < 1e-4 * float(a.abs().max())
    assert bool((dist.argmin(1) != torch.arange(len(te))).all())
    assert float(dist.diagonal().min()) > 1e-2 * float(a.abs().max())
    assert len(set(theta.tolist())) == len(te) and bool((theta >= 0).all()) and bool((theta < 2 * math.pi).all())

    # Fixed counterparts: a fixed point is refused.
    with pytest.raises(ConfigError, match="its own fooling counterpart"):
        evaluate_complex(net, te, counterparts=torch.arange(len(te)))
    with pytest.raises(ShapeError):
        evaluate_complex(net, te, counterparts=torch.zeros(3, dtype=torch.long))


# --------------------------------------------------------------------------------------------
# The command line


def _train_argv(out, *options, epochs=1):
    """``veilnet complex train`` of a complex LeNet on 3 digits per class, into ``out``."""
    return [
        "complex",
        "train",
        "--model",
        "complex-lenet",
        "--data",
        "digits",
        "--subset",
        "3",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        *options,
        "-o",
        str(out),
    ]


def test_cli_trains_evaluates_and_refuses_another_config_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    base = _train_argv(out, "--k", "3")
    assert main(base) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["complex", "evaluate", str(out), "--data", "digits", "--seed", "4", "-o", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["seed"] == 4 and result["n"] == 359 and 0.0 <= result["accuracy"] <= 1.0
    assert result["accuracy"] == evaluate_complex(models.load(out), data.load("digits", "test"), seed=4)

    capsys.readouterr()
    assert main([*base[:-2], "--k", "4", "--resume", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another training configuration" in err[0]


def test_cli_init_from_a_real_network(tmp_path, tiny, capsys):
    real = models.create("split-lenet", num_classes=10)
    models.save(real, tmp_path / "real")
    out = tmp_path / "run"
    argv = [
        "complex",
        "train",
        "--model",
        "complex-lenet",
        "--data",
        "digits",
        "--subset",
        "2",
        "--epochs",
        "1",
        "--lr",
        "1e-12",
        "--init",
        str(tmp_path / "real"),
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    net = models.load(out)
    # Encoder copied exactly (lr 1e-12 leaves it in place), Φ's first convolution's real part = the real one's.
    torch.testing.assert_close(net.encoder.features[0].weight, real.encoder.features[0].weight)
    torch.testing.assert_close(net.processor[0].weight[0], real.processor[0].weight)


def test_cli_config_file_types_are_checked(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: complex-lenet\ndata: digits\ntrain:\n  k: eight\n")
    assert main(["complex", "train", "--config", str(config), "-o", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "k must be an integer" in err[0]
    config.write_text("model: complex-lenet\ntrain: [1]\n")
    assert main(["complex", "train", "--config", str(config), "-o", str(tmp_path / "t")]) == 2
    assert "train must be a mapping" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["configs/complex-lenet-cifar10.yaml", "configs/complex-resnet20-alpha-cifar10.yaml"])
def test_shipped_configs_are_valid(path):
    from pathlib import Path

    from veilnet.training.cli import read_config

    doc = read_config(str(Path(__file__).resolve().parents[1] / path))
    config = ComplexTrainConfig.from_dict(doc["train"])
    net = models.create(doc["model"], **(doc.get("args") or {}))
    assert isinstance(net, ComplexNet) and config.epochs >= 1


def test_cli_interrupted_after_an_epoch_says_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C during `veilnet complex train` once an epoch's checkpoint is written: one line saying to resume with --resume."""
    import veilnet.training.core as core

    save = core.save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "save_checkpoint", save_then_interrupt)
    argv = _train_argv(tmp_path / "run", epochs=2)
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "veilnet: interrupted; resume with the same command and --resume"
