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

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("evaluation", "images", "schemes", "transform"))
