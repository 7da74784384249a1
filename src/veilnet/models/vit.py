"""Vision Transformer (Dosovitskiy et al., 2021), as used with a secret key in
``papers/federated-vit-key-encryption.md`` (section 3.1, Eq. (1)).

``z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos`` (Eq. (1)): the patch embedding E is
``model.patch_embed``, an ``nn.Conv2d`` with kernel = stride = ``patch_size`` and bias, whose
weight reshaped to ``dim × (C·P·P)`` acts on patches flattened in (C, P, P) order; the class
token is ``model.cls_token`` (1×1×dim) and E_pos is ``model.pos_embed`` (1×(1+N)×dim, row 0 for
the class token, then patches in row-major order). Pre-norm transformer blocks
(``x + MSA(LN(x))``, ``x + MLP(LN(x))``), a final LayerNorm, and a linear head on the class token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.errors import ConfigError, ShapeError
from veilnet.models.normalize import Normalize


class Attention(nn.Module):
    """Multi-head self-attention with ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer encoder block."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViT for ``image_size``×``image_size`` images cut into ``patch_size`` patches.

    Defaults are a small CIFAR-sized model (patch 4, dim 192, 6 blocks of 3 heads, MLP 384).

    Shape: ``N×in_channels×image_size×image_size`` in [0, 1] → ``N×num_classes``.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
        mlp_dim: int = 384,
        dropout: float = 0.0,
        num_classes: int = 10,
        in_channels: int = 3,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if dim % heads:
            raise ConfigError(f"dim {dim} is not a multiple of heads {heads}")
        self.image_size = image_size
        self.patch_size = patch_size
        num_patches = (image_size // patch_size) ** 2
        self.normalize = Normalize.for_channels(in_channels, mean, std)
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + num_patches, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_dim, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ShapeError(f"ViT built for {self.image_size}×{self.image_size} images, got {tuple(x.shape[-2:])}")
        patches = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)
        z = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], dim=1) + self.pos_embed
        z = self.norm(self.blocks(self.drop(z)))
        return self.head(z[:, 0])


__all__ = ["ViT"]
