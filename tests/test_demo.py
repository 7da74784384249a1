"""The demo's complex-valued step: trains, splits by role, and reports what the server sees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from veilnet import data, demo


def test_complex_step_reports_accuracy_and_a_processor_only_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEMO_COMPLEX_EPOCHS", 2)
    train, test = data.load("digits", "train"), data.load("digits", "test")
    ctx = demo.DemoContext(out=tmp_path, train=train, test=test, model=None, model_path=tmp_path / "unused", seed=0)  # type: ignore[arg-type]
    section = demo.complex_step(ctx)
    rows = dict(re.findall(r"^\| (.+?) \| ([0-9.]+) \|$", section, flags=re.M))
    clean = float(rows["end to end, fresh θ and counterpart per image"])
    split = float(rows["through the split parts (device ⇄ server)"])
    wrong = float(rows["decoded with a wrong angle (θ + π/2)"])
    assert clean > 0.4 and split > 0.4, section  # 10 classes: chance is 0.1
    assert wrong < split - 0.2, section
    assert "named `processor.*`)" in section
    assert (tmp_path / "complex" / "split" / "device.safetensors").stat().st_mode & 0o777 == 0o600
    assert "2×6×14×14" in section
