"""The untrusted server: a FastAPI application around one transformed model.

It holds the transformed model and its card, never a key or a plain image: a keyed model, or the
processing module Φ of a complex-valued network (without its encoder and decoder; it never sees
θ or a counterpart either, :mod:`veilnet.complex.protocol`). Endpoints:

* ``GET /healthz``: readiness, no authentication: ``{"status": "ready"}`` once the model is
  loaded and warmed (one forward pass of the largest merged batch), 503 ``{"status": "starting"}``
  before.
* ``GET /v1/info``: what the model expects (:func:`veilnet.serve.kinds.from_card`): kind, input
  shape and dtype, the kind's public parameters (for keyed models: scheme, block size, channels,
  image size, Ea kind, key fingerprint), number of classes and their names (the card's
  ``classes``; null for a card without them), limits, and the card's architecture name. Nothing
  else of the card is published (:data:`PUBLIC_CARD_FIELDS` is an allow-list): a card's ``data``
  may be a local path, its metrics and arguments are the model owner's business.
* ``POST /v1/predict``: a batch as an ``.npy`` or safetensors body (:mod:`veilnet.serve.codec`);
  answers the model's output (for a keyed classifier: float32 logits N×K) in the same encoding.
* ``GET /`` and ``/static/…``: the browser client (:func:`mount_ui`; off with ``--no-ui``), no
  token, outside the OpenAPI document: a page that encrypts images with the key in the browser.

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
(:class:`ErrorBody`).

Bodies are bounded by the served model: the largest valid request is ``max_batch`` inputs plus
the encoding's header (:func:`body_limit`), so a larger Content-Length is refused (413, the
connection closed) before any of the body is read, and a chunked body as soon as it passes the
limit. Deadlines on receiving requests, connection caps and the shutdown bound are enforced below
the application, in the server's protocol (:mod:`veilnet.serve.server`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from torch import nn

from veilnet import __version__
from veilnet.serve import codec, kinds
from veilnet.serve.batching import BatchingConfig, DynamicBatcher
from veilnet.serve.server import ConnectionLimits, mark_authenticated

log = logging.getLogger("veilnet.serve")
#: Card fields published on /v1/info (an allow-list; only string values): what a client may show.
#: The card's ``data`` (possibly a local path), ``kwargs``, ``metrics`` and ``sha256`` stay private.
PUBLIC_CARD_FIELDS = ("architecture",)
#: The version of the HTTP protocol (the ``/v1`` paths), the OpenAPI document's ``info.version``.
API_VERSION = "1"


@dataclass(frozen=True)
class Limits:
    """``max_batch`` items per request; ``max_body_bytes`` a lower cap on the body (None: the
    largest valid request for ``max_batch`` items, :func:`body_limit`; a larger value is lowered to it)."""

    max_batch: int = 256
    max_body_bytes: int | None = None


def body_limit(expectation: kinds.Expectation, limits: Limits) -> int:
    """The largest body a request may have: ``max_batch`` inputs of the served shape and dtype,
    plus the largest header either encoding may carry (:data:`veilnet.serve.codec.MAX_HEADER`
    and its fixed prefix), lowered to ``limits.max_body_bytes`` when that is given."""
    import math

    import numpy as np

    largest = limits.max_batch * math.prod(expectation.input_shape) * np.dtype(expectation.dtype).itemsize + codec.MAX_HEADER + codec.HEADER_PREFIX
    return largest if limits.max_body_bytes is None else min(largest, limits.max_body_bytes)


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
    classes: list[str] | None = Field(default=None, description="the name of each of the K classes (from the model card), else null")
    params: dict[str, Any] = Field(
        description="the kind's public parameters (for keyed: scheme, block_size, channels, "
        "image_size, ea, fingerprint; for complex: architecture, processor_sha256)"
    )
    limits: LimitsInfo
    encodings: list[str] = Field(description="accepted request content types")
    card: dict[str, str] = Field(description="the public part of the model card (architecture)")
    veilnet: str = Field(description="the server's veilnet version")


#: Why each status can be answered; the OpenAPI entries take their descriptions from here.
WHY = {
    400: "malformed or truncated body, or an invalid Content-Length",
    401: "missing or invalid bearer token",
    408: "the request's head or whole request did not arrive within the server's deadlines; the connection is closed",
    413: "body or batch over the server's limits (see /v1/info); the connection is closed",
    415: f"content type other than {' or '.join(codec.MEDIA_TYPES)}",
    422: "wrong dtype or shape, empty batch, NaN or infinite values, or an input whose output is not finite",
    500: "internal error (no details)",
    503: "the server is at its connection limit and this connection had shown least (it is closed), or (/healthz) not ready yet",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response entries for ``statuses`` (each with the error model)."""
    return {s: {"description": WHY[s], "model": ErrorBody} for s in statuses}


#: Items per compiled model call of a served model (``--compile``): the typical request's 8 images.
COMPILED_CHUNK = 8
#: The batch sizes an eager CPU model is timed at on start-up to choose its chunk (:func:`fastest_chunk`).
CHUNK_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)


def fastest_chunk(model: nn.Module, expectation: kinds.Expectation, *, rounds: int = 3) -> int:
    """The batch size of :data:`CHUNK_CANDIDATES` at which ``model`` (eval mode, on the CPU) takes
    the least CPU time per item on this machine: each size timed ``rounds`` times on zeros, the
    fastest round kept. CPU time (this process's, so torch's worker threads count) rather than
    wall time, so other jobs on the machine disturb the choice less.

    A merged pass is not always cheapest in one call: on a CPU a large batch's activations can
    outgrow the cache, so the cost per item can rise with the batch, and where it is lowest
    depends on the model and the machine."""
    import time

    x = torch.zeros((max(CHUNK_CANDIDATES), *expectation.input_shape), dtype=getattr(torch, expectation.dtype))
    best = dict.fromkeys(CHUNK_CANDIDATES, float("inf"))
    with torch.inference_mode():
        for _ in range(rounds):
            for size in CHUNK_CANDIDATES:
                start = time.process_time()
                model(x[:size])
                best[size] = min(best[size], (time.process_time() - start) / size)
    return min(CHUNK_CANDIDATES, key=best.__getitem__)


@dataclass(frozen=True)
class ServedModel:
    """A transformed model ready to serve: the module, its :class:`~veilnet.serve.kinds.Expectation`,
    the shape of one output (``(K,)`` for a classifier's logits) and its dtype, the public part of its card,
    the names of its classes (the card's ``classes`` when they are K strings, else None), and
    ``chunk``, the most items :meth:`forward` gives the model in one call (None: a whole pass)."""

    model: nn.Module
    expectation: kinds.Expectation
    output_shape: tuple[int, ...]
    output_dtype: str
    card: dict[str, str]
    device: str = "cpu"
    classes: tuple[str, ...] | None = None
    chunk: int | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu", compile: bool = False, chunk: int | None = None) -> ServedModel:
        """Load a model saved by :func:`veilnet.models.save` whose card names its kind
        (ModelFormatError otherwise), and run it once on zeros to learn its output's shape."""
        from veilnet import models

        model = models.load(path, device=device)
        return cls.from_model(model, model.veilnet_card, device=device, compile=compile, chunk=chunk)

    @classmethod
    def from_model(cls, model: nn.Module, card: dict[str, Any], *, device: str = "cpu", compile: bool = False, chunk: int | None = None) -> ServedModel:
        """A merged forward pass (:mod:`veilnet.serve.batching`) calls the model on ``chunk`` items
        at a time. ``compile`` prepares the model with :func:`veilnet.models.prepare` for calls of
        ``chunk`` items (default :data:`COMPILED_CHUNK`: a request of 8 images is one call); it
        compiles on the start-up pass, before ``/healthz`` reports ready. An eager model on the
        CPU takes ``chunk`` items per call, by default the size :func:`fastest_chunk` measures
        here; on a GPU a whole pass, unless ``chunk`` is given."""
        from veilnet.errors import ModelFormatError
        from veilnet.models import prepare

        expectation = kinds.from_card(card)
        probe = torch.zeros((1, *expectation.input_shape), dtype=getattr(torch, expectation.dtype), device=device)
        try:
            with torch.inference_mode():
                out = model.eval()(probe)
        except Exception as exc:  # the card's parameters do not fit the weights
            raise ModelFormatError(
                f"model {card.get('architecture')!r} does not take its card's input {expectation.input_shape}: {codec.first_line(exc)}"
            ) from None
        model = prepare(model, compile=compile, chunk=chunk or COMPILED_CHUNK)
        if chunk is None and model.compiled:
            chunk = model.chunk
        elif chunk is None and torch.device(device).type == "cpu":
            chunk = fastest_chunk(model, expectation)
        names = card.get("classes")
        classes = tuple(names) if isinstance(names, list) and out.ndim == 2 and len(names) == out.shape[1] and all(isinstance(n, str) for n in names) else None
        return cls(
            model=model,
            expectation=expectation,
            output_shape=tuple(out.shape[1:]),
            output_dtype=str(out.dtype).removeprefix("torch."),
            card=public_card(card),
            device=device,
            classes=classes,
            chunk=chunk,
        )

    @property
    def num_classes(self) -> int | None:
        """K for a classifier (one logit vector per input), else None."""
        return self.output_shape[0] if len(self.output_shape) == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x``, computed ``chunk`` items at a time (rows are independent
        in eval mode)."""
        with torch.inference_mode():
            x = x.to(self.device)
            if self.chunk is None or x.shape[0] <= self.chunk:
                return self.model(x).cpu()
            return torch.cat([self.model(part) for part in x.split(self.chunk)]).cpu()

    def info(self, limits: Limits) -> dict[str, Any]:
        """The ``/v1/info`` document (:class:`ModelInfo`)."""
        e = self.expectation
        max_body = body_limit(e, limits)
        return ModelInfo(
            kind=e.kind,
            input=TensorSpec(shape=[None, *e.input_shape], dtype=e.dtype),
            output=TensorSpec(shape=[None, *self.output_shape], dtype=self.output_dtype),
            num_classes=self.num_classes,
            classes=None if self.classes is None else list(self.classes),
            params=e.params,
            limits=LimitsInfo(max_batch=limits.max_batch, max_body_bytes=max_body),
            encodings=list(codec.MEDIA_TYPES),
            card=self.card,
            veilnet=__version__,
        ).model_dump()


def public_card(card: dict[str, Any]) -> dict[str, str]:
    """The fields of ``card`` a server publishes: :data:`PUBLIC_CARD_FIELDS` with string values."""
    return {k: card[k] for k in PUBLIC_CARD_FIELDS if isinstance(card.get(k), str)}


def create_app(
    served: ServedModel, *, tokens: Sequence[str] | None, limits: Limits = Limits(), batching: BatchingConfig = BatchingConfig(), ui: bool = True
) -> FastAPI:
    """The FastAPI application serving ``served``; ``tokens=None`` disables authentication;
    ``ui`` serves the browser client at ``/`` (:func:`mount_ui`)."""
    digests = None if tokens is None else [hashlib.sha256(t.encode()).digest() for t in tokens]
    batcher = DynamicBatcher(served.forward, batching)
    info = served.info(limits)
    max_body = info["limits"]["max_body_bytes"]
    e = served.expectation
    ready = False

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal ready
        batcher.start()
        warm = min(limits.max_batch, batching.max_images) if batching.enabled else limits.max_batch
        await batcher(torch.zeros((warm, *e.input_shape), dtype=getattr(torch, e.dtype)))  # the largest pass, once: allocations and kernels ready
        ready = True
        yield
        ready = False
        await batcher.stop()

    app = FastAPI(
        title="veilnet",
        version=API_VERSION,
        summary="An untrusted server running a transformed model; it never sees a key or a plain image. What the served model takes: GET /v1/info.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    bearer = HTTPBearer(auto_error=False, description="one of the server's tokens")

    def check_token(token: str | None, scope: Scope) -> None:
        """ApiError 401 unless ``token`` is one of the server's (every one compared, in constant
        time); a valid one ranks the request's connection above unauthenticated ones
        (:func:`veilnet.serve.server.mark_authenticated`)."""
        if digests is None:
            return
        given = hashlib.sha256(token.encode() if token else b"").digest()
        ok = False
        for digest in digests:
            ok |= hmac.compare_digest(given, digest)
        if not token or not ok:
            raise ApiError(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
        mark_authenticated(scope)

    async def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # async: no thread hop
        check_token(credentials.credentials if credentials is not None else None, request.scope)

    async def handle_predict(headers: Mapping[str, str], receive: Receive, scope: Scope) -> tuple[bytes, str]:
        """The answer to ``POST /v1/predict`` (body and media type), or an ApiError: the token,
        the body (:func:`_read_body`), its tensor (:func:`veilnet.serve.codec.read_tensor`), the
        batcher. ``headers`` have lower-case names."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        check_token(token.strip() if scheme.lower() == "bearer" else None, scope)
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _read_body(headers, receive, max_body)
        try:
            x = codec.read_tensor(body, media, dtype=e.dtype, item_shape=e.input_shape, max_items=limits.max_batch)
        except codec.BodyError as exc:
            raise ApiError(exc.status, exc.message) from None
        if x.shape[0] == 0:
            raise ApiError(422, "empty batch (N = 0)")
        if not np.isfinite(x.numpy()).all():  # numpy's: 2 µs for one image where torch's takes 19
            raise ApiError(422, "input contains NaN or infinite values")
        try:
            out = await batcher(x)
        except Exception as exc:  # a bug, not the client's fault: no details leave the server
            log.error("forward pass failed (%s)", type(exc).__name__)
            raise ApiError(500, "internal error") from None
        if not torch.isfinite(out).all():  # finite inputs can still overflow the model (3e38 in float32)
            raise ApiError(422, "the model's output for this input is not finite (NaN or infinite); scale the input to the range the model takes")
        return codec.write_tensor(out, media, "logits"), media

    app.add_middleware(_PredictFastPath, handler=handle_predict)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request parameters"}, status_code=422)

    @app.get("/healthz", summary="readiness (no token needed): ready once the model is loaded and warmed", responses=_responses(503))
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ready"}) if ready else JSONResponse({"status": "starting"}, status_code=503)

    @app.get(
        "/v1/info",
        summary="what the served model takes and answers",
        dependencies=[Depends(authorize)],
        response_model=ModelInfo,
        responses=_responses(401, 503),
    )
    async def get_info() -> dict[str, Any]:
        return info

    @app.post(
        "/v1/predict",
        summary="outputs for a batch of transformed inputs",
        dependencies=[Depends(authorize)],
        response_class=Response,
        responses=_responses(400, 401, 408, 413, 415, 422, 500, 503),
        openapi_extra=_PREDICT_OPENAPI,
    )
    async def predict(request: Request) -> Response:
        """The documented contract (OpenAPI); requests are answered by :class:`_PredictFastPath`
        before routing, with the same :func:`handle_predict`."""
        body, media = await handle_predict(request.headers, request.receive, request.scope)
        return Response(body, media_type=media)

    if ui:
        mount_ui(app)
    return app


class _PredictFastPath:
    """ASGI middleware answering ``POST /v1/predict`` with ``handler`` directly, past routing,
    dependency resolution and response classes (about a third of the per-request CPU time on a
    1-image request, benchmarks/serve_load.py); every other request goes on to FastAPI."""

    def __init__(self, app: ASGIApp, handler: Callable[[Mapping[str, str], Receive, Scope], Awaitable[tuple[bytes, str]]]) -> None:
        self.app, self.handler = app, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        extra: dict[str, str] = {}
        try:
            body, media = await self.handler(headers, receive, scope)
            status = 200
        except ApiError as exc:
            body, media, status, extra = json.dumps({"error": exc.message}).encode(), "application/json", exc.status, exc.headers or {}
        fields = [
            (b"content-type", media.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": fields})
        await send({"type": "http.response.body", "body": body})


_BINARY = {media: {"schema": {"type": "string", "format": "binary"}} for media in codec.MEDIA_TYPES}
#: The request body and the 200 answer of ``/v1/predict``, in words that hold for every served model.
_PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one tensor of shape N×(input.shape without its first entry) and dtype input.dtype, as given by GET /v1/info, with N "
        "≤ limits.max_batch and the body ≤ limits.max_body_bytes; as .npy or as a safetensors file holding exactly one tensor",
        "content": _BINARY,
    },
    "responses": {
        "200": {
            "description": "the outputs, N×(output.shape without its first entry) of output.dtype "
            "(GET /v1/info; logits for a classifier), encoded like the request",
            "content": _BINARY,
        }
    },
}


async def _read_body(headers: Mapping[str, str], receive: Receive, limit: int) -> bytes | bytearray:
    """The body, refused with 413 (closing the connection) from its declared Content-Length before
    any of it is read, or, for a chunked body, as soon as it passes ``limit``. A declared length
    is read into one buffer of that size (no list of chunks joined at the end). The deadline on
    receiving it is the server's (:class:`veilnet.serve.server.GuardedH11Protocol`)."""
    close = {"Connection": "close"}
    declared = headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise ApiError(400, "invalid Content-Length header", close)
    if declared is not None and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit}", close)
    if declared is not None:
        body = bytearray(int(declared))
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "request body incomplete (client disconnected)", close)
            chunk = message.get("body", b"")
            if size + len(chunk) > len(body):  # more than declared: h11 refuses this before us
                raise ApiError(400, "request body longer than its Content-Length", close)
            body[size : size + len(chunk)] = chunk
            size += len(chunk)
            if not message.get("more_body", False):
                break
        if size != len(body):
            raise ApiError(400, "request body incomplete", close)
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "request body incomplete (client disconnected)", close)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", close)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return bytearray().join(chunks)  # writable: the tensor shares its memory


def run(
    model: ServedModel | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens: Sequence[str] | None,
    limits: Limits = Limits(),
    batching: BatchingConfig = BatchingConfig(),
    connections: ConnectionLimits = ConnectionLimits(),
    workers: int = 1,
    threads: int | None = None,
    tls: tuple[str, str] | None = None,
    device: str = "cpu",
    log_level: str = "info",
    ui: bool = True,
    compile: bool = False,
    chunk: int | None = None,
) -> None:
    """Serve ``model`` (a :class:`ServedModel`, or a path :meth:`ServedModel.load` reads on
    ``device``) until SIGTERM or SIGINT, with the deadlines, connection caps and shutdown bound of
    ``connections`` (:mod:`veilnet.serve.server`).

    ``tokens=None`` serves without authentication, with a warning. ``workers > 1`` runs that many
    processes sharing the port (``SO_REUSEPORT``), each loading ``model`` (then a path) with its
    own batcher and ``threads`` torch threads. ``tls`` is (certificate file, private key file) for
    HTTPS; without it a non-loopback address gets a warning, since tokens would cross the network
    in clear. ``ui`` serves the browser client at ``/`` (:func:`mount_ui`). ``compile`` and
    ``chunk``: see :meth:`ServedModel.from_model` (for a model given as a path).
    """
    import functools

    from veilnet.serve import server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers > 1 and isinstance(model, ServedModel):
        raise TypeError("workers > 1 load the model in each process: pass its path")
    served = model if isinstance(model, ServedModel) else ServedModel.load(model, device=device, compile=compile, chunk=chunk)
    e = served.expectation
    log.info(
        "serving %s (kind %s, input N×%s %s, output N×%s) on %s://%s:%d, %d worker process(es)",
        served.card.get("architecture", "a model"),
        e.kind,
        "×".join(map(str, e.input_shape)),
        e.dtype,
        "×".join(map(str, served.output_shape)),
        "https" if tls else "http",
        host,
        port,
        workers,
    )
    c = connections
    log.info(
        "limits: %d items and %d bytes per request, %g s to receive its head and %g s the whole request, %g s idle, "
        "%d connections (%d per address), %g s to shut down; batching: %s; %s",
        limits.max_batch,
        body_limit(e, limits),
        c.head_timeout_s,
        c.read_timeout_s,
        c.idle_timeout_s,
        c.max_connections,
        c.max_per_client,
        c.shutdown_timeout_s,
        f"up to {batching.max_images} items, wait {batching.wait_ms} ms" if batching.enabled else "off",
        "the whole pass in one model call" if served.chunk is None else f"{served.chunk} items per model call",
    )
    if tls is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving plain HTTP on %s: bearer tokens and inputs cross the network in clear; pass --tls-cert/--tls-key or put a TLS proxy in front", host
        )
    if tokens is None:
        log.warning("authentication is OFF (--no-auth): anyone who can reach %s:%d can use the model", host, port)
    else:
        log.info("authentication: bearer token (%d configured)", len(tokens))
    if workers == 1:
        app = create_app(served, tokens=tokens, limits=limits, batching=batching, ui=ui)
        server.serve(lambda: app, host=host, port=port, limits=connections, tls=tls, log_level=log_level)
    else:
        del served  # each worker loads its own
        make_app = functools.partial(
            _worker_app, os.fspath(model), device, threads, tuple(tokens) if tokens is not None else None, limits, batching, ui=ui, compile=compile, chunk=chunk
        )  # type: ignore[arg-type]
        server.serve(make_app, host=host, port=port, limits=connections, workers=workers, tls=tls, log_level=log_level)


def _worker_app(
    path: str,
    device: str,
    threads: int | None,
    tokens: Sequence[str] | None,
    limits: Limits,
    batching: BatchingConfig,
    *,
    ui: bool = True,
    compile: bool = False,
    chunk: int | None = None,
) -> FastAPI:
    """The application of one worker process of :func:`run` (loads its own model)."""
    if threads:
        torch.set_num_threads(threads)
    return create_app(ServedModel.load(path, device=device, compile=compile, chunk=chunk), tokens=tokens, limits=limits, batching=batching, ui=ui)


@contextlib.contextmanager
def local_server(
    app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, connections: ConnectionLimits = ConnectionLimits(), log_level: str = "warning"
) -> Iterator[str]:
    """Serve ``app`` in a background thread of this process, with the protocol and limits of
    ``veilnet serve`` (:mod:`veilnet.serve.server`), and yield its URL (``port=0``: a free port);
    the server stops when the block ends. For tests, notebooks and benchmarks; ``veilnet serve``
    (:func:`run`) is the deployment."""
    import threading
    import time

    from veilnet.serve import server

    sock = server.bind(host, port)
    uv = server.GuardedServer(server.config(app, connections, log_level=log_level), connections)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="veilnet-local-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not uv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local server did not start")
            time.sleep(0.01)
        yield f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10 + connections.shutdown_timeout_s)
        sock.close()


#: The browser client's files (index.html, veilnet.js, style.css), served by :func:`mount_ui`.
STATIC = os.path.join(os.path.dirname(__file__), "static")
#: Headers of the page: its script may talk to this origin only (the key cannot be sent
#: elsewhere), no inline code, no framing, no referrer; the page is never cached.
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def mount_ui(app: FastAPI) -> None:
    """Serve the browser client (:data:`STATIC`): the page at ``/`` and its files under
    ``/static/``, with no token (they are public like the source code) and outside the OpenAPI
    document. The page reads the key and the images locally, encrypts in the browser and posts
    only the ciphertext to ``/v1/predict`` (``veilnet serve --no-ui`` leaves it out)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html", headers=UI_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


__all__ = ["Limits", "ServedModel", "create_app", "local_server", "run"]
