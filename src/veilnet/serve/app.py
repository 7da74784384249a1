"""The untrusted server: a FastAPI application around one transformed model.

It holds the transformed model and its card, never a key or a plain image: a keyed model, or the
processing module Φ of a complex-valued network (without its encoder and decoder; it never sees
θ or a counterpart either, :mod:`veilnet.complex.protocol`). Endpoints:

* ``GET /healthz``: liveness, no authentication.
* ``GET /v1/info``: what the model expects (:func:`veilnet.serve.kinds.from_card`): kind, input
  shape and dtype, the kind's public parameters (for keyed models: scheme, block size, channels,
  image size, Ea kind, key fingerprint), number of classes, limits, and the card's architecture
  name. Nothing else of the card is published (:data:`PUBLIC_CARD_FIELDS` is an allow-list): a
  card's ``data`` may be a local path, its metrics and arguments are the model owner's business.
* ``POST /v1/predict``: a batch as an ``.npy`` or safetensors body (:mod:`veilnet.serve.codec`);
  answers the model's output (for a keyed classifier: float32 logits N×K) in the same encoding.

Every request except ``/healthz`` and ``/openapi.json`` needs ``Authorization: Bearer TOKEN``
with one of the configured tokens (compared in constant time) unless the app is built with
``tokens=None`` (``--no-auth``). Everything a client can get wrong is a 4xx with
``{"error": "..."}`` naming the problem; an internal failure is a 500 with no details; nothing a
client sends is logged. There is no ``/docs`` page.

The OpenAPI schema (``/openapi.json``) is public, and therefore describes the protocol, not the
deployment: it is the same document for every model, token set and limit a server runs with
(its version is the protocol's, ``1``, not veilnet's). Every fact about the served model (kind,
input shape and dtype, output, limits, key parameters) is on ``/v1/info`` only, behind the
token. So tools and client generators can read the contract without a credential, and an
unauthenticated caller learns nothing from it that it would not learn from the source code.
Each operation lists every status it can answer (:data:`WHY`) with the error model
(:class:`ErrorBody`); the 503 of the connection limit is uvicorn's plain text.

A body must arrive within :attr:`Limits.read_timeout_s` of the start of its reading (a client
whose body is shorter than its Content-Length, or that trickles it, would otherwise hold a
connection and its buffer forever): the answer is 408 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from torch import nn

from veilnet import __version__
from veilnet.serve import codec, kinds
from veilnet.serve.batching import BatchingConfig, DynamicBatcher

log = logging.getLogger("veilnet.serve")
#: Card fields published on /v1/info (an allow-list; only string values): what a client may show.
#: The card's ``data`` (possibly a local path), ``kwargs``, ``metrics`` and ``sha256`` stay private.
PUBLIC_CARD_FIELDS = ("architecture",)
#: The version of the HTTP protocol (the ``/v1`` paths), the OpenAPI document's ``info.version``.
API_VERSION = "1"


@dataclass(frozen=True)
class Limits:
    """``max_body_bytes`` of a request body, ``max_batch`` items per request, ``read_timeout_s``
    seconds to receive a body (408 after that)."""

    max_body_bytes: int = 64 << 20
    max_batch: int = 256
    read_timeout_s: float = 30.0


class ApiError(Exception):
    """An answer with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# --- the wire documents (their JSON schemas are the OpenAPI components) ----------------------------


class ErrorBody(BaseModel):
    """Every 4xx/500 answer of veilnet."""

    error: str = Field(description="what was wrong, in one line")


class TensorSpec(BaseModel):
    shape: list[int | None] = Field(description="the shape; the first dimension (null) is the batch N")
    dtype: str = Field(description="numpy dtype name, little-endian on the wire")


class LimitsInfo(BaseModel):
    max_batch: int = Field(description="most items per request (413 beyond)")
    max_body_bytes: int = Field(description="largest request body (413 beyond)")


class ModelInfo(BaseModel):
    """The ``/v1/info`` document: everything a client needs to feed the served model."""

    kind: str = Field(description="the model's kind (veilnet.serve.kinds): keyed or complex")
    input: TensorSpec
    output: TensorSpec
    num_classes: int | None = Field(description="K of a classifier's N×K output, else null")
    params: dict[str, Any] = Field(description="the kind's public parameters (for keyed: scheme, block_size, channels, image_size, ea, fingerprint; for complex: architecture, processor_sha256)")
    limits: LimitsInfo
    encodings: list[str] = Field(description="accepted request content types")
    card: dict[str, str] = Field(description="the public part of the model card (architecture)")
    veilnet: str = Field(description="the server's veilnet version")


#: Why each status can be answered; the OpenAPI entries take their descriptions from here.
WHY = {
    400: "malformed or truncated body, or an invalid Content-Length",
    401: "missing or invalid bearer token",
    408: "the body did not arrive within the server's read timeout; the connection is closed",
    413: "body or batch over the server's limits (see /v1/info)",
    415: f"content type other than {' or '.join(codec.MEDIA_TYPES)}",
    422: "wrong dtype or shape, empty batch, NaN or infinite values",
    500: "internal error (no details)",
    503: "the server is at its connection limit (plain text, from uvicorn)",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response entries for ``statuses`` (the error model; 503 is uvicorn's plain text)."""
    plain = {"text/plain": {"schema": {"type": "string"}}}
    return {s: {"description": WHY[s], **({"content": plain} if s == 503 else {"model": ErrorBody})} for s in statuses}


@dataclass(frozen=True)
class ServedModel:
    """A transformed model ready to serve: the module, its :class:`~veilnet.serve.kinds.Expectation`,
    the shape of one output (``(K,)`` for a classifier's logits) and its dtype, and the public part of its card."""

    model: nn.Module
    expectation: kinds.Expectation
    output_shape: tuple[int, ...]
    output_dtype: str
    card: dict[str, str]
    device: str = "cpu"

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> ServedModel:
        """Load a model saved by :func:`veilnet.models.save` whose card names its kind
        (ModelFormatError otherwise), and run it once on zeros to learn its output's shape."""
        from veilnet import models

        model = models.load(path, device=device)
        return cls.from_model(model, model.veilnet_card, device=device)

    @classmethod
    def from_model(cls, model: nn.Module, card: dict[str, Any], *, device: str = "cpu") -> ServedModel:
        from veilnet.errors import ModelFormatError

        expectation = kinds.from_card(card)
        probe = torch.zeros((1, *expectation.input_shape), dtype=getattr(torch, expectation.dtype), device=device)
        try:
            with torch.inference_mode():
                out = model.eval()(probe)
        except Exception as exc:  # the card's parameters do not fit the weights
            raise ModelFormatError(f"model {card.get('architecture')!r} does not take its card's input {expectation.input_shape}: {codec.first_line(exc)}") from None
        return cls(model=model, expectation=expectation, output_shape=tuple(out.shape[1:]), output_dtype=str(out.dtype).removeprefix("torch."), card=public_card(card), device=device)

    @property
    def num_classes(self) -> int | None:
        """K for a classifier (one logit vector per input), else None."""
        return self.output_shape[0] if len(self.output_shape) == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x.to(self.device)).cpu()

    def info(self, limits: Limits) -> dict[str, Any]:
        """The ``/v1/info`` document (:class:`ModelInfo`)."""
        e = self.expectation
        return ModelInfo(
            kind=e.kind,
            input=TensorSpec(shape=[None, *e.input_shape], dtype=e.dtype),
            output=TensorSpec(shape=[None, *self.output_shape], dtype=self.output_dtype),
            num_classes=self.num_classes,
            params=e.params,
            limits=LimitsInfo(max_batch=limits.max_batch, max_body_bytes=limits.max_body_bytes),
            encodings=list(codec.MEDIA_TYPES),
            card=self.card,
            veilnet=__version__,
        ).model_dump()


def public_card(card: dict[str, Any]) -> dict[str, str]:
    """The fields of ``card`` a server publishes: :data:`PUBLIC_CARD_FIELDS` with string values."""
    return {k: card[k] for k in PUBLIC_CARD_FIELDS if isinstance(card.get(k), str)}


def create_app(served: ServedModel, *, tokens: Sequence[str] | None, limits: Limits = Limits(), batching: BatchingConfig = BatchingConfig()) -> FastAPI:
    """The FastAPI application serving ``served``; ``tokens=None`` disables authentication."""
    digests = None if tokens is None else [hashlib.sha256(t.encode()).digest() for t in tokens]
    batcher = DynamicBatcher(served.forward, batching)
    info = served.info(limits)
    e = served.expectation

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="veilnet", version=API_VERSION, summary="An untrusted server running a transformed model; it never sees a key or a plain image. What the served model takes: GET /v1/info.", lifespan=lifespan, docs_url=None, redoc_url=None)
    bearer = HTTPBearer(auto_error=False, description="one of the server's tokens")

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # async: no thread hop
        if digests is None:
            return
        given = hashlib.sha256(credentials.credentials.encode() if credentials is not None else b"").digest()
        ok = False
        for digest in digests:  # every token is compared, in constant time
            ok |= hmac.compare_digest(given, digest)
        if credentials is None or not ok:
            raise ApiError(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request parameters"}, status_code=422)

    @app.get("/healthz", summary="liveness (no token needed)", responses=_responses(503))
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", summary="what the served model takes and answers", dependencies=[Depends(authorize)], response_model=ModelInfo, responses=_responses(401, 503))
    async def get_info() -> dict[str, Any]:
        return info

    @app.post("/v1/predict", summary="outputs for a batch of transformed inputs", dependencies=[Depends(authorize)], response_class=Response, responses=_responses(400, 401, 408, 413, 415, 422, 500, 503), openapi_extra=_PREDICT_OPENAPI)
    async def predict(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _read_body(request, limits)
        try:
            x = codec.read_tensor(body, media, dtype=e.dtype, item_shape=e.input_shape, max_items=limits.max_batch)
        except codec.BodyError as exc:
            raise ApiError(exc.status, exc.message) from None
        if x.shape[0] == 0:
            raise ApiError(422, "empty batch (N = 0)")
        if not bool(torch.isfinite(x).all()):
            raise ApiError(422, "input contains NaN or infinite values")
        try:
            out = await batcher(x)
        except Exception as exc:  # a bug, not the client's fault: no details leave the server
            log.error("forward pass failed (%s)", type(exc).__name__)
            raise ApiError(500, "internal error") from None
        return Response(codec.write_tensor(out, media, "logits"), media_type=media)

    return app


_BINARY = {media: {"schema": {"type": "string", "format": "binary"}} for media in codec.MEDIA_TYPES}
#: The request body and the 200 answer of ``/v1/predict``, in words that hold for every served model.
_PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one tensor of shape N×(input.shape without its first entry) and dtype input.dtype, as given by GET /v1/info, with N ≤ limits.max_batch and the body ≤ limits.max_body_bytes; as .npy or as a safetensors file holding exactly one tensor",
        "content": _BINARY,
    },
    "responses": {"200": {"description": "the outputs, N×(output.shape without its first entry) of output.dtype (GET /v1/info; logits for a classifier), encoded like the request", "content": _BINARY}},
}


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it (or its declared length) exceeds the limit, and
    with 408 (closing the connection) when it has not arrived within ``limits.read_timeout_s``."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise ApiError(400, "invalid Content-Length header")
    if declared is not None and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []

    async def receive() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), limits.read_timeout_s)
    except ClientDisconnect:
        raise ApiError(400, "request body incomplete (client disconnected)") from None
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body not received within {limits.read_timeout_s:g} s", {"Connection": "close"}) from None
    return b"".join(chunks)


def run(
    model: ServedModel | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens: Sequence[str] | None,
    limits: Limits = Limits(),
    batching: BatchingConfig = BatchingConfig(),
    max_connections: int = 128,
    tls: tuple[str, str] | None = None,
    device: str = "cpu",
    log_level: str = "info",
) -> None:
    """Serve ``model`` (a :class:`ServedModel`, or a path :meth:`ServedModel.load` reads on
    ``device``) with uvicorn until interrupted.

    ``tokens=None`` serves without authentication, with a warning. Beyond ``max_connections``
    open connections uvicorn answers 503, which bounds the memory bodies can take. ``tls`` is
    (certificate file, private key file) for HTTPS; without it a non-loopback address gets a
    warning, since tokens would cross the network in clear.
    """
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    served = model if isinstance(model, ServedModel) else ServedModel.load(model, device=device)
    app = create_app(served, tokens=tokens, limits=limits, batching=batching)
    e = served.expectation
    log.info("serving %s (kind %s, input N×%s %s, output N×%s) on %s://%s:%d", served.card.get("architecture", "a model"), e.kind, "×".join(map(str, e.input_shape)), e.dtype, "×".join(map(str, served.output_shape)), "https" if tls else "http", host, port)
    log.info("limits: %d items per request, %d bytes per body, %g s to receive a body; batching: %s", limits.max_batch, limits.max_body_bytes, limits.read_timeout_s, f"up to {batching.max_images} items, wait {batching.wait_ms} ms" if batching.enabled else "off")
    if tls is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving plain HTTP on %s: bearer tokens and inputs cross the network in clear; pass --tls-cert/--tls-key or put a TLS proxy in front", host)
    if tokens is None:
        log.warning("authentication is OFF (--no-auth): anyone who can reach %s:%d can use the model", host, port)
    else:
        log.info("authentication: bearer token (%d configured)", len(tokens))
    cert, key = tls if tls is not None else (None, None)
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None, server_header=False, limit_concurrency=max_connections, ssl_certfile=cert, ssl_keyfile=key)


@contextlib.contextmanager
def local_server(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread of this process and yield its URL
    (``port=0``: a free port); the server stops when the block ends. For tests, notebooks and
    benchmarks; ``veilnet serve`` (:func:`run`) is the deployment."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, log_config=None, server_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="veilnet-local-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local server did not start")
            time.sleep(0.01)
        yield f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
