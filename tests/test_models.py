"""The zoo: every model builds by name, maps [0, 1] images to the right shape, and exposes the
attributes other subpackages rely on (normalize, patch_embed, cls_token, pos_embed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veilnet import metrics, models
from veilnet.errors import ConfigError, ModelFormatError, ShapeError

# Small settings so every forward pass is quick; (name, kwargs, input shape).
SMALL = {
    "resnet20": {},
    "resnet32": {},
    "resnet44": {},
    "resnet56": {},
    "resnet110": {},
    "lenet": {},
    "vgg16": {},
    "alexnet": {"hidden": 64},
    "convmixer": {"dim": 16, "depth": 2, "kernel_size": 3, "patch_size": 4},
    "vit": {"image_size": 32, "patch_size": 8, "dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32},
}


def test_every_name_is_covered() -> None:
    from veilnet.complex.models import MODELS as COMPLEX  # covered by tests/test_complex_models.py
    from veilnet.complex.protocol import PARTS  # covered by tests/test_complex_protocol.py

    assert set(models.names()) == set(SMALL) | {"unet"} | set(COMPLEX) | set(PARTS)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize(("num_classes", "in_channels"), [(10, 3), (7, 1)])
def test_classifier_forward_shape(name: str, num_classes: int, in_channels: int) -> None:
    model = models.create(name, num_classes=num_classes, in_channels=in_channels, **SMALL[name]).eval()
    assert isinstance(model.normalize, models.Normalize)
    assert model.normalize.mean.shape == (in_channels,)
    with torch.no_grad():
        out = model(torch.rand(2, in_channels, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_normalize_is_first_and_defaults() -> None:
    model = models.create("resnet20")
    assert model.normalize.mean.tolist() == pytest.approx(models.IMAGENET_MEAN)
    assert model.normalize.std.tolist() == pytest.approx(models.IMAGENET_STD)
    gray = models.create("lenet", in_channels=1)
    assert gray.normalize.mean.tolist() == [0.5] and gray.normalize.std.tolist() == [0.25]
    x = torch.rand(3, 3, 8, 8)
    identity = models.Normalize([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert torch.equal(identity(x), x)
    norm = models.Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0])
    assert torch.allclose(norm(x), (x - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(3, 1, 1))
    # Changing the layer's buffers changes the model: the forward really starts with normalize.
    model.eval()
    before = model(x)
    model.normalize.mean.fill_(0.9)
    assert not torch.allclose(model(x), before)


def test_mean_std_kwargs() -> None:
    model = models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=2, mean=0, std=1)
    assert model.normalize.mean.tolist() == [0, 0, 0] and model.normalize.std.tolist() == [1, 1, 1]
    with pytest.raises(ConfigError, match="mean needs 3 values"):
        models.create("lenet", mean=[0.5, 0.5])
    with pytest.raises(ConfigError, match="positive"):
        models.create("lenet", std=[1, 0, 1])


def test_convmixer_contract() -> None:
    model = models.create("convmixer", dim=24, depth=2, kernel_size=5, patch_size=4, in_channels=3)
    assert model.patch_size == 4
    pe = model.patch_embed
    assert isinstance(pe, nn.Conv2d) and pe.in_channels == 3 and pe.out_channels == 24
    assert pe.kernel_size == (4, 4) and pe.stride == (4, 4) and pe.bias is not None


def test_vit_contract() -> None:
    model = models.create("vit", image_size=32, patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32).eval()
    assert model.patch_size == 8 and model.image_size == 32
    pe = model.patch_embed
    assert isinstance(pe, nn.Conv2d) and pe.kernel_size == (8, 8) and pe.stride == (8, 8) and pe.bias is not None
    assert model.cls_token.shape == (1, 1, 16)
    assert model.pos_embed.shape == (1, 1 + 16, 16)
    # Patch embedding = flattened (C, P, P) patches times the weight matrix (Eq. (1)).
    x = torch.rand(2, 3, 32, 32)
    patches = x.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(2, 16, 3 * 64)
    manual = patches @ pe.weight.reshape(16, -1).T + pe.bias
    assert torch.allclose(pe(x).flatten(2).transpose(1, 2), manual, atol=1e-5)
    # The head reads the class token: the position embedding's row 0 matters.
    with torch.no_grad():
        before = model(x)
        model.pos_embed[0, 0] += torch.randn(16)
        assert not torch.allclose(model(x), before)
    with pytest.raises(ShapeError, match="32×32"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        models.create("vit", image_size=30, patch_size=4)
    with pytest.raises(ConfigError, match="multiple of heads"):
        models.create("vit", dim=10, heads=3)


def test_resnet_option_a_shortcut() -> None:
    model = models.create("resnet20")
    assert sum(p.numel() for p in model.parameters()) == 269_722  # 0.27M as in He et al. Table 6
    block = model.layer2[0]
    x = torch.rand(1, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (1, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any() and not out[:, 24:].any()
    assert not list(block.shortcut.parameters())


def test_unet_any_feature_shape() -> None:
    net = models.create("unet", in_channels=5, out_channels=3, image_size=32, base_width=4).eval()
    with torch.no_grad():
        for shape in [(2, 5, 8, 8), (2, 5, 3, 7), (2, 5, 64, 64), (2, 5)]:
            out = net(torch.randn(*shape))
            assert out.shape == (2, 3, 32, 32)
            assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ShapeError, match="N×5×H×W"):
        net(torch.randn(2, 4, 8, 8))
    with pytest.raises(ConfigError, match="multiple of 16"):
        models.create("unet", image_size=40)


def test_create_errors_list_what_is_known() -> None:
    with pytest.raises(ModelFormatError, match="known models: resnet20"):
        models.create("resnet18")
    with pytest.raises(ConfigError, match="does not take width.*num_classes"):
        models.create("lenet", width=3)
    with pytest.raises(ConfigError, match="does not take depth"):
        models.create("resnet20", depth=56)
    with pytest.raises(ConfigError, match="JSON"):
        models.create("lenet", mean=torch.zeros(3))
    model = models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=2)
    assert model.veilnet_arch == {"name": "convmixer", "kwargs": {"dim": 8, "depth": 1, "kernel_size": 3, "patch_size": 2}}


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("convmixer", {"patch_size": 0}, "patch_size must be a positive integer, got 0"),
        ("convmixer", {"dim": -8}, "dim must be a positive integer, got -8"),
        ("convmixer", {"kernel_size": 0}, "kernel_size must be a positive integer"),
        ("convmixer", {"depth": 2.5}, "depth must be a positive integer"),
        ("convmixer", {"dim": True}, "dim must be a positive integer"),
        ("vit", {"heads": 0}, "heads must be a positive integer"),
        ("vit", {"patch_size": 0}, "patch_size must be a positive integer"),
        ("vit", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("vit", {"dropout": "x"}, "dropout must be a number"),
        ("resnet20", {"num_classes": -1}, "num_classes must be a positive integer"),
        ("lenet", {"mean": float("nan")}, "JSON"),
        ("unet", {"base_width": 0}, "base_width must be a positive integer"),
    ],
)
def test_create_refuses_arguments_that_build_no_model(name: str, kwargs: dict, message: str) -> None:
    """Each of these built a broken model or raised a bare RuntimeError/ZeroDivisionError before."""
    with pytest.raises(ConfigError, match=message):
        models.create(name, **kwargs)


def test_create_turns_any_constructor_failure_into_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(num_classes: int = 10) -> nn.Module:
        raise RuntimeError("Trying to create tensor with negative dimension")

    monkeypatch.setitem(models.MODELS, "lenet", broken)
    with pytest.raises(ConfigError, match="cannot build lenet with num_classes=3: Trying to create tensor"):
        models.create("lenet", num_classes=3)


def test_predict_runs_in_eval_mode_and_leaves_every_module_as_it_was() -> None:
    torch.manual_seed(0)
    model = models.create("resnet20").train()  # batch norm: training mode would use the batch's statistics
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 3, 32, 32)
    logits = metrics.predict(model, x, batch_size=2)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.allclose(logits, model.eval()(x), atol=1e-6)
    # A wrapper in training mode around a model in evaluation mode: both stay as they were.
    wrapper = models.prepare(model, compile=False)
    assert wrapper.training and not model.training
    metrics.predict(wrapper, x)
    assert wrapper.training and not any(m.training for m in model.modules())


def test_check_input_names_both_shapes_and_leaves_the_model_as_it_was() -> None:
    model = models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    models.check_input(model, (3, 32, 32))
    models.check_input(model, (3, 24, 24))
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ShapeError, match=r"convmixer takes 3×\?×\? images \(C×H×W\), but gray has 1×32×32"):
        models.check_input(model, (1, 32, 32), data="gray")
    with pytest.raises(ShapeError, match=r"cannot run on odd's 3×30×30 images: ConvMixer with patch size 4"):
        models.check_input(model, (3, 30, 30), data="odd")
    # A card that records the training images is exact: a size the network could run is refused.
    model.veilnet_card = {"input_shape": [3, 32, 32]}
    with pytest.raises(ShapeError, match=r"takes 3×32×32 images .* has 3×24×24"):
        models.check_input(model, (3, 24, 24))
    lenet = models.create("lenet", in_channels=1, image_size=16)
    assert models.input_shape(lenet) == (1, 16, 16)
    with pytest.raises(ShapeError, match="takes 1×16×16"):
        models.check_input(lenet, (1, 32, 32))
