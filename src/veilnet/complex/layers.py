"""Rotation-equivariant complex-valued layers: the building blocks of the processing module Φ of
Xiang et al., "Interpretable Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020),
section 4.2 and Appendix A.

The device hides a real feature ``a`` as ``x = e^{iθ}(a + b·i)`` (Eq. 2) and decodes the server's
output as ``Re[h·e^{−iθ}]`` (Eq. 3). That works only if every layer of Φ commutes with the rotation,
``Φ(e^{iθ}f) = e^{iθ}Φ(f)`` for all θ (Eq. 4–5). Appendix A shows it for the layers here:

* :class:`ComplexConv2d`, :class:`ComplexLinear` — bias-free (``w ⊗ (e^{iθ}f) = e^{iθ}(w ⊗ f)``;
  a bias would be added unrotated);
* :class:`ComplexNonlinearity` — ``δ(f) = |f| / max(|f|, c) · f`` (Eq. 6) in place of ReLU; it scales
  each element by a function of its modulus, which a rotation leaves unchanged;
* :class:`ComplexNorm` — ``f / sqrt(E[|f|²])`` (Eq. 7) in place of batch normalisation: no mean is
  subtracted (a fixed mean would not rotate), and in eval mode the power comes from running
  statistics, so a prediction never depends on the other samples of its batch;
* :class:`ComplexMaxPool2d` (keeps the element of largest modulus), :class:`ComplexAvgPool2d`,
  :class:`ComplexAdaptiveAvgPool2d`, :class:`ComplexDropout` (one mask for the real and the
  imaginary part), :class:`ComplexFlatten` — each a matrix ``A`` applied to the vectorised feature;
* :class:`ComplexResidual` and :class:`ComplexBasicBlock` — skip connections ``f + Ψ(f)``.

Every layer also commutes with a *per-sample* rotation (a different θ for each sample of a batch),
which is what the device/server protocol needs; :func:`equivariance_error` measures it.

Representation
--------------
A complex tensor is a **real tensor with a pair axis at dimension 1**: ``N×2×C×H×W`` for feature
maps, ``N×2×F`` for vectors; index 0 of the pair axis is the real part, 1 the imaginary part.
:func:`to_complex` / :func:`from_complex` convert to and from ``torch.complex64``. A convolution
with complex weight ``W = W_r + i·W_i`` runs as *one* real convolution of the free view
``N×2C×H×W`` with the block weight ``[[W_r, −W_i], [W_i, W_r]]`` (``2C_out×2C_in×k×k``), whose
output is already ``N×2×C_out×H×W``. The linear layer, whose weight is the large tensor, applies
the weight viewed as ``2·out×in`` (no copy) to ``N×2×in`` and combines the four products.

Chosen by measurement: ``python benchmarks/complex_layers.py`` section 1 — one 16→16 3×3
convolution on 64×16×32×32, each variant's median over interleaved repetitions, as a ratio to the
real convolution of the same shape in the same run (Intel Xeon, 2 cores, torch 2.13 CPU)::

                                              2 threads, idle machine    1 thread, both cores busy
    variant                                   forward  forward+backward  forward  forward+backward
    real convolution (reference)              1.00×    1.00×             1.00×    1.00×
    native torch.complex64                    5.5×     5.9×              10.1×    4.5×
    four real convolutions                    4.1×     4.1×              7.6×     3.5×
    Gauss's three real convolutions           3.5×     3.4×              6.7×     3.0×
    doubled batch 2N×C, weights [W_r; W_i]    3.6×     6.1×              6.1×     6.1×
    block weight on the N×2C view (chosen)    2.6×     3.1×              4.0×     2.8×

(first pair: the same variants timed the same way, 15 repetitions, with the machine idle (load
average 0.9), in a scratch script before this one existed — rerun section 1 on an idle machine to
refresh it; second pair: ``--sections 1,2 --threads 1 --repeats 25``
while two other jobs kept both cores busy — with 2 threads under such load oneDNN's threads wait
on each other and even the real convolution runs 15× slower, so use ``--threads 1`` on a shared
machine.) The same run, section 2: δ costs 11–22× a ReLU forward and 17–21× forward+backward
(several elementwise passes against one), the norm 1.1× / 2.1× a BN, the max-modulus pool 1.5× /
1.8×, and a whole residual block 2.9× / 4.9× the real block.

The block weight does the 4× arithmetic of a complex product in a single oneDNN call with no
extra elementwise passes, and the pair-at-dimension-1 layout makes its input a free view; the
elementwise layers (δ, the norm, the max-modulus pool) get ``|f|²`` as one sum over the pair axis.
The script prints the full table (every layer, forward and backward) and writes it to
runs/benchmarks/complex_layers.json.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.errors import ConfigError, ShapeError

#: Axis of the (real, imaginary) pair in every complex tensor of this package.
PAIR_DIM = 1
#: Added to |f|² before the square root in δ, so its gradient at f = 0 is finite (rotation-invariant).
MODULUS_EPS = 1e-12
_Angle = float | torch.Tensor


# --------------------------------------------------------------------------------------------
# The representation


def check_pair(x: torch.Tensor, name: str = "x", min_dim: int = 3) -> None:
    """Refuse (ShapeError naming ``name``) anything but a pair tensor: real floating point,
    ``N×2×…`` with at least ``min_dim`` dimensions."""
    if x.dim() < min_dim or x.shape[PAIR_DIM] != 2:
        raise ShapeError(
            f"{name} must be a complex feature of shape N×2×… (real/imaginary pair at dimension 1, at least {min_dim} dimensions), got {tuple(x.shape)}"
        )
    if x.is_complex() or not x.is_floating_point():
        raise ShapeError(f"{name} must be a real floating-point tensor with a pair axis, got dtype {x.dtype}; use from_complex() for torch.complex tensors")


def as_pair(real: torch.Tensor, imag: torch.Tensor | None = None) -> torch.Tensor:
    """``real + i·imag`` as a pair tensor ``N×2×…`` (``imag`` zero when None)."""
    if imag is None:
        imag = torch.zeros_like(real)
    if imag.shape != real.shape:
        raise ShapeError(f"real and imaginary parts must have the same shape, got {tuple(real.shape)} and {tuple(imag.shape)}")
    return torch.stack((real, imag), dim=PAIR_DIM)


def to_complex(x: torch.Tensor) -> torch.Tensor:
    """Pair tensor ``N×2×…`` → ``torch.complex`` tensor ``N×…``."""
    check_pair(x, min_dim=2)
    return torch.complex(x[:, 0], x[:, 1])


def from_complex(z: torch.Tensor) -> torch.Tensor:
    """``torch.complex`` tensor ``N×…`` → pair tensor ``N×2×…``."""
    if not z.is_complex():
        raise ShapeError(f"from_complex takes a complex tensor, got dtype {z.dtype}")
    return torch.stack((z.real, z.imag), dim=PAIR_DIM)


def real_part(x: torch.Tensor) -> torch.Tensor:
    """``Re[x]``: ``N×2×…`` → ``N×…``."""
    check_pair(x, min_dim=2)
    return x[:, 0]


def modulus(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``sqrt(|x|² + eps)`` elementwise: ``N×2×…`` → ``N×…``."""
    check_pair(x, min_dim=2)
    return x.square().sum(dim=PAIR_DIM).add(eps).sqrt()


def _angle(theta: _Angle, x: torch.Tensor) -> torch.Tensor:
    """θ as a tensor broadcastable against the real part ``N×…`` of ``x``: a number, a 0-d
    tensor, or one angle per sample (shape ``N``)."""
    t = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t
    if t.shape != (x.shape[0],):
        raise ShapeError(f"theta must be one number or one angle per sample (shape ({x.shape[0]},)), got shape {tuple(t.shape)}")
    return t.view(-1, *([1] * (x.dim() - 2)))


def rotate(x: torch.Tensor, theta: _Angle) -> torch.Tensor:
    """``e^{iθ}·x`` for a pair tensor ``x``; θ is one number or one angle per sample (shape ``N``)."""
    check_pair(x, min_dim=2)
    t = _angle(theta, x)
    cos, sin = torch.cos(t), torch.sin(t)
    re, im = x[:, 0], x[:, 1]
    return torch.stack((cos * re - sin * im, sin * re + cos * im), dim=PAIR_DIM)


def encode(a: torch.Tensor, b: torch.Tensor, theta: _Angle) -> torch.Tensor:
    """Eq. 2: ``x = e^{iθ}(a + b·i)`` — the real feature ``a`` hidden with the fooling counterpart
    ``b`` (same shape, ``N×…``) at angle θ (a number or one per sample). Returns ``N×2×…``."""
    if a.shape != b.shape:
        raise ShapeError(f"the fooling counterpart b must have the shape of the feature a {tuple(a.shape)}, got {tuple(b.shape)}")
    return rotate(as_pair(a, b), theta)


def decode(h: torch.Tensor, theta: _Angle) -> torch.Tensor:
    """Eq. 3 (inside d): ``Re[h·e^{−iθ}] = cos θ·Re h + sin θ·Im h``: ``N×2×…`` → ``N×…``."""
    check_pair(h, "h", min_dim=2)
    t = _angle(theta, h)
    return torch.cos(t) * h[:, 0] + torch.sin(t) * h[:, 1]


def equivariance_error(module: nn.Module, x: torch.Tensor, theta: _Angle, *, seed: int = 0) -> float:
    """``max |Φ(e^{iθ}x) − e^{iθ}Φ(x)| / max |Φ(x)|`` (Eq. 4) for ``module`` in its current mode.

    Both calls run with the same random seed (so dropout draws the same mask) and on the same
    batch (so train-mode normalisation sees the same statistics: its power ``E|f|²`` does not
    change under per-sample rotations). Running statistics are restored afterwards.
    """
    state = {k: v.clone() for k, v in module.state_dict().items()}
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reference = rotate(module(x), theta)
            torch.manual_seed(seed)
            rotated = module(rotate(x, theta))
    finally:
        module.load_state_dict(state)
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny)
    return float((rotated - reference).abs().max() / scale)


# --------------------------------------------------------------------------------------------
# Linear layers (Appendix A, item 1)


def _block_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[[W_r, −W_i], [W_i, W_r]]`` from a weight ``2×out×in×…``: the real form of a complex weight."""
    wr, wi = weight[0], weight[1]
    return torch.cat((torch.cat((wr, -wi), dim=1), torch.cat((wi, wr), dim=1)), dim=0)


def _init_complex_(weight: torch.Tensor, fan_in: int) -> None:
    """Each part ~ N(0, 1/fan_in), so ``E|w|² = 2/fan_in`` — He initialisation in modulus
    (as Trabelsi et al., "Deep Complex Networks", section 3.6)."""
    with torch.no_grad():
        weight.normal_(0.0, 1.0 / math.sqrt(fan_in))


class ComplexConv2d(nn.Module):
    """Bias-free complex 2-d convolution ``Conv(f) = w ⊗ f`` (section 4.2; Appendix A, item 1).

    ``weight`` has shape ``2×out_channels×in_channels×kh×kw`` (real part, imaginary part).
    Computed as one real convolution of the ``N×2C×H×W`` view with the block weight
    ``[[W_r, −W_i], [W_i, W_r]]`` (see the module docstring for why).

    Shape: ``N×2×in_channels×H×W`` → ``N×2×out_channels×H'×W'`` (H', W' as :class:`torch.nn.Conv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (kh, kw), stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(2, out_channels, in_channels, kh, kw))
        _init_complex_(self.weight, in_channels * kh * kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x, min_dim=5)
        n, _, c, h, w = x.shape
        if c != self.in_channels:
            raise ShapeError(f"ComplexConv2d expects {self.in_channels} channels, got {c}")
        y = F.conv2d(x.reshape(n, 2 * c, h, w), _block_weight(self.weight), None, self.stride, self.padding, self.dilation)
        return y.view(n, 2, self.out_channels, *y.shape[-2:])

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, bias=False"


class ComplexLinear(nn.Module):
    """Bias-free complex fully-connected layer ``f ↦ W f`` (the convolution's 1×1 case).

    ``weight``: ``2×out_features×in_features``. Shape: ``N×2×in_features`` → ``N×2×out_features``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(2, out_features, in_features))
        _init_complex_(self.weight, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x, min_dim=3)
        if x.dim() != 3 or x.shape[2] != self.in_features:
            raise ShapeError(f"ComplexLinear expects N×2×{self.in_features}, got {tuple(x.shape)}")
        # F.linear of N×2×F with the weight viewed as (2·out)×F (no copy; the weight is the large
        # tensor here): y[:, p, q·out + o] = Σ_f x_p W_q, then W_r x_r − W_i x_i and W_i x_r + W_r x_i.
        o = self.out_features
        y = F.linear(x, self.weight.view(2 * o, self.in_features))
        return torch.stack((y[:, 0, :o] - y[:, 1, o:], y[:, 0, o:] + y[:, 1, :o]), dim=PAIR_DIM)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias=False"


# --------------------------------------------------------------------------------------------
# Nonlinearity and normalisation (Appendix A, items 2 and 3)

#: ``c`` value of :class:`ComplexNonlinearity` meaning "per sample and channel, E_ij |f_ijk|".
CHANNEL_MEAN = "mean"


class ComplexNonlinearity(nn.Module):
    """δ of Eq. 6: ``δ(f_ijk) = |f_ijk| / max(|f_ijk|, c) · f_ijk`` — elements with modulus below
    ``c`` shrink by ``|f|/c``, the others pass unchanged; the phase is never changed.

    Arguments:
        c: a positive constant (the paper's ResNets: ``c = 1``), or ``"mean"`` for the paper's
            LeNet, VGG and AlexNet: ``c_k = E_ij |f_ijk|``, the mean modulus of channel ``k`` of
            *the same sample* over the spatial positions (section 5.1). For a vector ``N×2×F``
            (after flattening) the whole vector is one channel: ``c = E_k |f_k|`` of the sample.
            Either way c depends only on moduli, so δ stays equivariant, and only on the sample
            itself, so δ never mixes samples.

    Shape: ``N×2×…`` → same.
    """

    def __init__(self, c: float | str = 1.0) -> None:
        super().__init__()
        if isinstance(c, str):
            if c != CHANNEL_MEAN:
                raise ConfigError(f"c must be a positive number or {CHANNEL_MEAN!r}, got {c!r}")
        elif not (isinstance(c, (int, float)) and c > 0 and math.isfinite(c)):
            raise ConfigError(f"c must be a positive number or {CHANNEL_MEAN!r}, got {c!r}")
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x)
        m = x.square().sum(dim=PAIR_DIM, keepdim=True).add_(MODULUS_EPS).sqrt()  # N×1×…
        if self.c == CHANNEL_MEAN:
            dims = tuple(range(3, m.dim())) if m.dim() > 3 else (2,)
            scale = m / m.mean(dim=dims, keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)
        else:
            scale = m * (1.0 / float(self.c))
        return x * scale.clamp(max=1.0)  # |f| / max(|f|, c) = min(|f| / c, 1)

    def extra_repr(self) -> str:
        return f"c={self.c!r}"


class ComplexNorm(nn.Module):
    """The complex normalisation of Eq. 7, ``norm(f_k) = f_k / sqrt(E[|f_k|²])`` per channel k,
    in place of batch normalisation, times a learnable real per-channel ``weight`` (BN's γ; a
    real or complex scale commutes with the rotation, a shift β would not).

    In training, ``E`` is over the batch and the positions (Appendix A, item 3: ``E_ijl``) and
    ``running_power`` follows it with ``momentum`` (as BN's running variance); in eval mode the
    running power is used, so one sample's output never depends on the rest of its batch. The
    batch power is invariant under per-sample rotations, so train mode is equivariant too.

    Shape: ``N×2×C×…`` (``C = num_features``) → same.
    """

    running_power: torch.Tensor

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"momentum must be in [0, 1], got {momentum}")
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.register_buffer("running_power", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x)
        if x.shape[2] != self.num_features:
            raise ShapeError(f"ComplexNorm expects {self.num_features} channels at dimension 2, got {tuple(x.shape)}")
        if self.training:
            dims = (0, *range(3, x.dim()))  # batch and positions: all but the pair and C
            power = x.square().mean(dim=dims).sum(dim=0)  # E|f|² = E[Re²] + E[Im²]
            with torch.no_grad():
                self.running_power.lerp_(power.detach(), self.momentum)
        else:
            power = self.running_power
        scale = torch.rsqrt(power + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        return x * scale.view(1, 1, -1, *([1] * (x.dim() - 3)))

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, affine={self.weight is not None}"


# --------------------------------------------------------------------------------------------
# Pooling, dropout, reshaping (Appendix A, item 4: Φ(f) = A f)


class ComplexMaxPool2d(nn.Module):
    """Max-pooling that keeps, in each window, the element of largest modulus (section 4.2), so
    the phase passes through. Shape: ``N×2×C×H×W`` → ``N×2×C×H'×W'`` (as :class:`torch.nn.MaxPool2d`).

    Where two elements of a window have (nearly) equal moduli, rounding may pick either after a
    rotation; with continuous features that happens with probability ~0.
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride or kernel_size, padding, ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x, min_dim=5)
        n, _, c, h, w = x.shape
        power = x.square().sum(dim=PAIR_DIM)
        _, index = F.max_pool2d(power, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode, return_indices=True)
        flat = index.flatten(2).unsqueeze(1).expand(n, 2, c, -1)
        return x.flatten(3).gather(3, flat).view(n, 2, c, *index.shape[-2:])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class ComplexAvgPool2d(nn.Module):
    """Average pooling of real and imaginary parts. Shape: ``N×2×C×H×W`` → ``N×2×C×H'×W'``."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x, min_dim=5)
        n, _, c, h, w = x.shape
        y = F.avg_pool2d(x.reshape(n, 2 * c, h, w), self.kernel_size, self.stride, self.padding)
        return y.view(n, 2, c, *y.shape[-2:])


class ComplexAdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling to ``output_size`` (1 = global). Shape: ``N×2×C×H×W`` → ``N×2×C×s×s``."""

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x, min_dim=5)
        n, _, c, h, w = x.shape
        y = F.adaptive_avg_pool2d(x.reshape(n, 2 * c, h, w), self.output_size)
        return y.view(n, 2, c, *y.shape[-2:])


class ComplexDropout(nn.Module):
    """Dropout that drops the real and the imaginary part of an element together (one mask for
    both; section 4.2), scaling the kept ones by ``1/(1−p)``; the identity in eval mode.
    Shape: ``N×2×…`` → same."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x)
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0], 1, *x.shape[2:]), dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ComplexFlatten(nn.Module):
    """``N×2×C×H×W`` → ``N×2×(C·H·W)``, keeping the pair axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pair(x)
        return x.flatten(2)


# --------------------------------------------------------------------------------------------
# Skip connections (Appendix A, item 5)


class ComplexShortcutA(nn.Module):
    """The CIFAR ResNets' option-A shortcut on complex features: subsample by 2 and zero-pad
    ``pad`` channels on each side (linear, so equivariant). Shape: ``N×2×C×H×W`` → ``N×2×(C+2·pad)×⌈H/2⌉×⌈W/2⌉``."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class ComplexResidual(nn.Module):
    """A skip connection ``f ↦ shortcut(f) + inner(f)`` (Appendix A, item 5), equivariant when
    ``inner`` and ``shortcut`` (default: the identity) are."""

    def __init__(self, inner: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.inner(x)


class ComplexBasicBlock(nn.Module):
    """The complex counterpart of the CIFAR ResNet basic block (:class:`veilnet.models.resnet_cifar.BasicBlock`):
    ``δ(norm2(conv2(δ(norm1(conv1 f)))) + shortcut(f))`` with bias-free 3×3 complex convolutions,
    :class:`ComplexNorm` for BN and δ (Eq. 6, ``c`` = 1 in the paper's ResNets) for ReLU.
    Parameter names follow the real block (``conv1``, ``conv2``; ``norm1``/``norm2`` for ``bn1``/``bn2``).

    Shape: ``N×2×in_planes×H×W`` → ``N×2×planes×H/stride×W/stride``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, c: float | str = 1.0) -> None:
        super().__init__()
        self.conv1 = ComplexConv2d(in_planes, planes, 3, stride=stride, padding=1)
        self.norm1 = ComplexNorm(planes)
        self.act1 = ComplexNonlinearity(c)
        self.conv2 = ComplexConv2d(planes, planes, 3, stride=1, padding=1)
        self.norm2 = ComplexNorm(planes)
        self.act2 = ComplexNonlinearity(c)
        if stride != 1 or in_planes != planes:
            if planes != in_planes + 2 * (planes // 4):
                raise ConfigError(f"option-A shortcut needs planes = 2 × in_planes with planes divisible by 4, got {in_planes} -> {planes}")
            self.shortcut: nn.Module = ComplexShortcutA(planes // 4)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


__all__ = [
    "CHANNEL_MEAN",
    "PAIR_DIM",
    "ComplexAdaptiveAvgPool2d",
    "ComplexAvgPool2d",
    "ComplexBasicBlock",
    "ComplexConv2d",
    "ComplexDropout",
    "ComplexFlatten",
    "ComplexLinear",
    "ComplexMaxPool2d",
    "ComplexNonlinearity",
    "ComplexNorm",
    "ComplexResidual",
    "ComplexShortcutA",
    "as_pair",
    "check_pair",
    "decode",
    "encode",
    "equivariance_error",
    "from_complex",
    "modulus",
    "real_part",
    "rotate",
    "to_complex",
]
