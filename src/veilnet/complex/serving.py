"""How a client feeds a complex-valued network's processor served by ``veilnet serve``: the ``complex`` serving kind.

Complex-valued networks (:mod:`veilnet.complex.protocol`; the complex-valued networks of "Interpretable
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

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from veilnet.checks import is_int
from veilnet.cli import add_seed, positive_int
from veilnet.complex.protocol import BatchSecret, Device, load_device_part, pool_from_data
from veilnet.errors import ConfigError, KeyMismatchError, ModelFormatError, VeilnetError
from veilnet.serve.kinds import Expectation, register


class ComplexKind:
    """The processing module Φ of a complex-valued network (:mod:`veilnet.complex.protocol`).
    The secret is a :class:`~veilnet.complex.protocol.Device`; the per-batch state its
    :class:`~veilnet.complex.protocol.BatchSecret` (θ and the counterparts' indices)."""

    name = "complex"
    #: The card fields a server may publish; anything else is dropped.
    PUBLIC = ("architecture", "processor_sha256")
    #: The only architecture a complex server serves (the encoder and decoder stay on the device).
    SERVED = "complex-processor"

    def refuse_unmarked(self, card: Mapping[str, Any]) -> None:
        """A complex-valued network (or a part) whose card names no kind: say what to serve instead."""
        arch = str(card.get("architecture", ""))
        if not arch.startswith("complex-"):
            return
        if arch == self.SERVED:
            raise ModelFormatError("a complex-processor card must name its public parameters in extra.complex (write the parts with veilnet split)")
        whole = (
            "the device part (encoder, decoder, counterpart pool: the client's secret)"
            if arch == "complex-device"
            else f"a whole complex-valued network ({arch}: its encoder and decoder would see plain images)"
        )
        raise ModelFormatError(f"this is {whole}; serve only its processor: veilnet split MODEL -o DIR, then veilnet serve DIR/server.json")

    def check_card(self, card: Mapping[str, Any]) -> None:
        """A card whose ``extra.complex`` is set must be a processor part's (server side)."""
        if card.get("architecture") != self.SERVED:
            raise ModelFormatError(
                f"a complex-valued network is served as its processor alone ({self.SERVED}, written by veilnet split), not as {card.get('architecture')!r}"
            )

    def expectation(self, params: Mapping[str, Any]) -> Expectation:
        shape = params.get("input_shape")
        if not (isinstance(shape, list) and len(shape) >= 2 and shape[0] == 2 and all(is_int(v) and v > 0 for v in shape)):
            raise ModelFormatError(f"card's extra.complex must give input_shape [2, K, …] (the pair tensor x), got {shape!r}")
        if not isinstance(params.get("processor_sha256"), str) or not isinstance(params.get("architecture"), str):
            raise ModelFormatError("card's extra.complex must give architecture and processor_sha256")
        return Expectation(kind=self.name, input_shape=tuple(shape), dtype="float32", params={k: params[k] for k in self.PUBLIC})

    def load_secret(self, path: str | os.PathLike[str]) -> Device:
        return Device(path)

    def check_secret(self, secret: Device, expected: Expectation) -> None:
        if not isinstance(secret, Device):
            raise KeyMismatchError(
                f"the served model is a complex-valued network's processor: its secret is the "
                f"device part (device.json from veilnet split), not a {type(secret).__name__}"
            )
        served = str(expected.params.get("processor_sha256", ""))
        if secret.fingerprint is not None and secret.fingerprint != served:
            raise KeyMismatchError(
                f"the device part was split from processor {secret.fingerprint[:12]}…, the server serves {served[:12]}… (another network or another split)"
            )
        if tuple(secret.input_shape) != tuple(expected.input_shape):
            raise KeyMismatchError(
                f"the device's encoder makes x of shape {'×'.join(map(str, secret.input_shape))}, "
                f"the served processor takes {'×'.join(map(str, expected.input_shape))}"
            )

    def add_query_options(self, query: argparse.ArgumentParser) -> None:
        """``veilnet query``'s options for a complex network's device part: its counterpart pool
        from the person's own images, and a seed for θ and the counterparts."""
        query.add_argument(
            "--pool",
            default=None,
            help="complex networks: draw the counterpart pool from this data spec (the person's own images) instead of the device part's",
        )
        query.add_argument("--pool-size", type=positive_int, default=64, help="images in the --pool (default: 64)")
        query.add_argument("--pool-split", default="train", choices=["train", "test"], help="split of --pool (default: train)")
        add_seed(query)

    def secret_from_options(self, args: argparse.Namespace) -> Device | None:
        """The device part of ``--secret`` with ``--pool``/``--seed`` applied, or None when neither
        was given (checked before anything is sent; a key file or another model is refused in one line)."""
        if not args.pool and args.seed is None:
            return None
        secret = args.secret
        if not (Path(secret).is_file() or Path(f"{secret}.json").is_file() or (Path(secret) / "model.json").is_file()):
            raise ConfigError(f"secret file {secret} does not exist")
        try:
            part = load_device_part(secret)
        except VeilnetError as exc:
            raise ConfigError(f"--pool and --seed are for complex-valued networks; --secret must be a device part: {exc}") from None
        pool = pool_from_data(args.pool, args.pool_size, split=args.pool_split, seed=args.seed) if args.pool else None
        return Device(part, pool, seed=args.seed)

    def image_shape(self, expected: Expectation, secret: Device) -> tuple[int, int, int]:
        return secret.image_shape

    def encode(self, images: torch.Tensor, secret: Device) -> tuple[torch.Tensor, BatchSecret]:
        return secret.encode(images)

    def decode(self, outputs: torch.Tensor, state: BatchSecret, secret: Device) -> torch.Tensor:
        return secret.decode(outputs, state)


register(ComplexKind())
