"""veilnet.serve under attack: no lockout, bounded bodies, graceful shutdown, readiness, client retry.

Every test runs on loopback with deadlines of about a second (set through
:class:`~veilnet.serve.server.ConnectionLimits` or the ``serve`` options). Attackers connect from
other loopback addresses (127.0.0.2, ...; Linux routes all of 127/8 to ``lo``) so that the
per-address cap can be told apart from the global connection limit.
"""

from __future__ import annotations

import collections
import contextlib
import io
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from serving import serving
from veilnet import models
from veilnet.keyed import generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve import Client, Limits, ServedModel, ServerUnreachableError, create_app, local_server
from veilnet.serve.app import body_limit
from veilnet.serve.codec import NPY
from veilnet.serve.flood import attacking, probe
from veilnet.serve.server import ConnectionLimits

TOKEN = "guard-token-0123456789abcdef"
DEADLINE = 1.0  # --read-timeout of every server here
SLACK = 1.5  # what a loaded 2-core machine may add to a deadline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-guard")
    torch.manual_seed(0)
    plain = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4, num_classes=10).eval()
    key = generate_key("block", 4, 3, 32)
    models.save(transform_model(plain, key), root / "served", extra={"keyed": public_params(key)})
    key.save(root / "key.json")
    return root


@pytest.fixture(scope="module")
def served(model_dir: Path) -> ServedModel:
    return ServedModel.load(model_dir / "served")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes ``sock``, and when it closed (monotonic);
    a socket still open after ``timeout`` raises TimeoutError."""
    sock.settimeout(timeout)
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic()


def _head(method: str, path: str, length: int | None, token: str | None = TOKEN, chunked: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", f"Content-Type: {NPY}"]
    lines += [f"Authorization: Bearer {token}"] if token else []
    lines += [f"Content-Length: {length}"] if length is not None else []
    lines += ["Transfer-Encoding: chunked"] if chunked else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _npy(n: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((n, 3, 32, 32), np.float32), allow_pickle=False)
    return buf.getvalue()


# --- 1. idle and half-sent connections cannot lock a client out ------------------------------------


def test_silent_and_half_request_connections_up_to_the_limit_do_not_lock_out_a_client(served: ServedModel) -> None:
    """128 connections (the limit) from 8 addresses, half silent, half with half a request line:
    a real client's connection pushes out the oldest of them and gets 200 at once (before the
    fix: 503 until a deadline freed a slot), and every attacker is cut at its head deadline
    (408 for the half-sent ones) or pushed out (503)."""
    limits = ConnectionLimits(head_timeout_s=DEADLINE, max_connections=128, max_per_client=16)
    with local_server(create_app(served, tokens=[TOKEN]), connections=limits) as url:
        port = _port(url)
        start = time.monotonic()
        attackers = [_connect(port, f"127.0.0.{2 + i // 16}") for i in range(128)]
        for i, s in enumerate(attackers):
            if i % 2:
                s.sendall(b"GET /heal")
        time.sleep(0.2)  # the server has taken them all
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        for s in attackers:
            answer, closed = _read_until_closed(s, DEADLINE + SLACK)
            assert closed - start < DEADLINE + SLACK
            assert answer == b"" or answer.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")), answer[:100]
            s.close()


def test_many_addresses_reopening_silent_and_half_sent_connections_do_not_lock_out_a_client(model_dir: Path) -> None:
    """Issue 23: 199 loopback addresses each hold 2 (then 6) connections that sit silent or send
    half a request line and reopen each one as soon as the server cuts it
    (:mod:`veilnet.serve.flood`, a process of its own), against ``veilnet serve`` with its default
    limits; a client with a token on 127.0.0.1 gets ≥ 90% of its requests answered within 2 s
    (before the fix: 0 of 145), and the server's descriptors and memory stay bounded."""
    args = [str(model_dir / "served"), "--no-compile", "--log-level", "warning"]
    with serving(args, env={"VEILNET_TOKENS": TOKEN}) as (url, proc):
        fds_before, rss_before = len(list(Path(f"/proc/{proc.pid}/fd").iterdir())), _rss_peak_kib(proc.pid)
        for per_address in (2, 6):
            with attacking(_port(url), addresses=199, per_address=per_address, seconds=30):
                answered = probe(url, TOKEN, _npy(1), seconds=8, timeout=2.0)
                fds = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
            share = sum(t is not None for t in answered) / len(answered)
            assert share >= 0.9, f"199×{per_address}: {share:.0%} of {len(answered)} requests answered within 2 s"
            assert fds <= fds_before + ConnectionLimits().max_connections + 8, (fds_before, fds)  # the table, and a few closing
        assert _rss_peak_kib(proc.pid) - rss_before < 64 * 1024


def test_one_address_cannot_take_more_than_its_share(served: ServedModel) -> None:
    """Beyond ``max_per_client`` connections from one address, further ones are closed at once,
    and other addresses are served meanwhile."""
    limits = ConnectionLimits(read_timeout_s=30, max_connections=128, max_per_client=8)
    with local_server(create_app(served, tokens=[TOKEN]), connections=limits) as url:
        port = _port(url)
        held = [_connect(port, "127.0.0.2") for _ in range(8)]
        time.sleep(0.2)  # the server has counted them
        start = time.monotonic()
        for _ in range(4):
            with _connect(port, "127.0.0.2") as extra:
                assert _read_until_closed(extra, 2)[0] == b""
        assert time.monotonic() - start < 2
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # 127.0.0.1 is not limited
        for s in held:
            s.close()


# --- 2. stalled bodies are cut ---------------------------------------------------------------------


def test_stalled_bodies_are_cut_within_the_deadline(served: ServedModel) -> None:
    """20 uploads that declare 100,000 bytes and send half: each connection is closed within the
    deadline (408 when the server had not answered yet; 401 first for those without a token,
    which the server answers before reading), and the server keeps serving."""
    limits = ConnectionLimits(read_timeout_s=DEADLINE)
    with local_server(create_app(served, tokens=[TOKEN]), connections=limits) as url:
        port = _port(url)
        start = time.monotonic()
        stalled = []
        for i in range(20):
            s = _connect(port, "127.0.0.3")
            s.sendall(_head("POST", "/v1/predict", 100_000, token=TOKEN if i % 2 else None) + b"\0" * 50_000)
            stalled.append((i, s))
        for i, s in stalled:
            answer, closed = _read_until_closed(s, DEADLINE + SLACK)
            assert closed - start < DEADLINE + SLACK
            assert answer.startswith(b"HTTP/1.1 408" if i % 2 else b"HTTP/1.1 401"), answer[:100]
            s.close()
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ready"}


# --- 3. readiness ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_healthz_is_ready_only_once_the_model_is_warmed(served: ServedModel) -> None:
    from fastapi.testclient import TestClient

    calls: list[int] = []
    counting = ServedModel(**{**served.__dict__, "model": _Counting(served.model, calls)})
    client = TestClient(create_app(counting, tokens=[TOKEN], limits=Limits(max_batch=16)))
    assert client.get("/healthz").status_code == 503 and client.get("/healthz").json() == {"status": "starting"}
    assert calls == []
    with client:  # the lifespan: the warm-up pass, then ready
        assert calls == [16]
        assert client.get("/healthz").json() == {"status": "ready"}


class _Counting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, calls: list[int]) -> None:
        super().__init__()
        self.inner, self.calls = inner, calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.inner(x)


# --- 4. body limits from the served model ------------------------------------------------------------


def test_body_limit_is_the_largest_valid_request(served: ServedModel) -> None:
    limits = Limits(max_batch=8)
    limit = body_limit(served.expectation, limits)
    assert len(_npy(8)) <= limit < len(_npy(9))
    assert served.info(limits)["limits"]["max_body_bytes"] == limit
    assert body_limit(served.expectation, Limits(max_batch=8, max_body_bytes=1000)) == 1000  # a lower cap
    assert body_limit(served.expectation, Limits(max_batch=8, max_body_bytes=1 << 30)) == limit  # never higher


def test_over_limit_content_length_gets_413_before_the_body_is_read(served: ServedModel, model_dir: Path) -> None:
    """Headers declaring the length of a 9-image body to a server taking 8, and no body: 413 at once,
    long before the request deadline (the server does not wait for the body), and the connection
    is closed. (Without a token the answer is 401, as fast.)"""
    nine = len(_npy(9))  # one image more than --max-batch 8 allows
    with local_server(create_app(served, tokens=[TOKEN], limits=Limits(max_batch=8)), connections=ConnectionLimits(read_timeout_s=5)) as url:
        with _connect(_port(url)) as s:
            start = time.monotonic()
            s.sendall(_head("POST", "/v1/predict", nine))
            answer, closed = _read_until_closed(s, 5)
        assert closed - start < 2 and answer.startswith(b"HTTP/1.1 413"), answer[:100]
        with _connect(_port(url)) as s:
            s.sendall(_head("POST", "/v1/predict", nine, token=None))
            s.settimeout(2)
            assert s.recv(100).startswith(b"HTTP/1.1 401")
        with Client(url, model_dir / "key.json", TOKEN) as client:  # a valid request still fits
            assert client.logits(torch.zeros(8, 3, 32, 32, dtype=torch.uint8)).shape == (8, 10)


# --- the server as a process: chunked bodies and its memory, SIGTERM, workers ------------------------


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _workers(pid: int) -> list[int]:
    """The worker processes of ``pid`` (its spawned children, not multiprocessing's resource tracker)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@contextlib.contextmanager
def _serve(model_dir: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    args = [str(model_dir / "served"), "--read-timeout", str(DEADLINE), "--shutdown-timeout", "1", "--max-batch", "8", "--log-level", "warning", *extra]
    with serving(args, env={"VEILNET_TOKENS": TOKEN}) as (url, proc):
        yield url, proc


def _stall_and_terminate(url: str, proc: subprocess.Popen[str]) -> None:
    """A stalled upload (half of its body sent, the connection kept open) and SIGTERM: the server
    exits within its shutdown bound (1 s) plus slack, although the client never finishes."""
    with _connect(_port(url), "127.0.0.5") as s:
        s.sendall(_head("POST", "/v1/predict", 100_000) + b"\0" * 50_000)
        time.sleep(0.2)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=1 + DEADLINE + 2 * SLACK)
        assert time.monotonic() - start < 1 + 2 * SLACK
    assert proc.returncode in (0, -signal.SIGTERM), proc.communicate()[0]  # uvicorn re-raises the signal once it has shut down
    assert "Traceback" not in proc.communicate()[0]


def test_a_chunked_body_over_the_limit_gets_413_without_the_server_growing(model_dir: Path) -> None:
    """48 MiB sent chunked at a server whose limit (8 images) is 108 KiB: 413 as soon as the
    limit is passed, and the server's peak RSS grows by less than 16 MiB (before the fix the
    whole body was read, up to the old 64 MiB default). Then SIGTERM with a stalled upload."""
    with _serve(model_dir) as (url, proc):
        with Client(url, model_dir / "key.json", TOKEN) as client:  # one real request first: its buffers are in the baseline
            client.logits(torch.zeros(8, 3, 32, 32, dtype=torch.uint8))
        before = _rss_peak_kib(proc.pid)
        chunk = b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"
        with _connect(_port(url)) as s:
            s.sendall(_head("POST", "/v1/predict", None, chunked=True))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(48 * 16):
                    s.sendall(chunk)
            answer, _ = _read_until_closed(s, 5)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert b"exceeds the limit" in answer
        assert _rss_peak_kib(proc.pid) - before < 16 * 1024
        _stall_and_terminate(url, proc)


def test_two_workers_share_the_port_and_stop_on_sigterm_with_a_stalled_client(model_dir: Path) -> None:
    with _serve(model_dir, "--workers", "2") as (url, proc):
        assert len(_workers(proc.pid)) == 2
        with Client(url, model_dir / "key.json", TOKEN) as client:
            for _ in range(4):
                assert client.logits(torch.zeros(3, 3, 32, 32, dtype=torch.uint8)).shape == (3, 10)
        _stall_and_terminate(url, proc)


def _answer(sock: socket.socket) -> str:
    """Read one answer from ``sock``: its status (with " close" when it says ``Connection: close``),
    or "eof" when the server closes the connection before any answer byte."""
    data = b""
    while b"\r\n\r\n" not in data:
        if not (chunk := sock.recv(65536)):
            return "eof" if not data else f"partial {data[:40]!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    while len(body) < int(fields[b"content-length"]):
        if not (chunk := sock.recv(65536)):
            return f"partial {head[:40]!r}"
        body += chunk
    return head.split(b" ")[1].decode() + (" close" if fields.get(b"connection") == b"close" else "")


def _requests_until(port: int, request: bytes, keep_alive: bool, stop: threading.Event, outcomes: list[tuple[float, str]]) -> None:
    """Send ``request`` over and over (on one connection while it stays open, or each on a new
    one) until ``stop``; append (when it was sent, its outcome) to ``outcomes``: :func:`_answer`,
    or "refused" (nothing listens), "reset", "timeout"."""
    sock = None
    while not stop.is_set():
        sent = time.monotonic()
        try:
            if sock is None:
                sock = _connect(port)
            sock.sendall(request)
            sent = time.monotonic()
            outcome = _answer(sock)
        except ConnectionRefusedError:
            outcome = "refused"
        except BrokenPipeError:
            outcome = "eof"  # the server had closed the connection (a FIN) before the request was sent
        except ConnectionResetError:
            outcome = "reset"
        except TimeoutError:
            outcome = "timeout"
        outcomes.append((sent, outcome))
        if sock is not None and not (keep_alive and outcome == "200"):
            sock.close()
            sock = None
        if outcome == "refused":
            time.sleep(0.01)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_request_that_reached_the_server(model_dir: Path, workers: int) -> None:
    """Issue 23: 6 keep-alive clients and 6 that open a connection per request send predictions
    without pause; SIGTERM. Every request sent before the signal gets a 200 (with
    ``Connection: close`` when the shutdown had begun). One sent after it gets a complete answer,
    or a connection refused (no worker listens any more), or an end of stream before any answer
    byte (the server closed a connection on which nothing had arrived); none is reset and none
    gets half an answer. The server exits within its shutdown bound (1 s) plus slack.

    Before the fix, each of 15 runs (this test's and a longer reproduction's), with 1 worker as
    with 2, reset 4 to 31 requests: those sent in the tens of milliseconds between the signal and
    a worker's shutdown (uvicorn looks for the signal every 100 ms), whose bytes had arrived
    unread on a keep-alive connection or whose connection waited in the worker's accept queue;
    in 1 of the 15, 4 requests sent before the signal too. So the test counts resets after the
    signal as well: requests sent before it are mostly answered even without the fix."""
    request = _head("POST", "/v1/predict", len(_npy(1))) + _npy(1)
    outcomes: list[list[tuple[float, str]]] = [[] for _ in range(12)]
    stop = threading.Event()
    with _serve(model_dir, "--workers", str(workers)) as (url, proc):
        clients = [threading.Thread(target=_requests_until, args=(_port(url), request, i % 2 == 0, stop, outcomes[i])) for i in range(12)]
        for client in clients:
            client.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=1 + 2 * SLACK + 5)
        exited = time.monotonic()
        time.sleep(0.2)
        stop.set()
        for client in clients:
            client.join()
    assert exited - signalled < 1 + 2 * SLACK
    before = [outcome for client in outcomes for sent, outcome in client if sent < signalled]
    after = collections.Counter(outcome for client in outcomes for sent, outcome in client if sent >= signalled)
    assert len(before) > 50 and set(before) <= {"200", "200 close"}, collections.Counter(before)
    assert set(after) <= {"200", "200 close", "eof", "refused"}, after


# --- 5. the client retries once on a connection closed before any answer ------------------------------


@contextlib.contextmanager
def _flaky_server(drops: int) -> Iterator[tuple[str, list[int]]]:
    """A raw HTTP server on loopback that closes its first ``drops`` connections after reading
    the request (no answer byte) and answers the others with a JSON 200; yields (url, [connections])."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = [0]

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                seen[0] += 1
                conn.recv(65536)
                if seen[0] > drops:
                    body = b'{"status": "ready"}'
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        listener.close()


def test_the_client_retries_once_on_a_connection_closed_before_any_answer(model_dir: Path) -> None:
    with _flaky_server(drops=1) as (url, seen), Client(url, model_dir / "key.json", TOKEN) as client:
        assert client._request("GET", "/healthz").json() == {"status": "ready"}
        assert seen[0] == 2
    with _flaky_server(drops=2) as (url, seen), Client(url, model_dir / "key.json", TOKEN) as client:
        with pytest.raises(ServerUnreachableError, match="unreachable"):
            client._request("GET", "/healthz")
        assert seen[0] == 2  # once, not forever
