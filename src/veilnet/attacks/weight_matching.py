"""Weight-matching attack: recover the key from the transformed model and the plain model it came from.

Threat: a party encrypts a public pretrained model (or a model that leaked) with its key and
hands the transformed model to the provider. The provider, who also has the plain model, compares
the two embeddings: Ŵ = W·Eaᵀ (patch embedding, Eq. 3/8 of the papers, after folding the
normalisation, see :func:`veilnet.keyed.transform.fold_normalization`) and
Ê_pos[1 + i] = E_pos[1 + l_e(i)] (Eq. 8).

* Signed-permutation Ea: column k of Ŵ is ± column v_k of W; matched one-to-one by distance.
* Any other Ea: Eaᵀ = W⁺·Ŵ by least squares (exact when dim ≥ L = M²C, as in every ViT here).
* Eb: each position row of Ê_pos is matched to the plain row it equals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from veilnet import keys
from veilnet.attacks.scoring import KeyScore, assign, match_signed_columns, score
from veilnet.keyed.images import apply_cipher
from veilnet.keyed.schemes import Cipher, check_fits, cipher
from veilnet.keyed.transform import fold_normalization
from veilnet.report import Result


@dataclass(frozen=True)
class WeightMatchingResult(Result):
    """What the weight comparison recovered, and the largest logit difference between the plain
    model on plain images and the transformed model on images encrypted with the recovered key
    (relative to the largest logit; ~1e-7 means the recovered key works as well as the true one)."""

    scheme: str
    ea: str
    score: KeyScore
    relative_logit_error: float


def recover_key(transformed: nn.Module, plain: nn.Module, params: Mapping[str, Any]) -> Cipher:
    """Estimate the key of ``transformed`` from ``plain`` and the public parameters."""
    m, c, s = int(params["block_size"]), int(params["channels"]), int(params["image_size"])
    kind = params.get("ea", "signed-permutation") if params["scheme"] == "vit" else "signed-permutation"
    w = _embedding(plain)
    w_hat = _embedding(transformed)
    block_perm = None
    if params["scheme"] == "vit":
        pos, pos_hat = plain.pos_embed.detach()[0, 1:].double(), transformed.pos_embed.detach()[0, 1:].double()
        block_perm = assign(torch.cdist(pos_hat, pos))
    if kind in ("permutation", "signed-permutation"):
        shuffle, flip = match_signed_columns(w_hat, w, signed=kind == "signed-permutation")
        return Cipher.signed_permutation(m, c, s, shuffle, flip, block_perm)
    ea_t = torch.linalg.lstsq(w, w_hat).solution
    return Cipher(block_size=m, channels=c, image_size=s, ea=ea_t.T.contiguous(), shuffle=None, flip=None, block_perm=block_perm)


def weight_matching_attack(transformed: nn.Module, plain: nn.Module, key: keys.Key, *, images: torch.Tensor | None = None) -> WeightMatchingResult:
    """Run :func:`recover_key` and score it against ``key``; ``images`` ([0, 1], default 8
    random ones) check that the recovered key makes the transformed model give the plain logits."""
    check_fits(key, model=transformed)
    guess = recover_key(transformed, plain, {"scheme": key.scheme, **key.params})
    x = images if images is not None else torch.rand(8, key.params["channels"], key.params["image_size"], key.params["image_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = plain.eval()(x)
        got = transformed.eval()(apply_cipher(x, guess).float())
    err = ((want - got).abs().max() / want.abs().max()).item()
    return WeightMatchingResult(scheme=key.scheme, ea=str(key.params.get("ea", "signed-permutation")), score=score(guess, cipher(key)), relative_logit_error=err)


def _embedding(model: nn.Module) -> torch.Tensor:
    """The folded patch embedding W as a dim×L float64 matrix."""
    embed = fold_normalization(model).patch_embed
    return embed.weight.detach().double().reshape(embed.out_channels, -1)
