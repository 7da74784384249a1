"""Complex-valued privacy networks split into encoder g, processing module Φ and decoder d, and the
real baselines built from the same splits — Xiang et al., "Interpretable Complex-Valued Neural
Networks for Privacy Protection" (ICLR 2020), sections 4.1–4.2 and 5.1, Fig. 1.

The device runs the real encoder ``a = g(I)`` (Eq. 1), hides ``a`` as ``x = e^{iθ}(a + b·i)`` with a
secret angle θ and a fooling counterpart ``b`` (Eq. 2), the server runs the complex, rotation-
equivariant Φ (:mod:`veilnet.complex.layers`), and the device decodes ``ŷ = d(Re[Φ(x)·e^{−iθ}])``
(Eq. 3). Every encoder ends with the GAN's generator layer, a 3×3×K convolution (Fig. 1b; K = the
channels of the feature it follows). Where each architecture is cut (section 5.1), for the zoo's
32×32 models (:mod:`veilnet.models`):

============  ===========================================  ==============================  =========================
architecture  encoder g (real)                             processing module Φ             decoder d (real)
============  ===========================================  ==============================  =========================
LeNet         first convolution (+ReLU, pool), generator   the rest, up to the logits      softmax only (identity:
                                                                                           the loss applies it)
ResNet-α      conv1, BN, ReLU, stage 1 (the layers before  stage 2 (16×16 maps)            stage 3 (from the first
              the first 16×16 map), generator                                              8×8 map), pool, linear
ResNet-β      as α                                         stage 2 and stage 3 but its     the last residual block,
                                                           last block                      pool, linear
VGG-16        everything before the last map of the third  that convolution to the global  the fully-connected layer
              stage (56×56 at 224 px; 8×8 here), generator average pool
AlexNet       the first three convolutions, generator      conv 4, conv 5, pools           the fully-connected layers
============  ===========================================  ==============================  =========================

In Φ, ReLU becomes δ (Eq. 6) with ``c = 1`` for the ResNets and ``c_k = E_ij |f_ijk|`` for LeNet,
VGG and AlexNet (section 5.1); BN becomes the complex norm (Eq. 7); convolutions and linear layers
lose their biases; max-pooling keeps the element of largest modulus.

The same splits give the paper's baselines (section 5.1) as :class:`SplitNet` (all real): (1) the
original network; (2) "with additional layers" — the generator layer inserted, no adversarial loss
(``additional_layers=True``); (3) the noisy network, ``a + γ·ε`` after the encoder (``noise=γ``).
The real processors are built by the same code as the complex ones (a real or complex set of layer
factories), so the two share their structure layer for layer, and a split original holds exactly
the zoo model's tensors in the zoo model's order (:func:`load_real_weights`).

Every model takes [0, 1] pixels (the zoo's :class:`~veilnet.models.normalize.Normalize` is the
encoder's first layer) and every constructor takes JSON keyword arguments only (``num_classes``,
``in_channels``, ``width`` — a multiplier of every channel count —, ``c``, ``mean``, ``std``, …), so
they can be registered in :data:`veilnet.models.registry.MODELS`; :data:`MODELS` here lists them
under their proposed names.

Example::

    net = complex_resnet(depth=20, variant="alpha").eval()
    a = net.encoder(images)                                 # device
    x = net.encode(images, theta, counterpart=b)            # device: Eq. 2, sent to the server
    h = net.process(x)                                      # server: Φ, needs nothing secret
    logits = net.decode(h, theta)                           # device: Eq. 3
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from veilnet.complex import layers as cl
from veilnet.errors import ConfigError, ModelFormatError, ShapeError
from veilnet.models import registry
from veilnet.models.normalize import Normalize
from veilnet.models.resnet_cifar import DEPTHS, BasicBlock

#: The ResNet variants of section 5.1.
VARIANTS = ("alpha", "beta")

_Stats = float | Sequence[float] | None


# --------------------------------------------------------------------------------------------
# Containers


class Encoder(nn.Module):
    """The real encoder g (Eq. 1): ``normalize`` → ``features`` (the first layers of the real
    network) → ``generator`` (the GAN generator's 3×3×K convolution, Fig. 1b; the identity in
    the original network). Shape: ``N×C×H×W`` in [0, 1] → the feature ``a``, ``N×K×h×w``."""

    def __init__(self, normalize: Normalize, features: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.normalize, self.features, self.generator = normalize, features, generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.generator(self.features(self.normalize(images)))


class FeatureNoise(nn.Module):
    """Baseline 3 of section 5.1: ``a + γ·ε``, ε Gaussian noise scaled per sample to the average
    magnitude of ``a`` (``mean|ε| = mean|a|``). Active in training and evaluation alike (it is the
    protection); draws from ``self.generator`` (a :class:`torch.Generator`, on its own device) when
    one is set."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ConfigError(f"noise level gamma must be a non-negative number, got {gamma}")
        self.gamma = float(gamma)
        self.generator: torch.Generator | None = None

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if self.gamma == 0.0:
            return a
        drawn_on = a.device if self.generator is None else self.generator.device
        eps = torch.randn(a.shape, generator=self.generator, dtype=a.dtype, device=drawn_on).to(a.device)
        dims = tuple(range(1, a.dim()))
        eps = eps * (a.abs().mean(dim=dims, keepdim=True) / eps.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12))
        return a + self.gamma * eps

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class SplitNet(nn.Module):
    """A real network divided into encoder / processing module / decoder (the paper's baselines,
    section 5.1): ``decoder(processor(noise(encoder(images))))``; ``noise`` is the identity
    unless the noisy baseline's γ > 0. Shape: ``N×C×H×W`` in [0, 1] → ``N×num_classes``."""

    def __init__(self, encoder: Encoder, processor: nn.Module, decoder: nn.Module, noise: float = 0.0) -> None:
        super().__init__()
        self.encoder, self.processor, self.decoder = encoder, processor, decoder
        self.noise: nn.Module = FeatureNoise(noise) if noise > 0 else nn.Identity()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What the server receives: the encoder's output, with the noise of baseline 3."""
        return self.noise(self.encoder(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.processor(self.features(images)))


class ComplexNet(nn.Module):
    """The complex-valued network ``[g, Φ, d]`` of section 4 (Fig. 1a).

    ``encoder`` (real, device) → Eq. 2 → ``processor`` Φ (complex, server) → Eq. 3 → ``decoder``
    (real, device). :meth:`encode`, :meth:`process` and :meth:`decode` are the three steps of the
    split deployment; :meth:`forward` runs them in one process.
    """

    def __init__(self, encoder: Encoder, processor: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.processor, self.decoder = encoder, processor, decoder

    def encode(self, images: torch.Tensor, theta: float | torch.Tensor = 0.0, counterpart: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 1–2: ``x = e^{iθ}(g(I) + b·i)``; ``counterpart`` is the fooling counterpart ``b``
        (a feature of the shape of ``g(I)``, e.g. ``g(I′)`` of another image; zero when None); θ is
        one number or one angle per sample. Returns the pair tensor ``N×2×K×h×w`` sent to the server."""
        a = self.encoder(images)
        b = torch.zeros_like(a) if counterpart is None else counterpart
        if b.shape != a.shape:
            raise ShapeError(f"the fooling counterpart must have the shape of the encoder's feature {tuple(a.shape)}, got {tuple(b.shape)}")
        return cl.encode(a, b, theta)

    def process(self, x: torch.Tensor) -> torch.Tensor:
        """The processing module: ``h = Φ(x)`` on a pair tensor; uses nothing secret."""
        return self.processor(x)

    def decode(self, h: torch.Tensor, theta: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Eq. 3: ``ŷ = d(Re[h·e^{−iθ}])`` → logits ``N×num_classes``."""
        return self.decoder(cl.decode(h, theta))

    def forward(self, images: torch.Tensor, theta: float | torch.Tensor | None = None, counterpart: torch.Tensor | None = None) -> torch.Tensor:
        """End to end, ``d(Re[Φ(e^{iθ}(g(I) + b·i))·e^{−iθ}])``; θ = 0 and b = 0 when None (the
        plain path). By Eq. 4 the result does not depend on θ for a given b."""
        theta = 0.0 if theta is None else theta
        return self.decode(self.process(self.encode(images, theta, counterpart)), theta)


@torch.no_grad()
def batched(
    fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, *, batch_size: int = 256, device: str | torch.device | None = None
) -> torch.Tensor:
    """``fn`` over ``inputs`` cut into batches of ``batch_size`` along the first axis (each moved
    to ``device`` first when given), under ``torch.no_grad``, the outputs concatenated: how the
    device, the attacks and the attack suite run an encoder, a feature function or an attack
    model over many images or pair tensors. The caller sets the modules' mode."""
    return torch.cat(
        [fn(inputs[i : i + batch_size] if device is None else inputs[i : i + batch_size].to(device)) for i in range(0, inputs.shape[0], batch_size)]
    )


# --------------------------------------------------------------------------------------------
# Layer factories: the same architecture code builds a real or a complex processing module


class _RealLayers:
    """The real network's layers, exactly as in the zoo (biases where the zoo has them)."""

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Module:
        return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)

    def norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels)

    def act(self) -> nn.Module:
        return nn.ReLU()

    def maxpool(self, k: int, ceil_mode: bool = False) -> nn.Module:
        return nn.MaxPool2d(k, ceil_mode=ceil_mode)

    def global_pool(self, size: int) -> list[nn.Module]:
        return [nn.AdaptiveAvgPool2d(size), nn.Flatten()]

    def flatten(self) -> nn.Module:
        return nn.Flatten()

    def linear(self, fin: int, fout: int) -> nn.Module:
        return nn.Linear(fin, fout)

    def block(self, in_planes: int, planes: int, stride: int = 1) -> nn.Module:
        return BasicBlock(in_planes, planes, stride)


class _ComplexLayers:
    """Their equivariant counterparts (section 4.2): no biases, δ with constant ``c``, complex norm."""

    def __init__(self, c: float | str) -> None:
        cl.ComplexNonlinearity(c)  # validates c
        self.c = c

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Module:
        return cl.ComplexConv2d(cin, cout, k, stride=stride, padding=padding)

    def norm(self, channels: int) -> nn.Module:
        return cl.ComplexNorm(channels)

    def act(self) -> nn.Module:
        return cl.ComplexNonlinearity(self.c)

    def maxpool(self, k: int, ceil_mode: bool = False) -> nn.Module:
        return cl.ComplexMaxPool2d(k, ceil_mode=ceil_mode)

    def global_pool(self, size: int) -> list[nn.Module]:
        return [cl.ComplexAdaptiveAvgPool2d(size), cl.ComplexFlatten()]

    def flatten(self) -> nn.Module:
        return cl.ComplexFlatten()

    def linear(self, fin: int, fout: int) -> nn.Module:
        return cl.ComplexLinear(fin, fout)

    def block(self, in_planes: int, planes: int, stride: int = 1) -> nn.Module:
        return cl.ComplexBasicBlock(in_planes, planes, stride, c=self.c)


_Layers = _RealLayers | _ComplexLayers
_Parts = tuple[Encoder, nn.Module, nn.Module]


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _check_width(width: float) -> None:
    if not (isinstance(width, (int, float)) and width > 0 and math.isfinite(width)):
        raise ConfigError(f"width must be a positive number (a multiplier of every channel count), got {width!r}")


def _generator(channels: int, additional_layers: bool) -> nn.Module:
    """The GAN generator layer, a 3×3×K convolution keeping K = ``channels`` (Fig. 1b)."""
    return nn.Conv2d(channels, channels, 3, padding=1) if additional_layers else nn.Identity()


# --------------------------------------------------------------------------------------------
# Architectures (the zoo's, cut as in section 5.1)


def _lenet(ops: _Layers, additional_layers: bool, num_classes: int, in_channels: int, image_size: int, width: float, mean: _Stats, std: _Stats) -> _Parts:
    """:class:`veilnet.models.LeNet`: g = C1 (+ReLU, pool) and the generator; Φ = C3 … F6 → logits; d = softmax."""
    _check_width(width)
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(f"LeNet needs image_size >= 16, got {image_size}")
    c1, c3, f5, f6 = (_scaled(v, width) for v in (6, 16, 120, 84))
    encoder = Encoder(
        Normalize.for_channels(in_channels, mean, std),
        nn.Sequential(nn.Conv2d(in_channels, c1, 5), nn.ReLU(), nn.MaxPool2d(2)),
        _generator(c1, additional_layers),
    )
    processor = nn.Sequential(
        ops.conv(c1, c3, 5), ops.act(), ops.maxpool(2),
        ops.flatten(), ops.linear(c3 * side * side, f5), ops.act(), ops.linear(f5, f6), ops.act(), ops.linear(f6, num_classes),
    )  # fmt: skip
    return encoder, processor, nn.Identity()


def _resnet(
    ops: _Layers, additional_layers: bool, depth: int, variant: str, num_classes: int, in_channels: int, width: float, mean: _Stats, std: _Stats
) -> _Parts:
    """:class:`veilnet.models.ResNetCIFAR`: α — g = conv1 … stage 1, Φ = stage 2, d = stage 3 …;
    β — d = the last block and the classifier, Φ the blocks between (section 5.1)."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
    if variant not in VARIANTS:
        raise ConfigError(f"ResNet variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    _check_width(width)
    n, base = (depth - 2) // 6, _scaled(16, width)
    if base % 2:
        raise ConfigError(f"width {width} gives {base} channels in stage 1; the option-A shortcuts need an even number")
    real = _RealLayers()

    def stage(layers: _Layers, cin: int, planes: int, stride: int) -> list[nn.Module]:
        return [layers.block(cin, planes, stride), *(layers.block(planes, planes) for _ in range(n - 1))]

    stem = nn.Sequential(nn.Conv2d(in_channels, base, 3, padding=1, bias=False), nn.BatchNorm2d(base), nn.ReLU(), nn.Sequential(*stage(real, base, base, 1)))
    encoder = Encoder(Normalize.for_channels(in_channels, mean, std), stem, _generator(base, additional_layers))
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * base, num_classes)]
    stage3 = [(2 * base, 4 * base, 2), *((4 * base, 4 * base, 1) for _ in range(n - 1))]
    cut = 0 if variant == "alpha" else n - 1  # blocks of stage 3 in the processing module
    processor = nn.Sequential(*stage(ops, base, 2 * base, 2), *(ops.block(*spec) for spec in stage3[:cut]))
    decoder = nn.Sequential(*(real.block(*spec) for spec in stage3[cut:]), *head)
    for m in [*encoder.modules(), *processor.modules(), *decoder.modules()]:
        if isinstance(m, (nn.Conv2d, nn.Linear)):  # as the zoo's ResNet (He et al.'s init)
            nn.init.kaiming_normal_(m.weight)
    return encoder, processor, decoder


#: VGG-16's configuration D (as :data:`veilnet.models.vgg.CONFIG_D`); the encoder ends before
#: the third convolution of the third stage, the last 56×56 map at 224 px (section 5.1).
_VGG_ENCODER = (64, 64, "M", 128, 128, "M", 256, 256)
_VGG_PROCESSOR = (256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16(ops: _Layers, additional_layers: bool, num_classes: int, in_channels: int, width: float, mean: _Stats, std: _Stats) -> _Parts:
    """:class:`veilnet.models.VGG16`: g = the first 7 convolutions and the generator; Φ = the other
    6 and the global average pool; d = the fully-connected layer."""
    _check_width(width)

    def convs(layers: _Layers, config: tuple[int | str, ...], cin: int) -> tuple[list[nn.Module], int]:
        out: list[nn.Module] = []
        for item in config:
            if item == "M":
                out.append(layers.maxpool(2))
            else:
                cout = _scaled(int(item), width)
                out += [layers.conv(cin, cout, 3, padding=1), layers.norm(cout), layers.act()]
                cin = cout
        return out, cin

    front, k = convs(_RealLayers(), _VGG_ENCODER, in_channels)
    encoder = Encoder(Normalize.for_channels(in_channels, mean, std), nn.Sequential(*front), _generator(k, additional_layers))
    back, channels = convs(ops, _VGG_PROCESSOR, k)
    return encoder, nn.Sequential(*back, *ops.global_pool(1)), nn.Linear(channels, num_classes)


def _alexnet(
    ops: _Layers, additional_layers: bool, num_classes: int, in_channels: int, width: float, hidden: int, dropout: float, mean: _Stats, std: _Stats
) -> _Parts:
    """:class:`veilnet.models.AlexNet`: g = the first three convolutions and the generator; Φ =
    conv 4, conv 5 and the pools; d = the fully-connected layers (section 5.1)."""
    _check_width(width)
    c1, c2, c3, c4, c5 = (_scaled(v, width) for v in (64, 192, 384, 256, 256))
    front = nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
    )  # fmt: skip
    encoder = Encoder(Normalize.for_channels(in_channels, mean, std), front, _generator(c3, additional_layers))
    processor = nn.Sequential(
        ops.conv(c3, c4, 3, padding=1), ops.act(), ops.conv(c4, c5, 3, padding=1), ops.act(), ops.maxpool(2, ceil_mode=True), *ops.global_pool(2)
    )
    decoder = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(c5 * 2 * 2, hidden), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )  # fmt: skip
    return encoder, processor, decoder


# --------------------------------------------------------------------------------------------
# Constructors (JSON keyword arguments; registry names in MODELS)


def complex_lenet(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0, c: float | str = "mean", mean: _Stats = None, std: _Stats = None
) -> ComplexNet:
    """Complex-valued LeNet (section 5.1): δ with ``c_k = E_ij |f_ijk|`` (``c="mean"``) by default."""
    return ComplexNet(*_lenet(_ComplexLayers(c), True, num_classes, in_channels, image_size, width, mean, std))


def complex_resnet(
    depth: int = 20,
    variant: str = "alpha",
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    c: float | str = 1.0,
    mean: _Stats = None,
    std: _Stats = None,
) -> ComplexNet:
    """Complex-valued CIFAR ResNet-``depth``-α/β (section 5.1): δ with ``c = 1`` by default."""
    return ComplexNet(*_resnet(_ComplexLayers(c), True, depth, variant, num_classes, in_channels, width, mean, std))


def complex_vgg16(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, c: float | str = "mean", mean: _Stats = None, std: _Stats = None
) -> ComplexNet:
    """Complex-valued VGG-16 (section 5.1): δ with ``c_k = E_ij |f_ijk|`` by default."""
    return ComplexNet(*_vgg16(_ComplexLayers(c), True, num_classes, in_channels, width, mean, std))


def complex_alexnet(
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    hidden: int = 1024,
    dropout: float = 0.5,
    c: float | str = "mean",
    mean: _Stats = None,
    std: _Stats = None,
) -> ComplexNet:
    """Complex-valued AlexNet (section 5.1): δ with ``c_k = E_ij |f_ijk|`` by default."""
    return ComplexNet(*_alexnet(_ComplexLayers(c), True, num_classes, in_channels, width, hidden, dropout, mean, std))


def split_lenet(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    width: float = 1.0,
    additional_layers: bool = False,
    noise: float = 0.0,
    mean: _Stats = None,
    std: _Stats = None,
) -> SplitNet:
    """Real LeNet cut like :func:`complex_lenet`: the original (default), ``additional_layers=True``
    (baseline "with additional layers"), or ``noise=γ`` (the noisy baseline)."""
    return SplitNet(*_lenet(_RealLayers(), additional_layers, num_classes, in_channels, image_size, width, mean, std), noise=noise)


def split_resnet(
    depth: int = 20,
    variant: str = "alpha",
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    additional_layers: bool = False,
    noise: float = 0.0,
    mean: _Stats = None,
    std: _Stats = None,
) -> SplitNet:
    """Real CIFAR ResNet cut like :func:`complex_resnet` (baselines as :func:`split_lenet`)."""
    return SplitNet(*_resnet(_RealLayers(), additional_layers, depth, variant, num_classes, in_channels, width, mean, std), noise=noise)


def split_vgg16(
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    additional_layers: bool = False,
    noise: float = 0.0,
    mean: _Stats = None,
    std: _Stats = None,
) -> SplitNet:
    """Real VGG-16 cut like :func:`complex_vgg16` (baselines as :func:`split_lenet`)."""
    return SplitNet(*_vgg16(_RealLayers(), additional_layers, num_classes, in_channels, width, mean, std), noise=noise)


def split_alexnet(
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    hidden: int = 1024,
    dropout: float = 0.5,
    additional_layers: bool = False,
    noise: float = 0.0,
    mean: _Stats = None,
    std: _Stats = None,
) -> SplitNet:
    """Real AlexNet cut like :func:`complex_alexnet` (baselines as :func:`split_lenet`)."""
    return SplitNet(*_alexnet(_RealLayers(), additional_layers, num_classes, in_channels, width, hidden, dropout, mean, std), noise=noise)


#: Proposed registry names → constructors (for :data:`veilnet.models.registry.MODELS`).
MODELS: dict[str, Callable[..., nn.Module]] = {
    "complex-lenet": complex_lenet,
    **{f"complex-resnet{d}-{v}": functools.partial(complex_resnet, depth=d, variant=v) for d in DEPTHS for v in VARIANTS},
    "complex-vgg16": complex_vgg16,
    "complex-alexnet": complex_alexnet,
    "split-lenet": split_lenet,
    **{f"split-resnet{d}-{v}": functools.partial(split_resnet, depth=d, variant=v) for d in DEPTHS for v in VARIANTS},
    "split-vgg16": split_vgg16,
    "split-alexnet": split_alexnet,
}


# --------------------------------------------------------------------------------------------
# Weights from a real zoo model


def _leaves(module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> list[nn.Module]:
    """Modules that own tensors directly, in registration (state-dict) order."""
    skipped = {id(m) for s in skip for m in s.modules()}
    return [
        m for m in module.modules() if id(m) not in skipped and (any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)))
    ]


def load_real_weights(net: SplitNet | ComplexNet, real: nn.Module) -> SplitNet | ComplexNet:
    """Copy a real zoo model's weights (e.g. a pretrained :class:`veilnet.models.ResNetCIFAR`) into
    ``net`` built for the same architecture and width; returns ``net``.

    Tensors correspond one to one and in order, because the splits keep the zoo's layers in the
    zoo's order. A real :class:`SplitNet` gets an exact copy (the original network computes the
    zoo model's logits). A :class:`ComplexNet`'s processor is initialised from the real layers:
    each convolution/linear weight becomes the real part (imaginary part 0; biases are dropped, Φ
    has none), each BN's γ the complex norm's weight (BN's β and running mean have no equivariant
    counterpart); encoder and decoder are copied exactly. A generator layer, which the zoo model
    lacks, is set to the identity (centred 1 in the kernel, zero bias). A model that does not
    correspond raises :class:`ModelFormatError`.
    """
    generator = net.encoder.generator
    ours, theirs = _leaves(net, skip=(generator,)), _leaves(real)
    if len(ours) != len(theirs):
        raise ModelFormatError(f"{type(real).__name__} has {len(theirs)} layers with weights, the split network {len(ours)}: not the same architecture")
    with torch.no_grad():
        for mine, src in zip(ours, theirs, strict=True):
            if isinstance(mine, (cl.ComplexConv2d, cl.ComplexLinear)) and isinstance(src, (nn.Conv2d, nn.Linear)):
                if mine.weight.shape[1:] != src.weight.shape:
                    raise ModelFormatError(f"{src} does not fit {mine}")
                mine.weight[0].copy_(src.weight)
                mine.weight[1].zero_()
            elif isinstance(mine, cl.ComplexNorm) and isinstance(src, nn.BatchNorm2d):
                if mine.weight is None or mine.weight.shape != src.weight.shape:
                    raise ModelFormatError(f"{src} does not fit {mine}")
                mine.weight.copy_(src.weight)
            elif type(mine) is type(src):
                theirs_state, mine_state = src.state_dict(), mine.state_dict()
                if {k: v.shape for k, v in theirs_state.items()} != {k: v.shape for k, v in mine_state.items()}:
                    raise ModelFormatError(f"{src} does not fit {mine}")
                mine.load_state_dict(theirs_state)
            else:
                raise ModelFormatError(f"{type(src).__name__} of {type(real).__name__} has no counterpart {type(mine).__name__} in the split network")
        if isinstance(generator, nn.Conv2d):
            generator.weight.zero_()
            k = generator.kernel_size
            generator.weight[:, :, k[0] // 2, k[1] // 2].copy_(torch.eye(generator.out_channels, generator.in_channels))
            if generator.bias is not None:
                generator.bias.zero_()
    return net


for _name, _constructor in MODELS.items():
    registry.register(_name, _constructor)

__all__ = [
    "MODELS",
    "VARIANTS",
    "ComplexNet",
    "Encoder",
    "FeatureNoise",
    "SplitNet",
    "batched",
    "complex_alexnet",
    "complex_lenet",
    "complex_resnet",
    "complex_vgg16",
    "load_real_weights",
    "split_alexnet",
    "split_lenet",
    "split_resnet",
    "split_vgg16",
]
