"""veilnet.models.prepare: compiled execution equal to eager, one compile per mode whatever the
batch sizes, and eager with one log line when compiling is off, impossible or fails.

These are the only tests that compile (tests/conftest.py sets VEILNET_COMPILE=0 for the rest).
The inductor test costs about a minute on a cold inductor cache and ~15 s warm on the 2-core
machine; the others use dynamo's light backends."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from test_robust import TinyNet
from veilnet.models import Prepared, prepare
from veilnet.models import prepared as prepared_module
from veilnet.robust import attacks


@pytest.fixture()
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture()
def compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILNET_COMPILE", "1")


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.message) for r in caplog.records if r.name == "veilnet.models.prepared"]


class CountingBackend:
    """A torch.compile backend that runs the traced graph as it is and counts the compiles."""

    def __init__(self) -> None:
        self.compiles = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        self.compiles += 1
        return gm.forward


@pytest.mark.usefixtures("compiling")
def test_inductor_logits_and_attack_success_equal_eager(net: TinyNet, caplog: pytest.LogCaptureFixture) -> None:
    x = torch.rand(13, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 5, (13,), generator=torch.Generator().manual_seed(2))
    fast = prepare(net, chunk=5)
    with torch.no_grad(), caplog.at_level(logging.INFO, logger="veilnet.models.prepared"):
        expected = net(x)
        for n in (5, 13, 2):  # one chunk; two chunks and a padded one; a padded one
            torch.testing.assert_close(fast(x[:n]), expected[:n], rtol=1e-5, atol=1e-6)
    assert fast.compiled and messages(caplog) == [("INFO", fast.status)] and "compiled" in fast.status  # once, at the first call
    eager_adv, eager_win = attacks.PGD(net, 8 / 255, steps=3, seed=0, batch_size=5)(x, y)
    fast_adv, fast_win = attacks.PGD(fast, 8 / 255, steps=3, seed=0, batch_size=5)(x, y)
    assert torch.equal(fast_win, eager_win)
    torch.testing.assert_close(fast_adv, eager_adv, rtol=0, atol=1e-5)
    assert fast.compiled  # nothing fell back on the way


@pytest.mark.usefixtures("compiling")
def test_one_compile_per_mode_whatever_the_batch_sizes(net: TinyNet) -> None:
    backend = CountingBackend()
    fast = prepare(net, backend=backend)
    with torch.no_grad():
        for n in (8, 3, 20, 8, 1):
            torch.testing.assert_close(fast(torch.rand(n, 3, 8, 8)).shape, torch.Size([n, 5]))
    assert fast.chunk == 8 and backend.compiles == 1
    with_bn = nn.Sequential(nn.BatchNorm2d(3), net)
    training = prepare(with_bn, backend=backend, chunk=8).train()
    x = torch.rand(8, 3, 8, 8)
    torch.testing.assert_close(training(x), with_bn(x))  # training mode: batch statistics of the same batch
    training(torch.rand(3, 3, 8, 8))  # another size runs eagerly, not padded (batch norm sees the whole batch)
    assert backend.compiles == 2 and net.training


def test_eager_with_one_log_line_when_compiling_is_off_or_impossible(net: TinyNet, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    x = torch.rand(4, 3, 8, 8)
    with caplog.at_level(logging.INFO, logger="veilnet.models.prepared"):
        off = prepare(net)  # VEILNET_COMPILE=0 (tests/conftest.py)
        monkeypatch.setenv("VEILNET_COMPILE", "1")
        no_flag = prepare(net, compile=False)
        monkeypatch.setattr(prepared_module.shutil, "which", lambda name: None)  # no C++ compiler on this machine
        no_compiler = prepare(net)
        assert not messages(caplog)  # nothing before the first call
        for eager in (off, no_flag, no_compiler):
            assert torch.equal(eager(x), net(x)) and torch.equal(eager(x), net(x))
            assert not eager.compiled and "running eagerly" in eager.status
    assert messages(caplog) == [("INFO", off.status), ("INFO", no_flag.status), ("INFO", no_compiler.status)]
    assert "VEILNET_COMPILE=0" in off.status and "no C++ compiler" in no_compiler.status


@pytest.mark.usefixtures("compiling")
def test_a_failing_compile_falls_back_to_eager_with_one_warning(net: TinyNet, caplog: pytest.LogCaptureFixture) -> None:
    def broken(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        raise RuntimeError("unsupported operation aten.frobnicate")

    fast = prepare(net, backend=broken)
    x = torch.rand(4, 3, 8, 8)
    with caplog.at_level(logging.INFO, logger="veilnet.models.prepared"):
        out = fast(x)
        fast(x)
    assert torch.equal(out, net(x)) and not fast.compiled
    assert messages(caplog) == [("WARNING", fast.status)] and "frobnicate" in fast.status


def test_prepared_behaves_as_the_model_it_wraps(net: TinyNet) -> None:
    fast = prepare(net, compile=False)
    assert prepare(fast) is fast and fast.eager is net
    assert fast.normalize is net.normalize and isinstance(fast, Prepared)
    assert {p.data_ptr() for p in fast.parameters()} == {p.data_ptr() for p in net.parameters()}
    fast.train()
    assert net.training
