"""Transforming a trained model with a key (trusted party's side).

ConvMixer paper, Sec. 3.3: the rows of the patch-embedding matrix E are permuted with K1
(E' = E1·E, Eq. 8) and negated where K2 flips (Eq. 9). ViT paper, Sec. 3.2: Ê = Ea·E (Eq. 3)
and Ê_pos = Eb·E_pos with the class token's row fixed (Eq. 6, 8). Both are Ê = Ea·E for the
Ea of :class:`veilnet.keyed.schemes.Cipher`.

Beyond the papers:

* Normalisation folding. Instead of requiring x → 2x − 1 (ConvMixer paper, Eq. 7), the model's
  per-channel normalisation (x − μ)/σ is folded into the patch embedding first
  (W ← W/σ, β ← β − W·μ/σ), and the centring on ½ of the image transform is absorbed by the
  bias (β̂ = β + (W − Ŵ)·½), so the identity holds for raw [0, 1] pixels whatever the model was
  trained with. The transformed model's ``normalize`` becomes mean 0 / std 1.
* All algebra is done in float64 and cast back, so orthogonal Ea keeps logits within 1e-4 relative.

The transformed model is a plain model of the same architecture and shapes; the server cannot
tell it from an unencrypted one by its shapes, and it costs exactly what the plain one costs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from veilnet import keys
from veilnet.keyed.schemes import Cipher, check_fits, cipher


def transform_model(model: nn.Module, key: keys.Key) -> nn.Module:
    """A copy of ``model`` (ConvMixer or ViT) that, given images encrypted with ``key``, computes
    the plain model's outputs on the plain images. ``model`` is not changed.

    Raises KeyMismatchError when the key does not fit the model (patch size, channels, image
    size, or a vit key with a model that has no position embedding).
    """
    check_fits(key, model=model)
    out = fold_normalization(model)
    _embed(out, cipher(key), inverse=False)
    return out


def untransform_model(model: nn.Module, key: keys.Key) -> nn.Module:
    """Undo :func:`transform_model` (the normalisation stays folded): a copy of the plain model."""
    check_fits(key, model=model)
    out = fold_normalization(model)
    _embed(out, cipher(key), inverse=True)
    return out


def rekey(model: nn.Module, old_key: keys.Key, new_key: keys.Key) -> nn.Module:
    """Move a model transformed with ``old_key`` to ``new_key`` without retraining (ConvMixer
    paper, Sec. 1: keys are easy to update). Returns a copy."""
    return transform_model(untransform_model(model, old_key), new_key)


def fold_normalization(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``normalize`` (x − μ)/σ is folded into ``patch_embed``:
    W ← W/σ per input channel and β ← β − Σ W·μ/σ; ``normalize`` becomes mean 0 / std 1."""
    out = copy.deepcopy(model)
    norm = out.normalize
    embed: nn.Conv2d = out.patch_embed
    with torch.no_grad():
        mean, std = norm.mean.double(), norm.std.double()
        weight = embed.weight.double() / std[None, :, None, None]
        bias = embed.bias.double() - (weight * mean[None, :, None, None]).sum(dim=(1, 2, 3))
        embed.weight.copy_(weight)
        embed.bias.copy_(bias)
        norm.mean.zero_()
        norm.std.fill_(1.0)
    arch = getattr(out, "veilnet_arch", None)
    if isinstance(arch, dict):
        channels = norm.mean.numel()
        out.veilnet_arch = {**arch, "kwargs": {**arch["kwargs"], "mean": [0.0] * channels, "std": [1.0] * channels}}
    return out


def _embed(model: nn.Module, ciph: Cipher, *, inverse: bool) -> None:
    """Ŵ = W·Eaᵀ, β̂ = β + (W − Ŵ)·½ (Eq. 3, 8-9 in the conv's D×L layout) and
    Ê_pos[1 + i] = E_pos[1 + l_e(i)] (Eq. 8); ``inverse`` undoes both."""
    embed: nn.Conv2d = model.patch_embed
    with torch.no_grad():
        weight = embed.weight.double().reshape(embed.out_channels, -1)
        ea = ciph.ea.T if not inverse else torch.linalg.inv(ciph.ea).T
        new = weight @ ea.to(weight.device)
        bias = embed.bias.double() + (weight - new).sum(dim=1) * 0.5
        embed.weight.copy_(new.reshape(embed.weight.shape))
        embed.bias.copy_(bias)
        if ciph.block_perm is not None:
            pos = model.pos_embed
            order = ciph.block_perm if not inverse else torch.argsort(ciph.block_perm)
            pos[:, 1:] = pos[:, 1:][:, order]


__all__ = ["fold_normalization", "rekey", "transform_model", "untransform_model"]
