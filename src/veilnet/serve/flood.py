"""A connection-exhaustion attack on a server of this machine, to check that it withstands it
(issue 23): ``addresses`` loopback source addresses (127.0.1.1, 127.0.1.2, ...; Linux routes all
of 127/8 to ``lo``, so no per-address cap binds) each hold ``per_address`` connections that sit
silent or send half a request line, and reopen each one as soon as the server closes it.

One thread of one process drives every socket (non-blocking, through a selector), so the attack
runs as fast as the server cuts connections. The ports are chosen at connect time
(``IP_BIND_ADDRESS_NO_PORT``), so reconnecting from one address does not run into the server's
TIME_WAIT sockets.

    python -m veilnet.serve.flood --port 8000 --addresses 199 --per-address 6 --seconds 30
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

#: What the half-sending sockets send: a request line that never ends.
HALF_LINE = b"GET /v1/info HT"
#: Linux's IP_BIND_ADDRESS_NO_PORT (not in Python's socket module): pick the port at connect.
IP_BIND_ADDRESS_NO_PORT = 24


def source(i: int) -> str:
    """The ``i``-th attacking address (0-based): 127.0.1.1 onwards, 250 per /24."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def flood(port: int, *, addresses: int, per_address: int, seconds: float, host: str = "127.0.0.1") -> int:
    """Run the attack on ``host:port`` for ``seconds``; every other socket sends :data:`HALF_LINE`.
    Returns how many connections it opened."""
    selector = selectors.DefaultSelector()
    opened = 0

    def open_one(address: str, half: bool) -> None:
        nonlocal opened
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.setblocking(False)
        s.bind((address, 0))
        if s.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
            s.close()
            return
        opened += 1
        selector.register(s, selectors.EVENT_WRITE, (address, half, False))

    for i in range(addresses * per_address):
        open_one(source(i // per_address), bool(i % 2))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in selector.select(timeout=0.1):
            s, (address, half, connected) = key.fileobj, key.data
            if not connected:  # the connection is open (or refused): send the half line, then wait for the server to close it
                failed = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if not failed and half:
                    try:
                        s.send(HALF_LINE)
                    except OSError:
                        failed = True
                if not failed:
                    selector.modify(s, selectors.EVENT_READ, (address, half, True))
                    continue
            else:
                try:
                    if s.recv(4096):
                        continue  # an answer (408, 503): the close follows
                except OSError:
                    pass
            selector.unregister(s)
            s.close()
            open_one(address, half)
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    return opened


@contextlib.contextmanager
def attacking(port: int, *, addresses: int, per_address: int, seconds: float, settle_s: float = 2.0) -> Iterator[subprocess.Popen[str]]:
    """Run :func:`flood` on ``127.0.0.1:port`` in a process of its own (so that it does not share
    the caller's interpreter lock) for ``seconds``; yield once it has run ``settle_s``; stop it
    when the block ends."""
    cmd = [sys.executable, "-m", "veilnet.serve.flood", "--port", str(port), "--addresses", str(addresses), "--per-address", str(per_address)]
    proc = subprocess.Popen([*cmd, "--seconds", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(settle_s)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def probe(url: str, token: str, body: bytes, *, seconds: float, timeout: float = 2.0, pause: float = 0.05) -> list[float | None]:
    """A legitimate client: ``POST url/v1/predict`` with ``body`` (.npy) and ``token``, each on a
    new connection (from 127.0.0.1), one after the other for ``seconds``. Returns each request's
    latency in seconds when it was answered 200 within ``timeout``, else None."""
    import httpx

    results: list[float | None] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-npy"}
    end = time.monotonic() + seconds
    with httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                ok = client.post(f"{url}/v1/predict", content=body, headers=headers).status_code == 200
            except httpx.HTTPError:
                ok = False
            took = time.perf_counter() - start
            results.append(took if ok and took <= timeout else None)
            time.sleep(pause)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m veilnet.serve.flood", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--addresses", type=int, default=199, help="source addresses, at most 250 × 254 (default: 199)")
    parser.add_argument("--per-address", type=int, default=2, help="connections each address holds (default: 2)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the attack runs (default: 30)")
    args = parser.parse_args(argv)
    opened = flood(args.port, host=args.host, addresses=args.addresses, per_address=args.per_address, seconds=args.seconds)
    print(f"opened {opened} connections in {args.seconds:g} s", flush=True)


if __name__ == "__main__":
    main()
