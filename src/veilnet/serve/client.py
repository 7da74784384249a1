"""The client: holds the secret, transforms images locally, sends only the transformed tensors.

:class:`Client` first fetches ``/v1/info``, learns the served model's kind
(:mod:`veilnet.serve.kinds`) and lets the kind check the client's secret against it (for a keyed
model: scheme, block size, channels, image size and, when the card records it, the key's
fingerprint) before it sends any image; then :meth:`Client.classify` returns labels and
probabilities, and :attr:`Client.classes` names the labels when the model's card does. The
client knows no kind's arithmetic itself: it calls the kind's ``encode`` and ``decode``, and
the per-batch state between them never leaves this process. Connection problems,
a refused token and a server's 4xx answer are :class:`ServiceError`\\ s with one-line messages.
A request whose connection closes before any answer (a keep-alive connection the server was
closing) is sent once more, on a new connection.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from veilnet.errors import AuthRefusedError, ConfigError, ServerUnreachableError, ServiceError, ShapeError
from veilnet.report import Result
from veilnet.serve import codec, kinds

_UNREAD = object()  # the secret before the kind has read it


@dataclass(frozen=True)
class Predictions(Result):
    """Labels (N, int64) and the softmax probabilities (N×K) of the served model."""

    labels: torch.Tensor
    probabilities: torch.Tensor

    @property
    def confidence(self) -> torch.Tensor:
        """The probability of each predicted label."""
        return self.probabilities.gather(1, self.labels[:, None])[:, 0]


class Client:
    """A client of ``veilnet serve`` at ``url`` holding ``secret``.

    ``secret`` is what the served model's kind takes (:meth:`veilnet.serve.kinds.Kind.load_secret`;
    for a keyed model a :class:`~veilnet.keys.Key`, for a complex-valued network's processor a
    :class:`~veilnet.complex.protocol.Device`), or the path of a file it reads that from.
    ``token`` is the bearer token (None: none sent); ``encoding`` is ``"npy"`` or ``"safetensors"``;
    ``ca_file`` is a CA certificate to trust for an ``https`` server (default: the system's).

    Example::

        with Client("http://127.0.0.1:8000", "key.json", token) as client:
            pred = client.classify(images)      # images N×C×H×W, uint8 or [0, 1] float
            print(pred.labels, pred.confidence)
    """

    def __init__(
        self, url: str, secret: Any, token: str | None = None, *, encoding: str = "npy", timeout: float = 60.0, ca_file: str | os.PathLike[str] | None = None
    ) -> None:
        try:
            import httpx
        except ModuleNotFoundError:
            raise ConfigError("the veilnet client needs httpx: pip install 'veilnet[serve]'") from None

        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"server URL must start with http:// or https://, got {url[:80]!r}")
        self.url = url.rstrip("/")
        if isinstance(secret, (str, os.PathLike)) and not (
            Path(secret).is_file() or Path(f"{secret}.json").is_file() or (Path(secret) / "model.json").is_file()
        ):
            raise ConfigError(f"secret file {secret} does not exist")  # a model's stem or folder names its .json
        self._secret_source = secret
        self._secret: Any = _UNREAD
        media = {"npy": codec.NPY, "safetensors": codec.SAFETENSORS}
        if encoding not in media:
            raise ConfigError(f"encoding must be 'npy' or 'safetensors', got {encoding!r}")
        self.media_type = media[encoding]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: Any = True
        if ca_file is not None:
            import ssl

            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file {ca_file} cannot be used ({type(exc).__name__})") from None
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=verify)
        self._info: dict[str, Any] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def info(self) -> dict[str, Any]:
        """The server's ``/v1/info`` (fetched once)."""
        if self._info is None:
            try:
                info = self._request("GET", "/v1/info").json()
            except ValueError:
                info = None
            missing = [k for k in ("kind", "input", "output", "params", "limits") if k not in info] if isinstance(info, dict) else ["everything"]
            if missing:
                raise ServiceError(f"{self.url}/v1/info is not a veilnet model description (missing: {', '.join(missing)}); is this a veilnet server?")
            self._info = info
        return self._info

    @property
    def expectation(self) -> kinds.Expectation:
        return kinds.from_info(self.info())

    @property
    def classes(self) -> list[str] | None:
        """The name of each class of the served model (``/v1/info``'s ``classes``), None when its card has none."""
        names = self.info().get("classes")
        return list(names) if isinstance(names, list) else None

    @property
    def kind(self) -> kinds.Kind[Any, Any]:
        """The served model's :class:`~veilnet.serve.kinds.Kind` (ModelFormatError if this veilnet lacks it)."""
        return kinds.kind(self.expectation.kind)

    @property
    def secret(self) -> Any:
        """The client's secret, read from its file by the served kind the first time it is needed."""
        if self._secret is _UNREAD:
            source = self._secret_source
            self._secret = self.kind.load_secret(source) if isinstance(source, (str, os.PathLike)) else source
        return self._secret

    def check_secret(self) -> None:
        """Raise a VeilnetError (KeyMismatchError) when the secret does not fit the served model
        (nothing is sent but the info request)."""
        self.kind.check_secret(self.secret, self.expectation)

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the served model classifies."""
        return self.kind.image_shape(self.expectation, self.secret)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The served model's logits for ``images`` (N×C×H×W, uint8 or [0, 1] float), sent in
        chunks of the server's ``max_batch`` after the kind encoded them with the secret; each
        chunk's answer is decoded with the state its encoding left on this machine."""
        self.check_secret()
        kind, secret = self.kind, self.secret
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape():
            raise ShapeError(f"the served model classifies images of shape N×{'×'.join(map(str, self.image_shape()))}, got {'×'.join(map(str, images.shape))}")
        chunk = int(self.info()["limits"]["max_batch"])
        outs = []
        for start in range(0, images.shape[0], chunk):
            x, state = kind.encode(images[start : start + chunk], secret)
            body = codec.write_tensor(x, self.media_type, "inputs")
            answer = self._request("POST", "/v1/predict", content=body, headers={"Content-Type": self.media_type})
            try:
                out = codec.read_tensor(
                    answer.content, answer.headers.get("content-type", "").split(";")[0], dtype=self.info()["output"]["dtype"], max_items=x.shape[0]
                )
            except codec.BodyError as exc:
                raise ServiceError(f"{self.url}/v1/predict returned an unreadable answer: {exc.message}") from None
            if out.shape[0] != x.shape[0]:
                raise ServiceError(f"{self.url}/v1/predict returned {out.shape[0]} rows for {x.shape[0]} inputs")
            outs.append(kind.decode(out, state, secret))
        if not outs:
            raise ShapeError("no images to classify (N = 0)")
        return torch.cat(outs)

    def classify(self, images: torch.Tensor) -> Predictions:
        """Labels and softmax probabilities for ``images``."""
        probs = torch.softmax(self.logits(images).double(), dim=1).float()
        return Predictions(labels=probs.argmax(1), probabilities=probs)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            try:
                answer = self._http.request(method, path, **kwargs)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # the connection closed under the request (a keep-alive connection the server was
                # closing as it was sent): once more, on a new connection. Every veilnet request
                # is idempotent (predict computes and keeps nothing), so a repeat is harmless.
                answer = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ServerUnreachableError(f"{self.url}: no answer within {self._http.timeout.read} s") from None
        except httpx.TransportError as exc:
            raise ServerUnreachableError(f"{self.url} is unreachable ({type(exc).__name__}: {codec.first_line(exc)})") from None
        if answer.status_code in (401, 403):
            raise AuthRefusedError(f"{self.url} refused the token ({answer.status_code}: {_error(answer)}); check --token-file / $VEILNET_TOKEN")
        if answer.status_code >= 400:
            raise ServiceError(f"{self.url}{path} answered {answer.status_code}: {_error(answer)}")
        return answer


def _error(answer: Any) -> str:
    try:
        return str(answer.json()["error"])[:300]
    except (ValueError, KeyError, TypeError):
        return answer.text[:200] or answer.reason_phrase


def read_images(paths: Sequence[str | os.PathLike[str]], shape: Sequence[int]) -> torch.Tensor:
    """Image files (PNG, JPEG, ... or ``.npy`` pixel arrays) -> N×C×H×W pixels of ``shape``
    = (C, H, W), read by the one image decoder (:func:`veilnet.data.images.read_image_files`).
    DataFormatError naming the file when one cannot be read or has another size."""
    from veilnet.data.images import read_image_files
    from veilnet.errors import DataFormatError

    c, h, w = shape
    array = read_image_files(paths, channels=c, size=(w, h))
    if tuple(array.shape[1:]) != (c, h, w):  # a .npy array is taken as it is
        raise DataFormatError(f"input arrays are {'×'.join(map(str, array.shape[1:]))}, the served model takes {c}×{h}×{w}")
    return torch.from_numpy(array)


__all__ = ["AuthRefusedError", "Client", "Predictions", "ServerUnreachableError", "ServiceError", "read_images"]
