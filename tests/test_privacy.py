"""The privacy benchmark (veilnet.privacy): a method registered from a test gets its rows without any
change to the benchmark's code; the attacks succeed where nothing hides the image; the task's
hidden attribute is independent of its labels; a failed or cut run resumes; outputs are refused
before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import privacy_dummy
from veilnet import plugins
from veilnet.attacks import inversion as inv
from veilnet.cli import main
from veilnet.errors import ConfigError, OutputExistsError
from veilnet.privacy import bench, rendering
from veilnet.privacy.defences import Budget, Defence
from veilnet.privacy.task import CIFAR10, privacy_task

TINY = Budget(
    train_images=120, epochs=2, test_images=60, victim_images=24, attacker_images=120, attack_epochs=1, unet_width=8, optimisation_steps=40, timing_images=8
)
DATA = "digits:size=16"


@pytest.fixture()
def dummy():
    plugins.register(privacy_dummy.METHOD)
    yield privacy_dummy
    plugins.unregister(privacy_dummy.METHOD.name)


@pytest.fixture(scope="module")
def dummy_run(tmp_path_factory):
    plugins.register(privacy_dummy.METHOD)
    try:
        out = tmp_path_factory.mktemp("privacy")
        report = bench.run(DATA, defences={"raw": None, "pixel-noise": [0.5, 3.0]}, budget=TINY, out_dir=out, progress=False)
    finally:
        plugins.unregister(privacy_dummy.METHOD.name)
    return out, report


def test_the_hidden_attribute_cuts_across_the_reduced_task():
    task = privacy_task(list(CIFAR10))
    labels = torch.arange(10).repeat(7)
    t, h = task.task_labels(labels), task.hidden_labels(labels)
    for half in (0, 1):  # 40 % vehicles in either half: the task's label says nothing about it
        assert float(h[t == half].double().mean()) == pytest.approx(0.4)
    assert task.hidden_classes == ["animal", "vehicle"] and task.chance(labels) == pytest.approx(0.6)
    digits = privacy_task([str(i) for i in range(10)])
    assert digits.task_of == [0] * 5 + [1] * 5 and digits.hidden_of == [0, 1] * 5 and digits.chance(labels) == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="at least 4 classes"):
        privacy_task(["a", "b", "c"])


def test_a_method_registered_from_a_test_gets_its_rows(dummy_run):
    out, report = dummy_run
    assert [r.label for r in report.rows] == ["raw", "pixel-noise σ=0.5", "pixel-noise σ=3"] and not report.failed
    assert report.reference().label == "raw"
    assert sorted(p.name for p in (out / "rows").iterdir()) == ["pixel-noise_=0.5.json", "pixel-noise_=3.json", "raw.json"]
    assert bench.PrivacyReport.load(out / "report.json") == report
    for row in report.rows:
        assert {a.attack for a in row.inversion} == {"learned inverter", "optimisation inversion"}
        assert {p.attack for p in row.properties} == {"classifier", "nearest neighbours (5-NN)"}
        assert row.device_ms > 0 and row.server_ms > 0 and 0 <= row.accuracy <= 1 and row.n_test == 60
        assert all(a.n == 24 and a.n_attacker == 120 for a in row.inversion)


def test_the_attacks_succeed_where_nothing_hides_the_image_and_noise_buys_privacy(dummy_run):
    _, report = dummy_run
    raw, mild, strong = report.rows
    opt = next(a for a in raw.inversion if a.attack == "optimisation inversion")
    assert opt.beats_baseline and opt.metrics.ssim > 0.6 and opt.metrics.ssim > 2 * opt.baseline.ssim
    assert raw.best_property().error < 1 - raw.property_chance - 0.1  # the parity is read off the image
    # more noise, less of the image: the worst case falls along the knob
    assert raw.worst("ssim").metrics.ssim > mild.worst("ssim").metrics.ssim > strong.worst("ssim").metrics.ssim
    assert raw.worst("psnr").metrics.psnr > strong.worst("psnr").metrics.psnr


def test_the_report_renders_every_row_and_the_plane(dummy_run, tmp_path):
    _, report = dummy_run
    md, png = rendering.write(report, tmp_path)
    text = md.read_text()
    assert "| **raw** |" in text and "pixel-noise σ=3" in text and "chance given task" in text
    assert text.count("| raw | ") == 2  # both of its attacks in the detail table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _failing(value, setup):
    raise RuntimeError("the row broke")


def test_a_failed_row_is_recorded_and_run_again_on_resume(dummy, tmp_path, monkeypatch):
    broken = Defence("pixel-noise", "dummy-privacy", _failing, knob="σ", values=(1.0,))
    monkeypatch.setitem(dummy.DEFENCES, "pixel-noise", broken)
    small = Budget(**{**TINY.to_dict(), "attack_epochs": 1, "optimisation_steps": 0})
    first = bench.run(DATA, defences={"raw": None, "pixel-noise": None}, budget=small, out_dir=tmp_path, progress=False)
    assert [r.label for r in first.rows] == ["raw"] and first.failed == {"pixel-noise σ=1": "RuntimeError: the row broke"}
    monkeypatch.setitem(dummy.DEFENCES, "pixel-noise", Defence("pixel-noise", "dummy-privacy", dummy.PixelRow, knob="σ", values=(1.0,)))
    built = []
    monkeypatch.setattr(bench, "run_row", lambda d, v, images, setup: built.append(d.label(v)) or first.rows[0])
    lines: list[str] = []
    bench.run(DATA, defences={"raw": None, "pixel-noise": None}, budget=small, out_dir=tmp_path, resume=True, progress=False, log=lines.append)
    assert built == ["pixel-noise σ=1"] and "kept from" in lines[0]
    with pytest.raises(ConfigError, match="another budget"):
        bench.run(DATA, defences={"raw": None}, budget=TINY, out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(OutputExistsError, match="already holds a privacy run"):
        bench.run(DATA, defences={"raw": None}, budget=small, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "run.json").read_text())["budget"] == small.to_dict()


def test_the_command_lists_defences_and_runs_the_quick_mode(dummy, tmp_path, capsys, monkeypatch):
    train_inverter, names = inv.train_inverter, []
    monkeypatch.setattr(inv, "train_inverter", lambda *args, desc="inverter", **kwargs: names.append(desc) or train_inverter(*args, desc=desc, **kwargs))
    assert main(["bench", "privacy", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "| raw | dummy-privacy | – | – | the image itself (the reference) |" in listing and "| pixel-noise | dummy-privacy | σ | 0.5, 2 |" in listing
    out = tmp_path / "run"
    small = [
        "--train-images",
        "60",
        "--test-images",
        "30",
        "--victim-images",
        "10",
        "--attacker-images",
        "60",
        "--attack-epochs",
        "1",
        "--optimisation-steps",
        "5",
    ]
    argv = ["bench", "privacy", "--quick", "--defences", "raw,pixel-noise", *small, "-o", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "pixel-noise σ=0.5" in captured.out and "pixel-noise σ=2" not in captured.out  # quick: the first setting only
    assert "[2/2] pixel-noise σ=0.5: accuracy" in captured.err
    assert names == ["inverter: raw", "inverter: pixel-noise σ=0.5"]  # each row's inverter names its row (issue 29)
    assert {p.name for p in Path(out).iterdir()} == {"rows", "run.json", "report.json", "report.md", "privacy.png"}
    assert main([*argv[:-2], "--sweep", "pixel-noise=1", "-o", str(out)]) == 2
    assert "already holds a privacy run" in capsys.readouterr().err


def test_every_common_attack_succeeds_on_the_unprotected_split_network():
    """The reference row (the real split network, ``none``): the learned inverter and the
    optimisation inversion reconstruct the victims better than the attacker's mean image, and the
    property attacks read the hidden attribute better than the task's label alone."""
    budget = Budget(
        train_images=100,
        epochs=1,
        batch_size=16,
        test_images=40,
        victim_images=24,
        attacker_images=240,
        attack_epochs=6,
        unet_width=8,
        optimisation_steps=60,
        timing_images=8,
    )
    (row,) = bench.run(DATA, defences={"none": None}, budget=budget, progress=False).rows
    assert row.reference_row and {a.attack for a in row.inversion} == {"learned inverter", "optimisation inversion"}
    for attack in row.inversion:
        assert attack.beats_baseline and attack.metrics.ssim > attack.baseline.ssim + 0.1, attack.attack
    assert row.best_property().error < 1 - row.property_chance
