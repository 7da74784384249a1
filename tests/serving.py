"""``veilnet serve`` as a subprocess for the service's tests: a free loopback port, start, wait
for ``/healthz``, stop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(
    args: Sequence[str], *, port: int | None = None, log: Path | None = None, env: Mapping[str, str] | None = None, startup_s: float = 60
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``veilnet serve ARGS --port PORT`` until ``/healthz`` answers 200 (a test failure with
    the server's output if it exits or ``startup_s`` passes first); yield ``(url, process)``;
    terminate it afterwards. Output goes to ``log`` when given, else to a pipe."""
    port = free_port() if port is None else port
    cmd = [sys.executable, "-m", "veilnet.cli", "serve", *args, "--port", str(port)]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("w")) if log is not None else subprocess.PIPE
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_s
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    output = log.read_text() if log is not None else proc.communicate()[0]
                    pytest.fail(f"server did not start:\n{output}")
                time.sleep(0.1)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
