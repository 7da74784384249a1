"""Progress bars (veilnet.progress): a run of one batch still moves and names what runs; every
attack's bar total bounds the queries it makes; training draws one bar over the whole run."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from veilnet import progress
from veilnet.robust import attacks
from veilnet.training import fit


@pytest.fixture
def every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redraw a bar on every update (a test's stderr is not a terminal, where bars redraw every 5 s)."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)


def _counts(err: str, name: str) -> list[tuple[int, int]]:
    """The ``n/total`` of every redraw of the bar named ``name`` in ``err``."""
    return [(int(n), int(t)) for n, t in re.findall(re.escape(name) + r":.*?\| *(\d+)/(\d+) ", err)]


def test_a_single_batch_attack_shows_a_named_bar_that_moves_within_the_batch(capsys: pytest.CaptureFixture[str], every_update: None) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    attack = attacks.create("pgd", model, steps=3, batch_size=256, seed=0, progress="robust evaluate 1/1: pgd on the undefended model")
    attack(torch.rand(4, 3, 8, 8), torch.arange(4))
    counts = _counts(capsys.readouterr().err, "robust evaluate 1/1: pgd on the undefended model")
    assert counts[0] == (0, 4)  # 3 steps and the check of the result (also the run's success mask)
    assert (1, 4) in counts and (2, 4) in counts  # it moved before the one batch ended
    assert counts[-1] == (4, 4)


def test_progress_true_names_the_bar_after_the_attack_and_false_draws_nothing(capsys: pytest.CaptureFixture[str], every_update: None) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    images, labels = torch.rand(2, 3, 8, 8), torch.arange(2)
    attacks.create("fgsm", model, seed=0, progress=True)(images, labels)
    assert _counts(capsys.readouterr().err, "fgsm")[-1] == (2, 2)
    attacks.create("fgsm", model, seed=0)(images, labels)
    assert capsys.readouterr().err == ""


class _Unfoolable(nn.Module):
    """Fixed logits (the label always wins) that still depend on the input for autograd: no
    attack stops early on it, so each makes every query it may."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([[5.0, 1.0, 0.0, -1.0]]).expand(x.shape[0], -1)
        return logits + 0 * x.flatten(1).sum(1, keepdim=True)


SMALL = {
    "pgd": {"steps": 4, "restarts": 2},
    "eot-pgd": {"steps": 3, "restarts": 2},
    "deepfool": {"steps": 5, "candidates": 3},
    "cw": {"binary_search_steps": 2, "steps": 3},
}
SMALL.update({"square": {"queries": 7}, "apgd-ce": {"steps": 4, "restarts": 2}, "apgd-dlr": {"steps": 4}, "pgd-min": {"steps": 4, "search_steps": 0}})


@pytest.mark.parametrize("name", list(attacks.SETTINGS))
def test_max_queries_is_what_perturb_makes_when_nothing_stops_it_early(name: str) -> None:
    attack = attacks.create(name, _Unfoolable(), **SMALL.get(name, {}), seed=0)
    calls = []
    query = attack.query

    def counted(images: torch.Tensor, streams: attacks.Streams) -> torch.Tensor:
        calls.append(1)
        return query(images, streams)

    attack.query = counted  # type: ignore[method-assign]
    images, labels = torch.rand(3, 3, 8, 8), torch.zeros(3, dtype=torch.long)
    eps = None if attack.minimization else torch.full((3, 1, 1, 1), 8 / 255)
    attack.perturb(images, labels, eps, attacks.Streams.for_samples(0, range(3)))
    assert len(calls) == attack.max_queries()


def test_fit_draws_one_bar_over_every_step_of_the_run(capsys: pytest.CaptureFixture[str], every_update: None) -> None:
    seen = []
    fit(lambda batch, info: seen.append(batch) or {"loss": 0.0}, lambda epoch: [0, 1, 2], epochs=2, state={}, desc="test training")
    err = capsys.readouterr().err
    assert _counts(err, "test training, epoch 1/2")[0] == (0, 6)
    assert _counts(err, "test training, epoch 2/2")[-1] == (6, 6)
    assert len(seen) == 6
