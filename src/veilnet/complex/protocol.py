"""The split deployment of a complex-valued network: what the device computes, what the server
computes, and the files each of them gets — Xiang et al., "Interpretable Complex-Valued Neural
Networks for Privacy Protection" (ICLR 2020), sections 3 and 4.1–4.2 (Eq. 1–3).

The device (:class:`Device`) runs the encoder ``a = g(I)`` (Eq. 1), draws a secret angle
``θ ~ U[0, 2π)`` and a fooling counterpart ``b = g(I′)`` for every sample, and sends only
``x = e^{iθ}(a + b·i)`` (Eq. 2). The server (:class:`Server`) runs the processing module
``h = Φ(x)``; it needs nothing secret. The device decodes ``ŷ = d(Re[h·e^{−iθ}])`` (Eq. 3).
Because Φ is rotation-equivariant (Eq. 4), the decoded logits are those of the network run in one
process with the same counterpart, whatever θ was drawn.

Example::

    device = Device(net, counterpart_pool=private_images)    # holds g, d and the pool
    server = Server(net.processor)                             # holds Φ only
    x, secret = device.encode(images)                          # secret: θ and the counterparts
    logits = device.decode(server.process(x), secret)

The secrets:

* **θ** is drawn per sample straight from the operating system's CSPRNG (:func:`os.urandom`,
  53 random bits per angle) unless a ``seed`` is given; then from a :class:`torch.Generator`
  seeded with it, for reproducible experiments only. Each sample's draws (its angle, then its
  counterpart scores) are consecutive in the stream, so a seeded device gives every sample the
  same θ and counterpart however the images are cut into batches.
* **b** is the feature of an image from the *counterpart pool*, images held on the device (the
  paper, section 4.2: "``b = g(I′)``, the feature of a randomly chosen sample ``I′ ≠ I``"). Each
  sample's counterpart is drawn uniformly from the pool entries whose feature differs from its own
  (relative distance above :data:`SAME_FEATURE_TOL`), so an image that is itself in the pool is
  never its own counterpart (``b = a`` would give ``x = e^{iθ}(1 + i)a`` and reveal ``a`` up to
  its phase). A pool with no other image for some sample is a :class:`ConfigError`.
  The pool should be the person's own images, ones an attacker cannot enumerate: the paper
  releases ``[g, Φ, d]`` publicly (section 4.2), and an attacker who knows ``g`` and a small
  candidate set for ``I′`` can try each ``b`` and solve ``Im[x·e^{−iθ}] = b`` for θ. Here the
  device part is kept private as well (written with mode 0600).

The files, by role (:func:`split_model`, ``veilnet split``): ``server.safetensors/.json`` holds
only Φ's tensors (architecture ``complex-processor``; its card names the network it came from,
the shape of ``x`` and the SHA-256 of Φ's tensors, :func:`processor_fingerprint`), which
``veilnet serve`` serves; ``device.safetensors/.json`` holds the encoder, the decoder and the
counterpart pool as uint8 images (architecture ``complex-device``, mode 0600), which ``veilnet
query --secret`` uses. The client refuses a server whose processor fingerprint is not the one its
device file was split with, before any image is sent.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from veilnet import metrics
from veilnet.checks import is_int
from veilnet.complex import layers as cl
from veilnet.complex.models import ComplexNet, Encoder, batched
from veilnet.errors import ConfigError, ModelFormatError, ShapeError, VeilnetError
from veilnet.models import registry

#: Registry names of the two parts (:data:`veilnet.models.registry.MODELS`).
PROCESSOR = "complex-processor"
DEVICE = "complex-device"
#: The card's ``extra`` key of a server part: also the name of its serve kind (:mod:`veilnet.serve.kinds`).
SERVER_EXTRA = "complex"
#: The card's ``extra`` key of a device part (not a serve kind: the device part is never served).
DEVICE_EXTRA = "complex_device"
#: Two features closer than this, relative to the larger norm, count as the same image's.
SAME_FEATURE_TOL = 1e-3
#: Images per forward pass when the device computes its pool's features.
_CHUNK = 256


# --------------------------------------------------------------------------------------------
# The device and the server


@dataclass(frozen=True, repr=False)
class BatchSecret:
    """What :meth:`Device.encode` keeps for :meth:`Device.decode`: ``theta`` (N angles in
    [0, 2π), float64) and ``counterpart`` (N indices into the device's pool; the features
    themselves never leave the device). Its ``repr`` shows the batch size only."""

    theta: torch.Tensor
    counterpart: torch.Tensor

    def __repr__(self) -> str:
        return f"BatchSecret(N={self.theta.shape[0]})"


class _Draws:
    """Uniform numbers in [0, 1): from :func:`os.urandom` (53 bits each), or from a
    :class:`torch.Generator` seeded with ``seed`` (reproducible)."""

    def __init__(self, seed: int | None) -> None:
        self.generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None

    def uniform(self, rows: int, cols: int) -> torch.Tensor:
        if self.generator is not None:
            return torch.rand((rows, cols), generator=self.generator, dtype=torch.float64)
        raw = np.frombuffer(os.urandom(8 * rows * cols), dtype=np.uint64) >> np.uint64(11)
        return torch.from_numpy((raw.astype(np.float64) * 2.0**-53).reshape(rows, cols))


class Device:
    """The device's side of the protocol: the encoder g, the decoder d and the counterpart pool.

    Arguments:
        net_or_parts: a :class:`~veilnet.complex.models.ComplexNet`, the device part of a split
            (:class:`DevicePart`, or the path of ``device.json``/``.safetensors`` written by
            :func:`split_model`), or an ``(encoder, decoder)`` pair. The modules are put in eval
            mode (a prediction never depends on the rest of its batch).
        counterpart_pool: images ``P×C×H×W`` (uint8, or float in [0, 1]) whose features are the
            fooling counterparts; None: the pool stored in the device part.
        seed: None (the default) draws θ and the counterparts from the OS's CSPRNG; an integer
            makes them reproducible (experiments only).
        device: torch device the encoder and decoder run on.

    Attributes: ``image_shape`` (C, H, W), ``input_shape`` (the shape of one ``x``, ``2×K×h×w``),
    ``fingerprint`` (:func:`processor_fingerprint` of the processor this device was split from,
    or None when unknown), ``pool_size``.
    """

    def __init__(
        self,
        net_or_parts: ComplexNet | DevicePart | tuple[nn.Module, nn.Module] | str | os.PathLike[str],
        counterpart_pool: torch.Tensor | None = None,
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        fingerprint: str | None = None
        image_shape: tuple[int, ...] | None = None
        stored: torch.Tensor | None = None
        source = net_or_parts
        if isinstance(source, (str, os.PathLike)):
            source = load_device_part(source)
        if isinstance(source, ComplexNet):
            encoder, decoder = source.encoder, source.decoder
            fingerprint = processor_fingerprint(source.processor)
            image_shape = _known_image_shape(source)
        elif isinstance(source, DevicePart):
            encoder, decoder, stored = source.encoder, source.decoder, source.pool
            card = getattr(source, "veilnet_card", None) or {}
            params = (card.get("extra") or {}).get(DEVICE_EXTRA) or {}
            fingerprint = params.get("processor_sha256") if isinstance(params.get("processor_sha256"), str) else None
            image_shape = tuple(card["input_shape"]) if isinstance(card.get("input_shape"), list) else None
        elif isinstance(source, tuple) and len(source) == 2 and all(isinstance(m, nn.Module) for m in source):
            encoder, decoder = source
        else:
            raise ConfigError(f"a Device is built from a ComplexNet, a device part or its file, or an (encoder, decoder) pair; got {type(source).__name__}")
        self.torch_device = torch.device(device)
        self.encoder = encoder.to(self.torch_device).eval()
        self.decoder = decoder.to(self.torch_device).eval()
        self.fingerprint = fingerprint
        self._draws = _Draws(seed)
        pool = counterpart_pool if counterpart_pool is not None else stored
        if pool is None or pool.numel() == 0:
            raise ConfigError(
                "the device has no counterpart pool: give images of the person's own "
                "(counterpart_pool=..., veilnet query --pool SPEC, or veilnet split --pool-data SPEC)"
            )
        if pool.ndim != 4:
            raise ShapeError(f"the counterpart pool must be images P×C×H×W, got shape {tuple(pool.shape)}")
        if image_shape is not None and tuple(pool.shape[1:]) != tuple(image_shape):
            raise ShapeError(
                f"the counterpart pool holds {'×'.join(map(str, pool.shape[1:]))} images, but this device's encoder takes {'×'.join(map(str, image_shape))}"
            )
        self.image_shape: tuple[int, int, int] = (int(pool.shape[1]), int(pool.shape[2]), int(pool.shape[3]))
        try:
            self._pool = self._features(pool)  # P×K×h×w, on the device only
        except (RuntimeError, ValueError) as exc:
            raise ShapeError(f"the encoder cannot take the counterpart pool's {'×'.join(map(str, self.image_shape))} images: {_first_line(exc)}") from None
        self._pool_flat = self._pool.flatten(1)
        self._pool_norm = self._pool_flat.norm(dim=1)
        self.input_shape: tuple[int, ...] = (2, *self._pool.shape[1:])

    @property
    def pool_size(self) -> int:
        return int(self._pool.shape[0])

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return batched(lambda batch: self.encoder(metrics.as_float(batch).to(self.torch_device)), images, batch_size=_CHUNK)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, BatchSecret]:
        """Eq. 1–2: ``x = e^{iθ}(g(I) + b·i)`` with a fresh θ and counterpart per sample.

        ``images``: ``N×C×H×W``, uint8 or float in [0, 1], of the pool's size. Returns ``x``
        (float32 pair tensor ``N×2×K×h×w``, what the server gets) and the :class:`BatchSecret`
        that :meth:`decode` needs (it stays on the device).
        """
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ShapeError(f"this device encodes images of shape N×{'×'.join(map(str, self.image_shape))}, got {'×'.join(map(str, images.shape))}")
        if images.shape[0] == 0:
            raise ShapeError("no images to encode (N = 0)")
        a = self._features(images)
        draws = self._draws.uniform(a.shape[0], 1 + self.pool_size)  # per sample: θ, then one score per pool entry
        theta = draws[:, 0] * (2.0 * math.pi)
        scores = draws[:, 1:].clone()
        scores[self._same(a)] = -1.0  # never the sample's own feature
        if bool((scores.max(dim=1).values < 0).any()):
            bad = int((scores.max(dim=1).values < 0).nonzero()[0, 0])
            raise ConfigError(f"the counterpart pool holds no image other than sample {bad} itself; give a pool of other images (at least two distinct ones)")
        index = scores.argmax(dim=1)
        b = self._pool[index.to(self._pool.device)]
        x = cl.encode(a, b, theta.to(device=a.device, dtype=a.dtype))
        return x.float().contiguous(), BatchSecret(theta=theta, counterpart=index)

    def _same(self, a: torch.Tensor) -> torch.Tensor:
        """N×P mask: pool entry j's feature is (nearly) sample i's own."""
        flat = a.flatten(1)
        norms = flat.norm(dim=1)
        same = torch.empty((flat.shape[0], self.pool_size), dtype=torch.bool)
        for j in range(self.pool_size):  # one pool entry at a time: memory N×F, exact differences
            dist = (flat - self._pool_flat[j]).norm(dim=1)
            same[:, j] = (dist <= SAME_FEATURE_TOL * torch.maximum(norms, self._pool_norm[j])).cpu()
        return same

    def counterparts(self, secret: BatchSecret) -> torch.Tensor:
        """The fooling counterparts ``b`` of an encoded batch (for experiments and tests: they
        never leave the device)."""
        return self._pool[secret.counterpart.to(self._pool.device)]

    def decode(self, h: torch.Tensor, secret: BatchSecret) -> torch.Tensor:
        """Eq. 3: ``ŷ = d(Re[h·e^{−iθ}])`` → logits ``N×K`` (float32, on the CPU)."""
        if h.ndim < 2 or h.shape[0] != secret.theta.shape[0] or h.shape[1] != 2:
            raise ShapeError(f"the server's output must be N×2×… for the {secret.theta.shape[0]} encoded samples, got shape {tuple(h.shape)}")
        h = h.to(self.torch_device, torch.float32)
        with torch.inference_mode():
            return self.decoder(cl.decode(h, secret.theta.to(self.torch_device, h.dtype))).float().cpu()


class Server:
    """The server's side: the processing module Φ, nothing secret (section 3).

    ``processor``: the processing module (an ``nn.Module`` on pair tensors), a
    :class:`ProcessorPart`, a :class:`ComplexNet` (its ``processor`` only is kept), or the path of
    ``server.json``/``.safetensors`` written by :func:`split_model`. Put in eval mode.
    """

    def __init__(self, processor: nn.Module | str | os.PathLike[str], *, device: str | torch.device = "cpu") -> None:
        if isinstance(processor, (str, os.PathLike)):
            processor = load_processor_part(processor)
        if isinstance(processor, ComplexNet):
            processor = processor.processor
        if not isinstance(processor, nn.Module):
            raise ConfigError(f"a Server runs a processing module (nn.Module), got {type(processor).__name__}")
        self.torch_device = torch.device(device)
        self.processor = processor.to(self.torch_device).eval()

    def process(self, x: torch.Tensor) -> torch.Tensor:
        """``h = Φ(x)`` on the pair tensor ``N×2×…`` the device sent."""
        with torch.inference_mode():
            return self.processor(x.to(self.torch_device)).cpu()


def logits(device: Device, server: Server, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """The split network's logits for ``images``, device and server in this process: each batch
    is encoded with fresh θ and counterparts, processed and decoded."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    out = []
    for i in range(0, images.shape[0], batch_size):
        x, secret = device.encode(images[i : i + batch_size])
        out.append(device.decode(server.process(x), secret))
    if not out:
        raise ShapeError("no images (N = 0)")
    return torch.cat(out)


def accuracy(device: Device, server: Server, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of the split deployment (:func:`logits`) — the accuracy the paper's tables
    report, with a fresh θ and counterpart per sample; reproducible with a seeded :class:`Device`."""
    if labels.shape[0] != images.shape[0]:
        raise ShapeError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    return float((logits(device, server, images, batch_size=batch_size).argmax(1) == labels.cpu()).float().mean())


# --------------------------------------------------------------------------------------------
# The parts, as zoo models (saved and loaded by veilnet.models like every other model)


class ProcessorPart(nn.Module):
    """The server's part of a split :class:`ComplexNet`: the processing module Φ and nothing
    else (its state dict holds ``processor.*`` only). Shape: ``N×2×…`` → ``N×2×…``."""

    def __init__(self, processor: nn.Module) -> None:
        super().__init__()
        self.processor = processor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.processor(x)


class DevicePart(nn.Module):
    """The device's part of a split :class:`ComplexNet`: the encoder g, the decoder d and the
    counterpart pool (uint8 images ``P×C×H×W`` in the buffer ``pool``; absent when P = 0)."""

    pool: torch.Tensor | None

    def __init__(self, encoder: Encoder, decoder: nn.Module, pool_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.register_buffer("pool", torch.zeros(tuple(pool_shape), dtype=torch.uint8) if pool_shape else None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - a part is not run whole
        raise ConfigError("the device part is not a network: use veilnet.complex.protocol.Device (encode, then decode the server's output)")


def _complex_net(model: str | None, kwargs: dict[str, Any] | None, role: str) -> ComplexNet:
    from veilnet.models.registry import create

    if not isinstance(model, str) or not model:
        raise ConfigError(f"{role} needs model=NAME, the complex-valued network it was split from (e.g. complex-lenet)")
    if not isinstance(kwargs, (dict, type(None))):
        raise ConfigError(f"{role} argument kwargs must be an object of {model}'s arguments, got {kwargs!r}")
    net = create(model, **(kwargs or {}))
    if not isinstance(net, ComplexNet):
        raise ConfigError(f"{role} splits a complex-valued network (complex-*), not {model}")
    return net


def complex_processor(model: str | None = None, kwargs: dict[str, Any] | None = None) -> ProcessorPart:
    """Registry constructor of :data:`PROCESSOR`: the processing module of ``model`` built with
    ``kwargs`` (the encoder and decoder built along the way are dropped)."""
    return ProcessorPart(_complex_net(model, kwargs, PROCESSOR).processor)


def complex_device(model: str | None = None, kwargs: dict[str, Any] | None = None, pool_shape: list[int] | None = None) -> DevicePart:
    """Registry constructor of :data:`DEVICE`: the encoder and decoder of ``model`` built with
    ``kwargs``, and room for a pool of ``pool_shape`` = [P, C, H, W] uint8 images (None: none)."""
    if pool_shape is not None and not (isinstance(pool_shape, list) and len(pool_shape) == 4 and all(is_int(v) and v > 0 for v in pool_shape)):
        raise ConfigError(f"{DEVICE} argument pool_shape must be four positive integers [P, C, H, W], got {pool_shape!r}")
    net = _complex_net(model, kwargs, DEVICE)
    return DevicePart(net.encoder, net.decoder, pool_shape)


#: Registry names → constructors, added to :data:`veilnet.models.registry.MODELS` (:func:`veilnet.models.register`).
PARTS = {PROCESSOR: complex_processor, DEVICE: complex_device}
for _name, _constructor in PARTS.items():
    registry.register(_name, _constructor)


def processor_fingerprint(processor: nn.Module) -> str:
    """SHA-256 (hex) of a processing module's tensors: names, dtypes, shapes and bytes, in name
    order. The server publishes it and the device's file records it, so a client can tell before
    sending anything that the served Φ is the one its encoder and decoder were trained with."""
    if isinstance(processor, ProcessorPart):
        processor = processor.processor
    h = hashlib.sha256()
    for name, tensor in sorted(processor.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Files by role


@dataclass(frozen=True)
class SplitFiles:
    """The weights files :func:`split_model` wrote (each with its ``.json`` card beside it)."""

    server: Path
    device: Path


def split_model(
    net: ComplexNet | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    pool: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    force: bool = False,
) -> SplitFiles:
    """Write a :class:`ComplexNet` (or a saved one's path) as two parts into ``out_dir``.

    * ``server.safetensors`` + ``.json``: :data:`PROCESSOR`, Φ's tensors only; the card's
      ``extra.complex`` holds the network's architecture name, the shape of one ``x``
      (``input_shape``, ``[2, K, h, w]``) and :func:`processor_fingerprint` — public parameters;
      no data path, no metrics.
    * ``device.safetensors`` + ``.json`` (mode 0600): :data:`DEVICE`, the encoder, the decoder
      and ``pool`` (images ``P×C×H×W``, stored as uint8; None: none, then the device needs
      ``--pool``); the card records the image shape, the network's data and metrics, and the
      processor's fingerprint.

    The image shape comes from ``input_shape``, the pool, or the net's card/arguments (they must
    agree). Existing files are kept unless ``force``.
    """
    from veilnet import models
    from veilnet.models.inputs import input_shape as known_shape
    from veilnet.paths import prepare_output

    if isinstance(net, (str, os.PathLike)):
        net = load_complex_net(net)
    arch = getattr(net, "veilnet_arch", None)
    if not isinstance(net, ComplexNet) or not isinstance(arch, dict):
        raise ModelFormatError(f"split_model takes a complex-valued network built by veilnet.models.create (complex-*), got {type(net).__name__}")
    card = getattr(net, "veilnet_card", None) or {}
    shapes = {}
    if input_shape is not None:
        shapes["input_shape"] = tuple(int(v) for v in input_shape)
    if pool is not None:
        if pool.ndim != 4 or pool.shape[0] == 0:
            raise ShapeError(f"the counterpart pool must be images P×C×H×W with P ≥ 1, got shape {tuple(pool.shape)}")
        shapes["the pool"] = tuple(int(v) for v in pool.shape[1:])
    recorded = known_shape(net)
    if all(v is not None for v in recorded):
        shapes[f"{arch['name']}'s card"] = tuple(int(v) for v in recorded if v is not None)
    if not shapes:
        raise ConfigError(f"the image shape of {arch['name']} is unknown (its card has no input_shape): give input_shape=(C, H, W) or a pool")
    if len(set(shapes.values())) > 1:
        raise ShapeError("image shapes disagree: " + ", ".join(f"{k} {'×'.join(map(str, v))}" for k, v in shapes.items()))
    image_shape = next(iter(shapes.values()))
    out = Path(out_dir)
    prepare_output(out, force=force, exists=("server.safetensors", "server.json", "device.safetensors", "device.json"), mkdir=True)

    net = net.cpu().eval()
    try:
        with torch.inference_mode():
            a = net.encoder(torch.zeros(1, *image_shape))
    except (RuntimeError, ValueError) as exc:
        raise ShapeError(f"{arch['name']} cannot take {'×'.join(map(str, image_shape))} images: {_first_line(exc)}") from None
    pair_shape = [2, *(int(v) for v in a.shape[1:])]
    fingerprint = processor_fingerprint(net.processor)
    source = {"model": arch["name"], "kwargs": dict(arch["kwargs"])}

    server = models.create(PROCESSOR, **source)
    server.processor.load_state_dict(net.processor.state_dict())
    pixels = None if pool is None else _as_uint8(pool)
    device = models.create(DEVICE, **source, pool_shape=None if pixels is None else list(pixels.shape))
    device.encoder.load_state_dict(net.encoder.state_dict())
    device.decoder.load_state_dict(net.decoder.state_dict())
    if pixels is not None:
        device.pool.copy_(pixels)

    public = {"architecture": arch["name"], "input_shape": pair_shape, "processor_sha256": fingerprint}
    server_path = models.save(server, out / "server", extra={SERVER_EXTRA: public}, force=force)
    device_path = models.save(
        device,
        out / "device",
        data=card.get("data") if isinstance(card.get("data"), str) else None,
        metrics=card.get("metrics") if isinstance(card.get("metrics"), dict) else None,
        extra={DEVICE_EXTRA: public},
        input_shape=image_shape,
        force=force,
    )
    for path in (device_path, device_path.with_suffix(".json")):
        os.chmod(path, 0o600)
    return SplitFiles(server=server_path, device=device_path)


def load_complex_net(path: str | os.PathLike[str]) -> ComplexNet:
    """A saved :class:`ComplexNet` (ModelFormatError naming the file when it is another model)."""
    from veilnet import models

    info = models.card(path)
    if info["architecture"] in PARTS:
        raise ModelFormatError(f"{path} is already a part of a split network ({info['architecture']}); split the whole complex-valued network")
    net = models.load(path)
    if not isinstance(net, ComplexNet):
        raise ModelFormatError(f"{path} holds {info['architecture']}, not a complex-valued network (complex-lenet, complex-resnet20-alpha, …)")
    return net


def load_device_part(path: str | os.PathLike[str]) -> DevicePart:
    """The device part written by :func:`split_model` (ModelFormatError when ``path`` is another file)."""
    return _load_part(path, DEVICE, "device part (device.json from veilnet split)")  # type: ignore[return-value]


def load_processor_part(path: str | os.PathLike[str]) -> ProcessorPart:
    """The server part written by :func:`split_model` (ModelFormatError when ``path`` is another file)."""
    return _load_part(path, PROCESSOR, "server part (server.json from veilnet split)")  # type: ignore[return-value]


def _load_part(path: str | os.PathLike[str], name: str, what: str) -> nn.Module:
    from veilnet import models

    try:
        info = models.card(path)
    except VeilnetError as exc:
        head, _, reason = str(exc).partition(": ")
        raise ModelFormatError(f"{path} is not a complex-valued network's {what}: {reason if head.endswith('.json') and reason else exc}") from None
    if info["architecture"] != name:
        raise ModelFormatError(f"{path} holds {info['architecture']}, not a complex-valued network's {what}")
    return models.load(path)


# --------------------------------------------------------------------------------------------
# Counterpart pools from data


def pool_from_data(spec: str, size: int, *, split: str = "train", seed: int | None = None) -> torch.Tensor:
    """``size`` images of data set ``spec`` (its ``split``), drawn without replacement with a
    CSPRNG-seeded generator (or ``seed``), as uint8 ``size×C×H×W``: a counterpart pool."""
    import secrets

    from veilnet import data

    if size < 1:
        raise ConfigError(f"the pool size must be positive, got {size}")
    images = data.load(spec, split).images
    if size > images.shape[0]:
        raise ConfigError(f"a pool of {size} images asked of {spec} ({split}), which has {images.shape[0]}")
    generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(64))
    return images[torch.randperm(images.shape[0], generator=generator)[:size]].clone()


# --------------------------------------------------------------------------------------------
# Helpers


def _as_uint8(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.cpu()
    pixels = metrics.as_float(images)
    if not bool(torch.isfinite(pixels).all()) or float(pixels.min()) < 0.0 or float(pixels.max()) > 1.0:
        raise ShapeError("float pool images must be pixels in [0, 1]")
    return pixels.mul(255.0).round().to(torch.uint8).cpu()


def _known_image_shape(net: nn.Module) -> tuple[int, ...] | None:
    from veilnet.models.inputs import input_shape

    shape = input_shape(net)
    return tuple(int(v) for v in shape if v is not None) if all(v is not None for v in shape) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


__all__ = [
    "DEVICE",
    "PARTS",
    "PROCESSOR",
    "BatchSecret",
    "Device",
    "DevicePart",
    "ProcessorPart",
    "Server",
    "SplitFiles",
    "accuracy",
    "complex_device",
    "complex_processor",
    "load_complex_net",
    "load_device_part",
    "load_processor_part",
    "logits",
    "pool_from_data",
    "processor_fingerprint",
    "split_model",
]
