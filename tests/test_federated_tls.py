"""TLS for ``veilnet fl server`` / ``fl client``: the options reach Flower's SuperLink, SuperNode
and ``flwr`` CLI, and on loopback a SuperLink started so speaks HTTPS only.

The loopback check (about 15 s: one SuperLink, two SuperNodes, no run) makes a throw-away CA and
a server certificate for 127.0.0.1 with the ``cryptography`` package (Flower depends on it).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest

from test_federated_deployment import free_ports
from veilnet.federated import deployment
from veilnet.federated.deployment import ServerTls

pytest.importorskip("flwr")


def test_tls_options_reach_the_superlink_the_supernode_and_flwr(tmp_path: Path) -> None:
    tls = ServerTls("s.pem", "s.key", str(tmp_path / "ca.pem"))
    secure = deployment.superlink_command("127.0.0.1", 9091, tls)
    assert "--insecure" not in secure
    assert [secure[secure.index(o) + 1] for o in ("--ssl-certfile", "--ssl-keyfile", "--ssl-ca-certfile")] == ["s.pem", "s.key", tls.ca_certfile]
    assert "--insecure" in deployment.superlink_command("127.0.0.1", 9091, None)
    node = deployment.supernode_command("127.0.0.1:9091", "127.0.0.1", 9094, tmp_path / "n.toml", "ca.pem")
    assert "--insecure" not in node and node[node.index("--root-certificates") + 1] == "ca.pem"
    assert "--insecure" in deployment.supernode_command("127.0.0.1:9091", "127.0.0.1", 9094, tmp_path / "n.toml", None)
    assert f"root-certificates = {json.dumps(tls.ca_certfile)}" in deployment.flwr_config("127.0.0.1", 9091, tls)
    assert "insecure = true" in deployment.flwr_config("127.0.0.1", 9091, None)


def make_certificates(folder: Path) -> ServerTls:
    """A CA, and a server certificate for 127.0.0.1 it signed (valid for a day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731

    def certificate(subject: str, key: object, issuer: x509.Name, signer: object, extension: object, critical: bool) -> x509.Certificate:
        builder = x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(key.public_key())  # type: ignore[attr-defined]
        builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        return builder.add_extension(extension, critical=critical).sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("veilnet test CA", ca_key, name("veilnet test CA"), ca_key, x509.BasicConstraints(ca=True, path_length=None), True)
    server = certificate("127.0.0.1", key, ca.subject, ca_key, x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ServerTls(str(folder / "server.pem"), str(folder / "server.key"), str(folder / "ca.pem"))


def test_on_loopback_the_superlink_speaks_tls_only(tmp_path: Path) -> None:
    """``flwr`` with the CA certificate reaches the SuperLink, without TLS it does not; a
    SuperNode with ``--root-certificates`` joins, one connecting unencrypted does not."""
    pytest.importorskip("cryptography")
    tls = make_certificates(tmp_path)
    port, node_port, plain_port = free_ports(3)
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = deployment._environment(home)
    node_config = tmp_path / "node.toml"
    node_config.write_text("partition-id = 0\n")

    def flwr(*args: str) -> dict:
        done = subprocess.run([deployment._tool("flwr"), *args, "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout)

    superlink = deployment._start(deployment.superlink_command("127.0.0.1", port, tls), env, False)
    nodes = [
        deployment._start(deployment.supernode_command(f"127.0.0.1:{port}", "127.0.0.1", p, node_config, ca), deployment._environment(), False)
        for p, ca in ((node_port, tls.ca_certfile), (plain_port, None))
    ]
    try:
        (home / "config.toml").write_text(deployment.flwr_config("127.0.0.1", port, tls))
        deadline, joined = time.monotonic() + 60, []
        while time.monotonic() < deadline and not joined:
            time.sleep(1)
            answer = flwr("supernode", "ls")
            joined = [n for n in answer.get("nodes", []) if n["status"] == "online"] if answer.get("success") else []
        time.sleep(3)  # the unencrypted SuperNode has had its tries
        assert len([n for n in flwr("supernode", "ls")["nodes"] if n["status"] == "online"]) == 1
        (home / "config.toml").write_text(deployment.flwr_config("127.0.0.1", port, None))
        assert flwr("ls")["success"] is False
    finally:
        for process in (*nodes, superlink):
            deployment._stop(process)
