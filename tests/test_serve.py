"""veilnet.serve: the untrusted server (as a subprocess on 127.0.0.1 and in-process) and its client.

End to end: the served transformed model, queried through the client, gives the plain model's
labels on plain images; requests without a token are refused; bad bodies get a 4xx JSON error
and the server keeps serving; the server's log holds no key material, token or pixel data.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import safetensors.numpy
import torch
from PIL import Image

from serving import free_port, serving
from veilnet import data, metrics, models
from veilnet.cli import main
from veilnet.errors import KeyMismatchError, ModelFormatError
from veilnet.keyed import generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve import AuthRefusedError, BatchingConfig, Client, Limits, ServedModel, ServerUnreachableError, ServiceError, create_app, local_server
from veilnet.serve.batching import DynamicBatcher
from veilnet.serve.codec import NPY, SAFETENSORS, BodyError, read_tensor, write_tensor
from veilnet.serve.server import ConnectionLimits

TOKEN = "test-token-0123456789abcdef"
#: The served model's class names (its card's): not the data's "0"–"9", so a test sees which it shows.
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NPY_MAGIC_HEADER = b"\x93NUMPY\x01\x00"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_header_only(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """An .npy header declaring ``shape`` with (almost) no data after it."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return NPY_MAGIC_HEADER + len(header).to_bytes(2, "little") + header + b"\0" * 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small ConvMixer (plain), a block key, the transformed model saved with its card, a token file
    and 20 digits test images."""
    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    plain = models.create("convmixer", dim=32, depth=2, kernel_size=3, patch_size=4, num_classes=10).eval()
    key = generate_key("block", 4, 3, 32)
    key.save(root / "key.json")
    # the card's data is a local path the server must not publish
    models.save(
        transform_model(plain, key),
        root / "served",
        data=f"folder:{root}/private-photos.zip",
        metrics={"accuracy": 0.5},
        classes=CLASSES,
        extra={"keyed": public_params(key)},
    )
    (root / "tokens.txt").write_text(f"# clients\n{TOKEN}\n")
    images = data.load("digits", "test").images[:20]
    return {"root": root, "plain": plain, "key": key, "images": images, "plain_logits": metrics.predict(plain, images)}


@pytest.fixture(scope="module")
def server(setup: dict):
    """``veilnet serve`` as a subprocess on a free port of 127.0.0.1; yields (url, log path, process)."""
    log = setup["root"] / "server.log"
    args = [str(setup["root"] / "served"), "--token-file", str(setup["root"] / "tokens.txt"), "--max-batch", "64", "--max-body-mb", "1", "--batch-wait-ms", "5"]
    with serving(args, log=log) as (url, proc):
        yield url, log, proc


def _post(url: str, body: bytes, media: str = NPY, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Content-Type": media, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(f"{url}/v1/predict", content=body, headers=headers, timeout=30)


# --- end to end, server as a subprocess -----------------------------------------------------------


def test_client_labels_equal_plain_model_on_plain_images(setup: dict, server) -> None:
    url, _, _ = server
    for encoding in ("npy", "safetensors"):
        with Client(url, setup["root"] / "key.json", TOKEN, encoding=encoding) as client:
            logits = client.logits(setup["images"])
            pred = client.classify(setup["images"])
        plain = setup["plain_logits"]
        assert torch.equal(pred.labels, plain.argmax(1))
        assert (logits - plain).abs().max() <= 1e-4 * plain.abs().max()
        assert torch.allclose(pred.probabilities.sum(1), torch.ones(20))


def test_batches_larger_than_the_server_limit_are_split(setup: dict, server) -> None:
    url, _, _ = server
    images = setup["images"].repeat(4, 1, 1, 1)  # 80 > --max-batch 64
    with Client(url, setup["key"], TOKEN) as client:
        assert torch.equal(client.classify(images).labels, setup["plain_logits"].argmax(1).repeat(4))


def test_sequential_requests_on_a_keep_alive_connection_are_not_held_by_delayed_acks(server) -> None:
    """30 requests one after another on one keep-alive connection each finish well within the
    40 ms of a delayed ACK: with Nagle's algorithm left on for the server's connections, every
    answer (head and body written separately) waited for the client's delayed ACK, 48 ms per
    request (a regression of the guarded server; 2 ms now). /healthz does not touch the model;
    /v1/predict adds this server's --batch-wait-ms 5."""
    url, _, _ = server
    body = _npy(np.zeros((1, 3, 32, 32), np.float32))

    def median_ms(call) -> float:
        call()  # the connection is open and warm
        times = []
        for _ in range(30):
            start = time.perf_counter()
            assert call().status_code == 200
            times.append(1000 * (time.perf_counter() - start))
        return sorted(times)[len(times) // 2]

    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": NPY}, timeout=30) as client:
        assert median_ms(lambda: client.get(f"{url}/healthz")) < 15
        assert median_ms(lambda: client.post(f"{url}/v1/predict", content=body)) < 20


def test_the_guarded_protocol_turns_nagle_off_whatever_the_loop_and_socket() -> None:
    """On asyncio's own loop and a listening socket made without proto=IPPROTO_TCP (where asyncio
    leaves Nagle on), every accepted connection still gets TCP_NODELAY from the protocol."""
    import threading

    from veilnet.serve import server as guarded

    async def app(scope, receive, send) -> None:  # lifespan and plain answers only
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0
    sock.bind(("127.0.0.1", 0))
    limits = ConnectionLimits()
    config = guarded.config(app, limits, log_level="warning")
    config.lifespan = "off"
    uv = guarded.GuardedServer(config, limits)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not uv.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client() as client:
            assert client.get(f"http://127.0.0.1:{sock.getsockname()[1]}/").status_code == 204
            (connection,) = uv.server_state.connections
            accepted = connection.transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_requests_without_or_with_a_wrong_token_are_refused(setup: dict, server) -> None:
    url, _, _ = server
    body = _npy(np.zeros((1, 3, 32, 32), np.float32))
    for token in (None, "x" * len(TOKEN)):
        answer = _post(url, body, token=token)
        assert answer.status_code == 401 and "token" in answer.json()["error"]
        assert httpx.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {token}"} if token else {}).status_code == 401
    with pytest.raises(AuthRefusedError, match="refused the token"), Client(url, setup["key"], "wrong-token-0123456789") as client:
        client.classify(setup["images"][:1])
    assert httpx.get(f"{url}/healthz").json() == {"status": "ready"}


def test_info_describes_the_model_without_secrets(setup: dict, server) -> None:
    url, _, _ = server
    info = httpx.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert info["kind"] == "keyed" and info["input"] == {"shape": [None, 3, 32, 32], "dtype": "float32"}
    assert info["num_classes"] == 10 and info["params"]["block_size"] == 4 and info["limits"]["max_batch"] == 64
    assert info["classes"] == CLASSES  # public: the card's class names
    assert info["params"]["fingerprint"] == setup["key"].fingerprint
    assert "material" not in json.dumps(info) and TOKEN not in json.dumps(info)
    assert info["card"] == {"architecture": "convmixer"} and str(setup["root"]) not in json.dumps(info)  # allow-list: no local path
    schema = httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/predict"]["post"]  # public: the protocol, no token
    assert set(schema["requestBody"]["content"]) == {NPY, SAFETENSORS}


BAD_BODIES = [
    ("random bytes as npy", os.urandom(5000), NPY, 400),
    ("random bytes as safetensors", os.urandom(5000), SAFETENSORS, 400),
    ("empty body", b"", NPY, 400),
    ("float64", _npy(np.zeros((2, 3, 32, 32), np.float64)), NPY, 422),
    ("big-endian float32", _npy(np.zeros((2, 3, 32, 32), ">f4")), NPY, 422),
    ("int64", _npy(np.zeros((2, 3, 32, 32), np.int64)), NPY, 422),
    ("pickled objects", _npy(np.array([[object()]], dtype=object)), NPY, 422),
    ("wrong shape", _npy(np.zeros((2, 3, 16, 16), np.float32)), NPY, 422),
    ("no batch dimension", _npy(np.zeros((3, 32, 32), np.float32)), NPY, 422),
    ("empty batch", _npy(np.zeros((0, 3, 32, 32), np.float32)), NPY, 422),
    ("huge batch in header", _npy_header_only((10**12, 3, 32, 32)), NPY, 413),
    ("huge image in header", _npy_header_only((1, 3, 10**9, 10**9)), NPY, 422),
    ("header overflowing int64", _npy_header_only((2**62, 2**62, 3, 32, 32)), NPY, 422),
    ("negative batch in header", _npy_header_only((-1, 3, 32, 32)), NPY, 400),
    ("data missing", _npy_header_only((8, 3, 32, 32)), NPY, 400),
    ("truncated npy", _npy(np.zeros((4, 3, 32, 32), np.float32))[:5000], NPY, 400),
    ("nan", _npy(np.full((1, 3, 32, 32), np.nan, np.float32)), NPY, 422),
    ("inf", _npy(np.full((1, 3, 32, 32), np.inf, np.float32)), NPY, 422),
    ("finite input, infinite output", _npy(np.full((1, 3, 32, 32), 3e38, np.float32)), NPY, 422),
    ("nan as safetensors", safetensors.numpy.save({"x": np.full((1, 3, 32, 32), np.nan, np.float32)}), SAFETENSORS, 422),
    ("two tensors", safetensors.numpy.save({"a": np.zeros((1, 3, 32, 32), np.float32), "b": np.zeros(1, np.float32)}), SAFETENSORS, 422),
    ("truncated safetensors", safetensors.numpy.save({"x": np.zeros((4, 3, 32, 32), np.float32)})[:3000], SAFETENSORS, 400),
    ("safetensors header length lies", (2**63).to_bytes(8, "little") + b"{}", SAFETENSORS, 400),
    ("npy sent as safetensors", _npy(np.zeros((1, 3, 32, 32), np.float32)), SAFETENSORS, 400),
    ("unknown content type", _npy(np.zeros((1, 3, 32, 32), np.float32)), "text/plain", 415),
    ("over the body limit", bytes((1 << 20) + 1), NPY, 413),  # --max-body-mb 1
    ("over the batch limit", _npy_header_only((65, 3, 32, 32)), NPY, 413),
]


@pytest.mark.parametrize(("what", "body", "media", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_get_a_4xx_json_error(server, what: str, body: bytes, media: str, status: int) -> None:
    url, _, proc = server
    answer = _post(url, body, media)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error and "Traceback" not in error and len(error) < 400
    assert proc.poll() is None


def test_server_survives_lying_and_dropped_connections(setup: dict, server) -> None:
    url, _, proc = server
    port = int(url.rsplit(":", 1)[1])
    for request in (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Type: application/x-npy\r\nContent-Length: 100000\r\n\r\n"
        + NPY_MAGIC_HEADER,
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"\x00\xff garbage \r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                s.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    assert proc.poll() is None
    with Client(url, setup["key"], TOKEN) as client:
        assert torch.equal(client.classify(setup["images"]).labels, setup["plain_logits"].argmax(1))


def test_client_errors_are_clear(setup: dict, server) -> None:
    url, log, _ = server
    posts = log.read_text().count("POST /v1/predict")
    other = generate_key("block", 4, 3, 32)
    with pytest.raises(KeyMismatchError, match="not the key the served model"), Client(url, other, TOKEN) as client:
        client.classify(setup["images"])
    with pytest.raises(KeyMismatchError, match="block_size 8"), Client(url, generate_key("block", 8, 3, 32), TOKEN) as client:
        client.classify(setup["images"])
    time.sleep(0.2)
    assert log.read_text().count("POST /v1/predict") == posts  # nothing was sent
    with pytest.raises(ServerUnreachableError, match="unreachable"), Client(f"http://127.0.0.1:{free_port()}", setup["key"], TOKEN) as client:
        client.classify(setup["images"])
    # "/v1/info" lands in the query string of /healthz: a JSON answer that is no model description
    with pytest.raises(ServiceError, match="not a veilnet model description"), Client(f"{url}/healthz?", setup["key"], TOKEN) as client:
        client.info()


def test_query_command(setup: dict, server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, _, _ = server
    root = setup["root"]
    files = []
    for i in range(3):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(setup["images"][i].permute(1, 2, 0).numpy()).save(files[-1])
    argv = ["query", "--server", url, "--key", str(root / "key.json"), "--token-file", str(root / "tokens.txt")]
    assert main([*argv, *map(str, files), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    want = setup["plain_logits"][:3].argmax(1).tolist()
    assert [r["label"] for r in rows] == want and [r["class"] for r in rows] == [CLASSES[i] for i in want]
    assert main([*argv, *map(str, files)]) == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == [CLASSES[i] for i in want]  # input, label, class, probability
    assert main([*argv, "--data", "digits", "--limit", "5"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 5 and "accuracy:" in out.err
    assert all(line.split("\t")[2] in CLASSES for line in out.out.splitlines())  # the served model's names, not the data's
    (tmp_path / "small.png").write_bytes(_png(8))
    assert main([*argv, str(tmp_path / "small.png")]) == 2
    assert "8×8 pixels" in capsys.readouterr().err
    assert main([*argv[:-2], "--token-file", str(tmp_path / "img0.png"), str(files[0])]) == 2  # binary token file: refused
    capsys.readouterr()
    # .npy pixel files go through the one image decoder: [0, 1] floats are pixels, 0–255 floats are refused
    np.save(tmp_path / "img0.npy", setup["images"][0].numpy().astype(np.float32) / 255)
    np.save(tmp_path / "wrong-range.npy", setup["images"][0].numpy().astype(np.float32))
    assert main([*argv, str(tmp_path / "img0.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == rows[0]["label"]
    assert main([*argv, str(tmp_path / "wrong-range.npy")]) == 2
    assert "0–255" in capsys.readouterr().err
    # a key that is not the served model's: one line, exit 2, before any image is read
    generate_key("block", 4, 3, 32).save(tmp_path / "other-key.json")
    assert (
        main(["query", "--server", url, "--key", str(tmp_path / "other-key.json"), "--token-file", str(root / "tokens.txt"), str(tmp_path / "small.png")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the key the served model" in err


def _png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size)).save(buf, format="PNG")
    return buf.getvalue()


def test_server_log_holds_no_key_material_token_or_pixels(setup: dict, server) -> None:
    """Runs last: reads everything the server logged during this module."""
    _, log, _ = server
    text = log.read_text()
    assert "POST /v1/predict" in text and "Traceback" not in text and "Exception" not in text
    assert TOKEN not in text
    material = setup["key"].material
    for values in material.values():
        assert ", ".join(map(str, values[:6])) not in text and ",".join(map(str, values[:6])) not in text
    assert not re.search(r"(?:-?\d+(?:\.\d+)?(?:e-?\d+)?[,\s\[\]]+){12,}", text), "a run of numbers (pixels?) in the log"


def test_no_auth_needs_the_flag_and_warns_and_https_works(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = str(setup["root"] / "served")
    monkeypatch.delenv("VEILNET_TOKENS", raising=False)
    assert main(["serve", served, "--port", "0"]) == 2
    assert "--no-auth" in capsys.readouterr().err
    (tmp_path / "short").write_text("short\n")
    assert main(["serve", served, "--token-file", str(tmp_path / "short"), "--port", "0"]) == 2
    assert "shorter than 16" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing"), "--no-auth", "--port", "0"]) == 2
    assert "model card missing" in capsys.readouterr().err
    assert main(["serve", served, "--no-auth", "--tls-cert", served]) == 2
    assert "both --tls-cert and --tls-key" in capsys.readouterr().err
    with socket.socket() as taken:  # a port in use: one line before the model is loaded, not uvicorn's exit 1
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", served, "--no-auth", "--port", str(taken.getsockname()[1])]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot listen on 127.0.0.1" in err

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, tls_key = tmp_path / "cert.pem", tmp_path / "tls-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tls_key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    cmd = [sys.executable, "-m", "veilnet.cli", "serve", served, "--port", str(port), "--no-auth", "--tls-cert", str(cert), "--tls-key", str(tls_key)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "ready: listening on" in line:
                break
        assert any("WARNING" in line and "authentication is OFF" in line for line in lines), lines
        url = f"https://127.0.0.1:{port}"
        with Client(url, setup["key"], ca_file=cert) as client:
            assert torch.equal(client.classify(setup["images"]).labels, setup["plain_logits"].argmax(1))
        with pytest.raises(ServerUnreachableError, match="CERTIFICATE_VERIFY_FAILED"), Client(url, setup["key"]) as client:
            client.info()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- in process ----------------------------------------------------------------------------------


def _raw_request(port: int, body: bytes, content_length: int) -> bytes:
    return (
        f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {NPY}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode() + body


def test_a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes(setup: dict) -> None:
    """A body shorter than its Content-Length (the client keeps the connection open) and a body
    trickled slower than the read timeout: each answer is 408 within a bounded time, then the
    server closes the connection and keeps serving."""
    served = ServedModel.load(setup["root"] / "served")
    app = create_app(served, tokens=[TOKEN])
    with local_server(app, connections=ConnectionLimits(read_timeout_s=0.5)) as url:
        port = int(url.rsplit(":", 1)[1])
        for trickle in (False, True):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                start = time.monotonic()
                s.sendall(_raw_request(port, NPY_MAGIC_HEADER, 100_000))  # 8 of 100,000 bytes; no shutdown
                if trickle:
                    for _ in range(20):  # one byte every 0.1 s: never idle, never complete
                        time.sleep(0.1)
                        with contextlib.suppress(OSError):
                            s.sendall(b"\0")
                answer = b""
                while chunk := s.recv(4096):  # ends when the server closes; a hang is a socket timeout
                    answer += chunk
                elapsed = time.monotonic() - start
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"request not received within 0.5 s" in answer and elapsed < 5
        with Client(url, setup["key"], TOKEN) as client:
            assert torch.equal(client.classify(setup["images"]).labels, setup["plain_logits"].argmax(1))


def test_info_publishes_only_the_allow_listed_card_fields(setup: dict) -> None:
    card = {
        "architecture": "convmixer",
        "kwargs": {"dim": 32},
        "data": "folder:/home/alice/private/photos.zip",
        "metrics": {"accuracy": 0.9},
        "sha256": "0" * 64,
        "extra": {"keyed": {**public_params(setup["key"]), "note": "/home/alice/notes.txt"}},
    }
    served = ServedModel.from_model(transform_model(setup["plain"], setup["key"]), card)
    info = served.info(Limits())
    assert info["card"] == {"architecture": "convmixer"}
    assert "/home/alice" not in json.dumps(info) and "0.9" not in json.dumps(info)
    assert set(info["params"]) == {"scheme", "block_size", "channels", "image_size", "ea", "fingerprint"}
    assert info["classes"] is None  # an old card without names: the labels are numbers
    named = ServedModel.from_model(transform_model(setup["plain"], setup["key"]), {**card, "classes": CLASSES})
    assert named.info(Limits())["classes"] == CLASSES
    assert ServedModel.from_model(transform_model(setup["plain"], setup["key"]), {**card, "classes": CLASSES[:3]}).classes is None  # not one per class


def _tiny_served(width: int) -> ServedModel:
    from veilnet.serve.kinds import Expectation

    return ServedModel(
        model=torch.nn.Flatten(),
        expectation=Expectation("keyed", (1, width, width), "float32", {"block_size": 2}),
        output_shape=(width * width,),
        output_dtype="float32",
        card={"architecture": "flatten"},
    )


def test_openapi_is_the_same_for_every_deployment_and_lists_every_status(setup: dict) -> None:
    """The public schema describes the protocol: no model's shape, dtype or limits in it (those
    are behind the token on /v1/info), and each operation documents every status it answers."""
    keyed = ServedModel.load(setup["root"] / "served")
    one = create_app(keyed, tokens=[TOKEN], limits=Limits(max_body_bytes=1 << 20, max_batch=64)).openapi()
    other = create_app(_tiny_served(4), tokens=None, limits=Limits(max_body_bytes=12345, max_batch=3)).openapi()
    assert one == other
    text = json.dumps(one)
    assert "12345" not in text and "32" not in text.replace("float32", "") and 'fingerprint": "' not in text
    paths = one["paths"]
    documented = {path: {m: set(op["responses"]) for m, op in ops.items()} for path, ops in paths.items()}
    assert documented == {
        "/healthz": {"get": {"200", "503"}},
        "/v1/info": {"get": {"200", "401", "503"}},
        "/v1/predict": {"post": {"200", "400", "401", "408", "413", "415", "422", "500", "503"}},
    }
    for ops in paths.values():
        for op in ops.values():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")) and status != "503":
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert paths["/v1/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ModelInfo"}


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_openapi_and_healthz_are_public_and_everything_else_needs_the_token(setup: dict) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(_tiny_served(2), tokens=[TOKEN])) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/healthz").status_code == 200
        assert client.get("/v1/info").status_code == 401 and client.post("/v1/predict").status_code == 401
        assert client.get("/docs").status_code == 404


def test_the_serve_commands_import_nothing_heavy() -> None:
    code = (
        "import sys, veilnet.serve.cli; print(sorted(m for m in ('torch', 'numpy', 'fastapi', 'uvicorn', 'httpx', 'safetensors', 'PIL') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_plain_model_is_not_served(setup: dict) -> None:
    with pytest.raises(ModelFormatError, match="must be transformed"):
        ServedModel.from_model(setup["plain"], {"architecture": "convmixer", "extra": {}})
    with pytest.raises(ModelFormatError, match="extra.keyed must give"):
        ServedModel.from_model(setup["plain"], {"architecture": "convmixer", "extra": {"keyed": {"scheme": "block"}}})


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_random_mutations_of_valid_bodies_never_give_a_5xx(setup: dict) -> None:
    from fastapi.testclient import TestClient

    served = ServedModel.load(setup["root"] / "served")
    app = create_app(served, tokens=[TOKEN], limits=Limits(max_body_bytes=1 << 20, max_batch=8))
    valid = {
        NPY: _npy(np.random.rand(2, 3, 32, 32).astype(np.float32)),
        SAFETENSORS: safetensors.numpy.save({"x": np.random.rand(2, 3, 32, 32).astype(np.float32)}),
    }
    rng = random.Random(0)
    statuses = set()
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for i in range(150):
            media = (NPY, SAFETENSORS)[i % 2]
            body = bytearray(valid[media])
            for _ in range(rng.randint(1, 4)):  # flip bytes, mostly in the header
                pos = rng.randrange(min(len(body), 160)) if rng.random() < 0.8 else rng.randrange(len(body))
                body[pos] = rng.randrange(256)
            if rng.random() < 0.3:
                body = body[: rng.randrange(len(body))]
            answer = client.post("/v1/predict", content=bytes(body), headers={**headers, "Content-Type": media})
            statuses.add(answer.status_code)
            assert answer.status_code < 500, answer.text
            if answer.status_code != 200:
                assert answer.json()["error"]
        assert client.get("/healthz").status_code == 200
    assert statuses & {400, 422} and 200 in statuses


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_failing_forward_pass_is_a_500_without_details() -> None:
    from fastapi.testclient import TestClient

    from veilnet.serve.kinds import Expectation

    class Fragile(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] == 3:
                raise RuntimeError("secret internal state 0.123, 0.456")
            return x.flatten(1)[:, :4]

    served = ServedModel(model=Fragile(), expectation=Expectation("keyed", (1, 2, 2), "float32", {}), output_shape=(4,), output_dtype="float32", card={})
    with TestClient(create_app(served, tokens=None), raise_server_exceptions=False) as client:

        def post(n: int) -> httpx.Response:
            return client.post("/v1/predict", content=_npy(np.ones((n, 1, 2, 2), np.float32)), headers={"Content-Type": NPY})

        answer = post(3)
        assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
        assert post(2).status_code == 200


def test_codec_round_trip_and_header_checked_before_allocation() -> None:
    x = torch.rand(3, 2, 4, 4)
    for media in (NPY, SAFETENSORS):
        assert torch.equal(read_tensor(write_tensor(x, media), media, dtype="float32", item_shape=(2, 4, 4), max_items=3), x)
    with pytest.raises(BodyError) as err:
        read_tensor(_npy_header_only((10**6, 2, 4, 4)), NPY, dtype="float32", item_shape=(2, 4, 4))
    assert err.value.status == 400 and "truncated" in err.value.message


def test_dynamic_batching_merges_concurrent_requests() -> None:
    calls: list[int] = []

    def expected(x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(1, 2, 3))[:, None] * torch.arange(3.0)

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return expected(x)

    async def burst(config: BatchingConfig) -> list[torch.Tensor]:
        batcher = DynamicBatcher(forward, config)
        batcher.start()
        inputs = [torch.full((n, 1, 2, 2), float(i)) for i, n in enumerate([3, 1, 4, 2, 5, 1])]
        outs = await asyncio.gather(*(batcher(x) for x in inputs))
        await batcher.stop()
        for x, out in zip(inputs, outs, strict=True):
            assert torch.equal(out, expected(x))
        return outs

    asyncio.run(burst(BatchingConfig(enabled=True, max_images=8, wait_ms=50)))
    assert sum(calls) == 16 and len(calls) < 6 and max(calls) <= 8
    calls.clear()
    asyncio.run(burst(BatchingConfig(enabled=False)))
    assert calls == [3, 1, 4, 2, 5, 1]


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from veilnet.serve import client_token, server_tokens

    monkeypatch.setenv("VEILNET_TOKENS", f"{TOKEN}, {TOKEN[::-1]}")
    monkeypatch.setenv("VEILNET_TOKEN", TOKEN)
    assert server_tokens() == [TOKEN, TOKEN[::-1]] and client_token() == TOKEN


class _Counting(torch.nn.Module):
    """The transformed model, recording the batch size of every call; ``hold`` makes a call wait
    until it is set (a long pass) while ``entered`` says that one has begun."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.sizes = model, []
        self.hold, self.entered = None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if self.hold is not None:
            self.entered.set()
            self.hold.wait(30)
        return self.model(x)


def _keyed_card(key) -> dict:
    return {"architecture": "convmixer", "extra": {"keyed": public_params(key)}}


def test_a_merged_pass_runs_in_chunks_with_the_outputs_of_one_call(setup: dict) -> None:
    """``chunk`` items per model call: 20 images at chunk 8 are calls of 8, 8 and 4, and the
    logits equal those of one call of 20 (rows are independent in eval mode)."""
    model = _Counting(transform_model(setup["plain"], setup["key"]).eval())
    x = setup["images"].float() / 255
    whole = ServedModel.from_model(model, _keyed_card(setup["key"]), chunk=64).forward(x)
    model.sizes.clear()
    chunked = ServedModel.from_model(model, _keyed_card(setup["key"]), chunk=8)
    model.sizes.clear()
    out = chunked.forward(x)
    assert model.sizes == [8, 8, 4]
    assert (out - whole).abs().max() <= 1e-5 * whole.abs().max()


def test_an_eager_cpu_model_gets_the_chunk_it_is_cheapest_at_per_image() -> None:
    """:func:`fastest_chunk` keeps the candidate size with the least CPU time per item: a model
    that spins the CPU 0.2 ms per item, except 0.05 ms per item in calls of 16, is given 16."""
    from veilnet.serve.app import CHUNK_CANDIDATES, fastest_chunk
    from veilnet.serve.kinds import Expectation

    class Spinning(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            end = time.process_time() + x.shape[0] * (0.00005 if x.shape[0] == 16 else 0.0002)
            while time.process_time() < end:
                pass
            return x.flatten(1)

    assert 16 in CHUNK_CANDIDATES
    assert fastest_chunk(Spinning(), Expectation(kind="keyed", input_shape=(1, 2, 2), dtype="float32", params={})) == 16


def test_the_event_loop_answers_while_a_long_pass_computes(setup: dict) -> None:
    """The model runs in the batcher's worker thread, off the event loop: while a forward pass is
    held inside the model, /healthz and /v1/info are answered (each within 0.5 s; the pass takes
    as long as the test holds it) and the held request is answered once the pass ends."""
    import threading

    model = _Counting(transform_model(setup["plain"], setup["key"]).eval())
    app = create_app(ServedModel.from_model(model, _keyed_card(setup["key"])), tokens=[TOKEN])
    with local_server(app) as url:
        model.hold, model.entered = threading.Event(), threading.Event()
        answer: list[httpx.Response] = []
        body = _npy((setup["images"][:4].float() / 255).numpy())
        poster = threading.Thread(target=lambda: answer.append(_post(url, body)))
        poster.start()
        try:
            assert model.entered.wait(30)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as client:
                for path in ("/healthz", "/v1/info"):
                    start = time.perf_counter()
                    assert client.get(path).status_code == 200
                    assert time.perf_counter() - start < 0.5, path
            assert not answer  # still held in the model
        finally:
            model.hold.set()
            poster.join(30)
        assert answer and answer[0].status_code == 200
