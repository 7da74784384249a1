"""The HTTP server below the application: deadlines, connection caps, shutdown, worker processes.

uvicorn's own timeouts do not protect an untrusted server: ``timeout_keep_alive`` covers only
the idle time *between* requests and is cancelled by every byte received, and nothing bounds the
receipt of a request, so connections that send nothing, half a request line or half a body hold
their slot forever and 128 of them lock every client out (the connection limit answers 503).
Middleware would run too late: the application only sees a request once its headers are
complete. So the deadlines live in the protocol, :class:`GuardedH11Protocol`, a subclass of
uvicorn's h11 protocol:

* **Request deadline.** From the moment a connection is ready for a request (opened, or its
  previous answer sent) until that request, headers *and* body, has been received, at most
  :attr:`ConnectionLimits.read_timeout_s` passes; then the server answers 408 (when it has not
  begun an answer) and closes the connection. Trickling bytes does not extend it.
* **Idle timeout.** A keep-alive connection with no new request for
  :attr:`ConnectionLimits.idle_timeout_s` is closed (uvicorn's ``timeout_keep_alive``; the request
  deadline caps it too).
* **Per-address cap.** A client address holding :attr:`ConnectionLimits.max_per_client` open
  connections has further ones closed at once, before anything is read, so one address cannot
  take the whole :attr:`ConnectionLimits.max_connections`.
* **Shutdown bound.** On SIGTERM the server stops accepting, lets requests in flight finish and
  cuts whatever is still open after :attr:`ConnectionLimits.shutdown_timeout_s`.

:func:`serve` runs an application with these settings on one listening socket, or on
``workers`` processes that each bind the same port with ``SO_REUSEPORT`` (the kernel spreads new
connections over them) and each load their own model and batcher.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("veilnet.serve")


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may hold: ``read_timeout_s`` to receive a complete request (from the
    moment the connection is ready for it), ``idle_timeout_s`` between requests, at most
    ``max_connections`` open (503 beyond, uvicorn's) and ``max_per_client`` from one address
    (closed at once beyond), and ``shutdown_timeout_s`` for requests in flight after SIGTERM."""

    read_timeout_s: float = 30.0
    idle_timeout_s: float = 5.0
    max_connections: int = 128
    max_per_client: int = 32
    shutdown_timeout_s: float = 5.0


def _timeout_answer(seconds: float) -> bytes:
    body = json.dumps({"error": f"request not received within {seconds:g} s"}).encode()
    head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and a per-address connection cap
    (:class:`ConnectionLimits`); ``per_client`` counts the open connections of each address of
    one server."""

    def __init__(self, *args: Any, limits: ConnectionLimits, per_client: collections.Counter[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._per_client = per_client
        self._address: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._timeout_answer = _timeout_answer(limits.read_timeout_s)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _set_nodelay(transport)
        address = self.client[0] if self.client else "?"
        if self._per_client[address] >= self._limits.max_per_client:
            transport.abort()  # nothing read, nothing answered: the address has enough connections
            return
        self._address = address
        self._per_client[address] += 1
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self._per_client[self._address] -= 1
            if self._per_client[self._address] <= 0:
                del self._per_client[self._address]
            self._address = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def _arm(self) -> None:
        """Run the deadline while the client owes this connection a request (h11's IDLE or
        SEND_BODY); it is started once per request, so bytes that trickle in do not extend it."""
        if self.transport is None or self.transport.is_closing():
            return self._disarm()
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            if self._deadline is None:
                self._deadline = self.loop.call_later(self._limits.read_timeout_s, self._deadline_passed)
        else:
            self._disarm()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not (
            self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        ):
            self.transport.write(self._timeout_answer)  # no answer begun for this request: say why
        self.transport.close()


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on ``transport``'s socket. An answer leaves in two writes (head,
    then body); with Nagle on, the body waits for the client's ACK of the head, which a client
    that delays its ACKs sends only after its delayed-ACK timer (40 ms on Linux): 48 ms per
    request instead of about 2 at 1 client × 1 image. asyncio sets it only on sockets created with
    ``proto=IPPROTO_TCP``, uvloop always; set here, it does not depend on either."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedServer(uvicorn.Server):
    """uvicorn's server whose graceful shutdown ends within ``shutdown_timeout_s``: connections
    still open then (a stalled upload) are closed, so SIGTERM always finishes."""

    def __init__(self, config: uvicorn.Config, limits: ConnectionLimits) -> None:
        super().__init__(config)
        self.limits = limits

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async def close_leftovers() -> None:
            await asyncio.sleep(self.limits.shutdown_timeout_s)
            for connection in list(self.server_state.connections):
                with contextlib.suppress(Exception):
                    connection.transport.close()  # type: ignore[attr-defined]

        closer = asyncio.get_running_loop().create_task(close_leftovers())
        try:
            await super().shutdown(sockets)
        finally:
            closer.cancel()


def config(app: Any, limits: ConnectionLimits, *, log_level: str = "warning", tls: tuple[str, str] | None = None) -> uvicorn.Config:
    """The uvicorn configuration for ``app`` under ``limits`` (the guarded protocol, no server
    header, no uvicorn logging setup)."""
    protocol = functools.partial(GuardedH11Protocol, limits=limits, per_client=collections.Counter())
    cert, key = tls if tls is not None else (None, None)
    return uvicorn.Config(
        app,
        http=protocol,  # type: ignore[arg-type]
        ws="none",  # no WebSocket endpoint: no upgrade path to guard
        lifespan="on",
        log_level=log_level,
        log_config=None,
        server_header=False,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.idle_timeout_s,  # type: ignore[arg-type]  (a float works: it goes to call_later)
        timeout_graceful_shutdown=limits.shutdown_timeout_s,  # type: ignore[arg-type]
        ssl_certfile=cert,
        ssl_keyfile=key,
    )


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening: it listens once the application
    has started, so no connection waits on a model still loading)."""
    family, kind, proto, _, _ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)  # proto TCP: asyncio sets TCP_NODELAY on its connections
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(
    make_app: Callable[[], Any],
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    workers: int = 1,
    tls: tuple[str, str] | None = None,
    log_level: str = "info",
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve the application ``make_app()`` until SIGTERM or SIGINT, in this process
    (``workers=1``) or in ``workers`` processes sharing ``host:port`` through ``SO_REUSEPORT``,
    each calling ``make_app`` itself (so each has its own model and batcher). ``make_app`` must
    be picklable for ``workers > 1`` (a :func:`functools.partial` of a module-level function)."""
    if workers == 1:
        _serve_one(make_app, host, port, limits, tls, log_level, on_listening, reuse_port=False)
        return
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(
            target=_serve_one, args=(make_app, host, port, limits, tls, log_level, on_listening), kwargs={"reuse_port": True}, name=f"veilnet-worker-{i}"
        )
        for i in range(workers)
    ]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(0.2)
                if p.exitcode not in (None, 0) and not stopping:  # a worker died: stop the others
                    log.error("worker %s exited with %s; stopping", p.name, p.exitcode)
                    stop(signal.SIGTERM, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            p.join(limits.shutdown_timeout_s + 5)
            if p.is_alive():
                p.kill()


def _serve_one(
    make_app: Callable[[], Any],
    host: str,
    port: int,
    limits: ConnectionLimits,
    tls: tuple[str, str] | None,
    log_level: str,
    on_listening: Callable[[str], None] | None,
    *,
    reuse_port: bool,
) -> None:
    if reuse_port:  # a spawned worker: its own logging
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = bind(host, port, reuse_port=reuse_port)
    server = GuardedServer(config(make_app(), limits, log_level=log_level, tls=tls), limits)

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            bound = sock.getsockname()
            url = f"{'https' if tls else 'http'}://{f'[{bound[0]}]' if ':' in bound[0] else bound[0]}:{bound[1]}"
            log.info("ready: listening on %s (pid %d)", url, os.getpid())
            if on_listening is not None:
                on_listening(url)
        await task

    try:
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:  # uvloop where installed, as uvicorn.run
            runner.run(main())
    finally:
        sock.close()
