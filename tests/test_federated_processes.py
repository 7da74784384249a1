"""``veilnet fl client`` / ``fl server`` take their Flower processes down with them (issue 28).

Each test starts one command (a client with no server to connect to, or a server whose clients
never come), notes the processes under it once Flower's are up (the guard, the SuperNode or
SuperLink, its SuperExec and, on the server, the server app), ends the command and checks that
none of them is left (a zombie, which only waits to be reaped, counts as gone), that the port is
free and that the command's temporary folders are gone (after SIGKILL nothing can remove them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from test_federated import TINY_VIT, flower_environment
from test_federated_deployment import free_ports
from veilnet.federated.guard import descendants

pytest.importorskip("flwr")


def start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    """``veilnet ARGS`` with its temporary folders under ``tmp_path/tmp``, output to files."""
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, **flower_environment(tmp_path / "flwr-home"), "TMPDIR": str(tmp_path / "tmp")}
    return subprocess.Popen(
        [sys.executable, "-m", "veilnet.cli", *args], env=env, stdout=(tmp_path / "out.log").open("w"), stderr=(tmp_path / "err.log").open("w"), text=True
    )


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; the limits are generous (3 min for Flower to start): under
    the suite's load beside the deployment tests a start took over a minute, alone a few seconds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.2)


def commands(pids: list[int]) -> list[str]:
    """The command lines of the processes among ``pids`` that still run (not zombies)."""
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            if state not in "ZX":
                living.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            pass
    return living


def free(port: int) -> bool:
    """Whether a server could listen on ``port`` (binding as servers do, SO_REUSEADDR: the
    closed connections' TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tree_when(command: subprocess.Popen[str], *names: str) -> list[int]:
    """The processes under ``command`` once one of each of ``names`` runs among them."""
    wait_for(lambda: all(any(n in c for c in commands(descendants(command.pid))) for n in names), 180, " and ".join(names))
    return descendants(command.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process tree is read from /proc")
def test_a_killed_client_takes_its_supernode_and_superexec_along(tmp_path: Path) -> None:
    """SIGKILL of ``fl client``: nothing of it can run, yet its SuperNode and the SuperExec the
    SuperNode started stop and the client's port is free."""
    server_port, port = free_ports(2)
    client = start(["fl", "client", "--data", "digits", "--server", f"127.0.0.1:{server_port}", "--port", str(port)], tmp_path)
    tree = tree_when(client, "flower-supernode", "flower-superexec")
    client.kill()
    client.wait()
    wait_for(lambda: not commands(tree), 20, "end of " + "; ".join(commands(tree)))
    assert free(port)
    assert (tmp_path / "out.log").read_text().startswith(f"connecting to 127.0.0.1:{server_port}…")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process tree is read from /proc")
def test_a_terminated_server_stops_its_superlink_superexec_and_server_app(tmp_path: Path) -> None:
    """SIGTERM of ``fl server`` waiting for its clients cleans up as Ctrl-C does: the SuperLink,
    its SuperExec and the server app stop, the port is free, the temporary folder is gone."""
    (port,) = free_ports(1)
    model = ["--model", "vit", *(a for k, v in TINY_VIT.items() for a in ("--arg", f"{k}={v}"))]
    server = start(["fl", "server", *model, "--clients", "2", "--rounds", "1", "--port", str(port), "--no-baseline", "-o", str(tmp_path / "out")], tmp_path)
    wait_for(lambda: "waiting for clients: 0/2 connected" in (tmp_path / "out.log").read_text(), 180, "waiting line")
    tree = tree_when(server, "flower-superlink", "flower-superexec", "flwr-serverapp")
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 128 + signal.SIGTERM
    wait_for(lambda: not commands(tree), 20, "end of " + "; ".join(commands(tree)))
    assert free(port)
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process tree is read from /proc")
def test_a_server_whose_clients_do_not_come_fails_in_one_line_and_cleans_up(tmp_path: Path) -> None:
    """``--wait 2`` and no client: one error line that says so, exit 2, no process or temporary
    folder left."""
    (port,) = free_ports(1)
    model = ["--model", "vit", *(a for k, v in TINY_VIT.items() for a in ("--arg", f"{k}={v}"))]
    args = ["fl", "server", *model, "--clients", "2", "--rounds", "1", "--port", str(port), "--wait", "2", "--no-baseline", "-o", str(tmp_path / "out")]
    server = start(args, tmp_path)
    assert server.wait(180) == 2
    err = (tmp_path / "err.log").read_text()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "veilnet: error: only 0 of 2 clients connected within 2 s"
    assert list((tmp_path / "tmp").iterdir()) == []
    assert free(port)
