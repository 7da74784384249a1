"""Replicas behind a proxy (docs/serving.md, "Replicas behind a proxy"): two ``veilnet serve``
processes on loopback behind nginx (the system's, from Debian's package) running
``proxy/nginx.conf`` with only its addresses and log path rewritten.

* Both replicas serve one client's requests, and a replica killed (SIGKILL) mid-run loses none:
  every request gets the plain model's labels, and nginx's log shows a request that had reached
  the killed replica answered by the other.
* The per-client limits live in the proxy: a client over its request rate gets 429 with a JSON
  error while a client at another address is still served.
* The container image (``Dockerfile``, ``.dockerignore``): what can be checked without building
  it (docker is not run here).

Without nginx the proxy tests skip with a message; with CI=true they fail instead (.ci/run
installs nginx).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from serving import free_port, serving
from veilnet import data, metrics, models
from veilnet.keyed import generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve import Client

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "proxy" / "nginx.conf"
TOKEN = "replica-token-0123456789abcdef"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
#: How long the first replica holds every request (--batch-wait-ms): requests are surely in flight there when it is killed.
HOLD_MS = 1000
#: What nginx's log says about one request.
LOG_LINE = re.compile(
    r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) \d+ upstream="(?P<up>[^"]*)" upstream_status="(?P<ups>[^"]*)" upstream_sent="(?P<sent>[^"]*)"'
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small transformed ConvMixer, its key, a token file, 4 digits and the plain model's labels for them."""
    root = tmp_path_factory.mktemp("replicas")
    torch.manual_seed(0)
    plain = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4, num_classes=10).eval()
    key = generate_key("block", 4, 3, 32)
    models.save(transform_model(plain, key), root / "served", extra={"keyed": public_params(key)})
    key.save(root / "key.json")
    (root / "tokens.txt").write_text(f"{TOKEN}\n")
    images = data.load("digits", "test").images[:4]
    return {"root": root, "images": images, "labels": metrics.predict(plain, images).argmax(1)}


def _replica_args(model: dict, *extra: str) -> list[str]:
    """A replica behind the proxy: every connection comes from the proxy's address, so the
    per-address cap is the whole table (the proxy applies the per-client limits)."""
    root = model["root"]
    return [
        str(root / "served"),
        "--token-file",
        str(root / "tokens.txt"),
        "--no-compile",
        "--max-connections-per-client",
        "128",
        "--log-level",
        "warning",
        *extra,
    ]


@contextlib.contextmanager
def _nginx(directory: Path, listen: int, replicas: tuple[int, int]) -> Iterator[tuple[str, Path]]:
    """nginx in the foreground with ``proxy/nginx.conf`` listening on 127.0.0.1:``listen`` in
    front of the ``replicas`` ports; yields its URL and its access log. No root needed: the
    prefix, temporary files, pid file and logs are in ``directory``."""
    if NGINX is None:
        message = "no nginx on PATH; the replica tests need it (apt-get install nginx)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    access = directory / "access.log"
    conf = TEMPLATE.read_text()
    for old, new in {
        "listen 127.0.0.1:8000;": f"listen 127.0.0.1:{listen};",
        "server 127.0.0.1:8001 ": f"server 127.0.0.1:{replicas[0]} ",
        "server 127.0.0.1:8002 ": f"server 127.0.0.1:{replicas[1]} ",
        "/var/log/nginx/veilnet.access.log": str(access),
    }.items():
        assert conf.count(old) == 1, f"proxy/nginx.conf no longer has {old!r} once"
        conf = conf.replace(old, new)
    (directory / "veilnet.conf").write_text(conf)
    temp = " ".join(f"{kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""  # as root, workers would run as nobody, who cannot enter the test's directory
    (directory / "main.conf").write_text(
        f"{user} worker_processes 1; events {{ worker_connections 512; }} http {{ {temp} include {directory / 'veilnet.conf'}; }}\n"
    )
    error_log = directory / "error.log"
    cmd = [NGINX, "-p", str(directory), "-c", str(directory / "main.conf"), "-e", str(error_log), "-g", f"daemon off; pid {directory / 'nginx.pid'};"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{listen}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{error_log.read_text() if error_log.exists() else ''}")
            time.sleep(0.1)
        yield url, access
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log(access: Path) -> list[dict[str, str]]:
    return [m.groupdict() for m in map(LOG_LINE.search, access.read_text().splitlines()) if m]


def _predicts(access: Path) -> list[dict[str, str]]:
    return [r for r in _log(access) if r["method"] == "POST" and r["path"] == "/v1/predict"]


@pytest.fixture(scope="module")
def proxied(model: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Replicas A and B and nginx in front of them. A holds every request HOLD_MS (its batching
    wait) so that requests are in flight there when it is killed; B answers at once. The test
    that kills A comes last in this module."""
    root = tmp_path_factory.mktemp("proxy")
    a, b = free_port(), free_port()
    with (
        serving(_replica_args(model, "--batch-wait-ms", str(HOLD_MS)), port=a, log=root / "a.log") as (_, replica_a),
        serving(_replica_args(model), port=b, log=root / "b.log"),
        _nginx(root, free_port(), (a, b)) as (url, access),
    ):
        yield {"url": url, "access": access, "a": f"127.0.0.1:{a}", "b": f"127.0.0.1:{b}", "replica_a": replica_a}


def test_per_client_limits_are_the_proxys(model: dict, proxied: dict) -> None:
    """A client at 127.0.0.2 sending requests as fast as it can passes the proxy's rate (20/s,
    burst 40) and gets 429 with a JSON error and Retry-After; a client at 127.0.0.1 is served
    meanwhile. The replicas see one address (the proxy's) and apply no per-client limit."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), base_url=proxied["url"]) as flood:
        statuses = [flood.get("/healthz") for _ in range(100)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and len(limited) + sum(r.status_code == 200 for r in statuses) == 100
    assert limited[0].json()["error"].startswith("too many requests") and limited[0].headers["retry-after"] == "1"
    with Client(proxied["url"], model["root"] / "key.json", TOKEN) as client:
        assert torch.equal(client.classify(model["images"]).labels, model["labels"])


def test_both_replicas_serve_a_client_and_a_killed_one_loses_no_request(model: dict, proxied: dict) -> None:
    """Four client threads query through nginx. Once both replicas have answered, A is killed
    with SIGKILL while requests are in flight there; the clients go on for a while. Every request
    must be answered with the plain model's labels, and nginx must have resent a request A had
    received to B (``proxy_next_upstream ... non_idempotent``; without it that request gets a 502)."""
    a, b, access = proxied["a"], proxied["b"], proxied["access"]
    seen = len(_predicts(access))  # what the tests before this one sent
    stop = threading.Event()
    answers: list[bool] = []
    failures: list[str] = []

    def query() -> None:
        try:
            with Client(proxied["url"], model["root"] / "key.json", TOKEN) as client:
                while not stop.is_set():
                    answers.append(torch.equal(client.classify(model["images"]).labels, model["labels"]))
                    time.sleep(0.25)  # 4 threads stay under the proxy's 20 requests/s per address
        except Exception as exc:  # any failure is the test's: report it
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=query) for _ in range(4)]
    for t in threads:
        t.start()
    served_by = lambda: {r["up"] for r in _predicts(access)[seen:] if r["status"] == "200"}  # noqa: E731
    deadline = time.monotonic() + 15
    while served_by() != {a, b} and time.monotonic() < deadline and not failures:
        time.sleep(0.05)
    assert served_by() == {a, b}, f"both replicas should have answered: {_predicts(access)[seen:]} {failures}"
    time.sleep(HOLD_MS / 2000)  # the threads A answered have sent their next requests
    proxied["replica_a"].kill()
    time.sleep(2 * HOLD_MS / 1000)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures
    assert answers and all(answers), f"{answers.count(False)} of {len(answers)} answers had other labels than the plain model's"
    lines = _predicts(access)[seen:]
    assert len(lines) == len(answers) and all(r["status"] == "200" for r in lines), lines
    resent = [r for r in lines if r["up"] == f"{a}, {b}" and r["ups"] == "502, 200"]
    assert any(int(r["sent"].split(",")[0]) > 0 for r in resent), f"no request that reached A was resent to B: {lines}"
    assert lines[-1]["up"] == b


def _dockerfile() -> list[str]:
    """The Dockerfile's statements, one per item (continued lines joined, comments left out)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _exec_form(statements: list[str], instruction: str) -> list[str]:
    """The JSON argument list of the last ``instruction`` (e.g. ``ENTRYPOINT``, ``HEALTHCHECK``'s ``CMD``)."""
    last = [s for s in statements if s.startswith(instruction)][-1]
    return json.loads(last[last.index("[") :])


def test_the_image_installs_the_serve_extra_and_holds_no_model_token_or_key() -> None:
    """The Dockerfile's checkable statements (docker is not run here): python:3.11-slim, the
    Makefile's torch from the CPU wheel index, then ``pip install '.[serve]'``; only the
    package's sources copied (no model, token or key); a non-root user; /healthz as the health
    check; the model and tokens read from mounted paths. .dockerignore keeps runs, keys, models,
    tokens and the venv out of the build context."""
    statements = _dockerfile()
    assert statements[0] == "FROM python:3.11-slim"
    torch_pin = re.search(r"TORCH\s*:=\s*(\S+)", (ROOT / "Makefile").read_text())[1]
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in statements
    assert any(s.startswith("RUN") and f'pip install --no-cache-dir {torch_pin} --index-url "${{TORCH_INDEX}}"' in s for s in statements)
    assert any(s.startswith("RUN") and "pip install --no-cache-dir '.[serve]'" in s for s in statements)
    copied = [source for s in statements if s.startswith(("COPY", "ADD")) for source in s.split()[1:-1]]
    assert sorted(copied) == ["README.md", "pyproject.toml", "src"]
    assert [s for s in statements if s.startswith("USER")][-1].split()[1] not in ("root", "0")
    assert "/healthz" in " ".join(_exec_form(statements, "HEALTHCHECK"))
    command = _exec_form(statements, "ENTRYPOINT") + _exec_form(statements, "CMD")
    assert command[:2] == ["veilnet", "serve"] and "/models/served" in command and "/run/secrets/veilnet-tokens" in command
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".venv", "runs", "**/*key*.json", "**/*.safetensors", "**/tokens*.txt", ".git"):
        assert pattern in ignored, pattern


def test_the_images_command_serves_and_its_health_check_passes(model: dict, tmp_path: Path) -> None:
    """The image's ENTRYPOINT and CMD, run here with the mounted paths pointing at a model and a
    token file (and on loopback): the server starts, and the HEALTHCHECK command exits 0 against
    it and non-zero where nothing listens."""
    statements = _dockerfile()
    command = _exec_form(statements, "ENTRYPOINT") + _exec_form(statements, "CMD")
    mounts = {"/models/served": str(model["root"] / "served"), "/run/secrets/veilnet-tokens": str(model["root"] / "tokens.txt"), "0.0.0.0": "127.0.0.1"}
    args = [mounts.get(a, a) for a in command[2:]]  # serving() runs `veilnet serve ARGS --port PORT`
    check = _exec_form(statements, "HEALTHCHECK")
    assert check[0] == "python" and "127.0.0.1:8000/healthz" in check[-1]
    port = free_port()
    with serving([*args, "--no-compile"], port=port, log=tmp_path / "serve.log"):
        assert subprocess.run([sys.executable, *check[1:-1], check[-1].replace(":8000/", f":{port}/")], capture_output=True).returncode == 0
    assert subprocess.run([sys.executable, *check[1:-1], check[-1].replace(":8000/", f":{free_port()}/")], capture_output=True).returncode != 0
