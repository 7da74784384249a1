"""``veilnet fl server`` / ``veilnet fl client``: the federation as separate processes.

The server is a Flower SuperLink (``flower-superlink``; in Flower 1.41 its Fleet, Control and
runtime APIs share one HTTP port) to which the veilnet app is submitted with ``flwr run``; the
SuperLink starts the server app (:func:`veilnet.federated.server_app.main`) in its own process.
Each client is a SuperNode (``flower-supernode``) whose node config names its partition or
its own data set; it starts :data:`veilnet.federated.client_app.app` for every message. Nothing
is installed at run time (``--disable-runtime-dependency-installation``): every process uses
this environment.

The server app tells the command how many clients have connected (the state folder's
:data:`~veilnet.federated.server_app.EVENTS`), writes each round to ``rounds.jsonl`` in the
output folder as it finishes (the command's progress bar reads it) and its final state to a
private folder; the command then checks the run's status with ``flwr ls``, trains the baseline
and writes the same outputs as ``veilnet fl run``. A client's app processes append what they did
to an events file that ``veilnet fl client`` prints.

Every Flower process runs under :mod:`veilnet.federated.guard`, which takes the whole tree down
when the command ends, is stopped (SIGTERM works like Ctrl-C) or is killed; the private folders
are removed however the command ends, short of SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from veilnet.errors import ConfigError
from veilnet.federated import guard
from veilnet.federated.server_app import EVENTS, ROUNDS_LOG, STATE, WEIGHTS
from veilnet.federated.simulation import QUIET, FederationError, finish
from veilnet.federated.task import FederatedConfig

__all__ = ["ROUNDS_LOG", "ServerTls", "check_files", "check_ports", "flwr_config", "run_client", "run_server", "superlink_command", "supernode_command"]

_APP_TOML = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "veilnet-fl"
version = "1.0.0"
description = "veilnet: FedAvg, then a key per client"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "veilnet"

[tool.flwr.app.components]
serverapp = "veilnet.federated.server_app:app"
clientapp = "veilnet.federated.client_app:app"

[tool.flwr.app.config]
config = {config}
state = {state}
output = {output}
wait = {wait}
timeout = {timeout}
"""


@dataclass(frozen=True)
class ServerTls:
    """The SuperLink's TLS (Flower's ``--ssl-certfile``, ``--ssl-keyfile``,
    ``--ssl-ca-certfile``): its certificate (with the address the clients dial among its
    subject alternative names), its private key, and the CA certificate that signed it, which
    the clients (``veilnet fl client --root-certificates``) and the command's own ``flwr`` calls
    verify it with."""

    certfile: str
    keyfile: str
    ca_certfile: str


def check_files(**paths: str | None) -> None:
    """ConfigError naming the option of a given file that cannot be read."""
    for option, path in paths.items():
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"--{option.replace('_', '-')} {path}: {exc.strerror or exc}") from None


def superlink_command(host: str, port: int, tls: ServerTls | None) -> list[str]:
    """The SuperLink's command line: HTTPS with ``tls``, else ``--insecure`` (unencrypted)."""
    security = ["--ssl-certfile", tls.certfile, "--ssl-keyfile", tls.keyfile, "--ssl-ca-certfile", tls.ca_certfile] if tls else ["--insecure"]
    return [_tool("flower-superlink"), *security, "--host", host, "--port", str(port), "--disable-runtime-dependency-installation"]


def flwr_config(host: str, port: int, tls: ServerTls | None) -> str:
    """The ``flwr`` CLI's config.toml for the command's own ``flwr run``/``flwr ls``: the
    SuperLink's address, verified with the CA certificate under TLS."""
    security = f"root-certificates = {json.dumps(str(Path(tls.ca_certfile).resolve()))}" if tls else "insecure = true"
    return f'[superlink]\ndefault = "veilnet"\n\n[superlink.veilnet]\naddress = "{host}:{port}"\n{security}\n'


def supernode_command(server: str, host: str, port: int, node_config: Path, root_certificates: str | None) -> list[str]:
    """A SuperNode's command line: it verifies the SuperLink's certificate with
    ``root_certificates`` (a CA certificate), else connects ``--insecure`` (unencrypted)."""
    security = ["--root-certificates", root_certificates] if root_certificates else ["--insecure"]
    return [_tool("flower-supernode"), *security, "--superlink", server, "--host", host, "--port", str(port), "--node-config", str(node_config)]


def check_ports(host: str, ports: list[int]) -> None:
    """ConfigError when a port is given twice or cannot be bound on ``host`` (in use). The probe
    binds as a server does (SO_REUSEADDR): the closed connections of a run that just ended
    (TCP's TIME_WAIT) do not hold the port."""
    if len(set(ports)) != len(ports):
        raise ConfigError(f"ports must differ, got {', '.join(map(str, ports))}")
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _environment(home: Path | None = None) -> dict[str, str]:
    """This environment with :data:`QUIET`, the venv's scripts first on PATH (the SuperLink
    starts ``flower-superexec`` by name) and, when given, a private Flower home."""
    env = {**QUIET, **os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if home is not None:
        env["FLWR_HOME"] = str(home)
    return env


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _start(command: list[str], env: dict[str, str], verbose: bool) -> subprocess.Popen[Any]:
    """``command`` under a :mod:`~veilnet.federated.guard` tied to this process; its output
    shown only when ``verbose``."""
    log = None if verbose else subprocess.DEVNULL
    return subprocess.Popen(guard.command(command), env=env, stdout=log, stderr=log)


def _stop(process: subprocess.Popen[Any]) -> None:
    """Stop a guard this module started (it stops its command's whole tree), by PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(guard.GRACE + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) inside the block, so that its ``finally`` clauses stop
    the processes and remove the folders as on Ctrl-C (Python's default would end at once)."""

    def terminated(*_: Any) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _new_lines(path: Path, seen: int) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` after the first ``seen`` (none while it does not exist); a
    line still being written is left for the next look."""
    try:
        lines = path.read_text().split("\n")[seen:-1]
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines]


def run_server(
    config: FederatedConfig,
    out_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 9091,
    force: bool = False,
    baseline: bool = True,
    wait_seconds: float = 300.0,
    round_timeout: float = 600.0,
    tls: ServerTls | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> Any:
    """Start a SuperLink on ``host:port``, submit the veilnet app with ``config`` and wait for it.

    Waits up to ``wait_seconds`` for all ``config.clients`` clients (``veilnet fl client``) to
    connect, runs the rounds (a round goes on with ``config.needed`` clients when others fail;
    a client that has not answered within ``round_timeout`` seconds has failed),
    then writes the outputs of :func:`veilnet.federated.simulation.run`. With ``tls`` the
    SuperLink speaks HTTPS only; without, it is unencrypted and anyone who reaches the port can
    join as a client (:func:`superlink_command`). Raises
    :class:`FederationError` when the run fails.
    """
    from veilnet.federated.simulation import OUTPUTS
    from veilnet.federated.task import described
    from veilnet.paths import prepare_output, write_text
    from veilnet.progress import bar as progress_bar

    config = described(config)
    out = prepare_output(out_dir, force=force, exists=(*OUTPUTS, ROUNDS_LOG))
    out.mkdir(parents=True, exist_ok=True)
    (out / ROUNDS_LOG).unlink(missing_ok=True)
    private = Path(tempfile.mkdtemp(prefix="veilnet-fl-"))
    home, app, state = private / "flwr-home", private / "app", private / "state"
    with _sigterm_exits():
        try:
            for folder in (home, app, state):
                folder.mkdir()
            toml = lambda value: json.dumps(str(value))  # noqa: E731 - a TOML basic string is a JSON string
            write_text(
                app / "pyproject.toml",
                _APP_TOML.format(
                    config=toml(config.dumps()), state=toml(state), output=toml(out.resolve()), wait=float(wait_seconds), timeout=float(round_timeout)
                ),
            )
            write_text(home / "config.toml", flwr_config(host, port, tls))
            env = _environment(home)
            superlink = _start(superlink_command(host, port, tls), env, verbose)
            start = time.perf_counter()
            try:
                run_id = _submit(app, env)
                bar = progress_bar(desc=f"fl server: {config.rounds} rounds of {config.clients} clients", total=config.rounds, unit="round", enabled=progress)
                try:
                    status = _wait(run_id, env, out / ROUNDS_LOG, bar, superlink, state, progress)
                finally:
                    bar.close()
            finally:
                _stop(superlink)
            seconds = time.perf_counter() - start
            if not status.endswith("completed"):
                raise FederationError(f"the federation's run {run_id} ended {status}; run with --verbose to see Flower's logs")
            federation = _load_state(config, state)
        finally:
            shutil.rmtree(private, ignore_errors=True)
    return finish(config, federation, out, mode="deployment", seconds=seconds, baseline=baseline, progress=progress)


def _flwr(args: list[str], env: dict[str, str], timeout: float = 60.0) -> Any:
    done = subprocess.run([_tool("flwr"), *args, "--format", "json"], env=env, capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise FederationError(
            f"flwr {args[0]} answered no JSON (exit {done.returncode}): {(done.stderr or done.stdout).strip().splitlines()[-1:] or ''}"
        ) from None


def _submit(app: Path, env: dict[str, str]) -> str:
    """Submit the app (retrying while the SuperLink starts); the run's id."""
    deadline = time.monotonic() + 60
    while True:
        answer = _flwr(["run", str(app), "veilnet"], env)
        if answer.get("success") and answer.get("run-id"):
            return str(answer["run-id"])
        if time.monotonic() > deadline:
            raise FederationError(f"the SuperLink did not accept the run: {answer.get('error-message', answer)}")
        time.sleep(1.0)


#: Seconds between two ``flwr ls`` while the server app has not yet written its final state: each
#: call is a fresh ``flwr`` process (about 1.5 s of CPU), which the clients would otherwise share
#: their cores with; a failed run is noticed within this time.
LS_INTERVAL = 10.0


def _wait(run_id: str, env: dict[str, str], rounds_log: Path, bar: Any, superlink: subprocess.Popen[Any], state: Path, progress: bool) -> str:
    """Wait until the run has finished; say how many clients have connected (with
    ``progress``), move the bar as rounds are logged. The run's status comes from ``flwr ls``,
    asked every :data:`LS_INTERVAL` seconds, and at every look (twice a second) once the server
    app has written its final ``state`` (its last act) or an error; a failed run raises
    FederationError with the server app's reason when it gave one."""
    asked, seen, error = -math.inf, 0, None
    while True:
        if superlink.poll() is not None:
            raise FederationError(f"the SuperLink exited ({superlink.returncode}) before the run finished")
        events = _new_lines(state / EVENTS, seen)
        seen += len(events)
        for event in events:
            error = event.get("error", error)
            if progress and "connected" in event:
                bar.write(f"waiting for clients: {event['connected']}/{event['clients']} connected")
            elif progress and "refused" in event:
                bar.write(f"a client was refused: {event['refused']}")
            sys.stdout.flush()
        if rounds_log.exists():
            done = sum(1 for line in rounds_log.read_text().splitlines() if line.strip())
            bar.update(done - bar.n)
        if error is not None or (state / STATE).exists() or time.monotonic() - asked >= LS_INTERVAL:
            asked = time.monotonic()
            runs = _flwr(["ls", "--run-id", run_id], env).get("runs", [])
            status = str(runs[0].get("status", "")) if runs else ""
            if status.startswith("finished"):
                if error is not None and not status.endswith("completed"):
                    raise FederationError(error)
                return status
        time.sleep(0.5)


def _load_state(config: FederatedConfig, state: Path) -> Any:
    """What the server app measured, as the object :func:`finish` takes."""
    from safetensors.torch import load_file

    from veilnet.federated.task import KeyedReport

    try:
        doc = json.loads((state / STATE).read_text())
        weights = load_file(str(state / WEIGHTS))
    except (OSError, ValueError) as exc:
        raise FederationError(f"the server app left no result ({type(exc).__name__})") from None
    return SimpleNamespace(
        rounds=doc["rounds"],
        keyed=[KeyedReport.from_dict(k) for k in doc["keyed"]],
        cross_key=doc["cross_key"],
        initial_accuracy=doc["initial_accuracy"],
        weights=weights,
    )


#: Seconds a refused client's SuperNode is left running so that it sends the server its answer
#: (the reason) before it leaves: the app tells the events file first, then answers; the
#: SuperNode looks for the answer every 0.5 s and sends it at once (Flower 1.41's
#: ``start_client_internal``).
REFUSAL_GRACE = 3.0


def run_client(
    *,
    server: str,
    partition: int | None = None,
    data: str | None = None,
    host: str = "127.0.0.1",
    port: int = 9094,
    root_certificates: str | None = None,
    verbose: bool = False,
) -> int:
    """Run a SuperNode connected to ``server`` (HOST:PORT) that holds ``partition`` of the
    server's data set or the data set ``data`` of its own (one of the two), until it is stopped
    (Ctrl-C or SIGTERM), over TLS verified with the CA certificate ``root_certificates``
    when given (else unencrypted), printing what it does: connecting, connected, each round's loss and
    accuracy, the keyed step. Its exit status; ConfigError when the server's model does not
    take its images (the client then leaves)."""
    from veilnet.federated.client_app import DATA, EVENTS
    from veilnet.federated.messages import HELLO
    from veilnet.paths import write_text

    if (partition is None) == (data is None):
        raise ConfigError("a client holds either a partition of the server's data (--partition) or its own data (--data), not both")
    private = Path(tempfile.mkdtemp(prefix="veilnet-fl-client-"))
    events = private / "events.jsonl"
    source = {"partition-id": int(partition)} if partition is not None else {DATA: json.dumps(data)}
    node_config = write_text(private / "node.toml", "".join(f"{k} = {v}\n" for k, v in {**source, EVENTS: json.dumps(str(events))}.items()))
    command = supernode_command(server, host, port, node_config, root_certificates)
    print(f"connecting to {server}…", flush=True)
    with _sigterm_exits():
        node = _start(command, _environment(), verbose)
        try:
            seen = 0
            while node.poll() is None:
                lines = _new_lines(events, seen)
                seen += len(lines)
                for event in lines:
                    if event["event"] == "refused" and event["message"] == HELLO:  # its images do not fit the server's model
                        time.sleep(REFUSAL_GRACE)
                        raise ConfigError(event["reason"])
                    _say(event, server)
                time.sleep(0.5)
            return node.returncode
        except KeyboardInterrupt:
            return 130
        finally:
            _stop(node)
            shutil.rmtree(private, ignore_errors=True)


def _say(event: dict[str, Any], server: str) -> None:
    """Print one event of the client's app."""
    kind = event["event"]
    if kind == "refused":
        line = f"refused the server's {event['message']} message: {event['reason']}"
    elif kind == "connected":
        line = f"connected to {server}; waiting for round 1 ({event['train']} training and {event['test']} test images here)"
    elif kind == "train":
        line = f"round {event['round']}: trained on {event['images']} images, loss {event['loss']:.4f}"
    elif kind == "evaluate":
        line = f"round {event['round']}: accuracy {event['accuracy']:.4f} on {event['images']} test images"
    else:
        line = (
            f"keyed step: accuracy {event['keyed']:.4f} with this client's key on its {event['images']} encrypted test images "
            f"(plain model: {event['plain']:.4f}); the key stays here"
        )
    print(line, flush=True)
