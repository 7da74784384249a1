"""benchmarks/complex_vs_keyed.py: the learned inversion of keyed images beside the complex
network's rows, on the same victim images (comparing methods is a benchmark's job, not the
complex attack suite's). The benchmark module is imported by its path.

Attacker: digits (16×16) train split; victim: digits test split (disjoint); an untrained network.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from veilnet import data, models
from veilnet.complex.attacks import suite
from veilnet.errors import ConfigError

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "complex_vs_keyed.py"
sys.path.insert(0, str(_PATH.parent))  # the benchmark imports its folder's _common, as when run as a script
_SPEC = importlib.util.spec_from_file_location("complex_vs_keyed", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_keyed_rows_follow_the_complex_ones_on_the_same_victims() -> None:
    torch.manual_seed(0)
    net = models.create("complex-lenet", num_classes=10, image_size=16)
    attacker, victim = data.load("digits:size=16", "train"), data.load("digits:size=16", "test")
    settings = suite.AttackSettings(attacks=["dec-x"], attacker_images=96, max_images=16, epochs=1, unet_width=4)
    report, _ = suite.run_attacks(net, attacker, victim, settings=settings, progress=False)
    report, recs = bench.compare(report, attacker, victim, ["block:4"], progress=False)
    rows = [r.attack for r in report.inversion]
    assert rows[0] == "dec(x)" and len(rows) == 2
    assert "block" in rows[1] and report.angle == [] and report.properties == []
    assert {r.n for r in report.inversion} == {16} and report.inversion[1].victim_split == report.victim
    assert set(recs) == {rows[1]} and recs[rows[1]].shape == (16, 3, 16, 16)
    assert suite.markdown(report).startswith("# Attacks on complex-lenet")


def test_keyed_schemes_are_checked_before_any_training() -> None:
    with pytest.raises(ConfigError, match="block:M"):
        bench.keyed_scheme("block")
    with pytest.raises(ConfigError, match="keyed scheme must be block:M or vit:M"):
        bench.check_keyed(["block"], (3, 32, 32))
    with pytest.raises(ConfigError, match="not divisible by block size 5"):
        bench.check_keyed(["block:5"], (3, 32, 32))
    assert bench.check_keyed(["block:4", "vit:4"], (3, 32, 32)) == [("block", 4), ("vit", 4)]
