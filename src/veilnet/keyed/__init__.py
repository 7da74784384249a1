"""Keyed models: encrypt images with a secret key and transform the model to match.

Papers: ConvMixer with a secret key (block-wise pixel shuffling and negative-positive flipping,
Eq. 4-9) and ViT with a secret key (patch embedding times Ea, position embedding permuted by
Eb, Eq. 2-13 of the federated ViT paper, Sec. 3).

Threat model: a trusted party trains a model on plain images and transforms it with a secret key
(:func:`transform_model`); an untrusted provider runs the transformed model; a client holding the
key sends images encrypted with it (:func:`encrypt_images`). The transformed model on encrypted
images computes exactly the plain model's function on plain images; without the key the model
is meant to be useless. :mod:`veilnet.attacks` measures how far that holds.
"""

from veilnet.keyed.evaluation import KeyedEvaluation, demo_step, evaluate
from veilnet.keyed.images import apply_cipher, decrypt_images, encrypt_images, from_blocks, to_blocks
from veilnet.keyed.schemes import Cipher, check_fits, cipher, generate_key, key_space_bits, public_params, vit_key
from veilnet.keyed.transform import fold_normalization, rekey, transform_model, untransform_model

__all__ = [
    "Cipher",
    "KeyedEvaluation",
    "apply_cipher",
    "check_fits",
    "cipher",
    "decrypt_images",
    "demo_step",
    "encrypt_images",
    "evaluate",
    "fold_normalization",
    "from_blocks",
    "generate_key",
    "key_space_bits",
    "public_params",
    "rekey",
    "to_blocks",
    "transform_model",
    "untransform_model",
    "vit_key",
]
