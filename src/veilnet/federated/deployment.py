"""``veilnet fl server`` / ``veilnet fl client``: the federation as separate processes.

The server is a Flower SuperLink (``flower-superlink``; in Flower 1.41 its Fleet, Control and
runtime APIs share one HTTP port) to which the veilnet app is submitted with ``flwr run``; the
SuperLink starts the server app (:func:`veilnet.federated.server_app.main`) in its own process.
Each client is a SuperNode (``flower-supernode``) whose node config names its partition; it
starts :data:`veilnet.federated.client_app.app` for every message. Nothing is installed at run
time (``--disable-runtime-dependency-installation``): every process uses this environment.

The server app writes each round to ``rounds.jsonl`` in the output folder as it finishes (the
command's progress bar reads it) and its final state to a private folder; the command then
checks the run's status with ``flwr ls``, trains the baseline and writes the same outputs as
``veilnet fl run``. Every process the command started is stopped by its PID when it ends.
"""

from __future__ import annotations

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
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from veilnet.errors import ConfigError
from veilnet.federated.server_app import ROUNDS_LOG, STATE, WEIGHTS
from veilnet.federated.simulation import QUIET, FederationError, finish
from veilnet.federated.task import FederatedConfig

__all__ = ["ROUNDS_LOG", "check_ports", "run_client", "run_server"]

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


def check_ports(host: str, ports: list[int]) -> None:
    """ConfigError when a port is given twice or cannot be bound on ``host`` (in use)."""
    if len(set(ports)) != len(ports):
        raise ConfigError(f"ports must differ, got {', '.join(map(str, ports))}")
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
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


def _stop(process: subprocess.Popen[Any]) -> None:
    """Stop a process this module started, and its process group, by PID."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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
    progress: bool = True,
    verbose: bool = False,
) -> Any:
    """Start a SuperLink on ``host:port``, submit the veilnet app with ``config`` and wait for it.

    Waits up to ``wait_seconds`` for all ``config.clients`` clients (``veilnet fl client``) to
    connect, runs the rounds (a round goes on with ``config.needed`` clients when others fail;
    a client that has not answered within ``round_timeout`` seconds has failed),
    then writes the outputs of :func:`veilnet.federated.simulation.run`. Raises
    :class:`FederationError` when the run fails.
    """
    from tqdm.auto import tqdm

    from veilnet.federated.simulation import OUTPUTS
    from veilnet.paths import prepare_output, write_text

    out = prepare_output(out_dir, force=force, exists=(*OUTPUTS, ROUNDS_LOG))
    out.mkdir(parents=True, exist_ok=True)
    (out / ROUNDS_LOG).unlink(missing_ok=True)
    private = Path(tempfile.mkdtemp(prefix="veilnet-fl-"))
    home, app, state = private / "flwr-home", private / "app", private / "state"
    for folder in (home, app, state):
        folder.mkdir()
    toml = lambda value: json.dumps(str(value))  # noqa: E731 - a TOML basic string is a JSON string
    write_text(
        app / "pyproject.toml",
        _APP_TOML.format(config=toml(config.dumps()), state=toml(state), output=toml(out.resolve()), wait=float(wait_seconds), timeout=float(round_timeout)),
    )
    write_text(home / "config.toml", f'[superlink]\ndefault = "veilnet"\n\n[superlink.veilnet]\naddress = "{host}:{port}"\ninsecure = true\n')
    env = _environment(home)
    log = None if verbose else subprocess.DEVNULL
    superlink = subprocess.Popen(
        [_tool("flower-superlink"), "--insecure", "--host", host, "--port", str(port), "--disable-runtime-dependency-installation"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    start = time.perf_counter()
    try:
        run_id = _submit(app, env)
        bar = tqdm(total=config.rounds, desc="federated rounds", unit="round", disable=not progress)
        try:
            status = _wait(run_id, env, out / ROUNDS_LOG, bar, superlink, state / STATE)
        finally:
            bar.close()
        if not status.endswith("completed"):
            raise FederationError(f"the federation's run {run_id} ended {status}; run with --verbose to see Flower's logs")
    finally:
        _stop(superlink)
    seconds = time.perf_counter() - start
    federation = _load_state(config, state)
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


def _wait(run_id: str, env: dict[str, str], rounds_log: Path, bar: Any, superlink: subprocess.Popen[Any], state: Path | None = None) -> str:
    """Wait until the run has finished; move the bar as rounds are logged. The run's status comes
    from ``flwr ls``, asked every :data:`LS_INTERVAL` seconds, and at every look (twice a second)
    once the server app has written ``state``, its last act (without ``state``: at every look)."""
    asked = -math.inf
    while True:
        if superlink.poll() is not None:
            raise FederationError(f"the SuperLink exited ({superlink.returncode}) before the run finished")
        if rounds_log.exists():
            done = sum(1 for line in rounds_log.read_text().splitlines() if line.strip())
            bar.update(done - bar.n)
        if state is None or state.exists() or time.monotonic() - asked >= LS_INTERVAL:
            asked = time.monotonic()
            runs = _flwr(["ls", "--run-id", run_id], env).get("runs", [])
            status = str(runs[0].get("status", "")) if runs else ""
            if status.startswith("finished"):
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


def run_client(*, partition: int, server: str, host: str = "127.0.0.1", port: int = 9094, verbose: bool = False) -> int:
    """Run a SuperNode for ``partition`` connected to ``server`` (HOST:PORT) until it is stopped
    (Ctrl-C or SIGTERM); its exit status."""
    log = None if verbose else subprocess.DEVNULL
    command = [
        _tool("flower-supernode"),
        "--insecure",
        "--superlink",
        server,
        "--host",
        host,
        "--port",
        str(port),
        "--node-config",
        f"partition-id={int(partition)}",
    ]
    node = subprocess.Popen(command, env=_environment(), stdout=log, stderr=log, start_new_session=True)

    def terminated(*_: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminated)
    try:
        return node.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(node)
