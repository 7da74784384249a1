"""The service under a connection-exhaustion attack (issue 23): does a client with a token still
get answers?

199 loopback addresses each hold 2 or 6 connections that sit silent or send half a request line
and reopen each one as soon as the server closes it (:mod:`veilnet.serve.flood`, a process of
its own); meanwhile a legitimate client on 127.0.0.1 posts one CIFAR-sized image with its token,
each request on a new connection, one after the other, for ``--seconds``. A transformed
ConvMixer (dim 16, depth 1: the model's time is not the question) is served by ``veilnet
serve`` with the default limits and ``--workers`` 1 and 2. Reported per configuration: the
share of requests answered 200 within 2 s, p50/p95 latency of the answered ones, and the
server's open descriptors at the end of the attack (summed over its processes).

    python benchmarks/serve_lockout.py                # 199×2 and 199×6 × workers 1, 2 × 20 s (~2 min)
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from _common import markdown_table, write_result
from veilnet import models
from veilnet.keyed import generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve.flood import attacking, probe

TOKEN = "benchmark-token-" + "0" * 16


def _fds(pid: int) -> int:
    """Open descriptors of ``pid`` and its worker processes."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in [pid, *children])


def run(model: Path, port: int, workers: int, per_address: int, seconds: float) -> dict:
    cmd = [sys.executable, "-m", "veilnet.cli", "serve", str(model), "--port", str(port), "--workers", str(workers), "--no-compile", "--log-level", "warning"]
    server = subprocess.Popen(cmd, env={**os.environ, "VEILNET_TOKENS": TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        buf = io.BytesIO()
        np.save(buf, np.zeros((1, 3, 32, 32), np.float32), allow_pickle=False)
        with attacking(port, addresses=199, per_address=per_address, seconds=seconds + 10):
            answered = probe(url, TOKEN, buf.getvalue(), seconds=seconds, timeout=2.0)
            fds = _fds(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    times = sorted(t for t in answered if t is not None)
    pct = (lambda q: round(1000 * times[min(len(times) - 1, int(q * len(times)))], 1)) if times else (lambda q: None)
    return {
        "workers": workers,
        "attack": f"199 × {per_address}",
        "requests": len(answered),
        "answered within 2 s": f"{len(times) / len(answered):.1%}",
        "p50 ms": pct(0.5),
        "p95 ms": pct(0.95),
        "server fds": fds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the client measures per configuration (default: 20)")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        plain = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4, num_classes=10).eval()
        key = generate_key("block", 4, 3, 32)
        models.save(transform_model(plain, key), Path(tmp) / "served", extra={"keyed": public_params(key)})
        rows = [run(Path(tmp) / "served", args.port, workers, per, args.seconds) for workers in (1, 2) for per in (2, 6)]
    print(f"result: {write_result('serve_lockout', {'seconds': args.seconds, 'rows': rows})}")
    print(markdown_table(list(rows[0]), [list(r.values()) for r in rows]))


if __name__ == "__main__":
    main()
