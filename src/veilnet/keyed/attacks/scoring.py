"""How much of a key an attack recovered: shared by the key-recovery attacks.

A recovered key is a :class:`veilnet.keyed.Cipher`; it is compared with the true one entry by
entry (block permutation l_e, pixel shuffle v, flip vector r) or, for a continuous Ea, by its
relative error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from veilnet.keyed.schemes import Cipher
from veilnet.report import Result

#: Relative error of Ea below which a continuous Ea counts as recovered.
EA_TOLERANCE = 1e-3


@dataclass(frozen=True)
class KeyScore(Result):
    """Fractions of the key recovered (None where the key has no such part).

    ``key_fraction`` is the fraction of all discrete key entries (l_e, v, r) recovered; for a
    continuous Ea it counts Ea as one part, recovered when ``ea_relative_error`` < 1e-3.
    """

    block_perm_fraction: float | None
    shuffle_fraction: float | None
    flip_fraction: float | None
    ea_relative_error: float
    key_fraction: float
    exact: bool

    def described(self, ea: str) -> str:
        """What was recovered, in words: exact or not, and the fraction of each part of the key
        (of kind ``ea``: a plain permutation has no flips to speak of)."""
        flips = None if ea == "permutation" else self.flip_fraction
        named = (("block order", self.block_perm_fraction), ("pixel shuffle", self.shuffle_fraction), ("flips", flips))
        parts = [f"{name} {f:.1%}" for name, f in named if f is not None]
        if self.shuffle_fraction is None:  # a continuous Ea: recovered when its relative error is below EA_TOLERANCE
            parts.append(f"Ea's relative error {self.ea_relative_error:.2g}")
        detail = ", ".join(parts)
        head = "the whole key, exactly" if self.exact else f"{self.key_fraction:.1%} of the key, not all of it"
        return f"{head} ({detail})"


def decibels(psnr: float) -> str:
    """A PSNR in words: ``31.2 dB``, or ``∞ dB (exact)`` where the images are identical."""
    return "∞ dB (exact)" if math.isinf(psnr) else f"{psnr:.1f} dB"


def score(recovered: Cipher, true: Cipher) -> KeyScore:
    """Compare a recovered cipher with the true one."""
    parts: list[torch.Tensor] = []
    perm_frac = shuffle_frac = flip_frac = None
    if true.block_perm is not None and recovered.block_perm is not None:
        hits = recovered.block_perm == true.block_perm
        perm_frac = hits.float().mean().item()
        parts.append(hits)
    ea_err = (torch.linalg.matrix_norm(recovered.ea - true.ea) / torch.linalg.matrix_norm(true.ea)).item()
    if true.shuffle is not None and recovered.shuffle is not None and true.flip is not None and recovered.flip is not None:
        s_hits, f_hits = recovered.shuffle == true.shuffle, recovered.flip == true.flip
        shuffle_frac, flip_frac = s_hits.float().mean().item(), f_hits.float().mean().item()
        parts += [s_hits, f_hits]
    else:
        parts.append(torch.tensor([ea_err < EA_TOLERANCE]))
    flat = torch.cat([p.flatten() for p in parts])
    key_frac = flat.float().mean().item()
    return KeyScore(
        block_perm_fraction=perm_frac,
        shuffle_fraction=shuffle_frac,
        flip_fraction=flip_frac,
        ea_relative_error=ea_err,
        key_fraction=key_frac,
        exact=bool(flat.all()),
    )


def assign(cost: torch.Tensor) -> torch.Tensor:
    """Minimum-cost permutation: ``out[i]`` is the column assigned to row i (Hungarian method)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.double().cpu().numpy())
    out = torch.empty(cost.shape[0], dtype=torch.long)
    out[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return out


def match_signed_columns(target: torch.Tensor, source: torch.Tensor, *, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Find v, r with target[:, k] ≈ ±source[:, v_k] (− where r_k): the signed permutation that
    maps the columns of ``source`` onto those of ``target``, by least distance, one-to-one."""
    plus = torch.cdist(target.T.double(), source.T.double())
    minus = torch.cdist(target.T.double(), -source.T.double()) if signed else torch.full_like(plus, torch.inf)
    perm = assign(torch.minimum(plus, minus))
    rows = torch.arange(perm.numel())
    return perm, minus[rows, perm] < plus[rows, perm]


__all__ = ["KeyScore"]
