"""What a served model expects, and how a client prepares its inputs for it: one :class:`Kind`
per family of private model, in one place.

The server reads the kind and its public parameters from the model card (``extra[KIND]``) and
publishes an :class:`Expectation` (input shape and dtype of one item, public parameters) on
``/v1/info``. The client fetches that and then works only through the kind:

* :meth:`Kind.load_secret` reads the client's secret (its type is the kind's own first type
  parameter: a :class:`veilnet.keys.Key` for keyed models);
* :meth:`Kind.check_secret` refuses a secret that cannot belong to the served model, before
  anything is sent;
* :meth:`Kind.encode` turns images into what the served model takes and returns, beside it,
  per-batch state (the kind's second type parameter) that only :meth:`Kind.decode` needs and
  that never leaves the client;
* :meth:`Kind.decode` turns the server's output back into logits, using that state and the secret.

The server never calls the last four; it only needs :meth:`Kind.expectation`. So a new family
of model is one more :class:`Kind` given to :func:`register`, and neither :mod:`.app` nor
:mod:`.client` changes.

* ``keyed`` (:mod:`veilnet.keyed`; the ConvMixer paper's encryption with a secret key, Sec. 3,
  and "Combined Use of Federated Learning and Image Encryption for Privacy-Preserving Image
  Classification with Vision Transformer", Sec. 3): the secret is
  the block key, the input a batch of images encrypted with it (``float32``, ``N×C×S×S`` in
  [0, 1] for signed-permutation keys), the output the plain model's logits; no per-batch state.

* ``complex`` (:mod:`veilnet.complex.protocol`; the complex-valued networks of "Interpretable
  Complex-Valued Neural Networks for Privacy Protection", Xiang et al., ICLR 2020, Sec. 3 and
  4.1, Eq. 1–3): the served model is the processing module Φ alone (architecture
  ``complex-processor``, written by ``veilnet split``); the secret is the device part (encoder,
  decoder and counterpart pool: a :class:`~veilnet.complex.protocol.Device`). :meth:`~Kind.encode`
  runs the encoder, draws an angle θ and a counterpart per sample and sends
  ``x = e^{iθ}(a + b·i)`` as a float32 pair tensor ``N×2×K×h×w`` (the shape the server publishes);
  θ and the counterparts' indices are the per-batch state, kept on the client; the server answers
  ``h = Φ(x)`` (``N×2×…``); :meth:`~Kind.decode` computes ``d(Re[h·e^{−iθ}])``. The public
  parameters are the network's architecture name and the SHA-256 of Φ's tensors, against which the
  client checks its device part before any image is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch

from veilnet import keys, metrics
from veilnet.errors import KeyMismatchError, ModelFormatError

if TYPE_CHECKING:
    from veilnet.complex.protocol import BatchSecret, Device

#: The client's long-lived secret of a kind (a key, an encoder/decoder pair, ...).
Secret = TypeVar("Secret")
#: Per-batch state :meth:`Kind.encode` hands to :meth:`Kind.decode` (None, a tensor of angles, ...).
State = TypeVar("State")


@dataclass(frozen=True)
class Expectation:
    """What one served model takes: ``kind``, the shape of one item (without the batch
    dimension), its dtype as a numpy name (the wire dtype), and the kind's public parameters."""

    kind: str
    input_shape: tuple[int, ...]
    dtype: str
    params: dict[str, Any]


class Kind(Protocol[Secret, State]):
    """One family of private model: how the server reads its card, how the client feeds it."""

    name: str

    def expectation(self, params: Mapping[str, Any]) -> Expectation:
        """The expectation of a model whose card has ``extra[name] = params`` (server side).
        Raises ModelFormatError when the parameters are incomplete; keeps only public ones."""
        ...

    def load_secret(self, path: str | os.PathLike[str]) -> Secret:
        """The client's secret from a file (a VeilnetError naming the file when it cannot be read)."""
        ...

    def check_secret(self, secret: Secret, expected: Expectation) -> None:
        """Raise a VeilnetError (KeyMismatchError) when ``secret`` cannot belong to the served model."""
        ...

    def image_shape(self, expected: Expectation, secret: Secret) -> tuple[int, int, int]:
        """(C, H, W) of the images the client encodes for the served model."""
        ...

    def encode(self, images: torch.Tensor, secret: Secret) -> tuple[torch.Tensor, State]:
        """Images (uint8 or [0, 1] float, N×C×H×W) -> (the tensor the server's model takes,
        per-batch state for :meth:`decode`, kept on the client)."""
        ...

    def decode(self, outputs: torch.Tensor, state: State, secret: Secret) -> torch.Tensor:
        """The server's output for one encoded batch -> logits N×K."""
        ...


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
        return Expectation(kind=self.name, input_shape=(c, s, s), dtype="float32", params={**public, "scheme": scheme, "block_size": m, "channels": c, "image_size": s})

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


class ComplexKind:
    """The processing module Φ of a complex-valued network (:mod:`veilnet.complex.protocol`).
    The secret is a :class:`~veilnet.complex.protocol.Device`; the per-batch state its
    :class:`~veilnet.complex.protocol.BatchSecret` (θ and the counterparts' indices)."""

    name = "complex"
    #: The card fields a server may publish; anything else is dropped.
    PUBLIC = ("architecture", "processor_sha256")
    #: The only architecture a complex server serves (the encoder and decoder stay on the device).
    SERVED = "complex-processor"

    def check_card(self, card: Mapping[str, Any]) -> None:
        """A card whose ``extra.complex`` is set must be a processor part's (server side)."""
        if card.get("architecture") != self.SERVED:
            raise ModelFormatError(f"a complex-valued network is served as its processor alone ({self.SERVED}, written by veilnet split), not as {card.get('architecture')!r}")

    def expectation(self, params: Mapping[str, Any]) -> Expectation:
        shape = params.get("input_shape")
        if not (isinstance(shape, list) and len(shape) >= 2 and shape[0] == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
            raise ModelFormatError(f"card's extra.complex must give input_shape [2, K, …] (the pair tensor x), got {shape!r}")
        if not isinstance(params.get("processor_sha256"), str) or not isinstance(params.get("architecture"), str):
            raise ModelFormatError("card's extra.complex must give architecture and processor_sha256")
        return Expectation(kind=self.name, input_shape=tuple(shape), dtype="float32", params={k: params[k] for k in self.PUBLIC})

    def load_secret(self, path: str | os.PathLike[str]) -> Device:
        from veilnet.complex.protocol import Device

        return Device(path)

    def check_secret(self, secret: Device, expected: Expectation) -> None:
        from veilnet.complex.protocol import Device

        if not isinstance(secret, Device):
            raise KeyMismatchError(f"the served model is a complex-valued network's processor: its secret is the device part (device.json from veilnet split), not a {type(secret).__name__}")
        served = str(expected.params.get("processor_sha256", ""))
        if secret.fingerprint is not None and secret.fingerprint != served:
            raise KeyMismatchError(f"the device part was split from processor {secret.fingerprint[:12]}…, the server serves {served[:12]}… (another network or another split)")
        if tuple(secret.input_shape) != tuple(expected.input_shape):
            raise KeyMismatchError(f"the device's encoder makes x of shape {'×'.join(map(str, secret.input_shape))}, the served processor takes {'×'.join(map(str, expected.input_shape))}")

    def image_shape(self, expected: Expectation, secret: Device) -> tuple[int, int, int]:
        return secret.image_shape

    def encode(self, images: torch.Tensor, secret: Device) -> tuple[torch.Tensor, BatchSecret]:
        return secret.encode(images)

    def decode(self, outputs: torch.Tensor, state: BatchSecret, secret: Device) -> torch.Tensor:
        return secret.decode(outputs, state)


KINDS: dict[str, Kind[Any, Any]] = {}


def register(kind: Kind[Any, Any]) -> Kind[Any, Any]:
    """Add ``kind`` to :data:`KINDS` under its name (the server then serves models whose card
    names it, and the client feeds them); returns it."""
    if not isinstance(getattr(kind, "name", None), str) or not kind.name:
        raise TypeError("a Kind needs a non-empty string name")
    KINDS[kind.name] = kind
    return kind


register(KeyedKind())
register(ComplexKind())


def kind(name: str) -> Kind[Any, Any]:
    """The :class:`Kind` called ``name`` (ModelFormatError if unknown)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ModelFormatError(f"unknown model kind {name!r}; this veilnet knows {', '.join(KINDS)}") from None


def from_card(card: Mapping[str, Any]) -> Expectation:
    """The expectation of a saved model from its card: exactly one of :data:`KINDS` must be a key
    of ``card["extra"]`` (a plain model is refused: serving it would expose the images)."""
    extra = card.get("extra") or {}
    found = [name for name in KINDS if isinstance(extra, Mapping) and name in extra]
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        arch = str(card.get("architecture", ""))
        if not found and arch.startswith("complex-"):
            if arch == "complex-processor":
                raise ModelFormatError("a complex-processor card must name its public parameters in extra.complex (write the parts with veilnet split)")
            whole = "the device part (encoder, decoder, counterpart pool: the client's secret)" if arch == "complex-device" else f"a whole complex-valued network ({arch}: its encoder and decoder would see plain images)"
            raise ModelFormatError(f"this is {whole}; serve only its processor: veilnet split MODEL -o DIR, then veilnet serve DIR/server.json")
        raise ModelFormatError(f"a served model must be transformed (its card's extra names one of {', '.join(KINDS)}; found {what}); a plain model would see plain images")
    name = found[0]
    params = extra[name]
    if not isinstance(params, Mapping):
        raise ModelFormatError(f"card's extra.{name} must be an object of public parameters")
    served = kind(name)
    check_card = getattr(served, "check_card", None)  # optional: a kind may restrict the models it serves
    if check_card is not None:
        check_card(card)
    return served.expectation(params)


def from_info(info: Mapping[str, Any]) -> Expectation:
    """The expectation a server published on ``/v1/info`` (client side)."""
    try:
        return Expectation(kind=str(info["kind"]), input_shape=tuple(int(d) for d in info["input"]["shape"][1:]), dtype=str(info["input"]["dtype"]), params=dict(info["params"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"server's /v1/info is not a veilnet model description (problem: {exc!r})") from None
