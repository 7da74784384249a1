"""How a client feeds a model transformed with a secret key served by ``veilnet serve``: the ``keyed`` serving kind.

Keyed models (:mod:`veilnet.keyed`; the ConvMixer paper's encryption with a secret key, Sec. 3,
and "Combined Use of Federated Learning and Image Encryption for Privacy-Preserving Image
Classification with Vision Transformer", Sec. 3): the secret is
the block key, the input a batch of images encrypted with it (``float32``, ``N×C×S×S`` in
[0, 1] for signed-permutation keys), the output the plain model's logits; no per-batch state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from veilnet import keys, metrics
from veilnet.errors import KeyMismatchError, ModelFormatError
from veilnet.serve.kinds import Expectation, register


class KeyedKind:
    """Models transformed with a block-wise or ViT key (:func:`veilnet.keyed.transform.transform_model`).
    The secret is the :class:`~veilnet.keys.Key`; there is no per-batch state."""

    name = "keyed"
    #: The card fields a server may publish (:func:`veilnet.keyed.public_params`); anything else is dropped.
    PUBLIC = ("scheme", "block_size", "channels", "image_size", "ea", "fingerprint")

    def expectation(self, params: Mapping[str, Any]) -> Expectation:
        try:
            c, s, m = (int(params[k]) for k in ("channels", "image_size", "block_size"))
            scheme = str(params["scheme"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"card's extra.keyed must give scheme, block_size, channels and image_size (problem: {exc!r})") from None
        if min(c, s, m) < 1:
            raise ModelFormatError(f"card's extra.keyed has non-positive sizes (channels {c}, image size {s}, block size {m})")
        public = {k: params[k] for k in self.PUBLIC if k in params}
        return Expectation(
            kind=self.name, input_shape=(c, s, s), dtype="float32", params={**public, "scheme": scheme, "block_size": m, "channels": c, "image_size": s}
        )

    def load_secret(self, path: str | os.PathLike[str]) -> keys.Key:
        return keys.load(path)

    def check_secret(self, secret: keys.Key, expected: Expectation) -> None:
        from veilnet.keyed import cipher, public_params

        if not isinstance(secret, keys.Key):
            raise KeyMismatchError(f"the served model is keyed: its secret is a key file (veilnet key new), not a {type(secret).__name__}")
        cipher(secret)  # a malformed key is a KeyFileError before anything is sent
        mine = public_params(secret)
        served = expected.params
        for name in ("scheme", "block_size", "channels", "image_size", "ea"):
            if name in served and name in mine and mine[name] != served[name]:
                raise KeyMismatchError(f"key has {name} {mine[name]!r} but the served model expects {served[name]!r}")
        if "fingerprint" in served and served["fingerprint"] != secret.fingerprint:
            raise KeyMismatchError(f"key {secret.fingerprint[:19]}… is not the key the served model was transformed with ({str(served['fingerprint'])[:19]}…)")

    def image_shape(self, expected: Expectation, secret: keys.Key) -> tuple[int, int, int]:
        c, h, w = expected.input_shape
        return c, h, w

    def encode(self, images: torch.Tensor, secret: keys.Key) -> tuple[torch.Tensor, None]:
        from veilnet.keyed import encrypt_images

        return encrypt_images(metrics.as_float(images), secret).float().contiguous(), None

    def decode(self, outputs: torch.Tensor, state: None, secret: keys.Key) -> torch.Tensor:
        return outputs  # the transformed model's logits are the plain model's


register(KeyedKind())
