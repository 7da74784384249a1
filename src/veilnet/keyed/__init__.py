"""Keyed models: encrypt images with a secret key and transform the model to match.

Papers: Kiya et al., "An Encryption Method of ConvMixer Models without Performance Degradation"
(the ConvMixer paper), Sec. 3.2-3.3, Eq. 4-9: block-wise pixel shuffling and negative-positive
flipping, the patch embedding transformed to match; Nagamori & Kiya, "Combined Use of Federated
Learning and Image Encryption for Privacy-Preserving Image Classification with Vision
Transformer" (the federated ViT paper), Sec. 3.2-3.3, Eq. 2-13: the patch embedding times Ea,
the position embedding permuted by Eb, the test images encrypted to match.

Threat model: a trusted party trains a model on plain images and transforms it with a secret key
(:func:`transform_model`); an untrusted provider runs the transformed model; a client holding the
key sends images encrypted with it (:func:`encrypt_images`). The transformed model on encrypted
images computes exactly the plain model's function on plain images; without the key the model
is meant to be useless. :mod:`veilnet.keyed.evaluation` measures the papers' claims (Table 1,
random wrong keys of Fig. 5); :mod:`veilnet.keyed.attacks` measures how much of the key, and so
of the images, leaks to known plaintext, the plain model, or ciphertext alone, and how much of
the images a U-Net trained under keys the attacker draws itself recovers without any key
(:mod:`veilnet.keyed.attacks.learned_inversion`).

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
