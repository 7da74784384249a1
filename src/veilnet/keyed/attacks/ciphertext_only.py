"""Ciphertext-only attack: estimate a permutation-type key from pixel statistics.

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

ViT scheme with a permutation or signed-permutation Ea (ViT paper, Eq. 9-12): Ea is the same for
every block, so steps 1-2 run on the within-block correlation alone (this leaves the block's
mirror images indistinguishable); then Eb is solved as a jigsaw puzzle: the correlation between
every pair of encrypted block positions, with Ea undone, is scored against the plain
right-neighbour and lower-neighbour correlations, and the blocks are placed greedily (strongest
pair first, then the best piece for the best free slot). Second-order statistics cannot tell an
image from its left-right mirror, so the result may be the mirrored key: ``mirrored_psnr``
measures the decryption up to that mirror. A continuous Ea (orthogonal) is not attacked here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from veilnet import keys, metrics
from veilnet.errors import ConfigError
from veilnet.keyed.attacks.scoring import KeyScore, assign, decibels, score
from veilnet.keyed.images import apply_cipher, encrypt_images, to_blocks
from veilnet.keyed.schemes import PERMUTATION_KINDS, Cipher, KeyParams, check_fits, cipher
from veilnet.report import Result


@dataclass(frozen=True)
class CiphertextOnlyResult(Result):
    """Key fraction recovered from ``encrypted_images`` encrypted images and ``reference_images``
    unrelated plain ones; PSNR (dB) of the encrypted images and of the attacker's decryptions
    against the true plain images, also up to a left-right mirror (``mirrored_psnr``: the
    better of the decryption and its mirror), and ``swaps`` made by the local search."""

    key: KeyParams
    encrypted_images: int
    reference_images: int
    score: KeyScore
    encrypted_psnr: float
    decrypted_psnr: float
    mirrored_psnr: float
    decrypted_mse: float
    swaps: int

    def summary(self) -> str:
        """What the attack was, what the attacker had, and what it got, in words."""
        return "\n".join(
            [
                f"Ciphertext-only attack on a {self.key.described}.",
                f"The attacker had: {self.encrypted_images} encrypted images, {self.reference_images} unrelated plain images of the same kind "
                "and the key's public parameters; the true key only encrypted the images and scores the result.",
                f"Result: {self.score.described(self.key.ea)}. Decrypted with the estimate, the {self.encrypted_images} images have PSNR "
                f"{decibels(self.decrypted_psnr)} against the originals ({decibels(self.mirrored_psnr)} up to a left-right mirror; "
                f"the encrypted images themselves: {decibels(self.encrypted_psnr)}).",
            ]
        )


def recover_key(encrypted: torch.Tensor, reference: torch.Tensor, params: KeyParams, *, max_swaps: int = 500) -> tuple[Cipher, int]:
    """Estimate a block key (K1, K2), or a ViT key with a (signed) permutation Ea and Eb, from
    encrypted images and unrelated plain ``reference`` images (both N×C×S×S) given the public
    ``params``; returns the cipher and the number of swaps made."""
    scheme, kind = params.scheme, params.ea
    if kind not in PERMUTATION_KINDS:
        raise ConfigError(f"the ciphertext-only attack takes keys whose Ea is a (signed) permutation; got Ea {kind!r}")
    m, c, s = params.block_size, params.channels, params.image_size
    y = metrics.as_float(encrypted)
    ref_means, ref_stats = _statistics(metrics.as_float(reference), m)
    pairs = None
    if scheme == "block":
        enc_means, enc_stats = _statistics(y, m)
        used = ref_stats
    else:  # blocks are moved by Eb: only the within-block correlation is pooled
        enc_means, pairs = _pair_correlations(y, m)
        enc_stats, used = torch.diagonal(pairs, dim1=0, dim2=2).mean(-1)[None], ref_stats[:1]
    # 1. signs (K2) from the leading eigenvector of the within-block correlation
    sign = torch.ones(enc_means.numel(), dtype=torch.float64)
    if kind == "signed-permutation":
        lead = torch.linalg.eigh(enc_stats[0]).eigenvectors[:, -1]
        sign = torch.where(lead >= 0, 1.0, -1.0).double()
        if ((sign * (enc_means - 0.5)).sum() - (ref_means - 0.5).sum()).abs() > ((-sign * (enc_means - 0.5)).sum() - (ref_means - 0.5).sum()).abs():
            sign = -sign
    outer = sign[:, None] * sign[None, :]
    enc_stats = torch.stack([st * outer for st in enc_stats])
    # 2. shuffle (K1): initial assignment of profiles, then best-improvement pairwise swaps
    perm = assign(torch.cdist(_profiles(enc_stats), _profiles(used)))
    perm, swaps = _improve(perm, enc_stats, used, max_swaps)
    block_perm = None if pairs is None else _layout(pairs, perm, sign, ref_stats, s // m)
    return Cipher.signed_permutation(m, c, s, perm, sign < 0, block_perm), swaps


def ciphertext_only_attack(key: keys.Key, images: torch.Tensor, reference: torch.Tensor, *, max_swaps: int = 500) -> CiphertextOnlyResult:
    """Encrypt ``images`` with ``key``, attack them with unrelated plain ``reference`` images,
    and score the estimate against ``key`` and the decryptions against ``images``."""
    check_fits(key, image_shape=images.shape)
    check_fits(key, image_shape=reference.shape)
    x = metrics.as_float(images)
    y = encrypt_images(x, key)
    public = KeyParams.of(key)
    guess, swaps = recover_key(y, reference, public, max_swaps=max_swaps)
    decrypted = apply_cipher(y, guess, inverse=True)
    return CiphertextOnlyResult(
        key=public,
        encrypted_images=x.shape[0],
        reference_images=reference.shape[0],
        score=score(guess, cipher(key)),
        encrypted_psnr=metrics.psnr(y, x),
        decrypted_psnr=metrics.psnr(decrypted, x),
        mirrored_psnr=max(metrics.psnr(decrypted, x), metrics.psnr(decrypted.flip(-1), x)),
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


def _pair_correlations(images: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel means pooled over positions (L) and the T×L×T×L correlations between every
    pixel of every block position and every other, over the images."""
    blocks = to_blocks(images.double(), block_size)  # n×T×L
    z = (blocks - blocks.mean(0)) / (blocks.std(0) + 1e-8)
    return blocks.mean(dim=(0, 1)), torch.einsum("nil,njm->iljm", z, z) / z.shape[0]


def _layout(pairs: torch.Tensor, shuffle: torch.Tensor, sign: torch.Tensor, ref_stats: torch.Tensor, grid: int) -> torch.Tensor:
    """Eb: with Ea undone, score every ordered pair of encrypted block positions as right and
    lower neighbours against the plain templates (centred) and assemble the jigsaw greedily."""
    inv = torch.argsort(shuffle)
    plain = (pairs * sign[None, :, None, None] * sign[None, None, None, :])[:, inv][:, :, :, inv]
    right = torch.einsum("iljm,lm->ij", plain, ref_stats[1] - ref_stats[1].mean())
    down = torch.einsum("iljm,lm->ij", plain, ref_stats[2] - ref_stats[2].mean())
    return _assemble(right, down, grid)


def _assemble(right: torch.Tensor, down: torch.Tensor, grid: int) -> torch.Tensor:
    """Greedy jigsaw on a canvas of at most grid×grid cells: start from the strongest
    right-neighbour pair, then repeatedly place the piece and free slot with the highest mean
    compatibility with the slot's placed neighbours. Returns the cell (raster index) of each piece."""
    n = right.shape[0]
    first, second = divmod(int((right - torch.eye(n, dtype=right.dtype) * 1e9).argmax()), n)
    placed = {(0, 0): first, (0, 1): second}
    while len(placed) < n:
        free = torch.tensor(sorted(set(range(n)) - set(placed.values())))
        rows, cols = [r for r, _ in placed], [q for _, q in placed]
        best: tuple[float, tuple[int, int], int] | None = None
        slots = {(r + dr, q + dq) for r, q in placed for dr, dq in ((0, 1), (0, -1), (1, 0), (-1, 0))} - set(placed)
        for r, q in slots:
            if max(rows + [r]) - min(rows + [r]) >= grid or max(cols + [q]) - min(cols + [q]) >= grid:
                continue
            fits = [
                t
                for t in (
                    right[placed[(r, q - 1)], free] if (r, q - 1) in placed else None,
                    right[free, placed[(r, q + 1)]] if (r, q + 1) in placed else None,
                    down[placed[(r - 1, q)], free] if (r - 1, q) in placed else None,
                    down[free, placed[(r + 1, q)]] if (r + 1, q) in placed else None,
                )
                if t is not None
            ]
            fit = torch.stack(fits).mean(0)
            k = int(fit.argmax())
            if best is None or float(fit[k]) > best[0]:
                best = (float(fit[k]), (r, q), int(free[k]))
        assert best is not None
        placed[best[1]] = best[2]
    top, left = min(r for r, _ in placed), min(q for _, q in placed)
    cell = torch.empty(n, dtype=torch.long)
    for (r, q), piece in placed.items():
        cell[piece] = (r - top) * grid + (q - left)
    return cell


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


__all__ = ["CiphertextOnlyResult", "ciphertext_only_attack"]
