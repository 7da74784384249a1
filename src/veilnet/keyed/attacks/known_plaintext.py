"""Known-plaintext attack on keyed images: recover the key from (plain, encrypted) image pairs.

Threat: an attacker who sees a few images together with their encryptions (e.g. public images a
client also sent, or the client's own camera output) and knows the public parameters (block
size, channels, image size, kind of Ea; they are in the model's card).

Every scheme is b̂ = (b − ½)·Ea⁻¹ + ½ on blocks that Eb moves (see :mod:`veilnet.keyed.schemes`):

1. Eb (ViT scheme): every encrypted block position is matched to a plain one by a quantity Ea
   cannot change: the sorted pixel values (permutation Ea), the sorted |b − ½| (signed
   permutation), the norm ‖b − ½‖ (orthogonal). For a general invertible Ea the column space of
   the n×L matrix of one position's blocks across n images is invariant, so more than L pairs
   are needed.
2. Ea: for a signed permutation each encrypted pixel column equals ± one plain pixel column
   over all blocks (one-to-one assignment); otherwise least squares over all blocks,
   Ea⁻¹ = argmin ‖(X − ½)·Ea⁻¹ − (Y − ½)‖.

One pair recovers a whole permutation-type key only when the pair's pixel columns are all
different. A grey image (R = G = B) has three equal columns at every pixel position, so the
shuffle cannot tell its channels apart and the key is recovered only up to channel swaps:
held-out colour images then decrypt only in part (``holdout_pixel_fraction``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from veilnet import keys, metrics
from veilnet.errors import ConfigError
from veilnet.keyed.attacks.scoring import KeyScore, assign, decibels, match_signed_columns, score
from veilnet.keyed.images import apply_cipher, encrypt_images, to_blocks
from veilnet.keyed.schemes import PERMUTATION_KINDS, Cipher, KeyParams, check_fits, cipher
from veilnet.report import Result


@dataclass(frozen=True)
class KnownPlaintextTrial(Result):
    """One run with ``pairs`` image pairs: what was recovered, and how well held-out encrypted
    images decrypt with it: PSNR in dB against the true plain images (inf when exact) and the
    fraction of held-out pixel values decrypted to within half a grey level (1/510)."""

    pairs: int
    score: KeyScore
    holdout_psnr: float
    holdout_pixel_fraction: float


@dataclass(frozen=True)
class KnownPlaintextResult(Result):
    """Known-plaintext attack over increasing numbers of pairs; ``pairs_needed`` is the fewest
    pairs that recovered the whole key (None if none did)."""

    key: KeyParams
    holdout_images: int
    trials: list[KnownPlaintextTrial]
    pairs_needed: int | None
    key_fraction: float

    def summary(self) -> str:
        """What the attack was, what the attacker had, and what it got, in words (one line per try)."""
        tried = ", ".join(str(t.pairs) for t in self.trials)
        found = (
            f"the whole key, exactly, from {self.pairs_needed} pair{'' if self.pairs_needed == 1 else 's'}"
            if self.pairs_needed is not None
            else f"the key not recovered whole with up to {self.trials[-1].pairs if self.trials else 0} pairs"
        )
        lines = [
            f"Known-plaintext attack on a {self.key.described}.",
            f"The attacker had: (plain, encrypted) image pairs (tried with {tried}) and the key's public parameters; "
            "the true key only encrypted the images and scores the result.",
            f"Result: {found}.",
        ]
        lines += [
            f"  {t.pairs} pair{'' if t.pairs == 1 else 's'}: {t.score.described(self.key.ea)}; {t.holdout_pixel_fraction:.1%} of the pixels of "
            f"{self.holdout_images} held-out images decrypted exactly, PSNR {decibels(t.holdout_psnr)}"
            for t in self.trials
        ]
        return "\n".join(lines)


def recover_key(plain: torch.Tensor, encrypted: torch.Tensor, params: KeyParams) -> Cipher:
    """Estimate the key from ``plain`` images and their ``encrypted`` versions (N×C×S×S, [0, 1]
    or uint8) given the public parameters."""
    m, c, s, kind = params.block_size, params.channels, params.image_size, params.ea
    x = to_blocks(metrics.as_float(plain).double(), m) - 0.5  # n×T×L
    y = to_blocks(metrics.as_float(encrypted).double(), m) - 0.5
    block_perm = None
    if params.scheme == "vit":
        block_perm = _match_blocks(x, y, kind)
        x = x[:, block_perm]
    xs, ys = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    if kind in PERMUTATION_KINDS:
        shuffle, flip = match_signed_columns(ys, xs, signed=kind == "signed-permutation")
        return Cipher.signed_permutation(m, c, s, shuffle, flip, block_perm)
    ea_inv = torch.linalg.lstsq(xs, ys).solution
    return Cipher(block_size=m, channels=c, image_size=s, ea=torch.linalg.pinv(ea_inv), shuffle=None, flip=None, block_perm=block_perm)


def known_plaintext_attack(key: keys.Key, images: torch.Tensor, *, pair_counts: Sequence[int] | None = None, holdout: int = 16) -> KnownPlaintextResult:
    """Run :func:`recover_key` with 1, 2, 4, ... of ``images`` (the last ``holdout`` are kept
    to test decryption) until the whole key is recovered; score each try against ``key``.

    Example (one grey pair, :func:`is_grey`, leaves the channels undecided)::

        result = known_plaintext_attack(key, torch.cat([grey_image, colour_images]), pair_counts=[1])
        result.trials[0].holdout_pixel_fraction  # < 1
    """
    check_fits(key, image_shape=images.shape)
    if holdout < 1:
        raise ConfigError(f"known-plaintext attack needs at least 1 held-out image; got holdout {holdout}")
    if images.shape[0] <= holdout:
        raise ConfigError(f"known-plaintext attack needs more than {holdout} images (holdout); got {images.shape[0]}")
    true = cipher(key)
    x = metrics.as_float(images)
    y = encrypt_images(x, key)
    available = x.shape[0] - holdout
    counts = [n for n in (pair_counts if pair_counts is not None else [2**i for i in range(12)]) if n <= available]
    public = KeyParams.of(key)
    trials: list[KnownPlaintextTrial] = []
    for n in counts:
        guess = recover_key(x[:n], y[:n], public)
        decrypted = apply_cipher(y[available:], guess, inverse=True).clamp(0, 1)
        right = (decrypted - x[available:]).abs() < 0.5 / 255
        trials.append(
            KnownPlaintextTrial(
                pairs=n, score=score(guess, true), holdout_psnr=metrics.psnr(decrypted, x[available:]), holdout_pixel_fraction=right.double().mean().item()
            )
        )
        if trials[-1].score.exact:
            break
    needed = next((t.pairs for t in trials if t.score.exact), None)
    return KnownPlaintextResult(
        key=public,
        holdout_images=holdout,
        trials=trials,
        pairs_needed=needed,
        key_fraction=trials[-1].score.key_fraction if trials else 0.0,
    )


def is_grey(images: torch.Tensor) -> torch.Tensor:
    """Per image (N×C×H×W): True when every channel equals the first (R = G = B)."""
    return (images == images[:, :1]).flatten(1).all(dim=1)


def _match_blocks(x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """l_e: encrypted block position i holds plain position l_e(i) (Eq. 4, 9), matched by an
    Ea-invariant per position over all pairs (module docstring, step 1)."""
    n, t, _ = x.shape
    if kind in ("permutation", "signed-permutation", "orthogonal"):
        feature = {
            "permutation": lambda b: b.sort(dim=-1).values,
            "signed-permutation": lambda b: b.abs().sort(dim=-1).values,
            "orthogonal": lambda b: b.norm(dim=-1, keepdim=True),
        }[kind]
        fx = feature(x).transpose(0, 1).reshape(t, -1)
        fy = feature(y).transpose(0, 1).reshape(t, -1)
        return assign(torch.cdist(fy, fx))
    # general invertible Ea: Y_i = X_{l_e(i)}·Ea⁻¹ share their column space in R^n
    cost = torch.empty(t, t, dtype=torch.float64)
    ys = y.transpose(0, 1)  # t×n×L
    for j in range(t):
        u, sv, _ = torch.linalg.svd(x[:, j], full_matrices=False)
        basis = u[:, sv > sv.max() * 1e-9]
        resid = ys - basis @ (basis.T @ ys)
        cost[:, j] = resid.flatten(1).norm(dim=1) / ys.flatten(1).norm(dim=1).clamp_min(1e-12)
    return assign(cost)


__all__ = ["KnownPlaintextResult", "known_plaintext_attack"]
