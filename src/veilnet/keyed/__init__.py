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

from veilnet._lazy import exports

#: Public name -> the submodule defining it, imported on first use (PEP 562).
_WHERE = {
    **dict.fromkeys(["KeyedEvaluation", "RandomKeysResult", "evaluate", "evaluate_random_keys"], "evaluation"),
    **dict.fromkeys(["apply_cipher", "decrypt_images", "encrypt_images", "from_blocks", "to_blocks"], "images"),
    **dict.fromkeys(["Cipher", "KeyParams", "check_fits", "cipher", "ea_kind", "generate_key", "key_space_bits", "public_params", "vit_key"], "schemes"),
    **dict.fromkeys(["fold_normalization", "rekey", "transform_model", "untransform_model"], "transform"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
