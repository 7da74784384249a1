"""Keyed models: encrypt images with a secret key and transform the model to match.

Papers: ConvMixer with a secret key (block-wise pixel shuffling and negative-positive flipping,
Eq. 4-9) and ViT with a secret key (patch embedding times Ea, position embedding permuted by
Eb, Eq. 2-13 of the federated ViT paper, Sec. 3).

Threat model: a trusted party trains a model on plain images and transforms it with a secret key
(:func:`transform_model`); an untrusted provider runs the transformed model; a client holding the
key sends images encrypted with it (:func:`encrypt_images`). The transformed model on encrypted
images computes exactly the plain model's function on plain images; without the key the model
is meant to be useless. :mod:`veilnet.keyed.evaluation` measures the papers' claims (Table 1,
random wrong keys of Fig. 5); :mod:`veilnet.keyed.attacks` measures how much of the key, and so
of the images, leaks to known plaintext, the plain model, or ciphertext alone.

The names below are imported on first use, so ``veilnet keyed --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> submodule that defines it
_EXPORTS = {
    "KeyedEvaluation": "evaluation",
    "RandomKeysResult": "evaluation",
    "demo_step": "evaluation",
    "evaluate": "evaluation",
    "evaluate_random_keys": "evaluation",
    "apply_cipher": "images",
    "decrypt_images": "images",
    "encrypt_images": "images",
    "from_blocks": "images",
    "to_blocks": "images",
    "Cipher": "schemes",
    "KeyParams": "schemes",
    "check_fits": "schemes",
    "cipher": "schemes",
    "ea_kind": "schemes",
    "generate_key": "schemes",
    "key_space_bits": "schemes",
    "public_params": "schemes",
    "vit_key": "schemes",
    "fold_normalization": "transform",
    "rekey": "transform",
    "transform_model": "transform",
    "untransform_model": "transform",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from veilnet.keyed.evaluation import KeyedEvaluation, RandomKeysResult, demo_step, evaluate, evaluate_random_keys
    from veilnet.keyed.images import apply_cipher, decrypt_images, encrypt_images, from_blocks, to_blocks
    from veilnet.keyed.schemes import Cipher, KeyParams, check_fits, cipher, ea_kind, generate_key, key_space_bits, public_params, vit_key
    from veilnet.keyed.transform import fold_normalization, rekey, transform_model, untransform_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
