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

A method's kinds live in its own package (``veilnet.keyed.serving``, ``veilnet.complex.serving``)
and register themselves with :func:`register` when imported; the method's
:class:`veilnet.plugins.Method` names that module, so :func:`kind` and :func:`from_card` find a kind
by name without this module importing any method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

from veilnet import plugins
from veilnet.errors import ModelFormatError

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

    # Optional, server side (looked up with getattr):
    #   check_card(card): refuse a card naming this kind that the kind does not serve;
    #   refuse_unmarked(card): raise a ModelFormatError with advice when a card that names no kind
    #   belongs to this kind's family (a whole network whose part alone may be served).


KINDS: dict[str, Kind[Any, Any]] = {}


def register(kind: Kind[Any, Any]) -> Kind[Any, Any]:
    """Add ``kind`` to :data:`KINDS` under its name (the server then serves models whose card
    names it, and the client feeds them); returns it. Another kind under a name registered already,
    or claimed by a method whose module registers it, is a :class:`veilnet.plugins.RegistrationError`;
    registering the same object again changes nothing (as :func:`veilnet.models.register`)."""
    if not isinstance(getattr(kind, "name", None), str) or not kind.name:
        raise TypeError("a Kind needs a non-empty string name")
    if kind.name not in KINDS:
        plugins.load_kinds(kind.name)  # the method that claims the name registers its own first
    if KINDS.setdefault(kind.name, kind) is not kind:
        raise plugins.RegistrationError(f"serving kind {kind.name!r} is already registered ({type(KINDS[kind.name]).__qualname__})")
    return kind


def kind(name: str) -> Kind[Any, Any]:
    """The :class:`Kind` called ``name`` (ModelFormatError if no registered method has it)."""
    if name not in KINDS:
        plugins.load_kinds(name)
    if name not in KINDS:
        plugins.load_kinds()
        raise ModelFormatError(f"unknown model kind {name!r}; this veilnet knows {', '.join(KINDS)}")
    return KINDS[name]


def from_card(card: Mapping[str, Any]) -> Expectation:
    """The expectation of a saved model from its card: exactly one of :data:`KINDS` must be a key
    of ``card["extra"]`` (a plain model is refused: serving it would expose the images)."""
    plugins.load_kinds()
    extra = card.get("extra") or {}
    found = [name for name in KINDS if isinstance(extra, Mapping) and name in extra]
    if len(found) != 1:
        if not found:  # a kind may explain why a card of its family that names no kind is not served
            for known in KINDS.values():
                refuse_unmarked = getattr(known, "refuse_unmarked", None)
                if refuse_unmarked is not None:
                    refuse_unmarked(card)
        what = "none" if not found else " and ".join(found)
        raise ModelFormatError(
            f"a served model must be transformed (its card's extra names one of {', '.join(KINDS)}; found {what}); a plain model would see plain images"
        )
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
        return Expectation(
            kind=str(info["kind"]),
            input_shape=tuple(int(d) for d in info["input"]["shape"][1:]),
            dtype=str(info["input"]["dtype"]),
            params=dict(info["params"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"server's /v1/info is not a veilnet model description (problem: {exc!r})") from None


__all__ = ["Expectation", "KINDS", "Kind", "register"]
