"""The defence's randomness during the adaptive attacks (``Setting.randomness``): directions fresh
at every query (one attack run, judged by fresh draws) or fixed per draw (one seeded,
deterministic defence per draw, attacked and judged by itself), on the digits with LeNet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_robust_eval import _one_thread, digits, lenet  # noqa: F401  (fixtures: LeNet after one epoch on the digits)
from veilnet import data, models
from veilnet.cli import main
from veilnet.errors import ConfigError
from veilnet.robust import Setting, rendering
from veilnet.robust import evaluation as ev

OVERRIDES = {"square": {"queries": 15}, "eot-pgd": {"steps": 2}}


def test_fixed_directions_attack_each_draw_and_judge_by_it(lenet: torch.nn.Module, digits: data.ImageSplit) -> None:
    setting = Setting(directions=2, radius=6.0, draws=3, seed=0, eps=24 / 255, randomness="fixed")
    result = ev.evaluate(lenet, digits, setting, attacks=["square", "eot-pgd"], n_per_class=3, overrides=OVERRIDES)
    square, eot = result.adaptive
    images, labels = ev.as_float(digits.images), digits.labels
    # draw d is the deterministic defence seeded (seed, "fixed", d), the same for every attack
    defences = [ev.fixed_defence(lenet, result.setting, d) for d in range(3)]
    directions = [f.sample_directions(1, images.shape[1:], images.device) for f in defences]
    assert torch.equal(directions[0], defences[0].sample_directions(1, images.shape[1:], images.device)), "a draw's directions are fixed"
    assert not torch.equal(directions[0], directions[1]), "each draw has its own directions"
    clean = [ev.predict(f, images).argmax(1) == labels for f in defences]
    for row in (square, eot):
        assert row.randomness == "fixed" and row.n == 30 and len(row.robust_images) == 3
        assert row.defended_clean_accuracy.values == pytest.approx([c.float().mean().item() for c in clean])
        assert row.num_attacked == sum(int(c.sum()) for c in clean), "each draw attacks the images it classifies correctly"
        for c, robust in zip(clean, row.robust_images):
            assert not (torch.tensor(robust) & ~c).any(), "an image the draw gets wrong is not robust"
        # judged by the very defence it attacked: robust = correct − fooled, summed over the draws
        fooled = round(row.attack_success_rate * row.num_attacked)
        assert sum(sum(r) for r in row.robust_images) == row.num_attacked - fooled
    assert eot.attack_success_rate > 0, "the attack must fool some images for the bookkeeping to be checked"
    worst = ev.worst_case(result.adaptive)
    assert worst is not None and all(w <= min(square.robust_accuracy.values[d], eot.robust_accuracy.values[d]) for d, w in enumerate(worst.values))


def test_fixed_and_fresh_rows_are_named_and_not_mixed(lenet: torch.nn.Module, digits: data.ImageSplit, tmp_path: Path) -> None:
    rows = {}
    for randomness in ("fresh", "fixed"):
        setting = Setting(directions=2, radius=6.0, draws=2, seed=1, randomness=randomness)
        result = ev.evaluate(lenet, digits, setting, attacks=["square"], n_per_class=1, overrides={"square": OVERRIDES["square"]})
        (rows[randomness],) = result.adaptive
        report = rendering.write_report(tmp_path / randomness, result).read_text()
        assert rendering.RANDOMNESS_NAMES[randomness] in report and rendering.rebuild_report(tmp_path / randomness) == report
        assert ev.Evaluation.load(tmp_path / randomness / "evaluation.json").setting.randomness == randomness
    assert rows["fresh"].randomness == "fresh" and len(rows["fresh"].robust_images) == 2
    assert ev.worst_case([rows["fresh"], rows["fixed"]]) is None, "fresh and fixed draws are different defences"
    # a result written before the option existed reads as fresh
    saved = json.loads((tmp_path / "fresh" / "evaluation.json").read_text())
    del saved["setting"]["randomness"], saved["adaptive"][0]["randomness"]
    old = ev.Evaluation.from_dict(saved)
    assert old.setting.randomness == "fresh" and old.adaptive[0].randomness == "fresh"
    with pytest.raises(ConfigError, match="randomness must be one of fresh, fixed"):
        Setting(randomness="sometimes")


def test_cli_randomness_fixed(lenet: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = models.save(lenet, tmp_path / "lenet", data="digits")
    argv = [
        "robust",
        "evaluate",
        str(path),
        "--data",
        "digits",
        "--attacks",
        "square",
        "--n-per-class",
        "1",
        "--directions",
        "2",
        "--draws",
        "2",
        "--set",
        "square.queries=5",
        "--seed",
        "1",
        "--randomness",
        "fixed",
        "-o",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert saved["setting"]["randomness"] == "fixed" and saved["adaptive"][0]["randomness"] == "fixed"
    assert "fixed per draw (seeded)" in capsys.readouterr().out
