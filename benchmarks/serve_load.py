"""Load on ``veilnet serve``: throughput, latency, errors and memory under concurrent clients.

Question: what does serving a transformed model over HTTP cost against calling it in-process,
and what does dynamic batching buy? A transformed ConvMixer (random weights: speed only) is
served by ``veilnet serve`` as a subprocess on 127.0.0.1; 1, 8 and 32 concurrent clients (asyncio
+ httpx in this process) each send batches of CIFAR-sized encrypted images (.npy bodies) for a
fixed time, first with dynamic batching on, then off (one forward pass per request). Reported:
images/s, p50/p99 latency per request, error count (must be 0), server RSS (/proc), and the
ratio to the in-process ceiling measured in the same run (the model called directly on the same
batch size, and on the largest merged batch). Clients and server share the machine's cores.

    python benchmarks/serve_load.py           # 1, 8, 32 clients × 15 s, batching on and off (~4 min)
    python benchmarks/serve_load.py --quick   # 1, 8 clients × 4 s (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from _common import REPO, markdown_table, timeit, write_result

from veilnet import models
from veilnet.keyed import encrypt_images, generate_key, public_params
from veilnet.keyed.transform import transform_model

TOKEN = "benchmark-token-" + "0" * 16
ARCH = {"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 4, "num_classes": 10}


def _rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _start(model: Path, port: int, *, batching: bool, threads: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "veilnet.cli", "serve", str(model), "--port", str(port), "--threads", str(threads), "--log-level", "warning", "--max-batch", "64", "--batch-size", "256", "--batch-wait-ms", "2"]
    proc = subprocess.Popen([*cmd, *([] if batching else ["--no-batching"])], env={**os.environ, "VEILNET_TOKENS": TOKEN}, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def _load(url: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], int, int]:
    """``clients`` loops posting ``body`` for ``seconds``; (latencies in s, requests ok, errors)."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-npy"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        stop = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    answer = await http.post("/v1/predict", content=body)
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return latencies, len(latencies), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 4 s each")
    parser.add_argument("--batch", type=int, default=8, help="images per request (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server and of the in-process reference")
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    concurrency = [1, 8] if args.quick else [1, 8, 32]
    seconds = 4.0 if args.quick else 15.0

    torch.manual_seed(0)
    plain = models.create("convmixer", **ARCH)
    key = generate_key("block", ARCH["patch_size"], 3, 32, seed=0)
    served = transform_model(plain, key).eval()
    images = encrypt_images(torch.rand(args.batch, 3, 32, 32), key)
    buf = io.BytesIO()
    np.save(buf, images.numpy(), allow_pickle=False)
    body = buf.getvalue()

    with torch.inference_mode():
        ceiling = {n: n / timeit(lambda n=n: served(torch.rand(n, 3, 32, 32)), repeats=5)["median"] for n in (args.batch, 256)}

    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = models.save(served, Path(tmp) / "served", extra={"keyed": public_params(key)})
        for batching in (True, False):
            proc = _start(path, args.port, batching=batching, threads=args.threads)
            try:
                idle_rss = _rss_mib(proc.pid)[0]
                asyncio.run(_load(f"http://127.0.0.1:{args.port}", body, 1, 1.0))  # warm-up
                for clients in concurrency:
                    start = time.perf_counter()
                    latencies, ok, errors = asyncio.run(_load(f"http://127.0.0.1:{args.port}", body, clients, seconds))
                    wall = time.perf_counter() - start
                    rss, peak = _rss_mib(proc.pid)
                    throughput = ok * args.batch / wall
                    p50 = 1000 * statistics.median(latencies)
                    p99 = 1000 * float(np.percentile(latencies, 99))
                    run = {"batching": batching, "clients": clients, "requests": ok, "errors": errors, "images_per_s": throughput, "p50_ms": p50, "p99_ms": p99, "rss_mib": rss, "peak_rss_mib": peak, "idle_rss_mib": idle_rss, "seconds": wall}
                    runs.append(run)
                    rows.append(["on" if batching else "off", clients, ok, errors, f"{throughput:,.0f}", f"{throughput / ceiling[args.batch]:.2f}", f"{throughput / ceiling[256]:.2f}", f"{p50:.1f}", f"{p99:.1f}", f"{rss:.0f} (peak {peak:.0f})"])
            finally:
                proc.terminate()
                proc.wait(timeout=30)

    print(f"veilnet serve under load: transformed ConvMixer-{ARCH['dim']}/{ARCH['depth']} (kernel {ARCH['kernel_size']}, patch {ARCH['patch_size']}), {args.batch} CIFAR-sized images (3×32×32 float32, .npy) per request, {seconds:.0f} s per row, loopback, {args.threads} torch threads\n")
    print(f"In-process ceiling (same run): {ceiling[args.batch]:,.0f} images/s at batch {args.batch}, {ceiling[256]:,.0f} images/s at batch 256\n")
    print(markdown_table(["batching", "clients", "requests", "errors", "images/s", "× in-process (batch %d)" % args.batch, "× in-process (batch 256)", "p50 ms", "p99 ms", "server RSS MiB"], rows))
    out = write_result("serve_load", {"quick": args.quick, "model": {"architecture": "convmixer", **ARCH}, "batch": args.batch, "seconds_per_run": seconds, "in_process_images_per_s": {str(k): v for k, v in ceiling.items()}, "runs": runs})
    print(f"\n-> {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
