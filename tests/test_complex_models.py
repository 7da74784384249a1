"""veilnet.complex.models: the encoder / processing module / decoder splits of section 5.1 (Xiang
et al., ICLR 2020), their equivariance end to end, the real baselines and weights from the zoo."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

import veilnet.models as vm
from veilnet.complex import layers as cl
from veilnet.complex import models as cm
from veilnet.errors import ConfigError, ModelFormatError, ShapeError
from veilnet.models import registry

TOL = 1e-5

#: architecture -> (complex constructor, real split constructor, tiny kwargs, zoo model)
ARCHS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module], dict, Callable[..., nn.Module]]] = {
    "lenet": (cm.complex_lenet, cm.split_lenet, {"width": 0.5}, lambda **k: vm.LeNet(**k)),
    "resnet20-alpha": (cm.complex_resnet, cm.split_resnet, {"width": 0.25}, lambda **k: vm.ResNetCIFAR(20, **k)),
    "resnet20-beta": (cm.complex_resnet, cm.split_resnet, {"width": 0.25, "variant": "beta"}, lambda **k: vm.ResNetCIFAR(20, **k)),
    "resnet8-beta": (cm.complex_resnet, cm.split_resnet, {"width": 0.25, "variant": "beta", "depth": 8}, lambda **k: vm.ResNetCIFAR(8, **k)),
    "vgg16": (cm.complex_vgg16, cm.split_vgg16, {"width": 0.0625}, lambda **k: vm.VGG16(**k)),
    "alexnet": (cm.complex_alexnet, cm.split_alexnet, {"width": 0.0625, "hidden": 32}, lambda **k: vm.AlexNet(**k)),
}


def images(n: int = 3, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(seed))


def angles(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 2 * math.pi


def warmed(net: nn.Module) -> nn.Module:
    """``net`` after one train-mode pass (running statistics no longer their initial values)."""
    with torch.no_grad():
        net.train()(images(2, seed=9))
    return net


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_processor_is_rotation_equivariant(arch: str, mode: str) -> None:
    make, _, kwargs, _ = ARCHS[arch]
    torch.manual_seed(0)
    net = warmed(make(**kwargs)).train(mode == "train")
    with torch.no_grad():
        a = net.encoder(images(4))
        x = cl.encode(a, net.encoder(images(4, seed=5)), 0.0)
    assert cl.equivariance_error(net.processor, x, angles(4)) < TOL


@pytest.mark.parametrize("arch", list(ARCHS))
def test_decoded_logits_do_not_depend_on_theta(arch: str) -> None:
    """d(Re[Φ(e^{iθ}(a + b·i))·e^{−iθ}]) is the same for every θ given the same b (Eq. 3–4)."""
    make, _, kwargs, _ = ARCHS[arch]
    torch.manual_seed(0)
    net = warmed(make(**kwargs)).eval()
    x = images(4)
    with torch.no_grad():
        b = net.encoder(images(4, seed=5))
        reference = net(x, 0.0, b)
        for theta in (angles(4), 1.3, torch.full((4,), 2 * math.pi - 0.1)):
            assert torch.allclose(net(x, theta, b), reference, atol=TOL * reference.abs().max())
        # the split deployment's three steps give the same
        assert torch.allclose(net.decode(net.process(net.encode(x, angles(4), b)), angles(4)), reference, atol=TOL * reference.abs().max())
        # and decoding with the wrong angle does not
        assert not torch.allclose(net.decode(net.process(net.encode(x, angles(4), b)), angles(4) + 1.5), reference, atol=1e-2 * reference.abs().max())


def test_plain_path_is_theta_zero_and_no_counterpart() -> None:
    net = cm.complex_lenet(width=0.5).eval()
    x = images()
    with torch.no_grad():
        assert torch.equal(net(x), net(x, 0.0, torch.zeros_like(net.encoder(x))))
        assert not torch.allclose(net(x), net(x, 0.0, net.encoder(images(seed=4))))
    with pytest.raises(ShapeError, match="counterpart"):
        net(x, 0.0, torch.zeros(3, 1, 2, 2))


def test_eval_logits_of_a_sample_do_not_depend_on_its_batch() -> None:
    torch.manual_seed(0)
    net = warmed(cm.complex_resnet(width=0.25)).eval()
    x, others = images(4), images(4, seed=3)
    with torch.no_grad():
        b = net.encoder(others)
        alone = net(x[:1], angles(1), b[:1])
        mixed = net(torch.cat((x[:1], others[1:])), torch.cat((angles(1), angles(3, seed=7))), torch.cat((b[:1], b[:3])))[:1]
    assert torch.allclose(alone, mixed, atol=1e-5)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_shapes_on_32x32_inputs(arch: str, channels: int) -> None:
    make, split, kwargs, _ = ARCHS[arch]
    x = images(2, channels)
    with torch.no_grad():
        for net in (
            make(num_classes=7, in_channels=channels, **kwargs),
            *(split(num_classes=7, in_channels=channels, **kwargs, **b) for b in ({}, {"additional_layers": True}, {"noise": 0.5})),
        ):
            assert net.eval()(x).shape == (2, 7)
        net = make(num_classes=7, in_channels=channels, **kwargs)
        a = net.encoder(x)
        h = net.process(net.encode(x, 0.3))
        assert h.shape[:2] == (2, 2) and net.decoder(cl.real_part(h)).shape == (2, 7)
        assert a.dim() == 4  # the feature sent is a map N×K×h×w (the generator is a 3×3×K convolution)


def test_resnet_cuts_follow_section_5_1() -> None:
    """α: Φ works on the 16×16 maps, d starts at the first 8×8 map; β: d is the last block."""
    x = images(2)
    alpha, beta = cm.complex_resnet(depth=20, width=0.25), cm.complex_resnet(depth=20, variant="beta", width=0.25)
    assert alpha.encoder(x).shape[-2:] == (32, 32)  # the output of the layer before the first 16×16 map
    assert alpha.process(alpha.encode(x)).shape[-2:] == (16, 16)
    assert len(alpha.processor) == 3 and len(beta.processor) == 3 + 2
    assert sum(isinstance(m, vm.resnet_cifar.BasicBlock) for m in beta.decoder) == 1
    assert beta.process(beta.encode(x)).shape[-2:] == (8, 8)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_real_and_complex_processors_share_their_structure(arch: str) -> None:
    """Layer for layer: every real conv/linear has a complex counterpart with the same weight
    shape (plus the pair axis), BN ↔ complex norm, max-pool ↔ max-modulus pool, block ↔ block."""
    make, split, kwargs, _ = ARCHS[arch]
    counterpart = {
        nn.Conv2d: cl.ComplexConv2d,
        nn.Linear: cl.ComplexLinear,
        nn.BatchNorm2d: cl.ComplexNorm,
        nn.MaxPool2d: cl.ComplexMaxPool2d,
        vm.resnet_cifar.BasicBlock: cl.ComplexBasicBlock,
    }
    real = [m for m in split(additional_layers=True, **kwargs).processor.modules() if type(m) in counterpart]
    comp = [m for m in make(**kwargs).processor.modules() if type(m) in counterpart.values()]
    assert [counterpart[type(r)] for r in real] == [type(c) for c in comp]
    for r, c in zip(real, comp, strict=True):
        if isinstance(r, (nn.Conv2d, nn.Linear)):
            assert c.weight.shape == (2, *r.weight.shape)
    if not arch.startswith("resnet"):  # ReLU modules ↔ δ (the ResNet blocks call F.relu)
        assert (
            sum(isinstance(m, nn.ReLU) for m in split(**kwargs).processor.modules())
            == sum(isinstance(m, cl.ComplexNonlinearity) for m in make(**kwargs).processor.modules())
            > 0
        )


@pytest.mark.parametrize("arch", list(ARCHS))
def test_split_original_is_the_zoo_model(arch: str) -> None:
    """The original baseline holds the zoo model's tensors in its order and computes its logits."""
    _, split, kwargs, zoo = ARCHS[arch]
    full = {k: v for k, v in kwargs.items() if k != "width"}  # the zoo has no width: full width
    torch.manual_seed(0)
    real = warmed(zoo(**{k: v for k, v in full.items() if k == "hidden"})).eval()
    net = cm.load_real_weights(split(**full), real).eval()
    x = images(1)
    with torch.no_grad():
        assert torch.equal(net(x), real(x))


def test_complex_resnet_from_a_real_resnet() -> None:
    real = warmed(vm.ResNetCIFAR(20)).eval()
    net = cm.load_real_weights(cm.complex_resnet(), real).eval()
    assert torch.equal(net.processor[0].conv1.weight[0], real.layer2[0].conv1.weight)
    assert not net.processor[0].conv1.weight[1].any()
    assert torch.equal(net.processor[0].norm1.weight, real.layer2[0].bn1.weight)
    assert torch.equal(net.decoder[-1].weight, real.linear.weight)
    with torch.no_grad():  # the generator starts as the identity
        x = images(2)
        assert torch.allclose(net.encoder(x), real.layer1(torch.relu(real.bn1(real.conv1(real.normalize(x))))), atol=1e-5)
    with pytest.raises(ModelFormatError, match="not the same architecture"):
        cm.load_real_weights(cm.complex_resnet(), vm.ResNetCIFAR(32))
    impostor = nn.Sequential(vm.Normalize.for_channels(3), nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5), nn.Linear(400, 120), nn.Linear(120, 84), nn.BatchNorm1d(10))
    with pytest.raises(ModelFormatError, match="no counterpart"):
        cm.load_real_weights(cm.complex_lenet(), impostor)
    with pytest.raises(ModelFormatError, match="does not fit"):
        cm.load_real_weights(cm.complex_lenet(width=0.5), vm.LeNet())


def test_noisy_baseline_adds_noise_of_the_features_magnitude() -> None:
    noise = cm.FeatureNoise(1.0).eval()
    noise.generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, 5, 5) * torch.tensor([0.1, 1.0, 5.0, 20.0]).view(4, 1, 1, 1)
    eps = noise(a) - a
    assert torch.allclose(eps.abs().mean(dim=(1, 2, 3)), a.abs().mean(dim=(1, 2, 3)), rtol=1e-5)
    assert torch.equal(cm.FeatureNoise(0.0)(a), a)
    half = cm.FeatureNoise(0.5)
    half.generator = torch.Generator().manual_seed(0)
    assert torch.allclose(half(a) - a, 0.5 * eps, atol=1e-5)  # same ε, γ = 0.5
    with pytest.raises(ConfigError, match="gamma"):
        cm.FeatureNoise(-0.2)
    net = cm.split_lenet(noise=0.5).eval()
    x = images()
    with torch.no_grad():
        assert not torch.allclose(net(x), net(x))  # noise is drawn in eval too: it is the protection
        assert torch.equal(cm.split_lenet(noise=0.0).noise(x), x)


def test_constructors_check_their_arguments() -> None:
    with pytest.raises(ConfigError, match="variant"):
        cm.complex_resnet(variant="gamma")
    with pytest.raises(ConfigError, match="6n\\+2"):
        cm.complex_resnet(depth=21)
    with pytest.raises(ConfigError, match="width"):
        cm.complex_lenet(width=0)
    with pytest.raises(ConfigError, match="even"):
        cm.complex_resnet(width=0.3125)  # 5 channels
    with pytest.raises(ConfigError, match="c must be"):
        cm.complex_vgg16(c="max")
    with pytest.raises(ConfigError, match="image_size"):
        cm.complex_lenet(image_size=12)


def test_registry_names_save_and_load_strictly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every proposed name builds with JSON kwargs, and a model round-trips through
    veilnet.models.save/load (safetensors + card), registered in the zoo."""
    assert {
        "complex-lenet",
        "complex-resnet20-alpha",
        "complex-resnet110-beta",
        "complex-vgg16",
        "complex-alexnet",
        "split-resnet56-alpha",
        "split-lenet",
    } <= set(cm.MODELS)
    for name, ctor in cm.MODELS.items():
        assert registry.MODELS[name] is ctor
    assert "depth" not in registry.signature("complex-resnet20-alpha") and "c" in registry.signature("complex-resnet20-alpha")
    net = warmed(vm.create("complex-resnet20-beta", width=0.25, num_classes=5)).eval()
    path = vm.save(net, tmp_path / "net")
    again = vm.load(path)
    x, b = images(2), torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x, angles(2), b), net(x, angles(2), b))
    state = {k: v for k, v in net.state_dict().items() if "running_power" not in k}
    with pytest.raises(ModelFormatError, match="missing"):
        vm.load_strict(vm.create("complex-resnet20-beta", width=0.25, num_classes=5), state, "test")
    split = vm.create("split-alexnet", width=0.0625, hidden=16, noise=0.2, additional_layers=True)
    assert vm.load(vm.save(split, tmp_path / "split")).noise.gamma == 0.2
