"""Ciphertext-only attack on the block scheme: estimate K1 and K2 from pixel statistics.

Threat: the provider sees many encrypted images and can collect unrelated plain images of the
same kind (e.g. a public data set). The block scheme (ConvMixer paper, Eq. 4-6) uses one shuffle
v and one flip vector r for every block of every image, so statistics pooled over all blocks
survive encryption: with y_k = x_{v_k} (or 1 − x_{v_k} where r_k = 1),

    corr(y_k, y_l) = s_k·s_l·corr(x_{v_k}, x_{v_l}),   s = 1 − 2r,

and the same for a pixel of a block and a pixel of the block to its right or below
(neighbouring pixels correlate, flipped ones anti-correlate; across-block pairs break the mirror
symmetries of a block).

1. K2: within a block, natural pixels all correlate positively, so the signs of the leading
   eigenvector of the encrypted within-block correlation matrix give s up to one global sign,
   which the mean brightness decides (s_k·(mean_k − ½) = μ_{v_k} − ½).
2. K1: a permutation π matching the sign-corrected encrypted correlation matrices (within,
   right neighbour, lower neighbour) to those of the plain reference images: a quadratic
   assignment problem, started from a one-to-one assignment of per-position correlation
   profiles and improved by pairwise swaps until no swap helps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from veilnet import keys, metrics
from veilnet.attacks.scoring import KeyScore, assign, score
from veilnet.errors import ConfigError
from veilnet.keyed.images import apply_cipher, encrypt_images, to_blocks
from veilnet.keyed.schemes import Cipher, check_fits, cipher
from veilnet.report import Result


@dataclass(frozen=True)
class CiphertextOnlyResult(Result):
    """Key fraction recovered from ``encrypted_images`` encrypted images and ``reference_images``
    unrelated plain ones; PSNR (dB) of the encrypted and of the attacker-decrypted images
    against the true plain images, and ``swaps`` made by the local search."""

    block_size: int
    channels: int
    encrypted_images: int
    reference_images: int
    score: KeyScore
    encrypted_psnr: float
    decrypted_psnr: float
    decrypted_mse: float
    swaps: int


def recover_key(encrypted: torch.Tensor, reference: torch.Tensor, params: Mapping[str, Any], *, max_swaps: int = 500) -> tuple[Cipher, int]:
    """Estimate (K1, K2) of a block-scheme key from encrypted images and unrelated plain
    ``reference`` images (both N×C×S×S); returns the cipher and the number of swaps made."""
    if params["scheme"] != "block":
        raise ConfigError(f"the ciphertext-only attack is implemented for the block scheme; got a {params['scheme']!r} key")
    m, c, s = int(params["block_size"]), int(params["channels"]), int(params["image_size"])
    enc_means, enc_stats = _statistics(metrics.as_float(encrypted), m)
    ref_means, ref_stats = _statistics(metrics.as_float(reference), m)
    # 1. signs (K2) from the leading eigenvector of the within-block correlation
    lead = torch.linalg.eigh(enc_stats[0]).eigenvectors[:, -1]
    sign = torch.where(lead >= 0, 1.0, -1.0).double()
    if ((sign * (enc_means - 0.5)).sum() - (ref_means - 0.5).sum()).abs() > ((-sign * (enc_means - 0.5)).sum() - (ref_means - 0.5).sum()).abs():
        sign = -sign
    outer = sign[:, None] * sign[None, :]
    enc_stats = torch.stack([st * outer for st in enc_stats])
    # 2. shuffle (K1): initial assignment of profiles, then best-improvement pairwise swaps
    perm = assign(torch.cdist(_profiles(enc_stats), _profiles(ref_stats)))
    perm, swaps = _improve(perm, enc_stats, ref_stats, max_swaps)
    return Cipher.signed_permutation(m, c, s, perm, sign < 0), swaps


def ciphertext_only_attack(key: keys.Key, images: torch.Tensor, reference: torch.Tensor, *, max_swaps: int = 500) -> CiphertextOnlyResult:
    """Encrypt ``images`` with ``key``, attack them with unrelated plain ``reference`` images,
    and score the estimate against ``key`` and the decryptions against ``images``."""
    check_fits(key, image_shape=images.shape)
    check_fits(key, image_shape=reference.shape)
    x = metrics.as_float(images)
    y = encrypt_images(x, key)
    guess, swaps = recover_key(y, reference, {"scheme": key.scheme, **key.params}, max_swaps=max_swaps)
    decrypted = apply_cipher(y, guess, inverse=True)
    return CiphertextOnlyResult(
        block_size=guess.block_size,
        channels=guess.channels,
        encrypted_images=x.shape[0],
        reference_images=reference.shape[0],
        score=score(guess, cipher(key)),
        encrypted_psnr=metrics.psnr(y, x),
        decrypted_psnr=metrics.psnr(decrypted, x),
        decrypted_mse=metrics.mse(decrypted, x),
        swaps=swaps,
    )


def _statistics(images: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position means (L) and the 3×L×L correlations: within a block, with the block to
    the right, with the block below."""
    n, _, s, _ = images.shape
    g = s // block_size
    blocks = to_blocks(images.double(), block_size).reshape(n, g, g, -1)
    mean = blocks.mean(dim=(0, 1, 2))
    z = (blocks - mean) / (blocks.std(dim=(0, 1, 2)) + 1e-8)

    def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        return a.T @ b / a.shape[0]

    return mean, torch.stack([corr(z, z), corr(z[:, :, :-1], z[:, :, 1:]), corr(z[:, :-1], z[:, 1:])])


def _profiles(stats: torch.Tensor) -> torch.Tensor:
    """Per position: its sorted rows and columns of every correlation matrix (permutation-free)."""
    rows = stats.sort(dim=2).values.permute(1, 0, 2).flatten(1)
    cols = stats.sort(dim=1).values.permute(2, 0, 1).flatten(1)
    return torch.cat([rows, cols], dim=1)


def _improve(perm: torch.Tensor, enc: torch.Tensor, ref: torch.Tensor, max_swaps: int) -> tuple[torch.Tensor, int]:
    """Best-improvement pairwise swaps of maximising Σ ⟨enc, ref[π][:, π]⟩ (all swaps scored at once)."""
    length = perm.numel()
    a, b = torch.triu_indices(length, length, offset=1)
    swaps = 0
    while swaps < max_swaps:
        batch = perm.expand(a.numel(), length).clone()
        rows = torch.arange(a.numel())
        batch[rows, a], batch[rows, b] = perm[b], perm[a]
        candidates = torch.stack([(ref[i][batch[:, :, None], batch[:, None, :]] * enc[i]).sum(dim=(1, 2)) for i in range(ref.shape[0])]).sum(0)
        current = sum((ref[i][perm[:, None], perm[None, :]] * enc[i]).sum() for i in range(ref.shape[0]))
        best = int(candidates.argmax())
        if candidates[best] <= current + 1e-9:
            break
        perm = batch[best]
        swaps += 1
    return perm, swaps
