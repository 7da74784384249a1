"""veilnet.robust.evaluation and ``veilnet robust``: the bookkeeping of the paper's Table 1, the
adaptive protocol, sweeps, reports and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from veilnet import data, models
from veilnet.cli import main
from veilnet.robust import attacks, demo_step
from veilnet.robust import evaluation as ev


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("lenet", num_classes=10).eval()


@pytest.fixture(scope="module")
def digits() -> data.ImageSplit:
    return data.subset(data.load("digits", split="test"), 3)


def test_paper_protocol_bookkeeping(lenet: torch.nn.Module, digits: data.ImageSplit) -> None:
    # the "defence" being the model itself, the defended columns equal the original ones and no
    # adversarial example is defended
    attack = attacks.FGSM(lenet, 0.2)
    row = ev.paper_protocol(lenet, lenet, digits.images, digits.labels, attack)
    pred = ev.predict(lenet, digits.images).argmax(1)
    correct = pred == digits.labels
    adv, success = attack(ev.as_float(digits.images)[correct], digits.labels[correct])
    assert row.n == 30 and row.num_adversarial == int(success.sum())
    assert row.clean_accuracy == pytest.approx(correct.float().mean().item())
    assert row.attacked_accuracy == pytest.approx((int(correct.sum()) - row.num_adversarial) / 30)
    assert row.defended_clean_accuracy == pytest.approx(row.clean_accuracy)
    assert row.defended_attacked_accuracy == pytest.approx(row.attacked_accuracy)
    assert row.num_adversarial == 0 or row.defence_rate == 0.0


def test_evaluate_sweep_and_report(lenet: torch.nn.Module, digits: data.ImageSplit, tmp_path: Path) -> None:
    result = ev.evaluate(
        lenet, digits, attacks=["pgd", "pgd-min", "eot-pgd", "square"], n_per_class=2, slow_n_per_class=1, directions=2, seed=3,
        overrides={"pgd": {"steps": 3}, "pgd-min": {"steps": 5, "search_steps": 2}, "eot-pgd": {"steps": 2}, "square": {"queries": 10}},
    )  # fmt: skip
    assert [r.attack for r in result.paper] == ["pgd", "pgd-min"] and [r.attack for r in result.adaptive] == ["eot-pgd", "square"]
    assert result.settings["pgd-min"]["early_stop"] is True and result.settings["pgd-min"]["search_steps"] == 2
    assert "| pgd-min | 20 |" in ev.paper_table(result) and "0.933" in ev.paper_table(result).splitlines()[-1]
    assert result.paper[0].n == 20 and result.adaptive[0].n == 10 and result.seed == 3
    assert result.settings["square"]["queries"] == 10 and result.settings["pgd"]["alpha"] == 2 / 255
    for row in result.adaptive:
        assert 0 <= row.robust_accuracy <= row.defended_clean_accuracy <= 1
    (swept,) = ev.sweep(lenet, digits, {"directions": [1, 2]}, attack="pgd", n_per_class=1, seed=0)
    assert swept.values == [1.0, 2.0] and len(swept.seconds_per_image) == 2 and swept.plain_seconds_per_image > 0
    report = ev.write_report(tmp_path, result, [swept])
    text = report.read_text()
    assert "defence rate" in text and "paper: defence rate" in text and (tmp_path / "sweep-directions.png").stat().st_size > 0
    assert json.loads((tmp_path / "evaluation.json").read_text())["paper"][0]["attack"] == "pgd"


def test_cli_evaluate_and_errors(lenet: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = models.save(lenet, tmp_path / "lenet", data="digits")
    out = tmp_path / "out"
    argv = ["robust", "evaluate", str(path), "--data", "digits", "--attacks", "fgsm,square", "--n-per-class", "1", "--directions", "2", "--set", "square.queries=5", "--seed", "1", "-o", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["defence"]["directions"] == 2 and saved["settings"]["square"]["queries"] == 5
    assert main(argv) == 2 and "exists" in capsys.readouterr().err
    assert main(argv[:5] + ["--attacks", "fgsm,nope", "-o", str(tmp_path / "x")]) == 2 and "unknown attack" in capsys.readouterr().err
    assert main(["robust", "sweep", str(path), "--data", "digits", "--n-per-class", "1", "--radii", "1,3", "--directions", "2", "-o", str(tmp_path / "sw")]) == 0
    assert (tmp_path / "sw" / "sweep-radius.png").exists()
    sweep_argv = ["robust", "sweep", str(path), "--data", "digits", "--radii", "1", "--sweep-attack", "nope", "-o", str(tmp_path / "sw2")]
    assert main(sweep_argv) == 2 and "unknown --sweep-attack" in capsys.readouterr().err and not (tmp_path / "sw2").exists()


def test_demo_step(lenet: torch.nn.Module, tmp_path: Path) -> None:
    summary = demo_step(lenet, data.load("digits", split="test"), tmp_path, n_per_class=2)
    assert Path(summary["report"]).exists() and [r["attack"] for r in summary["rows"]] == ["fgsm", "pgd", "fgsm-min"]


@pytest.mark.shared
def test_defence_undoes_smallest_budget_examples_but_not_full_budget_ones(cifar_jpeg_zip, shared_models) -> None:  # type: ignore[no-untyped-def]
    """The paper's high FGSM defence rate needs its Foolbox setting (smallest budget); at the full
    ε = 8/255 the defence recovers almost nothing (pretrained ResNet-20, 50 JPEG test images)."""
    model = models.load_cifar_resnet(shared_models / "resnet20-12fca82f.th")
    split = data.load(f"folder:{cifar_jpeg_zip}", split="test")
    result = ev.evaluate(model, split, attacks=["fgsm", "fgsm-min"], n_per_class=5, seed=0)
    full, smallest = result.paper
    assert full.num_adversarial >= 20 and smallest.num_adversarial == full.num_adversarial
    assert full.defence_rate <= 0.15 and smallest.defence_rate >= 0.5, (full.defence_rate, smallest.defence_rate)
