"""The untrusted server: a FastAPI application around one transformed model.

It holds the transformed model and its card, never a key or a plain image. Endpoints:

* ``GET /healthz``: liveness, no authentication.
* ``GET /v1/info``: what the model expects (:func:`veilnet.serve.kinds.from_card`): kind, input
  shape and dtype, the kind's public parameters (for keyed models: scheme, block size, channels,
  image size, Ea kind, key fingerprint), number of classes, limits, and the public part of the card.
* ``POST /v1/predict``: a batch as an ``.npy`` or safetensors body (:mod:`veilnet.serve.codec`);
  answers the model's output (for a keyed classifier: float32 logits N×K) in the same encoding.

Every request except ``/healthz`` needs ``Authorization: Bearer TOKEN`` with one of the configured
tokens (compared in constant time) unless the app is built with ``tokens=None`` (``--no-auth``).
Everything a client can get wrong is a 4xx with ``{"error": "..."}`` naming the problem; an
internal failure is a 500 with no details; nothing a client sends is logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from torch import nn

from veilnet import __version__
from veilnet.serve import codec, kinds
from veilnet.serve.batching import BatchingConfig, DynamicBatcher

log = logging.getLogger("veilnet.serve")
#: Card fields published on /v1/info (plus ``extra[kind]`` filtered by the kind); the rest may be private.
PUBLIC_CARD_FIELDS = ("architecture", "kwargs", "data", "metrics", "sha256")


@dataclass(frozen=True)
class Limits:
    """``max_body_bytes`` of a request body, ``max_batch`` items per request."""

    max_body_bytes: int = 64 << 20
    max_batch: int = 256


class ApiError(Exception):
    """An answer with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass(frozen=True)
class ServedModel:
    """A transformed model ready to serve: the module, its :class:`~veilnet.serve.kinds.Expectation`,
    the shape of one output (``(K,)`` for a classifier's logits) and its dtype, and the public part of its card."""

    model: nn.Module
    expectation: kinds.Expectation
    output_shape: tuple[int, ...]
    output_dtype: str
    card: dict[str, Any]
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
        public = {k: card[k] for k in PUBLIC_CARD_FIELDS if k in card}
        public["extra"] = {expectation.kind: expectation.params}
        return cls(model=model, expectation=expectation, output_shape=tuple(out.shape[1:]), output_dtype=str(out.dtype).removeprefix("torch."), card=public, device=device)

    @property
    def num_classes(self) -> int | None:
        """K for a classifier (one logit vector per input), else None."""
        return self.output_shape[0] if len(self.output_shape) == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x.to(self.device)).cpu()

    def info(self, limits: Limits) -> dict[str, Any]:
        """The ``/v1/info`` document."""
        e = self.expectation
        return {
            "kind": e.kind,
            "input": {"shape": [None, *e.input_shape], "dtype": e.dtype},
            "output": {"shape": [None, *self.output_shape], "dtype": self.output_dtype},
            "num_classes": self.num_classes,
            "params": e.params,
            "limits": {"max_batch": limits.max_batch, "max_body_bytes": limits.max_body_bytes},
            "encodings": list(codec.MEDIA_TYPES),
            "card": self.card,
            "veilnet": __version__,
        }


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

    app = FastAPI(title="veilnet", version=__version__, summary="An untrusted server running a transformed model; it never sees a key or a plain image.", lifespan=lifespan, docs_url=None, redoc_url=None)
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

    @app.get("/healthz", summary="liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", summary="what the model expects", dependencies=[Depends(authorize)])
    async def get_info() -> dict[str, Any]:
        return info

    @app.post("/v1/predict", summary="outputs for a batch of transformed inputs", dependencies=[Depends(authorize)], response_class=Response, openapi_extra=_predict_openapi(served, limits))
    async def predict(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _read_body(request, limits.max_body_bytes)
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


def _predict_openapi(served: ServedModel, limits: Limits) -> dict[str, Any]:
    """The request and response bodies of ``/v1/predict`` for the OpenAPI schema."""
    e = served.expectation
    binary = {media: {"schema": {"type": "string", "format": "binary"}} for media in codec.MEDIA_TYPES}
    error = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}
    failures = {400: "malformed or truncated body", 401: "missing or invalid token", 413: "body or batch too large", 415: "unsupported content type", 422: "wrong dtype or shape, empty batch, NaN or infinite values"}
    return {
        "requestBody": {
            "required": True,
            "description": f"one {e.dtype} tensor of shape N×{'×'.join(map(str, e.input_shape))} (N ≤ {limits.max_batch}, body ≤ {limits.max_body_bytes} bytes), as .npy or as a safetensors file holding exactly one tensor",
            "content": binary,
        },
        "responses": {
            "200": {"description": f"{served.output_dtype} outputs N×{'×'.join(map(str, served.output_shape))} (logits for a classifier), encoded like the request", "content": binary},
            **{str(status): {"description": why, "content": error} for status, why in failures.items()},
        },
    }


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it (or its declared length) exceeds ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise ApiError(400, "invalid Content-Length header")
    if declared is not None and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "request body incomplete (client disconnected)") from None
    return b"".join(chunks)


def run(
    model: str | os.PathLike[str],
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
    """Load ``model`` (:meth:`ServedModel.load`) and serve it with uvicorn until interrupted.

    ``tokens=None`` serves without authentication, with a warning. Beyond ``max_connections``
    open connections uvicorn answers 503, which bounds the memory bodies can take. ``tls`` is
    (certificate file, private key file) for HTTPS; without it a non-loopback address gets a
    warning, since tokens would cross the network in clear.
    """
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    served = ServedModel.load(model, device=device)
    app = create_app(served, tokens=tokens, limits=limits, batching=batching)
    e = served.expectation
    log.info("serving %s (%s, kind %s, input N×%s %s, output N×%s) on %s://%s:%d", Path(model).name, served.card.get("architecture"), e.kind, "×".join(map(str, e.input_shape)), e.dtype, "×".join(map(str, served.output_shape)), "https" if tls else "http", host, port)
    log.info("limits: %d items per request, %d bytes per body; batching: %s", limits.max_batch, limits.max_body_bytes, f"up to {batching.max_images} items, wait {batching.wait_ms} ms" if batching.enabled else "off")
    if tls is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving plain HTTP on %s: bearer tokens and inputs cross the network in clear; pass --tls-cert/--tls-key or put a TLS proxy in front", host)
    if tokens is None:
        log.warning("authentication is OFF (--no-auth): anyone who can reach %s:%d can use the model", host, port)
    else:
        log.info("authentication: bearer token (%d configured)", len(tokens))
    cert, key = tls if tls is not None else (None, None)
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None, server_header=False, limit_concurrency=max_connections, ssl_certfile=cert, ssl_keyfile=key)
