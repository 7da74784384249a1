"""Load on ``veilnet serve``: throughput, latency, errors and memory under concurrent clients.

Question: what does serving a transformed model over HTTP cost against calling it in-process,
and what do dynamic batching and more worker processes buy? A transformed ConvMixer (random
weights: speed only) is served by ``veilnet serve`` as a subprocess on 127.0.0.1 with
``--workers 1`` and ``--workers 2``; 1, 8 and 32 concurrent clients (asyncio + httpx in this
process) each send batches of CIFAR-sized encrypted images (.npy bodies) for a fixed time (1 and
8 images per request). ``--no-batching`` adds rows with one forward pass per request. Reported:
images/s, p50/p95/p99 latency per request, error count (must be 0), server RSS (/proc, summed
over the worker processes), and the ratio to the in-process ceiling measured in the same run
(the model called directly in a loop on the same batch size, and the best over batch sizes
1-256; measured for a fixed time before the servers start and after they stop, the larger
kept). Clients and server share the machine's cores; the CPU time per request of each (from
/proc and process_time) shows where the time goes even when other jobs make wall-clock figures
noisy, and the server's CPU time per request less the model's time per call (in-process, same
batch) is the serving overhead (meaningful at 1 client, where no requests are merged).

    python benchmarks/serve_load.py           # workers 1, 2 × 1, 8, 32 clients × 1, 8 images × 8 s (~4 min)
    python benchmarks/serve_load.py --quick   # workers 1, 2 × 1, 8 clients × 1, 8 images × 3 s (~1.5 min)

``--ab SRC [SRC ...]`` compares source trees instead (each a ``src`` folder, e.g. an older commit
unpacked with ``git archive COMMIT src | tar -x -C /tmp/old``): each serves a ConvMixer-64/4 with
1 torch thread to 1 client sending 1 image per request over one keep-alive connection,
``--ab-requests`` requests per run, 3 runs per tree interleaved; reported per tree: the server's
CPU time per request (median, min-max), that less the model's in-process CPU time per call, and
the client's wall time per request. CPU time is what the other jobs on a shared machine disturb least.

    python benchmarks/serve_load.py --ab /tmp/old/src src   # ~1 min

``--compare NAME=OPTIONS ...`` compares one-worker servers started with different ``veilnet serve``
options (e.g. the whole merged pass in one model call against the chosen chunk) in ``--rounds``
interleaved rounds, each with its own in-process figure measured just before and after it; rows
give the median ratio over the rounds, its range, and the load average beside each round:

    python benchmarks/serve_load.py --compare 'whole=--no-compile --chunk 256' 'chunked=--no-compile' 'compiled=--compile' --batch 8
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

from _common import REPO, markdown_table, write_result
from veilnet import models
from veilnet.keyed import encrypt_images, generate_key, public_params
from veilnet.keyed.transform import transform_model

TOKEN = "benchmark-token-" + "0" * 16
ARCH = {"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 4, "num_classes": 10}


def _rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its threads so far (/proc/PID/stat, fields 14-15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """The server process and its worker processes (``--workers N``: spawned children)."""
    children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    return [proc.pid, *(c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes())]


def _start(model: Path, port: int, *, batching: bool, threads: int, workers: int, merge: str, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "veilnet.cli",
        "serve",
        str(model),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "--max-batch",
        "64",
        "--batch-size",
        merge,
        "--workers",
        str(workers),
        "--max-connections-per-client",
        "64",
    ]
    proc = subprocess.Popen([*cmd, *([] if batching else ["--no-batching"]), *extra], env={**os.environ, "VEILNET_TOKENS": TOKEN}, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # every worker answers once it is warmed; wait until all have started
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 and len(_server_pids(proc)) == 1 + (workers > 1) * workers:
                time.sleep(0.5 if workers > 1 else 0)
                return proc
        except httpx.TransportError:
            pass
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


def _in_process(model: torch.nn.Module, n: int, seconds: float) -> float:
    """Images/s of ``model`` called directly on batches of ``n`` for about ``seconds`` (after one warm-up)."""
    x = torch.rand(n, 3, 32, 32)
    with torch.inference_mode():
        model(x)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            done += n
    return done / (time.perf_counter() - start)


AB_ARCH = {"dim": 64, "depth": 4, "kernel_size": 5, "patch_size": 4, "num_classes": 10}


def _ab(trees: list[str], requests: int, port: int) -> None:
    """Server CPU and client wall time per 1-image request for each source tree in ``trees`` (3
    interleaved runs each, the same saved model), beside the model's in-process CPU per call."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    key = generate_key("block", AB_ARCH["patch_size"], 3, 32, seed=0)
    served = transform_model(models.create("convmixer", **AB_ARCH), key).eval()
    buf = io.BytesIO()
    np.save(buf, encrypt_images(torch.rand(1, 3, 32, 32), key).numpy(), allow_pickle=False)
    body = buf.getvalue()
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        for _ in range(20):
            served(x)
        start = time.process_time()
        for _ in range(300):
            served(x)
        model_ms = 1000 * (time.process_time() - start) / 300
    results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory() as tmp:
        path = models.save(served, Path(tmp) / "served", extra={"keyed": public_params(key)})
        for _ in range(3):
            for tree in trees:
                cmd = [sys.executable, "-m", "veilnet.cli", "serve", str(path), "--port", str(port), "--threads", "1", "--log-level", "warning"]
                proc = subprocess.Popen(
                    cmd,
                    env={**os.environ, "VEILNET_TOKENS": TOKEN, "PYTHONPATH": str(Path(tree).resolve())},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    deadline = time.monotonic() + 120
                    while True:
                        try:
                            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        if proc.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"the server of {tree} did not start")
                        time.sleep(0.1)
                    with httpx.Client(
                        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-npy"}
                    ) as http:
                        for _ in range(100):
                            assert http.post("/v1/predict", content=body).status_code == 200
                        cpu, wall = _cpu_seconds(proc.pid), time.perf_counter()
                        for _ in range(requests):
                            assert http.post("/v1/predict", content=body).status_code == 200
                        results[tree].append((1000 * (_cpu_seconds(proc.pid) - cpu) / requests, 1000 * (time.perf_counter() - wall) / requests))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    print(
        f"A/B: transformed ConvMixer-{AB_ARCH['dim']}/{AB_ARCH['depth']}, 1 torch thread, 1 client × 1 "
        f"image on one keep-alive connection, {requests} requests per run, 3 runs per tree interleaved\n"
    )
    print(f"Model in-process CPU per call: {model_ms:.2f} ms\n")
    rows = []
    for tree, r in results.items():
        cpu = [c for c, _ in r]
        rows.append(
            [
                tree,
                f"{statistics.median(cpu):.2f} ({min(cpu):.2f}–{max(cpu):.2f})",
                f"{statistics.median(cpu) - model_ms:.2f}",
                f"{statistics.median(w for _, w in r):.2f}",
            ]
        )
    print(markdown_table(["tree", "server CPU ms/request (median, min–max)", "− model ms", "client wall ms/request (median)"], rows))
    out = write_result(
        "serve_load_ab",
        {
            "model": {"architecture": "convmixer", **AB_ARCH},
            "requests_per_run": requests,
            "model_cpu_ms_per_call": model_ms,
            "runs": {tree: [{"server_cpu_ms_per_request": c, "client_wall_ms_per_request": w} for c, w in r] for tree, r in results.items()},
        },
    )
    print(f"\n-> {out.relative_to(REPO)}")


def _compare(variants: list[str], rounds: int, batches: list[int], clients: list[int], seconds: float, threads: int, port: int, merge: str) -> None:
    """One worker with each of ``variants`` (``NAME=SERVE OPTIONS``), ``rounds`` rounds; each round
    measures the in-process figure at every batch size, then every variant's server at every
    (batch, clients), then the in-process figure again; a row's ratio is to its round's larger
    in-process figure, so a change of load between rounds moves both sides of it."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    key = generate_key("block", ARCH["patch_size"], 3, 32, seed=0)
    served = transform_model(models.create("convmixer", **ARCH), key).eval()
    bodies = {}
    for n in batches:
        buf = io.BytesIO()
        np.save(buf, encrypt_images(torch.rand(n, 3, 32, 32), key).numpy(), allow_pickle=False)
        bodies[n] = buf.getvalue()
    named = [(v.split("=", 1)[0], tuple(v.split("=", 1)[1].split())) for v in variants]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = models.save(served, Path(tmp) / "served", extra={"keyed": public_params(key)})
        for round_ in range(rounds):
            before = {n: _in_process(served, n, seconds / 2) for n in batches}
            measured = []
            for name, extra in named:
                proc = _start(path, port, batching=True, threads=threads, workers=1, merge=merge, extra=extra)
                try:
                    asyncio.run(_load(f"http://127.0.0.1:{port}", bodies[batches[0]], 8, 1.0))  # warm-up
                    for n in batches:
                        for c in clients:
                            cpu, start, load = _cpu_seconds(proc.pid), time.perf_counter(), os.getloadavg()[0]
                            latencies, ok, errors = asyncio.run(_load(f"http://127.0.0.1:{port}", bodies[n], c, seconds))
                            wall = time.perf_counter() - start
                            measured.append(
                                {
                                    "variant": name,
                                    "options": " ".join(extra),
                                    "round": round_,
                                    "batch": n,
                                    "clients": c,
                                    "requests": ok,
                                    "errors": errors,
                                    "images_per_s": ok * n / wall,
                                    "p50_ms": 1000 * statistics.median(latencies),
                                    "server_cpu_ms_per_request": 1000 * (_cpu_seconds(proc.pid) - cpu) / max(ok, 1),
                                    "load_average": load,
                                }
                            )
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
            after = {n: _in_process(served, n, seconds / 2) for n in batches}
            for r in measured:
                r["in_process_images_per_s"] = (before[r["batch"]], after[r["batch"]])
                r["ratio"] = r["images_per_s"] / max(before[r["batch"]], after[r["batch"]])
            runs += measured
    print(
        f"One worker, transformed ConvMixer-{ARCH['dim']}/{ARCH['depth']}, {threads} torch thread(s), {seconds:.0f} s per row, "
        f"{rounds} rounds (in-process figure before and after each round's servers; variants in turn)\n"
    )
    rows = []
    for name, extra in named:
        for n in batches:
            for c in clients:
                mine = [r for r in runs if r["variant"] == name and r["batch"] == n and r["clients"] == c]
                ratios = [r["ratio"] for r in mine]
                rows.append(
                    [
                        name,
                        " ".join(extra) or "(defaults)",
                        f"{c} × {n}",
                        sum(r["errors"] for r in mine),
                        f"{statistics.median(r['images_per_s'] for r in mine):,.0f}",
                        f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})",
                        f"{statistics.median(r['server_cpu_ms_per_request'] for r in mine):.2f}",
                        f"{statistics.median(r['p50_ms'] for r in mine):.1f}",
                        ", ".join(f"{r['load_average']:.1f}" for r in mine),
                    ]
                )
    print(
        markdown_table(
            [
                "variant",
                "serve options",
                "clients × images",
                "errors",
                "images/s (median)",
                "× in-process (median, min–max)",
                "server CPU ms/request",
                "p50 ms",
                "load average (1 min) per round",
            ],
            rows,
        )
    )
    out = write_result("serve_load_compare", {"model": {"architecture": "convmixer", **ARCH}, "seconds_per_run": seconds, "runs": runs})
    print(f"\n-> {out.relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 3 s per row")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="images per request (default: 1 8)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server and of the in-process reference (default 1: on a 2-core machine "
        "the clients get the other core, and 2-thread torch stalls when the cores are shared)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes (default: 1 2)")
    parser.add_argument("--no-batching", action="store_true", help="also rows with batching off (one worker)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per row (default 8; --quick 3)")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--batch-size", default="256", help="the server's --batch-size, most images per merged forward pass (default 256)")
    parser.add_argument(
        "--ab", nargs="+", metavar="SRC", help="compare these source trees (src folders) at 1 client × 1 image instead (see the module's docstring)"
    )
    parser.add_argument("--ab-requests", type=int, default=1000, help="requests per run with --ab (default 1000)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="NAME=OPTIONS",
        help="compare one-worker servers run with these extra serve options instead, in interleaved rounds (see _compare), "
        "e.g. 'whole=--no-compile --chunk 256' 'chunked=--no-compile'",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds with --compare (default 3)")
    parser.add_argument("--clients", type=int, nargs="+", default=[8], help="concurrent clients with --compare (default: 8)")
    args = parser.parse_args()
    if args.ab:
        _ab(args.ab, args.ab_requests, args.port)
        return
    if args.compare:
        _compare(args.compare, args.rounds, args.batch, args.clients, args.seconds or 6.0, args.threads, args.port, args.batch_size)
        return
    torch.set_num_threads(args.threads)
    concurrency = [1, 8] if args.quick else [1, 8, 32]
    seconds = args.seconds or (3.0 if args.quick else 8.0)

    torch.manual_seed(0)
    key = generate_key("block", ARCH["patch_size"], 3, 32, seed=0)
    served = transform_model(models.create("convmixer", **ARCH), key).eval()
    bodies = {}
    for n in args.batch:
        buf = io.BytesIO()
        np.save(buf, encrypt_images(torch.rand(n, 3, 32, 32), key).numpy(), allow_pickle=False)
        bodies[n] = buf.getvalue()
    sizes = sorted({*args.batch, 32, 256})
    # The ceiling is measured before the server starts and after it stops; the larger is kept.
    ceiling_runs = [{n: _in_process(served, n, seconds / 2) for n in sizes}]

    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = models.save(served, Path(tmp) / "served", extra={"keyed": public_params(key)})
        configs = [(True, w) for w in args.workers] + ([(False, 1)] if args.no_batching else [])
        for batching, workers in configs:
            proc = _start(path, args.port, batching=batching, threads=args.threads, workers=workers, merge=args.batch_size)
            try:
                pids = _server_pids(proc)
                idle_rss = sum(_rss_mib(p)[0] for p in pids)
                asyncio.run(_load(f"http://127.0.0.1:{args.port}", bodies[args.batch[0]], 8, 1.0))  # warm-up (every worker)
                for n in args.batch:
                    for clients in concurrency:
                        start, server_cpu, client_cpu = time.perf_counter(), sum(map(_cpu_seconds, pids)), time.process_time()
                        latencies, ok, errors = asyncio.run(_load(f"http://127.0.0.1:{args.port}", bodies[n], clients, seconds))
                        wall = time.perf_counter() - start
                        server_cpu, client_cpu = sum(map(_cpu_seconds, pids)) - server_cpu, time.process_time() - client_cpu
                        rss = sum(_rss_mib(p)[0] for p in pids)
                        peak = sum(_rss_mib(p)[1] for p in pids)
                        runs.append(
                            {
                                "batching": batching,
                                "workers": workers,
                                "batch": n,
                                "clients": clients,
                                "requests": ok,
                                "errors": errors,
                                "images_per_s": ok * n / wall,
                                "p50_ms": 1000 * statistics.median(latencies),
                                "p95_ms": 1000 * float(np.percentile(latencies, 95)),
                                "p99_ms": 1000 * float(np.percentile(latencies, 99)),
                                "server_cpu_ms_per_request": 1000 * server_cpu / max(ok, 1),
                                "client_cpu_ms_per_request": 1000 * client_cpu / max(ok, 1),
                                "rss_mib": rss,
                                "peak_rss_mib": peak,
                                "idle_rss_mib": idle_rss,
                                "seconds": wall,
                            }
                        )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    ceiling_runs.append({n: _in_process(served, n, seconds / 2) for n in sizes})
    ceiling = {n: max(r[n] for r in ceiling_runs) for n in sizes}
    best = max(ceiling.values())
    for r in runs:
        model_ms = 1000 * r["batch"] / ceiling[r["batch"]]  # the model's time per call of this batch, in-process
        r["overhead_ms_per_request"] = r["server_cpu_ms_per_request"] - model_ms
        rows.append(
            [
                r["workers"],
                "on" if r["batching"] else "off",
                r["batch"],
                r["clients"],
                r["requests"],
                r["errors"],
                f"{r['images_per_s']:,.0f}",
                f"{r['images_per_s'] / ceiling[r['batch']]:.2f}",
                f"{r['images_per_s'] / best:.2f}",
                f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f}",
                f"{r['server_cpu_ms_per_request']:.2f} / {r['client_cpu_ms_per_request']:.2f}",
                f"{r['overhead_ms_per_request']:.2f}" if r["clients"] == 1 else "",
                f"{r['rss_mib']:.0f} (peak {r['peak_rss_mib']:.0f})",
            ]
        )

    print(
        f"veilnet serve under load: transformed ConvMixer-{ARCH['dim']}/{ARCH['depth']} (kernel {ARCH['kernel_size']}, patch {ARCH['patch_size']}), "
        f"CIFAR-sized images (3×32×32 float32, .npy bodies), {seconds:.0f} s per row, loopback, {args.threads} torch threads, clients in the same machine\n"
    )
    print(
        "In-process ceiling (same run; before / after the server runs): "
        + "; ".join(f"batch {n}: {ceiling_runs[0][n]:,.0f} / {ceiling_runs[1][n]:,.0f} images/s ({1000 * n / ceiling[n]:.1f} ms per call)" for n in sizes)
        + "\n"
    )
    print(
        markdown_table(
            [
                "workers",
                "batching",
                "images/request",
                "clients",
                "requests",
                "errors",
                "images/s",
                "× in-process (same batch)",
                "× best in-process",
                "p50 / p95 / p99 ms",
                "CPU ms/request server / client",
                "server CPU − model ms (1 client)",
                "server RSS MiB",
            ],
            rows,
        )
    )
    out = write_result(
        "serve_load",
        {
            "quick": args.quick,
            "model": {"architecture": "convmixer", **ARCH},
            "seconds_per_run": seconds,
            "in_process_images_per_s": [{str(k): v for k, v in r.items()} for r in ceiling_runs],
            "runs": runs,
        },
    )
    print(f"\n-> {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
