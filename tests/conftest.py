"""Shared fixtures. Tests that read the real CIFAR-10 JPEGs (``cifar10-jpeg.zip`` in
``$VEILNET_DATA``, by default ``shared/data`` beside the checkout) or the pretrained ResNets
(``models/`` beside that folder) skip with a reason when they are absent, except when CI=true,
where their absence fails them.

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
#: The data sets, as veilnet reads them (benchmarks/_common.py reads the same): ``$VEILNET_DATA``,
#: else ``shared/data`` beside the checkout.
DATA = Path(os.environ.get("VEILNET_TESTS_DATA") or os.environ.get("VEILNET_DATA") or REPO.parent / "shared" / "data").expanduser().resolve()
# The tests reach the shared data through the fixtures below (absolute paths); veilnet itself runs
# as on a machine without VEILNET_DATA (relative data paths under the working folder), unless a
# test sets it: a VEILNET_DATA in the environment (.ci/run sets one outside the development
# checkout) would otherwise turn the "missing data" rows of the CLI error table into hits. The
# pytest-xdist workers inherit this environment: VEILNET_TESTS_DATA carries the folder to them.
os.environ["VEILNET_TESTS_DATA"] = str(DATA)
os.environ.pop("VEILNET_DATA", None)
#: Where to look for the data and checkpoints, for the message of a test that misses them.
WHERE = "set VEILNET_DATA to the folder holding cifar10-jpeg.zip, with the checkpoints in models/ beside it"


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing (CI=true requires it; {WHERE})")
        pytest.skip(f"{path} not present ({WHERE})")
    return path


@pytest.fixture(scope="session")
def cifar_jpeg_zip() -> Path:
    """``$VEILNET_DATA/cifar10-jpeg.zip``: CIFAR-10 as JPEGs in split/class/image layout."""
    return _require(DATA / "cifar10-jpeg.zip")


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """``models/`` beside ``$VEILNET_DATA``: pretrained CIFAR ResNets (akamaster/pytorch_resnet_cifar10)."""
    return _require(DATA.parent / "models")


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
