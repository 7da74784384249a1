"""veilnet.complex.layers: the pair representation, each layer's arithmetic, and the rotation
equivariance Φ(e^{iθ}f) = e^{iθ}Φ(f) of Eq. 4–5 (Xiang et al., ICLR 2020, Appendix A)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from veilnet.complex import layers as cl
from veilnet.errors import ConfigError, ShapeError

#: Relative tolerance of the equivariance check (float32 rounding is ~1e-6 here).
TOL = 1e-5


def pair(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def angles(n: int, seed: int = 1) -> torch.Tensor:
    """One random angle per sample in [0, 2π)."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 2 * math.pi


# --- the representation ---------------------------------------------------------------------


def test_pair_complex_round_trip_and_rotation_is_complex_multiplication() -> None:
    x = pair(4, 2, 3, 5, 5)
    z = cl.to_complex(x)
    assert z.dtype == torch.complex64 and z.shape == (4, 3, 5, 5)
    assert torch.equal(cl.from_complex(z), x)
    theta = angles(4)
    expected = torch.exp(1j * theta.to(torch.complex64)).view(4, 1, 1, 1) * z
    assert torch.allclose(cl.to_complex(cl.rotate(x, theta)), expected, atol=1e-6)
    assert torch.allclose(cl.rotate(x, 0.7), cl.from_complex(z * complex(math.cos(0.7), math.sin(0.7))), atol=1e-6)


def test_decode_inverts_encode_eq2_eq3() -> None:
    a, b = pair(3, 4, 6, 6, seed=1), pair(3, 4, 6, 6, seed=2)
    theta = angles(3)
    x = cl.encode(a, b, theta)
    assert torch.allclose(cl.decode(x, theta), a, atol=1e-6)
    assert torch.allclose(cl.decode(x, theta + math.pi / 2), b, atol=1e-5)  # Re[(a+bi)·(-i)] = b
    assert not torch.allclose(cl.decode(x, theta + 1.0), a, atol=1e-2)


def test_representation_refuses_wrong_shapes() -> None:
    with pytest.raises(ShapeError, match="pair"):
        cl.rotate(torch.zeros(2, 3, 4), 0.1)
    with pytest.raises(ShapeError, match="one angle per sample"):
        cl.rotate(torch.zeros(2, 2, 4), torch.zeros(3))
    with pytest.raises(ShapeError, match="counterpart"):
        cl.encode(torch.zeros(2, 3), torch.zeros(2, 4), 0.0)
    with pytest.raises(ShapeError, match="complex"):
        cl.from_complex(torch.zeros(2, 2))
    with pytest.raises(ShapeError, match="from_complex"):
        cl.ComplexConv2d(3, 3, 3)(torch.zeros(1, 2, 3, 4, 4, dtype=torch.complex64))


# --- each layer's arithmetic ------------------------------------------------------------------


def test_conv_equals_native_complex_convolution() -> None:
    conv = cl.ComplexConv2d(3, 5, 3, stride=2, padding=1)
    x = pair(2, 2, 3, 9, 9)
    weight = torch.complex(conv.weight[0], conv.weight[1]).detach()
    expected = F.conv2d(cl.to_complex(x), weight, stride=2, padding=1)
    assert torch.allclose(cl.to_complex(conv(x)), expected, atol=1e-5)


def test_linear_equals_complex_matrix_product() -> None:
    lin = cl.ComplexLinear(7, 4)
    x = pair(3, 2, 7)
    weight = torch.complex(lin.weight[0], lin.weight[1]).detach()
    assert torch.allclose(cl.to_complex(lin(x)), cl.to_complex(x) @ weight.T, atol=1e-5)


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_nonlinearity_eq6_constant_c(c: float) -> None:
    x = pair(2, 2, 3, 4, 4)
    z = cl.to_complex(x)
    m = z.abs()
    expected = m / torch.clamp(m, min=c) * z
    assert torch.allclose(cl.to_complex(cl.ComplexNonlinearity(c)(x)), expected, atol=1e-6)


def test_nonlinearity_eq6_channel_mean_is_per_sample_and_channel() -> None:
    x = pair(2, 2, 3, 4, 4)
    z = cl.to_complex(x)
    m = z.abs()
    c = m.mean(dim=(2, 3), keepdim=True)  # c_k = E_ij |f_ijk| of each sample
    expected = m / torch.maximum(m, c) * z
    assert torch.allclose(cl.to_complex(cl.ComplexNonlinearity("mean")(x)), expected, atol=1e-6)
    v = pair(2, 2, 9)  # a vector is one channel
    mv = cl.to_complex(v).abs()
    cv = mv.mean(dim=1, keepdim=True)
    assert torch.allclose(cl.to_complex(cl.ComplexNonlinearity("mean")(v)), (mv / torch.maximum(mv, cv)) * cl.to_complex(v), atol=1e-6)


def test_nonlinearity_has_finite_gradient_at_zero_and_checks_c() -> None:
    x = torch.zeros(1, 2, 2, 2, 2, requires_grad=True)
    cl.ComplexNonlinearity(1.0)(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    for bad in (0.0, -1.0, "median", float("nan")):
        with pytest.raises(ConfigError, match="c must be"):
            cl.ComplexNonlinearity(bad)


def test_norm_eq7_train_batch_power_and_eval_running_power() -> None:
    norm = cl.ComplexNorm(3, momentum=0.5)
    x = pair(8, 2, 3, 5, 5) * torch.tensor([1.0, 3.0, 0.2]).view(1, 1, 3, 1, 1)
    y = norm.train()(x)
    power = cl.to_complex(y).abs().square().mean(dim=(0, 2, 3))
    assert torch.allclose(power, torch.ones(3), atol=1e-3)  # E_{l,ij} |f|² = 1 per channel
    batch_power = cl.to_complex(x).abs().square().mean(dim=(0, 2, 3))
    assert torch.allclose(norm.running_power, 0.5 + 0.5 * batch_power)
    norm.eval()
    expected = x / torch.sqrt(norm.running_power + norm.eps).view(1, 1, 3, 1, 1)
    assert torch.allclose(norm(x), expected, atol=1e-6)


def test_maxpool_keeps_the_element_of_largest_modulus() -> None:
    x = pair(2, 2, 3, 6, 6)
    y = cl.to_complex(cl.ComplexMaxPool2d(2)(x))
    z = cl.to_complex(x)
    windows = z.unfold(2, 2, 2).unfold(3, 2, 2).reshape(2, 3, 3, 3, 4)  # N×C×H'×W'×(2·2)
    best = windows.abs().argmax(dim=-1, keepdim=True)
    assert torch.equal(y, windows.gather(-1, best).squeeze(-1))
    assert cl.ComplexMaxPool2d(2, ceil_mode=True)(pair(1, 2, 1, 5, 5)).shape == (1, 2, 1, 3, 3)


def test_avg_pools_average_both_parts() -> None:
    x = pair(2, 2, 3, 6, 6)
    z = cl.to_complex(x)
    assert torch.allclose(cl.to_complex(cl.ComplexAvgPool2d(2)(x)), torch.complex(F.avg_pool2d(z.real, 2), F.avg_pool2d(z.imag, 2)))
    assert torch.allclose(cl.ComplexAdaptiveAvgPool2d(1)(x)[..., 0, 0], x.mean(dim=(3, 4)), atol=1e-6)


def test_dropout_drops_real_and_imaginary_parts_together() -> None:
    drop = cl.ComplexDropout(0.5).train()
    x = pair(4, 2, 8, 6, 6).abs() + 0.1  # no zeros of its own
    torch.manual_seed(0)
    y = drop(x)
    dropped_re, dropped_im = y[:, 0] == 0, y[:, 1] == 0
    assert torch.equal(dropped_re, dropped_im) and 0.3 < dropped_re.float().mean() < 0.7
    assert torch.allclose(y[:, 0][~dropped_re], 2 * x[:, 0][~dropped_re])
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ConfigError, match="dropout"):
        cl.ComplexDropout(1.0)


# --- equivariance (Eq. 4-5, Appendix A) ------------------------------------------------------


def _norm_eval() -> nn.Module:
    """A ComplexNorm whose running power is not the initial 1 (as after training)."""
    norm = cl.ComplexNorm(4)
    norm.running_power.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0]))
    return norm


#: name -> (layer factory, input shape)
LAYERS = {
    "conv": (lambda: cl.ComplexConv2d(4, 6, 3, stride=2, padding=1), (5, 2, 4, 8, 8)),
    "linear": (lambda: cl.ComplexLinear(12, 5), (5, 2, 12)),
    "delta-c1": (lambda: cl.ComplexNonlinearity(1.0), (5, 2, 4, 6, 6)),
    "delta-mean": (lambda: cl.ComplexNonlinearity("mean"), (5, 2, 4, 6, 6)),
    "delta-mean-vector": (lambda: cl.ComplexNonlinearity("mean"), (5, 2, 12)),
    "norm": (_norm_eval, (5, 2, 4, 6, 6)),
    "norm-vector": (lambda: cl.ComplexNorm(12), (5, 2, 12)),
    "maxpool": (lambda: cl.ComplexMaxPool2d(2), (5, 2, 4, 8, 8)),
    "maxpool-ceil": (lambda: cl.ComplexMaxPool2d(2, ceil_mode=True), (5, 2, 4, 7, 7)),
    "avgpool": (lambda: cl.ComplexAvgPool2d(2), (5, 2, 4, 8, 8)),
    "adaptive-avgpool": (lambda: cl.ComplexAdaptiveAvgPool2d(2), (5, 2, 4, 8, 8)),
    "dropout": (lambda: cl.ComplexDropout(0.3), (5, 2, 4, 6, 6)),
    "flatten": (lambda: cl.ComplexFlatten(), (5, 2, 4, 3, 3)),
    "shortcut-a": (lambda: cl.ComplexShortcutA(2), (5, 2, 4, 8, 8)),
    "residual": (lambda: cl.ComplexResidual(nn.Sequential(cl.ComplexConv2d(4, 4, 3, padding=1), cl.ComplexNonlinearity(1.0))), (5, 2, 4, 6, 6)),
    "basic-block": (lambda: cl.ComplexBasicBlock(4, 4), (5, 2, 4, 8, 8)),
    "basic-block-stride2": (lambda: cl.ComplexBasicBlock(4, 8, stride=2, c="mean"), (5, 2, 4, 8, 8)),
}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_is_rotation_equivariant(name: str, mode: str) -> None:
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = factory().train(mode == "train")
    x = pair(*shape, seed=3)
    assert cl.equivariance_error(layer, x, angles(shape[0])) < TOL  # one θ per sample
    assert cl.equivariance_error(layer, x, 2.5) < TOL  # one θ for the batch


class _ConvWithBias(cl.ComplexConv2d):
    """Deliberately not equivariant: a (complex) bias is added after the rotation."""

    def __init__(self) -> None:
        super().__init__(4, 4, 3, padding=1)
        self.bias = nn.Parameter(torch.randn(2, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.bias.view(1, 2, 4, 1, 1)


class _PartwiseReLU(nn.Module):
    """Deliberately not equivariant: ReLU on the real and imaginary parts separately."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class _CentredNorm(cl.ComplexNorm):
    """Deliberately not equivariant in eval mode: subtracts a fixed (running) complex mean, as a BN would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - 0.5)


@pytest.mark.parametrize("broken", [_ConvWithBias, _PartwiseReLU, lambda: _CentredNorm(4)], ids=["conv-bias", "partwise-relu", "centred-norm"])
def test_the_equivariance_check_fails_for_non_equivariant_layers(broken) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    layer = broken().eval()
    assert cl.equivariance_error(layer, pair(5, 2, 4, 6, 6, seed=3), angles(5)) > 1e-2


def test_equivariance_check_restores_running_statistics() -> None:
    norm = cl.ComplexNorm(4).train()
    before = norm.running_power.clone()
    cl.equivariance_error(norm, pair(5, 2, 4, 6, 6), 1.0)
    assert torch.equal(norm.running_power, before)


# --- no dependence on the rest of the batch in eval mode ----------------------------------------


@pytest.mark.parametrize("name", ["norm", "norm-vector", "delta-mean", "basic-block-stride2", "maxpool", "dropout"])
def test_eval_output_of_a_sample_does_not_depend_on_its_batch(name: str) -> None:
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = factory()
    layer.train()(pair(*shape, seed=7))  # move running statistics away from their initial values
    layer.eval()
    x = pair(*shape, seed=3)
    others = pair(*shape, seed=4) * 10
    alone = layer(x[:1])
    mixed = layer(torch.cat((x[:1], others[1:])))[:1]
    assert torch.allclose(alone, mixed, atol=1e-6)


def test_train_mode_norm_does_depend_on_its_batch() -> None:
    """The counterpart of the test above: it can tell batch statistics from running ones."""
    norm = cl.ComplexNorm(4).train()
    x = pair(5, 2, 4, 6, 6)
    assert not torch.allclose(norm(x)[:1], norm(torch.cat((x[:1], 10 * x[1:])))[:1])
