"""The feature layers of the split-inference defences and the sample distance correlation.

Each layer sits where :class:`veilnet.complex.models.SplitNet` keeps its ``noise`` module, between
the encoder and what the device sends, and takes ``(a, generator=None)``: ``a`` the encoder's
feature ``N×K×h×w``, ``generator`` the device's :class:`torch.Generator` for its draws (None: the
global RNG, as in training, which :func:`veilnet.training.train_epochs` seeds).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from veilnet.checks import check_number
from veilnet.errors import ShapeError


def uniform(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """U[0, 1) draws of ``like``'s shape and dtype, on ``like``'s device, drawn from ``generator``
    on the generator's own device (a CPU generator serves a GPU feature alike)."""
    device = like.device if generator is None else generator.device
    return torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


class FeatureDropout(nn.Module):
    """Dropout on the released feature, in training and inference alike — He et al., "Model
    inversion attacks against collaborative inference" (ACSAC 2019), the dropout defence:
    ``y = m ⊙ a / (1 − p)``, ``m_i ~ Bernoulli(1 − p)`` i.i.d. per element (a fresh mask per image)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(check_number("dropout p", p, low=0.0, high=1.0, high_open=True))

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.p == 0.0:
            return a
        return a * (uniform(a, generator) >= self.p) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class FeatureTap(nn.Module):
    """The identity, keeping the feature of the last training forward pass (``recorded``) for a
    regulariser that needs it (NoPeek's distance correlation, :func:`distance_correlation`)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: torch.Tensor | None = None

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self.recorded = a if self.training else None
        return a


class LaplaceNoise(nn.Module):
    """Learned additive Laplace noise: ``y = a + n``, ``n = s·e^ρ ⊙ ε``, ``ε_i ~ Laplace(0, 1)``
    i.i.d. (a fresh draw per image), with a trainable log-ratio ``ρ`` per feature element (shape
    ``K×h×w``) and a fixed ``scale`` ``s`` (the mean ``|a|`` of the trained encoder's features), so
    that ``e^ρ_i`` is element ``i``'s noise-to-signal ratio ``E|n_i| / E|a|`` (``E|ε| = 1``).
    ``ε = −sgn(u)·ln(1 − 2|u|)`` for ``u ~ U[−½, ½)`` (the inverse of Laplace's CDF)."""

    def __init__(self, shape: tuple[int, ...] | torch.Size, scale: float) -> None:
        super().__init__()
        self.log_ratio = nn.Parameter(torch.zeros(tuple(shape)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def noise_to_signal(self) -> float:
        """The mean noise-to-signal ratio ``mean_i e^ρ_i`` (= ``E|n| / E|a|``)."""
        return float(self.log_ratio.detach().exp().mean())

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = uniform(a, generator) - 0.5
        eps = -u.sign() * (1.0 - 2.0 * u.abs()).clamp_min(torch.finfo(a.dtype).tiny).log()
        return a + self.scale * self.log_ratio.exp() * eps


def distance_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sample distance correlation ``dCor_n(X, Y)`` of the rows of ``x`` and ``y`` (``N×…``,
    each row flattened) — Székely, Rizzo & Bakirov, "Measuring and testing dependence by
    correlation of distances" (Ann. Statist. 2007), section 2.2, Definition 4, as NoPeek's DCOR:

        a_jk = ‖x_j − x_k‖,  A_jk = a_jk − ā_j· − ā_·k + ā_··   (B likewise from y)
        dCov²_n(X, Y) = (1/n²) Σ_jk A_jk B_jk,    dVar²_n(X) = dCov²_n(X, X)
        dCor_n(X, Y) = sqrt(dCov²_n(X, Y) / sqrt(dVar²_n(X)·dVar²_n(Y)))   (0 when a dVar is 0)

    In [0, 1]; 1 for ``y = c·x·Q + b`` (any c ≠ 0, orthogonal Q, shift b); differentiable (the
    square root's argument is clamped away from 0, where its gradient is infinite)."""
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ShapeError(f"distance correlation needs the same number (>= 2) of rows in both, got {x.shape[0]} and {y.shape[0]}")
    a, b = _centred_distances(x), _centred_distances(y.to(x.dtype))
    tiny = torch.finfo(a.dtype).tiny
    denominator = ((a * a).mean() * (b * b).mean()).sqrt()
    ratio = ((a * b).mean() / denominator.clamp_min(tiny)).clamp_min(math.sqrt(tiny))
    return torch.where(denominator > tiny, ratio.sqrt(), torch.zeros_like(ratio))


def _centred_distances(x: torch.Tensor) -> torch.Tensor:
    """The double-centred matrix ``A`` of the rows' Euclidean distances (see :func:`distance_correlation`)."""
    flat = x.flatten(1)
    d = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


__all__ = ["FeatureDropout", "FeatureTap", "LaplaceNoise", "distance_correlation", "uniform"]
