"""What a served model expects, and how a client prepares its inputs for it: one :class:`Kind`
per family of private model, in one place.

The server reads the kind and its public parameters from the model card (``extra[KIND]``) and
publishes an :class:`Expectation` (input shape and dtype of one item, public parameters) on
``/v1/info``. The client fetches that, checks its key against it (:meth:`Kind.check_key`) before
it sends anything, turns images into what the model takes (:meth:`Kind.encode`) and the server's
output into logits (:meth:`Kind.decode`). ``encode`` may return per-batch secret state that only
``decode`` needs and that never leaves the client.

* ``keyed`` (:mod:`veilnet.keyed`): the input is a batch of images encrypted with the key
  (``float32``, ``N×C×S×S`` in [0, 1] for signed-permutation keys); the output is the logits.

A second kind (``complex``: the input a complex feature tensor from the client's encoder, rotated
by a secret angle θ drawn per batch; the output decoded by the client with the same θ) is one more
:class:`Kind` in :data:`KINDS` with ``dtype="complex64"`` (both encodings carry complex64);
server and client do not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from veilnet import keys, metrics
from veilnet.errors import KeyMismatchError, ModelFormatError


@dataclass(frozen=True)
class Expectation:
    """What one served model takes: ``kind``, the shape of one item (without the batch
    dimension), its dtype as a numpy name (the wire dtype), and the kind's public parameters."""

    kind: str
    input_shape: tuple[int, ...]
    dtype: str
    params: dict[str, Any]


class Kind(Protocol):
    """One family of private model: how the server reads its card, how the client feeds it."""

    name: str

    def expectation(self, params: Mapping[str, Any]) -> Expectation:
        """The expectation of a model whose card has ``extra[name] = params`` (server side).
        Raises ModelFormatError when the parameters are incomplete."""
        ...

    def check_key(self, key: keys.Key, expected: Expectation) -> None:
        """Raise KeyMismatchError when ``key`` cannot be the key of the served model (client side)."""
        ...

    def encode(self, images: torch.Tensor, key: keys.Key) -> tuple[torch.Tensor, Any]:
        """Images (uint8 or [0, 1] float, N×C×H×W) -> (the tensor the server's model takes,
        secret per-batch state for :meth:`decode`, kept on the client)."""
        ...

    def decode(self, outputs: torch.Tensor, state: Any, key: keys.Key) -> torch.Tensor:
        """The server's output for one encoded batch -> logits N×K."""
        ...


class KeyedKind:
    """Models transformed with a block-wise or ViT key (:func:`veilnet.keyed.transform.transform_model`)."""

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
        return Expectation(kind=self.name, input_shape=(c, s, s), dtype="float32", params={**public, "scheme": scheme, "block_size": m, "channels": c, "image_size": s})

    def check_key(self, key: keys.Key, expected: Expectation) -> None:
        from veilnet.keyed import cipher, public_params

        cipher(key)  # a malformed key is a KeyFileError before anything is sent
        mine = public_params(key)
        served = expected.params
        for name in ("scheme", "block_size", "channels", "image_size", "ea"):
            if name in served and name in mine and mine[name] != served[name]:
                raise KeyMismatchError(f"key has {name} {mine[name]!r} but the served model expects {served[name]!r}")
        if "fingerprint" in served and served["fingerprint"] != key.fingerprint:
            raise KeyMismatchError(f"key {key.fingerprint[:19]}… is not the key the served model was transformed with ({str(served['fingerprint'])[:19]}…)")

    def encode(self, images: torch.Tensor, key: keys.Key) -> tuple[torch.Tensor, None]:
        from veilnet.keyed import encrypt_images

        return encrypt_images(metrics.as_float(images), key).float().contiguous(), None

    def decode(self, outputs: torch.Tensor, state: None, key: keys.Key) -> torch.Tensor:
        return outputs  # the transformed model's logits are the plain model's


KINDS: dict[str, Kind] = {k.name: k for k in (KeyedKind(),)}


def kind(name: str) -> Kind:
    """The :class:`Kind` called ``name`` (ModelFormatError if unknown)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ModelFormatError(f"unknown model kind {name!r}; veilnet serves {', '.join(KINDS)}") from None


def from_card(card: Mapping[str, Any]) -> Expectation:
    """The expectation of a saved model from its card: exactly one of :data:`KINDS` must be a key
    of ``card["extra"]`` (a plain model is refused: serving it would expose the images)."""
    extra = card.get("extra") or {}
    found = [name for name in KINDS if isinstance(extra, Mapping) and name in extra]
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        raise ModelFormatError(f"a served model must be transformed (its card's extra names one of {', '.join(KINDS)}; found {what}); a plain model would see plain images")
    name = found[0]
    params = extra[name]
    if not isinstance(params, Mapping):
        raise ModelFormatError(f"card's extra.{name} must be an object of public parameters")
    return kind(name).expectation(params)


def from_info(info: Mapping[str, Any]) -> Expectation:
    """The expectation a server published on ``/v1/info`` (client side)."""
    try:
        return Expectation(kind=str(info["kind"]), input_shape=tuple(int(d) for d in info["input"]["shape"][1:]), dtype=str(info["input"]["dtype"]), params=dict(info["params"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"server's /v1/info is not a veilnet model description (problem: {exc!r})") from None
