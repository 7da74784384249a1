"""Issue 23: no lockout from many addresses. 199 loopback addresses each hold 2 (then 6)
connections that sit silent or send half a request line and reopen each one as soon as the
server cuts it (:mod:`veilnet.serve.flood`, in a process of its own), against a real ``veilnet
serve``; a client with a token on 127.0.0.1 must get ≥ 90% of its requests answered within 2 s
(before the fix: 0 of 179), while the server's descriptors and memory stay bounded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from serving import serving
from veilnet import models
from veilnet.keyed import generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve.flood import attacking, probe

TOKEN = "lockout-token-0123456789abcdef"
MAX_CONNECTIONS = 128  # the default


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-lockout")
    torch.manual_seed(0)
    plain = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4, num_classes=10).eval()
    key = generate_key("block", 4, 3, 32)
    models.save(transform_model(plain, key), root / "served", extra={"keyed": public_params(key)})
    return root / "served"


def _status(pid: int, field: str) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field + ":"))


def test_many_addresses_reopening_silent_and_half_sent_connections_do_not_lock_out_a_client(served: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 3, 32, 32), np.float32), allow_pickle=False)
    with serving([str(served), "--no-compile", "--log-level", "warning"], env={"VEILNET_TOKENS": TOKEN}) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        fds_before, rss_before = len(list(Path(f"/proc/{proc.pid}/fd").iterdir())), _status(proc.pid, "VmHWM")
        for per_address in (2, 6):
            with attacking(port, addresses=199, per_address=per_address, seconds=30):
                answered = probe(url, TOKEN, buf.getvalue(), seconds=8, timeout=2.0)
                fds = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
            share = sum(t is not None for t in answered) / len(answered)
            assert share >= 0.9, f"199×{per_address}: {share:.0%} of {len(answered)} requests answered within 2 s"
            assert fds <= fds_before + MAX_CONNECTIONS + 8, (fds_before, fds)  # the table, and a few closing
        assert _status(proc.pid, "VmHWM") - rss_before < 64 * 1024  # KiB
