"""``veilnet serve`` (the untrusted server) and ``veilnet query`` (the client holding the secret).

A serving kind may add options of its own to ``query`` (``add_query_options(parser)``) and build the
client's secret from them (``secret_from_options(args) -> secret | None``); the complex kind's
``--pool`` is one. The kinds are imported when ``query`` is registered, never by ``veilnet --help``.

Every option is checked before any work starts (limits and TLS files, tokens, the device, the
address, then the model), so each mistake is one line and exit 2, never uvicorn's exit 1. torch, FastAPI and the rest are imported inside
the handlers: registering these commands costs nothing.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from veilnet.checks import check_int, check_number
from veilnet.cli import add_command, add_compile, add_device
from veilnet.errors import ConfigError
from veilnet.serve.tokens import client_token, server_tokens


def check_listen(host: str, port: int) -> None:
    """ConfigError when this process cannot listen on ``host:port`` (a port outside 0–65535, an
    address that is not this machine's, a port in use); checked before the model is loaded."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0–65535, got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:  # gaierror included
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_tls(cert: str, key: str) -> None:
    """ConfigError when ``cert`` and ``key`` are not a PEM certificate and its private key."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--tls-cert {cert} and --tls-key {key} are not a TLS certificate and its key ({getattr(exc, 'reason', None) or type(exc).__name__})"
        ) from None


#: The longest deadline a ``serve`` option may set (a day): beyond it a timer overflows uvloop's
#: millisecond clock, and no real client needs more.
LONGEST_S = 86400.0


def check_limits(args: argparse.Namespace) -> None:
    """ConfigError naming the first numeric ``serve`` option out of its range: counts are integers
    ≥ 1, durations and sizes finite numbers (``check_number``: NaN and ±inf are refused, where a
    NaN would slip through every comparison and start a server that never answers)."""
    for name in ("max_batch", "batch_size", "max_connections", "max_connections_per_client", "workers"):
        check_int(_flag(name), getattr(args, name), minimum=1)
    for name in ("threads", "chunk"):
        if getattr(args, name) is not None:
            check_int(_flag(name), getattr(args, name), minimum=1)
    for name in ("head_timeout", "read_timeout", "idle_timeout", "shutdown_timeout"):
        check_number(_flag(name), getattr(args, name), low=0, low_open=True, high=LONGEST_S)
    check_number("--batch-wait-ms", args.batch_wait_ms, low=0, high=LONGEST_S * 1000)
    if args.max_body_mb is not None:
        check_number("--max-body-mb", args.max_body_mb, low=0, low_open=True, high=1 << 20)  # up to 1 TiB: it only lowers the model's limit


def _flag(name: str) -> str:
    """The command-line spelling of the attribute ``name`` (``read_timeout``: ``--read-timeout``)."""
    return "--" + name.replace("_", "-")


def _serve(args: argparse.Namespace) -> int:
    try:
        from veilnet.serve.app import Limits, ServedModel, run
        from veilnet.serve.server import ConnectionLimits
    except ModuleNotFoundError as exc:
        raise ConfigError(f"veilnet serve needs {exc.name}: pip install 'veilnet[serve]'") from None
    from veilnet.devices import resolve_device
    from veilnet.serve.batching import BatchingConfig

    if args.no_auth and args.token_file:
        raise ConfigError("--no-auth and --token-file contradict each other; give one")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("HTTPS needs both --tls-cert and --tls-key")
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file {path} does not exist")
    if args.tls_cert is not None:
        check_tls(args.tls_cert, args.tls_key)
    check_limits(args)
    tokens = None if args.no_auth else server_tokens(args.token_file)
    device = resolve_device(args.device)
    check_listen(args.host, args.port)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    served = ServedModel.load(args.model, device=str(device), compile=args.compile, chunk=args.chunk)
    limits = Limits(max_batch=args.max_batch, max_body_bytes=None if args.max_body_mb is None else int(args.max_body_mb * (1 << 20)))
    batching = BatchingConfig(enabled=not args.no_batching, max_images=args.batch_size, wait_ms=args.batch_wait_ms)
    connections = ConnectionLimits(
        head_timeout_s=args.head_timeout,
        read_timeout_s=args.read_timeout,
        idle_timeout_s=args.idle_timeout,
        max_connections=args.max_connections,
        max_per_client=args.max_connections_per_client,
        shutdown_timeout_s=args.shutdown_timeout,
    )
    tls = None if args.tls_cert is None else (args.tls_cert, args.tls_key)
    if args.workers > 1:
        del served  # checked here; each worker loads its own
        run(
            args.model,
            host=args.host,
            port=args.port,
            tokens=tokens,
            limits=limits,
            batching=batching,
            connections=connections,
            workers=args.workers,
            threads=args.threads,
            tls=tls,
            device=str(device),
            log_level=args.log_level,
            ui=not args.no_ui,
            compile=args.compile,
            chunk=args.chunk,
        )
    else:
        run(
            served,
            host=args.host,
            port=args.port,
            tokens=tokens,
            limits=limits,
            batching=batching,
            connections=connections,
            tls=tls,
            log_level=args.log_level,
            ui=not args.no_ui,
        )
    return 0


def _query(args: argparse.Namespace) -> int:
    from veilnet.serve.client import Client, read_images

    if bool(args.data) == bool(args.images):
        raise ConfigError("give image files or --data SPEC (with --limit), not both or neither")
    check_int("--limit", args.limit, minimum=1)
    token = client_token(args.token_file)
    secret = args.secret
    for kind in _kinds():
        from_options = getattr(kind, "secret_from_options", None)
        built = None if from_options is None else from_options(args)
        if built is not None:
            secret = built
    with Client(args.server, secret, token, encoding=args.encoding, ca_file=args.ca_file) as client:
        client.check_secret()  # before reading or sending any image
        labels, classes = None, client.classes  # the served model's class names, else the data's
        if args.data:
            from veilnet import data

            split = data.load(args.data, args.split)
            images, labels, classes = split.images[: args.limit], split.labels[: args.limit], classes or split.classes
            names = [f"{args.split}[{i}]" for i in range(images.shape[0])]
        else:
            images = read_images(args.images, client.image_shape())
            names = list(args.images)
        pred = client.classify(images)
    rows = [
        {"input": name, "label": int(label), **({"class": classes[int(label)]} if classes else {}), "probability": round(float(p), 6)}
        for name, label, p in zip(names, pred.labels, pred.confidence, strict=True)
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        for row in rows:
            print("\t".join(str(v) for v in row.values()))
    if labels is not None:
        correct = int((pred.labels == labels).sum())
        print(f"accuracy: {correct}/{len(labels)} = {correct / max(len(labels), 1):.4f} ({args.data}, {args.split}, first {len(labels)})", file=sys.stderr)
    return 0


def _kinds() -> list:
    """Every registered serving kind (their methods' modules imported)."""
    from veilnet import plugins
    from veilnet.serve.kinds import KINDS

    plugins.load_kinds()
    return list(KINDS.values())


def register(sub: argparse._SubParsersAction) -> None:
    serve = add_command(sub, "serve")
    serve.add_argument(
        "model",
        help="transformed model (.safetensors, .json, stem or directory) from 'veilnet keyed "
        "transform-model', or a complex-valued network's server part from 'veilnet split'",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--token-file", default=None, help="bearer tokens, one per line (default: $VEILNET_TOKENS, comma-separated)")
    serve.add_argument("--no-auth", action="store_true", help="serve WITHOUT authentication (prints a warning)")
    serve.add_argument("--tls-cert", default=None, help="certificate file (PEM) for HTTPS; with --tls-key")
    serve.add_argument("--tls-key", default=None, help="private key file (PEM) for HTTPS")
    serve.add_argument(
        "--max-body-mb",
        type=float,
        default=None,
        help="a lower cap on request bodies in MiB (default: the largest valid request, --max-batch inputs plus the encoding's header)",
    )
    serve.add_argument("--max-batch", type=int, default=256, help="most images per request (default: 256)")
    serve.add_argument("--batch-size", type=int, default=256, help="most images per merged forward pass (default: 256)")
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="how long a forward pass waits for more requests (default: 0: it merges the requests queued while the previous pass ran)",
    )
    serve.add_argument("--no-batching", action="store_true", help="one forward pass per request (no dynamic batching)")
    serve.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="most images per model call within a forward pass (default: compiled, 8; eager on the CPU, the batch size "
        "with the least CPU time per image, measured at start-up; eager on a GPU, the whole pass)",
    )
    serve.add_argument(
        "--head-timeout",
        type=float,
        default=5.0,
        help="seconds a request's head (request line and headers) may take to arrive, counted from when the connection is ready for it; "
        "then 408 and the connection is closed (default: 5; a real client sends it in milliseconds)",
    )
    serve.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        help="seconds a whole request (headers and body) may take to arrive, counted from when "
        "the connection is ready for it; then 408 and the connection is closed (default: 30)",
    )
    serve.add_argument("--idle-timeout", type=float, default=5.0, help="seconds a keep-alive connection may wait for its next request (default: 5)")
    serve.add_argument(
        "--max-connections",
        type=int,
        default=128,
        help="open connections (per worker); a newcomer beyond them closes the one that has shown least: "
        "no complete request head and no valid token, oldest first (default: 128)",
    )
    serve.add_argument(
        "--max-connections-per-client",
        type=int,
        default=32,
        help="open connections one client address may hold (per worker); further ones are closed at once (default: 32)",
    )
    serve.add_argument(
        "--shutdown-timeout", type=float, default=5.0, help="seconds requests in flight get after SIGTERM before their connections are cut (default: 5)"
    )
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT), each with its own model and batcher (default: 1)"
    )
    serve.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    serve.add_argument("--no-ui", action="store_true", help="do not serve the browser client (the page at / that encrypts images in the browser)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level (default: info)")
    add_device(serve)
    add_compile(
        serve,
        default=True,
        why="the transformed ConvMixer's pass at 8 images per request ran 0.76-0.99x eager here, and a service "
        "runs long enough to repay a start-up compile of 1-7 s (docs/benchmarks.md, Compiled execution)",
    )
    serve.set_defaults(func=_serve)

    query = add_command(sub, "query")
    query.add_argument("images", nargs="*", help="image files (PNG, JPEG, ...) or .npy C×H×W pixel arrays of the size the model takes")
    query.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
    query.add_argument(
        "--key",
        "--secret",
        dest="secret",
        required=True,
        help="the client's secret file (stays on this machine): a keyed model's key file, "
        "or a complex-valued network's device part (device.json from 'veilnet split')",
    )
    query.add_argument("--token-file", default=None, help="file with the bearer token (default: $VEILNET_TOKEN)")
    query.add_argument("--ca-file", default=None, help="CA certificate (PEM) to trust for an https server with its own certificate")
    query.add_argument("--data", default=None, help="query a data spec instead of files (e.g. digits); prints the accuracy too")
    query.add_argument("--split", default="test", choices=["train", "test"], help="split of --data (default: test)")
    query.add_argument("--limit", type=int, default=100, help="first N images of --data (default: 100)")
    query.add_argument("--encoding", default="npy", choices=["npy", "safetensors"], help="tensor encoding on the wire (default: npy)")
    query.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    for kind in _kinds():
        add_options = getattr(kind, "add_query_options", None)
        if add_options is not None:
            add_options(query)
    query.set_defaults(func=_query)
