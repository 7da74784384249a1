"""The HTTP server below the application: deadlines, connection caps, shutdown, worker processes.

uvicorn's own timeouts do not protect an untrusted server: ``timeout_keep_alive`` covers only
the idle time *between* requests and is cancelled by every byte received, nothing bounds the
receipt of a request, and its connection limit answers 503 to every newcomer, whatever it is.
So connections that send nothing or half a request line, reopened as soon as they are cut,
from 199 addresses (so that no per-address cap binds) locked a real client out: 1 answer in 304
tries. Middleware would run too late: the application only sees a request once its headers are
complete. So the defences live in the protocol, :class:`GuardedH11Protocol`, a subclass of
uvicorn's h11 protocol:

* **Head and request deadlines.** From the moment a connection is ready for a request (opened,
  or its previous answer sent), its head (request line and headers) must arrive within
  :attr:`ConnectionLimits.head_timeout_s` (a real client sends it in milliseconds) and the whole
  request, body included, within :attr:`ConnectionLimits.read_timeout_s`; then the server answers
  408 (when it has not begun an answer) and closes the connection. Trickling bytes extends neither.
* **A full table pushes out the connection that has shown least.** At
  :attr:`ConnectionLimits.max_connections` open connections a newcomer does not get a 503: the
  oldest connection that owes a head and never authenticated is closed instead
  (:class:`ConnectionTable` orders them; a connection whose complete head already waits in its
  socket when it is accepted counts as having sent it, so a burst of accepted newcomers cannot
  push out a client whose request is about to be read). An attacker's reopened connections then
  push out each other, while a client that sends its request at once, or has authenticated
  (the application calls :func:`mark_authenticated`), keeps its place.
* **Idle timeout.** A keep-alive connection with no new request for
  :attr:`ConnectionLimits.idle_timeout_s` is closed (uvicorn's ``timeout_keep_alive``; the head
  deadline caps it too).
* **Per-address cap.** A client address holding :attr:`ConnectionLimits.max_per_client` open
  connections has further ones closed at once, before anything is read, so one address cannot
  take the whole table.
* **Shutdown bound.** On SIGTERM the server stops accepting, lets requests in flight finish and
  cuts whatever is still open after :attr:`ConnectionLimits.shutdown_timeout_s`. A request that
  has reached it, even unread or on a connection still in the listening socket's queue, is
  answered, not reset (:class:`GuardedServer`).

:func:`serve` runs an application with these settings on one listening socket, or on
``workers`` processes that each bind the same port with ``SO_REUSEPORT`` (the kernel spreads new
connections over them) and each load their own model and batcher.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import http
import json
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

log = logging.getLogger("veilnet.serve")


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may hold: ``head_timeout_s`` to receive a request's head and
    ``read_timeout_s`` the whole request (both from the moment the connection is ready for it),
    ``idle_timeout_s`` between requests, at most ``max_connections`` open (beyond, the one that
    has shown least is closed, :class:`ConnectionTable`) and ``max_per_client`` from one address
    (closed at once beyond), and ``shutdown_timeout_s`` for requests in flight after SIGTERM."""

    head_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    idle_timeout_s: float = 5.0
    max_connections: int = 128
    max_per_client: int = 32
    shutdown_timeout_s: float = 5.0


#: The key of ``scope["state"]`` under which each request carries a callable that the application
#: calls once the request's credentials are valid (:func:`mark_authenticated`).
AUTHENTICATED = "veilnet.authenticated"


def mark_authenticated(scope: dict[str, Any]) -> None:
    """Rank the connection of the request ``scope`` as authenticated (a no-op under a server
    other than this module's, such as a test client)."""
    mark = scope.get("state", {}).get(AUTHENTICATED)
    if mark is not None:
        mark()


def _error_answer(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 answer with ``{"error": message}`` that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


#: The answer of a connection closed to make room for a newcomer before it was answered.
_BUSY_ANSWER = _error_answer(503, "the server is at its connection limit; try again")


class ConnectionTable:
    """The open connections of one server, in four queues by what each has shown, least first:

    0. owes a request head (opened, or answered and kept alive, or part of a head received) and
       never authenticated; or owes the rest of a body the server has already answered;
    1. a request head received (or waiting complete in its socket), answer not finished;
    2. as 0, but a request on it carried a valid token (:func:`mark_authenticated`);
    3. as 1, authenticated.

    Each queue is oldest first (by when the connection entered it). When a newcomer takes the
    table past ``max_connections``, the first connection of the lowest non-empty queue is closed
    (:meth:`GuardedH11Protocol.evict`), the newcomer included when it ranks lowest: so
    connections that sit silent or trickle a head are the ones reopened connections push out,
    oldest first, and a client that sends its request at once, or has authenticated, keeps its
    place. ``per_client`` counts the connections of each address."""

    def __init__(self) -> None:
        self._queues: list[dict[GuardedH11Protocol, None]] = [{} for _ in range(4)]  # a dict keeps insertion order
        self._rank: dict[GuardedH11Protocol, int] = {}
        self.per_client: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._rank)

    def place(self, connection: GuardedH11Protocol, rank: int) -> None:
        """Put ``connection`` in queue ``rank`` (at its end when it moves)."""
        old = self._rank.get(connection)
        if old != rank:
            if old is not None:
                del self._queues[old][connection]
            self._queues[rank][connection] = None
            self._rank[connection] = rank

    def remove(self, connection: GuardedH11Protocol) -> None:
        if (rank := self._rank.pop(connection, None)) is not None:
            del self._queues[rank][connection]

    def least(self) -> GuardedH11Protocol:
        """The connection that has shown least: the oldest of the lowest non-empty queue."""
        return next(next(iter(q)) for q in self._queues if q)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request deadlines, a per-address cap and a place in the
    server's :class:`ConnectionTable` that it keeps up to date after every event."""

    def __init__(self, *args: Any, limits: ConnectionLimits, table: ConnectionTable, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app_state = {**self.app_state, AUTHENTICATED: self._authenticated}  # each request's scope["state"] is a copy
        self._limits = limits
        self._table = table
        self._address: str | None = None
        self._trusted = False
        self._head_waiting = False  # a complete head sits unread in the socket (seen when the connection was accepted)
        self._ready_at: float | None = None  # when the connection became ready for its current request
        self._deadline: asyncio.TimerHandle | None = None
        self._due: tuple[bool, float] | None = None  # what the deadline is for: (a head?, after how many seconds)
        self._draining = False  # the server is shutting down: answer what has arrived, then close

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _set_nodelay(transport)
        address = self.client[0] if self.client else "?"
        if self._table.per_client[address] >= self._limits.max_per_client:
            transport.abort()  # nothing read, nothing answered: the address has enough connections
            return
        self._address = address
        self._table.per_client[address] += 1
        self._head_waiting = b"\r\n\r\n" in _peek(transport)
        self._update()
        while len(self._table) > self._limits.max_connections:
            self._table.least().evict()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._table.remove(self)
        if self._address is not None:
            self._table.per_client[self._address] -= 1
            if self._table.per_client[self._address] <= 0:
                del self._table.per_client[self._address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._head_waiting = False
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self._draining and self.cycle is not None:
            _last_answer(self.cycle)
        self._update()

    def shutdown(self) -> None:
        """Called once when the server shuts down. uvicorn's own closes at once every connection
        with no request in progress, including one whose next request has already arrived but
        was not read yet (in its socket, or in h11's buffer): the kernel resets a connection
        closed with unread bytes, and the client gets a reset (httpx's ReadError) for a request
        the server had received. Here that request is read and answered, and a request in
        progress finishes, both with ``Connection: close``. Only a connection on which nothing
        has arrived is closed at once, its end of stream (FIN) sent first: a request that
        arrives between the look and the close then meets a connection its client already sees
        closed, an end of stream before any answer byte (which a client may retry elsewhere),
        not a reset."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            _last_answer(self.cycle)
        elif not self.conn.trailing_data[0] and not _peek(self.transport):
            _half_close(self.transport)
            super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update()

    def evict(self) -> None:
        """Close this connection to make room, with a 503 when it has no answer begun."""
        self._close(_BUSY_ANSWER)

    def _authenticated(self) -> None:
        self._trusted = True
        self._update()

    def _update(self) -> None:
        """Follow the connection's state: its queue in the table and its deadline. While the
        client owes a head (h11's IDLE), the deadline is ``head_timeout_s`` after the connection
        became ready for the request; while it owes a body (SEND_BODY), ``read_timeout_s`` after
        that same moment; so bytes that trickle in do not extend either."""
        if self._address is None or self.transport.is_closing():
            return self._disarm()
        theirs = self.conn.their_state
        busy = self._head_waiting or self.conn.our_state is h11.SEND_RESPONSE
        self._table.place(self, 2 * self._trusted + busy)
        if theirs is h11.IDLE or theirs is h11.SEND_BODY:
            if self._ready_at is None:
                self._ready_at = self.loop.time()
            head = theirs is h11.IDLE
            due = (head, min(self._limits.head_timeout_s, self._limits.read_timeout_s) if head else self._limits.read_timeout_s)
            if self._deadline is None or self._due != due:
                self._disarm()
                self._due = due
                self._deadline = self.loop.call_at(self._ready_at + due[1], self._deadline_passed, *due)
        else:
            self._ready_at = None  # the whole request is in: the next one starts its own clock
            self._disarm()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, head: bool, timeout: float) -> None:
        self._deadline = None
        self._close(_error_answer(408, f"request {'head ' if head else ''}not received within {timeout:g} s"))

    def _close(self, answer: bytes) -> None:
        """Close the connection, first writing ``answer`` when no answer to its request has begun;
        it leaves the table at once (its ``connection_lost`` comes a loop turn later)."""
        self._table.remove(self)
        if self.transport.is_closing():
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not (
            self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        ):
            self.transport.write(answer)
        self.transport.close()


def _last_answer(cycle: RequestResponseCycle) -> None:
    """Make ``cycle``'s answer the connection's last: ``Connection: close`` among its headers
    when they are not sent yet, and the connection closed once it is sent."""
    cycle.keep_alive = False
    if not cycle.response_started and _CLOSE not in cycle.default_headers:
        cycle.default_headers = [*cycle.default_headers, _CLOSE]


_CLOSE = (b"connection", b"close")


@contextlib.contextmanager
def _socket_on(fd: int) -> Iterator[socket.socket]:
    """A socket object on the descriptor ``fd``, detached again afterwards: uvloop's sockets (a
    transport's, a listener's) have no recv, shutdown or accept."""
    sock = socket.socket(fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()


def _peek(transport: asyncio.BaseTransport) -> bytes:
    """Up to 4 KiB already waiting in ``transport``'s socket, left there (b"" when nothing is, or
    the socket cannot be read)."""
    with _socket_on(transport.get_extra_info("socket").fileno()) as sock:
        try:
            return sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return b""


def _half_close(transport: asyncio.BaseTransport) -> None:
    """Send the end of stream (FIN) on ``transport``'s socket now, before it is closed."""
    with _socket_on(transport.get_extra_info("socket").fileno()) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


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
    """uvicorn's server whose graceful shutdown drops no request that has reached it and ends
    within ``shutdown_timeout_s``.

    Before uvicorn's shutdown, the connections waiting in the listening socket's accept queue
    are accepted and served like the others (:meth:`GuardedH11Protocol.shutdown`), and only then
    is the socket closed: closing a listening socket resets the connections in its queue, whose
    clients have completed their handshake and may have sent their request. With ``workers > 1``
    each worker has its own queue (``SO_REUSEPORT``), and the kernel puts a connection in the queue
    of any worker still listening. Connections still open ``shutdown_timeout_s`` after the start
    of the shutdown (a stalled upload) are closed, so SIGTERM always finishes."""

    def __init__(self, config: uvicorn.Config, limits: ConnectionLimits) -> None:
        super().__init__(config)
        self.limits = limits

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async def close_leftovers() -> None:
            await asyncio.sleep(self.limits.shutdown_timeout_s)
            for connection in list(self.server_state.connections):
                with contextlib.suppress(Exception):
                    connection.transport.close()  # type: ignore[attr-defined]

        loop = asyncio.get_running_loop()
        closer = loop.create_task(close_leftovers())
        try:
            queued = self._stop_listening()
            protocol = functools.partial(self.config.http_protocol_class, config=self.config, server_state=self.server_state, app_state=self.lifespan.state)
            await asyncio.gather(*(loop.connect_accepted_socket(protocol, conn, ssl=self.config.ssl) for conn in queued), return_exceptions=True)
            await super().shutdown(sockets)
        finally:
            closer.cancel()

    def _stop_listening(self) -> list[socket.socket]:
        """Accept every connection waiting in the listening sockets' queues, then close the
        sockets, with no await in between (so no connection enters a queue unseen); return the
        accepted connections. (uvicorn's shutdown closes them again, which does nothing.)"""
        queued = []
        for server in self.servers:
            for listener in server.sockets:
                with _socket_on(listener.fileno()) as sock, contextlib.suppress(OSError):  # OSError: nothing more waits (or no descriptor left)
                    sock.setblocking(False)
                    while True:
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        queued.append(conn)
            server.close()
        return queued


def config(app: Any, limits: ConnectionLimits, *, log_level: str = "warning", tls: tuple[str, str] | None = None) -> uvicorn.Config:
    """The uvicorn configuration for ``app`` under ``limits`` (the guarded protocol, no server
    header, no uvicorn logging setup)."""
    protocol = functools.partial(GuardedH11Protocol, limits=limits, table=ConnectionTable())
    cert, key = tls if tls is not None else (None, None)
    return uvicorn.Config(
        app,
        http=protocol,  # type: ignore[arg-type]
        ws="none",  # no WebSocket endpoint: no upgrade path to guard
        lifespan="on",
        log_level=log_level,
        log_config=None,
        server_header=False,
        limit_concurrency=None,  # the table bounds connections (uvicorn's limit would answer 503 to every request once it is full)
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
