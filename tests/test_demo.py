"""The demo's keyed step names the classes; its complex-valued step trains, splits by role, and
reports what the server sees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from veilnet import data, demo, models


@pytest.fixture(scope="module")
def complex_section(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The demo's complex step with a LeNet trained 2 epochs: its report section and folder."""
    tmp_path = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "DEMO_COMPLEX_EPOCHS", 2)
        train, test = data.load("digits", "train"), data.load("digits", "test")
        ctx = demo.DemoContext(out=tmp_path, train=train, test=test, model=None, model_path=tmp_path / "unused", seed=0)  # type: ignore[arg-type]
        return demo.complex_step(ctx), tmp_path


def test_complex_step_reports_accuracy_and_a_processor_only_server(complex_section: tuple[str, Path]) -> None:
    section, tmp_path = complex_section
    rows = dict(re.findall(r"^\| (.+?) \| ([0-9.]+) \|$", section, flags=re.M))
    clean = float(rows["end to end, fresh θ and counterpart per image"])
    split = float(rows["through the split parts (device ⇄ server)"])
    wrong = float(rows["decoded with a wrong angle (θ + π/2)"])
    assert clean > 0.4 and split > 0.4, section  # 10 classes: chance is 0.1
    assert wrong < split - 0.2, section
    assert "named `processor.*`)" in section
    assert (tmp_path / "complex" / "split" / "device.safetensors").stat().st_mode & 0o777 == 0o600
    assert "2×6×14×14" in section


def test_complex_step_shows_a_reconstruction_that_beats_the_mean_image(complex_section: tuple[str, Path]) -> None:
    """The demo's reconstruction row (angle regression, then a U-Net on a*): on a complex LeNet
    trained 2 epochs it must beat the attacker's mean image — an attack that cannot, shows nothing."""
    section, tmp_path = complex_section
    rows = dict(re.findall(r"^\| (.+?) \| ([0-9.]+) \| [0-9.]+ \|$", section, flags=re.M))
    attack = float(rows["dec(a*), θ̂ from the angle regression"])
    mean = float(rows["the attacker's mean image (learns nothing)"])
    assert attack < mean, section
    assert (tmp_path / "complex" / "reconstructions.png").exists()


def test_the_demo_federation_command_parses() -> None:
    from veilnet.cli import build_parser

    args = build_parser("fl").parse_args(demo.FEDERATION.split()[1:])
    assert args.clients == 3 and args.rounds == 2


def test_keyed_step_keeps_and_shows_the_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transformed model's card keeps the plain model's class names, and the report's picture
    titles the image with its class and the keyed model's label by name."""
    import veilnet.report

    train, test = data.load("digits", "train"), data.load("digits", "test")
    names = [f"digit {c}" for c in test.classes]
    models.save(models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4), tmp_path / "plain", classes=names)
    titles: list[str] = []
    save = veilnet.report.save_figure
    monkeypatch.setattr(veilnet.report, "save_figure", lambda fig, *a, **kw: (titles.extend(ax.get_title() for ax in fig.axes), save(fig, *a, **kw))[1])
    ctx = demo.DemoContext(out=tmp_path, train=train, test=test, model=models.load(tmp_path / "plain"), model_path=tmp_path / "plain", seed=0)
    demo.keyed_step(ctx)
    assert models.card(tmp_path / "keyed" / "keyed_model")["classes"] == names
    assert f"plain: {names[int(test.labels[0])]}" in titles
    assert any(t.startswith("encrypted → digit ") for t in titles)


def test_keyed_step_says_why_its_accuracies_are_not_the_papers(tmp_path: Path) -> None:
    """The keyed table sets digits accuracies beside the paper's CIFAR-10 ones: the section says
    what the paper measured, that the two are not comparable, and why a seeded key has few bits."""
    train, test = data.load("digits", "train"), data.load("digits", "test")
    model = models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4)
    section = demo.keyed_step(demo.DemoContext(out=tmp_path, train=train, test=test, model=model, model_path=tmp_path / "unused", seed=0))
    assert "The paper column is the ConvMixer paper's Table 1: CIFAR-10, ConvMixer-256/8" in section
    assert f"ours is {demo.DEMO_MODEL_WORDS}, so the accuracies are not comparable" in section
    assert "The entropy drawn is 1 bit because the key came from a seed" in section


def test_robust_step_names_the_attacks_it_skips_and_why_the_paper_differs(tmp_path: Path) -> None:
    """The robustness section lists the attacks it did not run in one line and nowhere else, says
    in words why its defence rates are not the paper's, and puts no paper figure beside a
    full-budget row."""
    from veilnet.robust.evaluation import ADAPTIVE_ATTACKS, PAPER_ATTACKS

    torch.manual_seed(0)
    test = data.load("digits", "test")
    model = models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4).eval()
    section = demo.robust_step(demo.DemoContext(out=tmp_path, train=test, test=test, model=model, model_path=tmp_path / "unused", seed=0))
    skipped = [a for a in PAPER_ATTACKS + ADAPTIVE_ATTACKS if a not in demo.DEMO_ROBUST_ATTACKS]
    (line,) = [line for line in section.splitlines() if line.startswith("Not run here")]
    assert line == f"Not run here, to keep the demo short: {', '.join(skipped)} (`veilnet robust evaluate` runs them; docs/robust.md)."
    others = re.sub(r"[`|(),:;]", " ", section.replace(line, "")).split()
    assert not set(skipped) & set(others), section
    assert f"this is {demo.DEMO_MODEL_WORDS}, attacked on 100 test images" in section
    assert re.search(r"defence rate here against the paper's: fgsm-min (nan|[0-9.]+) against 0\.808\)", section), section
    assert "The full-budget rows (fgsm, pgd) have no paper figure at all" in section
    rows = [line for line in section.splitlines() if line.startswith(("| fgsm |", "| pgd |"))]
    assert len(rows) == 2 and all(row.endswith("| - | - | - |") for row in rows), rows
