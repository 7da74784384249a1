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

from dataclasses import dataclass

import torch
from torch import nn

from veilnet import keys
from veilnet.errors import KeyMismatchError
from veilnet.keyed.attacks.scoring import KeyScore, assign, match_signed_columns, score
from veilnet.keyed.images import apply_cipher
from veilnet.keyed.schemes import PERMUTATION_KINDS, Cipher, KeyParams, check_fits, check_transformed_with, cipher
from veilnet.keyed.transform import fold_normalization
from veilnet.metrics import predict
from veilnet.report import Result


@dataclass(frozen=True)
class WeightMatchingResult(Result):
    """What the weight comparison recovered, and the largest logit difference between the plain
    model on plain images and the transformed model on images encrypted with the recovered key
    (relative to the largest logit; ~1e-7 means the recovered key works as well as the true one)."""

    key: KeyParams
    score: KeyScore
    relative_logit_error: float

    def summary(self) -> str:
        """What the attack was, what the attacker had, and what it got, in words."""
        return "\n".join(
            [
                f"Weight-matching attack on a {self.key.described}.",
                "The attacker had: the transformed model, the plain model it came from and the key's public parameters; the true key only scores the result.",
                f"Result: {self.score.described(self.key.ea)}. Fed images encrypted with the recovered key, the transformed model gives the plain "
                f"model's logits to within {self.relative_logit_error:.2g} of the largest logit (about 1e-7 is float rounding: the key works).",
            ]
        )


def recover_key(transformed: nn.Module, plain: nn.Module, params: KeyParams) -> Cipher:
    """Estimate the key of ``transformed`` from ``plain`` and the public parameters; raises
    KeyMismatchError when the two models are not the same architecture and shapes."""
    check_same_shapes(transformed, plain)
    m, c, s, kind = params.block_size, params.channels, params.image_size, params.ea
    w = _embedding(plain)
    w_hat = _embedding(transformed)
    block_perm = None
    if params.scheme == "vit":
        pos, pos_hat = plain.pos_embed.detach()[0, 1:].double(), transformed.pos_embed.detach()[0, 1:].double()
        block_perm = assign(torch.cdist(pos_hat, pos))
    if kind in PERMUTATION_KINDS:
        shuffle, flip = match_signed_columns(w_hat, w, signed=kind == "signed-permutation")
        return Cipher.signed_permutation(m, c, s, shuffle, flip, block_perm)
    ea_t = torch.linalg.lstsq(w, w_hat).solution
    return Cipher(block_size=m, channels=c, image_size=s, ea=ea_t.T.contiguous(), shuffle=None, flip=None, block_perm=block_perm)


def weight_matching_attack(transformed: nn.Module, plain: nn.Module, key: keys.Key, *, images: torch.Tensor | None = None) -> WeightMatchingResult:
    """Run :func:`recover_key` and score it against ``key``; ``images`` ([0, 1], default 8
    random ones) check that the recovered key makes the transformed model give the plain logits.
    Raises KeyMismatchError when ``key`` does not fit the models or the transformed model's card
    names another key, or when ``plain`` is not the same architecture as ``transformed``."""
    check_fits(key, model=transformed)
    check_transformed_with(transformed, key, where="the transformed model")
    public = KeyParams.of(key)
    guess = recover_key(transformed, plain, public)
    x = (
        images
        if images is not None
        else torch.rand(8, key.params["channels"], key.params["image_size"], key.params["image_size"], generator=torch.Generator().manual_seed(0))
    )
    want, got = predict(plain, x), predict(transformed, apply_cipher(x, guess))
    err = ((want - got).abs().max() / want.abs().max()).item()
    return WeightMatchingResult(key=public, score=score(guess, cipher(key)), relative_logit_error=err)


def check_same_shapes(transformed: nn.Module, plain: nn.Module) -> None:
    """Raise KeyMismatchError unless ``plain`` has the architecture and parameter shapes of
    ``transformed`` (a transform changes values, never shapes)."""
    a, b = type(transformed).__name__, type(plain).__name__
    if a != b:
        raise KeyMismatchError(f"the plain model is a {b} but the transformed model a {a}; weight matching compares the same architecture")
    shapes = {k: tuple(v.shape) for k, v in transformed.state_dict().items()}
    other = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    if shapes != other:
        name = next((k for k in sorted(shapes.keys() | other.keys()) if shapes.get(k) != other.get(k)), "?")
        raise KeyMismatchError(
            f"the plain model does not fit the transformed one: {name} is {other.get(name)} in the plain model, {shapes.get(name)} in the transformed one"
        )


def _embedding(model: nn.Module) -> torch.Tensor:
    """The folded patch embedding W as a dim×L float64 matrix."""
    embed = fold_normalization(model).patch_embed
    return embed.weight.detach().double().reshape(embed.out_channels, -1)


__all__ = ["WeightMatchingResult", "weight_matching_attack"]
