"""``veilnet complex attack`` (veilnet.complex.attacks.suite): every attack on one complex network
and its real baseline, on the same victim images, written as JSON, Markdown and a grid.

Attacker: digits (16×16) train split; victim: digits test split (disjoint). The networks are
untrained (they were not trained against any attack), so the attacks that need no training
beyond a few epochs must already beat chance: the regression's angle, k-NN on the exact feature.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from veilnet import data, models
from veilnet.cli import main
from veilnet.complex.attacks import suite
from veilnet.data import balanced_head
from veilnet.errors import ConfigError

SETTINGS = dict(attacker_images=320, max_images=64, epochs=2, angle_epochs=3, grid=36, unet_width=4, optimisation_steps=5, seed=0)


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> tuple[object, object, object]:
    folder = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    net = models.create("complex-lenet", num_classes=10, image_size=16)
    base = models.create("split-lenet", num_classes=10, image_size=16, noise=0.5)
    models.save(net, folder / "complex")
    models.save(base, folder / "noisy")
    return net, base, folder


@pytest.fixture(scope="module")
def report(nets) -> tuple[suite.AttackReport, dict[str, torch.Tensor]]:
    net, base, _ = nets
    settings = suite.AttackSettings(attacks=["angle", "inversion", "property", "dec-x", "phase-invariant", "optimisation"], **SETTINGS)
    return suite.run_attacks(
        net, data.load("digits:size=16", "train"), data.load("digits:size=16", "test"), baselines={"noisy": base}, settings=settings, progress=False
    )


def test_every_row_is_measured_on_the_same_victim_images(report) -> None:
    rep, recs = report
    rows = [r.attack for r in rep.inversion]
    assert rows == ["noisy", "dec(a*) paper θ̂", "dec(a*) regression θ̂", "dec(a) true θ", "dec(x)", "phase-invariant", "optimisation"]
    assert {r.n for r in rep.inversion} == {64} and {r.n_attacker for r in rep.inversion} == {320}
    assert rep.attacker.startswith("digits:size=16:train") and rep.victim.startswith("digits:size=16:test")
    assert set(recs) == set(rows) and all(v.shape == (64, 3, 16, 16) for v in recs.values())
    print(rep.seconds)
    assert rep.baselines == {"noisy": "noisy γ=0.5"}
    # property inference: the raw reference plus 1, 2, 3 and 3 k-NN per source
    sources = {p.attack.partition(" · ")[0] for p in rep.properties}
    assert sources == {"raw images", "noisy", "a* paper θ̂", "a* regression θ̂", "a true θ"}
    assert len(rep.properties) == 4 + 4 * 6


def test_attacks_that_need_little_training_beat_chance(report) -> None:
    rep, _ = report
    regression = next(a for a in rep.angle if a.attack == "regression")
    assert regression.mean_error < 0.5 * math.pi / 2
    exact = [p for p in rep.properties if p.attack.startswith("a true θ · inference 4")]
    assert len(exact) == 3 and all(p.beats_chance and p.error < 0.5 for p in exact)


def test_report_round_trips_and_renders(report, tmp_path) -> None:
    rep, recs = report
    rep.save(tmp_path / "r.json")
    assert suite.AttackReport.load(tmp_path / "r.json") == rep
    text = suite.markdown(rep)
    for heading in ("Angle recovery", "Reconstruction", "Property inference", "attacker's mean image (trivial)", "0.7884"):
        assert heading in text
    grid = suite.save_grid(tmp_path / "g.png", rep, data.load("digits:size=16", "test").float_images()[:64], recs)
    assert grid.stat().st_size > 1000


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        suite.AttackSettings(attacks=["angle", "psychic"])
    with pytest.raises(ConfigError, match="epochs"):
        suite.AttackSettings(epochs=0)
    with pytest.raises(ConfigError, match="upper-bound"):
        suite.AttackSettings(upper_bound="no")
    assert suite.AttackSettings(attacks=["property"]).runs("angle")
    assert not suite.AttackSettings(attacks=["dec-x"]).runs("angle")


def test_command_writes_the_report(nets, tmp_path, capsys) -> None:
    _, _, folder = nets
    out = tmp_path / "attack"
    args = [
        "complex",
        "attack",
        str(folder / "complex"),
        "--data",
        "digits:size=16",
        "--baseline",
        str(folder / "noisy"),
        "--attacks",
        "dec-x",
        "--attacker-images",
        "96",
        "--max-images",
        "16",
        "--epochs",
        "1",
        "--unet-width",
        "4",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "inverter: dec(x), epoch 1/1: " in captured.out + captured.err  # each inverter's progress says which (issue 29)
    doc = json.loads((out / "report.json").read_text())
    assert [r["attack"] for r in doc["inversion"]] == ["dec(x)"]
    assert doc["angle"] == [] and doc["properties"] == []
    assert (out / "report.md").read_text().startswith("# Attacks on complex-lenet")
    assert (out / "reconstructions.png").exists()


def test_balanced_head_gives_every_class_its_share_of_a_class_sorted_split() -> None:
    """The JPEG CIFAR-10's splits are stored sorted by class: its first 1,000 test images are all
    airplanes. Attacker and victim images are taken class by class in turn instead."""
    split = data.load("digits:size=16", "test")
    ordered = split.select(torch.argsort(split.labels, stable=True))
    head = balanced_head(ordered, 25)
    counts = torch.bincount(head.labels, minlength=10)
    assert counts.max() - counts.min() <= 1 and int(counts.sum()) == 25
    first_of_class = {int(c): int(torch.nonzero(ordered.labels == c)[0]) for c in range(10)}
    assert all(any(torch.equal(ordered.images[i], img) for img in head.images) for i in first_of_class.values())
