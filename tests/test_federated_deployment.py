"""``veilnet fl server`` and ``veilnet fl client`` as separate processes on 127.0.0.1.

A SuperLink with the veilnet server app and three SuperNodes, each a ``veilnet fl client``
process; every client message starts a fresh client-app process (about 2.5 s of imports in
Flower 1.41), so the runs are 1–2 rounds of a tiny ViT on 20 training and 10 test images per
class of the digits, without the baseline. The clients start once the SuperLink listens (a
SuperNode that finds no SuperLink retries with a growing pause, up to about 10 s). The two
tests' federations run at the same time, in one module fixture (selecting one test runs both).
In the first, client 0 holds a small image folder of its own (``--data``) instead of a
partition; the second first sees a client whose images do not fit the model refused.

Then (issue 28) ``fl client`` / ``fl server`` take their Flower processes down with them: each of
the last tests starts one command (a client with no server to connect to, or a server whose
clients never come), notes the processes under it once Flower's are up (the guard, the SuperNode
or SuperLink, its SuperExec and, on the server, the server app), ends the command and checks that
none of them is left (a zombie, which only waits to be reaped, counts as gone), that the port is
free and that the command's temporary folders are gone (after SIGKILL nothing can remove them).
They sit in this module, after the federations, so that Flower's start-ups never compete with the
federations' for the CPU (side by side in the suite a start took over a minute).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from test_federated import TINY_VIT, flower_environment, retrain_clients
from veilnet.federated.guard import descendants

pytest.importorskip("flwr")

MODEL = ["--model", "vit", *(a for k, v in TINY_VIT.items() for a in ("--arg", f"{k}={v}")), "--lr", "0.05", "--batch-size", "32"]
DATA = ["--subset", "20", "--test-subset", "10"]


def image_folder(root: Path, classes: int, per_split: dict[str, int]) -> Path:
    """A ``folder:`` data set of digits images (3×32×32): ``per_split[split]`` PNGs of each of
    the first ``classes`` classes, taken from the digits' test split."""
    from PIL import Image

    from veilnet import data

    digits = data.load("digits", "test")
    for c in range(classes):
        images = digits.images[digits.labels == c]
        start = 0
        for split, n in per_split.items():
            (root / split / str(c)).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(images[start + i].permute(1, 2, 0).numpy()).save(root / split / str(c) / f"{i}.png")
            start += n
    return root


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def veilnet(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "veilnet.cli", *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Federation:
    """A server for ``rounds`` rounds and, once its SuperLink listens, 3 clients (client i with
    ``images[i]``, default ``--partition i``), all started under ``root``; with ``misfit``
    (a client's options), that client first, and the 3 once it has exited. :meth:`watch`
    (called while it runs) SIGTERMs client 2 once round ``kill_after_round`` is logged."""

    def __init__(
        self,
        root: Path,
        extra: list[str],
        *,
        rounds: int = 2,
        kill_after_round: int | None = None,
        images: dict[int, list[str]] | None = None,
        misfit: list[str] | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Flower's SuperExec looks for a client app to start every second by default
        self.env = {**os.environ, **flower_environment(root / "flwr-home"), "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"}
        self.root, self.out, self.kill_after_round, self.killed = root, root / "out", kill_after_round, False
        self.port, self.misfit_port, *self.client_ports = free_ports(5)
        self.images = [(images or {}).get(i, ["--partition", str(i)]) for i in range(3)]
        self.misfit_options, self.misfit = misfit, None
        self.clients: list[subprocess.Popen[bytes]] = []
        server = ["fl", "server", *MODEL, *DATA, "--clients", "3", "--rounds", str(rounds), "--no-baseline", "--port", str(self.port), "--wait", "120"]
        self.server = veilnet([*server, *extra, "-o", str(self.out)], self.env, root / "server.log")

    def log(self, name: str = "server") -> str:
        return (self.root / f"{name}.log").read_text()[-3000:]

    def client(self, name: str, images: list[str], port: int) -> subprocess.Popen[bytes]:
        return veilnet(["fl", "client", *images, "--server", f"127.0.0.1:{self.port}", "--port", str(port)], self.env, self.root / f"{name}.log")

    def watch(self) -> bool:
        """Start the clients once the SuperLink listens, stop client 2 when it is time; whether
        the server still runs."""
        if not self.clients and self.server.poll() is None and listening(self.port):
            if self.misfit_options is not None and self.misfit is None:
                self.misfit = self.client("misfit", self.misfit_options, self.misfit_port)
            if self.misfit is None or self.misfit.poll() is not None:
                self.clients = [self.client(f"client{i}", images, port) for i, (images, port) in enumerate(zip(self.images, self.client_ports, strict=True))]
        rounds = self.out / "rounds.jsonl"
        if self.kill_after_round is not None and not self.killed and rounds.exists() and len(rounds.read_text().splitlines()) >= self.kill_after_round:
            stop([self.clients[2]])
            self.killed = True
        return self.server.poll() is None

    def stop(self) -> None:
        stop([self.server, *self.clients, *([self.misfit] if self.misfit else [])])

    def result(self) -> dict:
        """The saved federated.json of a run that ended well (and killed its client when asked)."""
        assert self.server.returncode == 0, self.log()
        assert self.kill_after_round is None or self.killed
        return json.loads((self.out / "federated.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Federation]:
    """Both tests' federations, run at the same time: each spends much of its time in Flower's
    polling (SuperNodes, SuperExecs and the server app look for work every 1–3 s) and starting
    client-app processes, so together they take little longer than one alone (each about 1–2
    minutes on 2 busy cores)."""
    root = tmp_path_factory.mktemp("deployment")
    own = image_folder(root / "own", 10, {"train": 5, "test": 3})
    two_classes = image_folder(root / "two", 2, {"train": 2, "test": 2})
    started = {
        "killed": Federation(root / "killed", ["--min-clients", "2", "--round-timeout", "120"], kill_after_round=1, images={0: ["--data", f"folder:{own}"]}),
        "secagg": Federation(root / "secagg", ["--secagg"], rounds=1, misfit=["--data", f"folder:{two_classes}"]),
    }
    try:
        deadline = time.monotonic() + 500
        while any([run.watch() for run in started.values()]):
            assert time.monotonic() < deadline, "the federations did not finish in time: " + " ".join(f"{n}: {r.log()}" for n, r in started.items())
            time.sleep(0.2)
    finally:
        for run in started.values():
            run.stop()
    return started


def test_server_and_three_clients_run_two_rounds_and_finish_when_one_is_killed(runs: dict[str, Federation]) -> None:
    """Round 1 with all three clients; client 2 is stopped once round 1 is logged; round 2 and
    the keyed step finish with the other two (--min-clients 2) and the result is saved. One run
    covers both the normal start and the failure (a run without the kill passed too when this
    was written). The summary counts the clients that took part in each round."""
    run = runs["killed"]
    result = run.result()
    assert result["mode"] == "deployment"
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    assert [r["clients"] for r in result["rounds"]] == [3, 2]
    assert all(k["keyed_accuracy"] == k["plain_accuracy"] and k["max_relative_logit_difference"] <= 1e-4 for k in result["keyed"])
    assert sorted(k["partition"] for k in result["keyed"]) == [0, 1]
    assert (run.out / "model.safetensors").is_file() and (run.out / "report.md").is_file()
    server = run.log()
    assert "waiting for clients: 0/3 connected" in server and "waiting for clients: 3/3 connected" in server
    assert "after 2 rounds with 3, 2 of 3 clients taking part" in server


def test_a_client_with_its_own_images_trains_and_reports_on_them(runs: dict[str, Federation]) -> None:
    """Client 0 (``--data folder:…``, 5 training and 3 test images per class) gets index 0,
    the one no partition holds; it trains on its 50 images, evaluates and keys on its 30, and
    says so as it goes."""
    run = runs["killed"]
    result = run.result()
    assert result["config"]["input_shape"] == [3, 32, 32] and result["config"]["num_classes"] == 10
    assert [sorted(r["client_train_loss"], key=int) for r in result["rounds"]] == [["0", "1", "2"], ["0", "1"]]
    assert next(k for k in result["keyed"] if k["partition"] == 0)["n_images"] == 30
    address = f"127.0.0.1:{run.port}"
    log = [line.strip() for line in run.log("client0").replace("\r", "\n").splitlines() if line.strip()]
    log = log[log.index(f"connecting to {address}…") :]  # after the bars of decoding its images
    assert log[:2] == [f"connecting to {address}…", f"connected to {address}; waiting for round 1 (50 training and 30 test images here)"]
    for r in (1, 2):
        assert any(line.startswith(f"round {r}: trained on 50 images, loss ") for line in log), log
        assert any(line.startswith(f"round {r}: accuracy ") and line.endswith(" on 30 test images") for line in log), log
    assert any(line.startswith("keyed step: accuracy ") and "its 30 encrypted test images" in line for line in log), log


def test_secagg_deployment_sums_the_updates_of_three_supernodes(runs: dict[str, Federation]) -> None:
    """``fl server --secagg`` runs the round through SecAgg+'s workflow and the clients answer
    through its mod: the saved model is FedAvg's of the three clients' local models (retrained
    here from the same seeds), within SecAgg+'s quantisation error and the float noise of
    training in another process (test_federated_secagg checks the quantisation bound itself)."""
    from veilnet import models
    from veilnet.federated.results import FederatedResult

    result = runs["secagg"].result()
    tmp_path = runs["secagg"].root
    assert result["config"]["secagg"] is True
    assert [r["clients"] for r in result["rounds"]] == [3]
    assert "SecAgg+" in (tmp_path / "out" / "report.md").read_text()
    assert all(k["keyed_accuracy"] == k["plain_accuracy"] for k in result["keyed"])
    assert sorted(k["partition"] for k in result["keyed"]) == [0, 1, 2]
    config = FederatedResult.load(tmp_path / "out" / "federated.json").config
    initial, local, sizes = retrain_clients(config)
    saved = models.load(tmp_path / "out" / "model").state_dict()
    moved = 0.0
    for name, value in saved.items():
        expected = sum(n / sum(sizes) * w[name].double() for n, w in zip(sizes, local, strict=True))
        torch.testing.assert_close(value.double(), expected, rtol=1e-4, atol=1e-5, msg=name)
        moved = max(moved, float((expected - initial[name].double()).abs().max()))
    assert moved > 1e-2  # the round changed the model by far more than the tolerance


def test_a_client_whose_images_do_not_fit_the_model_is_refused_in_one_line(runs: dict[str, Federation]) -> None:
    """A client with 2 classes where the server's model has 10 (started before the others) is
    refused before any round: it exits 2 with one error line that gives both, the server says a
    client was refused, and the federation runs with the other three."""
    run = runs["secagg"]
    run.result()
    assert run.misfit is not None and run.misfit.returncode == 2
    log = run.log("misfit")
    assert "Traceback" not in log
    spec = (run.misfit_options or [])[1]
    expected = f"veilnet: error: this client's data {spec} (3×32×32 images, 2 classes) does not fit the server's model vit (3×32×32 images, 10 classes)"
    assert log.strip().splitlines()[-1] == expected
    assert f"a client was refused: {expected.removeprefix('veilnet: error: ')}" in run.log()


def start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    """``veilnet ARGS`` with its temporary folders under ``tmp_path/tmp``, output to files."""
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, **flower_environment(tmp_path / "flwr-home"), "TMPDIR": str(tmp_path / "tmp")}
    return subprocess.Popen(
        [sys.executable, "-m", "veilnet.cli", *args], env=env, stdout=(tmp_path / "out.log").open("w"), stderr=(tmp_path / "err.log").open("w"), text=True
    )


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds for up to ``seconds`` (generous: Flower starts in seconds
    alone, but a start under a loaded machine took over a minute)."""
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
