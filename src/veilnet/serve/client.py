"""The client: holds the key, transforms images locally, sends only the transformed tensors.

:class:`Client` first fetches ``/v1/info`` and checks that its key fits the served model
(scheme, block size, channels, image size and, when the card records it, the key's fingerprint)
before it sends any image; then :meth:`Client.classify` returns labels and probabilities.
Connection problems, a refused token and a server's 4xx answer are :class:`ServiceError`\\ s
with one-line messages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veilnet import keys
from veilnet.errors import AuthRefusedError, ConfigError, DataFormatError, ServerUnreachableError, ServiceError
from veilnet.report import Result
from veilnet.serve import codec, kinds


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
    """A client of ``veilnet serve`` at ``url`` holding ``key`` (a Key or a key file).

    ``token`` is the bearer token (None: none sent); ``encoding`` is ``"npy"`` or ``"safetensors"``;
    ``ca_file`` is a CA certificate to trust for an ``https`` server (default: the system's).

    Example::

        with Client("http://127.0.0.1:8000", "key.json", token) as client:
            pred = client.classify(images)      # images N×C×H×W, uint8 or [0, 1] float
            print(pred.labels, pred.confidence)
    """

    def __init__(self, url: str, key: keys.Key | str | os.PathLike[str], token: str | None = None, *, encoding: str = "npy", timeout: float = 60.0, ca_file: str | os.PathLike[str] | None = None) -> None:
        try:
            import httpx
        except ModuleNotFoundError:
            raise ConfigError("the veilnet client needs httpx: pip install 'veilnet[serve]'") from None

        self.url = url.rstrip("/")
        self.key = key if isinstance(key, keys.Key) else keys.load(key)
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

    def check_key(self) -> None:
        """Raise KeyMismatchError when the key does not fit the served model (nothing is sent but the info request)."""
        e = self.expectation
        kinds.kind(e.kind).check_key(self.key, e)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The served model's logits for ``images`` (N×C×H×W, uint8 or [0, 1] float), sent in
        chunks of the server's ``max_batch`` after transforming them with the key."""
        self.check_key()
        e = self.expectation
        kind = kinds.kind(e.kind)
        chunk = int(self.info()["limits"]["max_batch"])
        outs = []
        for start in range(0, images.shape[0], chunk):
            x, state = kind.encode(images[start : start + chunk], self.key)
            body = codec.write_tensor(x, self.media_type, "inputs")
            answer = self._request("POST", "/v1/predict", content=body, headers={"Content-Type": self.media_type})
            try:
                out = codec.read_tensor(answer.content, answer.headers.get("content-type", "").split(";")[0], dtype=self.info()["output"]["dtype"], max_items=x.shape[0])
            except codec.BodyError as exc:
                raise ServiceError(f"{self.url}/v1/predict returned an unreadable answer: {exc.message}") from None
            if out.shape[0] != x.shape[0]:
                raise ServiceError(f"{self.url}/v1/predict returned {out.shape[0]} rows for {x.shape[0]} inputs")
            outs.append(kind.decode(out, state, self.key))
        return torch.cat(outs) if outs else torch.empty(0, *self.info()["output"]["shape"][1:])

    def classify(self, images: torch.Tensor) -> Predictions:
        """Labels and softmax probabilities for ``images``."""
        probs = torch.softmax(self.logits(images).double(), dim=1).float()
        return Predictions(labels=probs.argmax(1), probabilities=probs)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
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
    """PNG/JPEG files -> uint8 N×C×H×W; ``shape`` is (C, H, W) the model expects (C 1 or 3).
    DataFormatError naming the file when one cannot be read or has another size."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    if c not in (1, 3):
        raise DataFormatError(f"the served model takes {c}-channel inputs; image files give 1 or 3 channels")
    arrays = []
    for item in paths:
        path = Path(item)
        try:
            with Image.open(path) as img:
                array = np.asarray(img.convert("L" if c == 1 else "RGB"))
        except FileNotFoundError:
            raise DataFormatError(f"{path}: no such image file") from None
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataFormatError(f"{path}: cannot read image ({codec.first_line(exc)})") from None
        if array.shape[:2] != (h, w):
            raise DataFormatError(f"{path}: image is {array.shape[1]}×{array.shape[0]} pixels, the served model takes {w}×{h}")
        arrays.append(torch.from_numpy(array.reshape(h, w, c).copy()).permute(2, 0, 1))
    return torch.stack(arrays) if arrays else torch.empty(0, c, h, w, dtype=torch.uint8)
