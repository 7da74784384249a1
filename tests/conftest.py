"""Shared fixtures. Tests that read ../shared (real CIFAR-10 JPEGs, pretrained ResNets) skip with
a reason when it is absent, except when CI=true, where its absence fails them.

Compiling is off in tests (``VEILNET_COMPILE=0``, unless set otherwise in the environment):
``veilnet.models.prepare()`` runs every model eagerly, because inductor's warm-up (seconds to a
minute per model, mode and batch size) would hit every test. tests/test_prepare.py turns it on
for its own tests; their compiled artefacts are kept between test runs in the system's temporary
folder (``veilnet-tests-inductor``) so that only the first run pays the cold compile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("VEILNET_COMPILE", "0")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / "veilnet-tests-inductor"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VEILNET_SHARED", REPO.parent / "shared"))


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing (CI=true requires ../shared; set VEILNET_SHARED)")
        pytest.skip(f"{path} not present (set VEILNET_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def cifar_jpeg_zip() -> Path:
    """../shared/data/cifar10-jpeg.zip: CIFAR-10 as JPEGs in split/class/image layout."""
    return _require(SHARED / "data" / "cifar10-jpeg.zip")


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """../shared/models: pretrained CIFAR ResNets (akamaster/pytorch_resnet_cifar10)."""
    return _require(SHARED / "models")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from writing into the user's cache, but share one cache across the session
    so the decoded CIFAR-10 is decoded once per test run (under pytest-xdist, once for all the
    workers: their temporary folders share a parent; the cache's writes are atomic)."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("XDG_CACHE_HOME", str((base.parent if WORKER else base) / "cache"))


#: The pytest-xdist worker this process is (``gw0``, ``gw1``, …), or "" in a single process.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


@pytest.fixture(autouse=True)
def _threads() -> None:
    """Two torch threads on the 2-core machine; one per worker when pytest-xdist runs two workers
    (more threads than cores makes torch's thread pools spin against each other)."""
    torch.set_num_threads(1 if WORKER else 2)
