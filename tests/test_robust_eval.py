"""veilnet.robust.evaluation and ``veilnet robust``: the bookkeeping of the paper's Table 1, the
adaptive protocol, the draws of the defence's randomness, one random stream per attack, sweeps,
reports rebuilt from their JSON, and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from veilnet import data, models
from veilnet.cli import main
from veilnet.demo import robust_demo
from veilnet.errors import ConfigError
from veilnet.robust import Setting, attacks, rendering
from veilnet.robust import evaluation as ev
from veilnet.robust.results import PAPER_CIFAR10

FAST = {
    "pgd": {"steps": 3},
    "pgd-min": {"steps": 5, "search_steps": 2},
    "eot-pgd": {"steps": 2},
    "square": {"queries": 10},
    "cw": {"binary_search_steps": 1, "steps": 3},
    "deepfool": {"steps": 5},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lenet() -> torch.nn.Module:
    """LeNet after one epoch on the digits: accurate enough that the defence's draws can disagree."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = models.create("lenet", num_classes=10)
    train = data.load("digits", split="train")
    x, y = ev.as_float(train.images), train.labels
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for i in range(0, len(y), 32):
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 32]), y[i : i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits() -> data.ImageSplit:
    return data.subset(data.load("digits", split="test"), 3)


def _fast(names: list[str]) -> dict[str, dict[str, Any]]:
    return {name: FAST[name] for name in names if name in FAST}


def _without_seconds(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row.to_dict().items() if k != "seconds"}


def test_paper_protocol_bookkeeping(lenet: torch.nn.Module, digits: data.ImageSplit) -> None:
    # with a vanishing radius the defended model is the model itself: the defended columns equal
    # the original ones in every draw and no adversarial example is defended
    setting = Setting(radius=1e-7, space="pixel", directions=1, draws=2, seed=0)
    attack = attacks.FGSM(lenet, 0.2)
    row = ev.paper_protocol(lenet, digits.images, digits.labels, attack, setting)
    pred = ev.predict(lenet, digits.images).argmax(1)
    correct = pred == digits.labels
    adv, success = attack(ev.as_float(digits.images)[correct], digits.labels[correct])
    assert row.n == 30 and row.num_adversarial == int(success.sum()) > 0
    assert row.clean_accuracy == pytest.approx(correct.float().mean().item())
    assert row.attacked_accuracy == pytest.approx((int(correct.sum()) - row.num_adversarial) / 30)
    assert row.defended_clean_accuracy.values == pytest.approx([row.clean_accuracy] * 2)
    assert row.defended_attacked_accuracy.values == pytest.approx([row.attacked_accuracy] * 2)
    assert row.defence_rate.values == [0.0, 0.0]


def test_an_attacks_numbers_do_not_depend_on_the_attacks_run_before_it(lenet: torch.nn.Module, digits: data.ImageSplit) -> None:
    setting = Setting(directions=2, radius=20.0, draws=2, seed=3)
    together = ev.evaluate(lenet, digits, setting, attacks=["fgsm", "pgd", "eot-pgd", "square"], n_per_class=2, overrides=_fast(["pgd", "eot-pgd", "square"]))
    for name in ("pgd", "square"):
        alone = ev.evaluate(lenet, digits, setting, attacks=[name], n_per_class=2, overrides={name: FAST[name]})
        (row,) = alone.paper + alone.adaptive
        assert _without_seconds(row) == _without_seconds(next(r for r in together.paper + together.adaptive if r.attack == name))


def test_defended_accuracies_are_averaged_over_draws(lenet: torch.nn.Module, digits: data.ImageSplit) -> None:
    setting = Setting(directions=1, radius=40.0, draws=4, seed=0)  # a large radius: the draws disagree
    result = ev.evaluate(lenet, digits, setting, attacks=["fgsm", "square"], n_per_class=3, overrides=_fast(["square"]))
    (paper,), (adaptive,) = result.paper, result.adaptive
    for draws in (paper.defended_clean_accuracy, paper.defence_rate, adaptive.robust_accuracy):
        assert len(draws.values) == 4 and draws.mean == pytest.approx(sum(draws.values) / 4)
        assert draws.low <= draws.mean <= draws.high
    assert adaptive.num_attacked <= adaptive.n and 0 <= adaptive.robust_accuracy.mean <= 1
    report = rendering.render_report(result)
    assert "mean over 4 independent draws" in report and f"{paper.defence_rate.mean:.3f} ({paper.defence_rate.low:.3f}–{paper.defence_rate.high:.3f})" in report


def test_draws_are_independent_and_reproducible(digits: data.ImageSplit) -> None:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)).eval()
    images = ev.as_float(digits.images)
    setting = Setting(directions=1, radius=20.0, space="pixel", draws=4, seed=0)  # noisy: the draws disagree
    first = ev.defended_predictions(mlp, images, setting, "clean")
    assert len(first) == 4 and len({tuple(p.tolist()) for p in first}) == 4, "each draw has its own directions"
    assert all(torch.equal(a, b) for a, b in zip(first, ev.defended_predictions(mlp, images, setting, "clean")))
    assert not torch.equal(first[0], ev.defended_predictions(mlp, images, setting, "fgsm", "defence")[0]), "each stream has its own"


def test_bad_overrides_fail_before_any_attack_runs(lenet: torch.nn.Module, digits: data.ImageSplit, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an attack ran before the settings were checked")

    monkeypatch.setattr(ev, "paper_protocol", must_not_run)
    monkeypatch.setattr(ev, "adaptive_protocol", must_not_run)
    cases = [
        ({"square": {"queries": 0}}, "queries must be >= 1"),
        ({"square": {"quries": 5}}, "no setting 'quries'"),
        ({"square": {"queries": "many"}}, "queries must be an integer"),
        ({"cw": {"steps": 3}}, "not among the attacks run"),
        ({"square": {"seed": 1}}, "--seed"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            ev.evaluate(lenet, digits, Setting(seed=0), attacks=["fgsm", "square"], n_per_class=1, overrides=overrides)
    with pytest.raises(ConfigError, match="unknown attack"):
        ev.evaluate(lenet, digits, Setting(seed=0), attacks=["fgsm", "nope"], n_per_class=1)
    for bad in ({"draws": 0}, {"radius": -1.0}, {"directions": 2.5}, {"space": "latent"}, {"eps": -0.1}):
        with pytest.raises(ConfigError):
            Setting(**bad)  # type: ignore[arg-type]


def test_results_round_trip_through_json_and_the_report_rebuilds(lenet: torch.nn.Module, digits: data.ImageSplit, tmp_path: Path) -> None:
    setting = Setting(directions=2, draws=2, seed=1)
    result = ev.evaluate(
        lenet, digits, setting, attacks=["pgd", "pgd-min", "eot-pgd"], n_per_class=2, slow_n_per_class=1, overrides=_fast(["pgd", "pgd-min", "eot-pgd"])
    )
    assert [r.attack for r in result.paper] == ["pgd", "pgd-min"] and [r.attack for r in result.adaptive] == ["eot-pgd"]
    assert result.attack_settings["pgd-min"]["early_stop"] is True and result.attack_settings["pgd-min"]["search_steps"] == 2
    assert result.paper[0].n == 20 and result.adaptive[0].n == 10 and result.setting.seed == 1
    # a row with no adversarial example has an undefined defence rate: NaN, written as null
    empty = ev.PaperRow("none", 20, 0.5, 0.5, ev.Draws([0.5, 0.5]), ev.Draws([0.5, 0.5]), ev.Draws([math.nan, math.nan]), 0, 0.1)
    result = ev.Evaluation(**{**{k: getattr(result, k) for k in result.__dataclass_fields__}, "paper": [*result.paper, empty]})
    (swept,) = ev.sweep(lenet, digits, {"directions": [1, 2]}, setting, attack="pgd", n_per_class=1)
    assert swept.values == [1.0, 2.0] and len(swept.clean_accuracy[0].values) == 2 and swept.plain_seconds_per_image > 0
    report = rendering.write_report(tmp_path, result, [swept])
    assert json.loads((tmp_path / "evaluation.json").read_text())["paper"][2]["defence_rate"]["values"] == [None, None]
    loaded = ev.Evaluation.load(tmp_path / "evaluation.json")
    assert loaded.to_dict() == result.to_dict() and isinstance(loaded.setting, Setting) and isinstance(loaded.paper[2].defence_rate, ev.Draws)
    assert math.isnan(loaded.paper[2].defence_rate.values[0]) and str(loaded.paper[2].defence_rate) == "nan"
    assert ev.Sweep.load(tmp_path / "sweep-directions.json") == swept
    assert rendering.rebuild_report(tmp_path) == report.read_text()
    assert "paper: defence rate" in report.read_text() and (tmp_path / "sweep-directions.png").stat().st_size > 0


def test_cli_evaluate_and_sweep(lenet: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = models.save(lenet, tmp_path / "lenet", data="digits")
    out = tmp_path / "out"
    argv = [
        "robust",
        "evaluate",
        str(path),
        "--data",
        "digits",
        "--attacks",
        "fgsm,square",
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
        "--eps",
        "16/255",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["setting"]["directions"] == 2 and saved["setting"]["draws"] == 2 and saved["attack_settings"]["square"]["queries"] == 5
    assert saved["setting"]["eps"] == pytest.approx(16 / 255)
    capsys.readouterr()
    assert main(argv) == 2 and "exists" in capsys.readouterr().err
    sweep_argv = [
        "robust",
        "sweep",
        str(path),
        "--data",
        "digits",
        "--n-per-class",
        "1",
        "--radii",
        "1,3",
        "--directions",
        "2",
        "--draws",
        "1",
        "-o",
        str(tmp_path / "sw"),
    ]
    assert main(sweep_argv) == 0
    assert (tmp_path / "sw" / "sweep-radius.png").exists() and not (tmp_path / "sw" / "evaluation.json").exists()


def test_cli_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, veilnet.cli as c, veilnet.robust.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_demo_step(lenet: torch.nn.Module, tmp_path: Path) -> None:
    summary = robust_demo(lenet, data.load("digits", split="test"), tmp_path, n_per_class=2)
    assert Path(summary["report"]).exists() and [r["attack"] for r in summary["rows"]] == ["fgsm", "pgd", "fgsm-min"]
    assert len(summary["rows"][0]["defence_rate"]["values"]) == 5


@pytest.mark.shared
def test_defence_undoes_smallest_budget_examples_but_not_full_budget_ones(cifar_jpeg_zip, shared_models) -> None:  # type: ignore[no-untyped-def]
    """The paper's high FGSM defence rate needs its Foolbox setting (smallest budget); at the full
    ε = 8/255 the defence recovers almost nothing (pretrained ResNet-20, 50 JPEG test images)."""
    model = models.load_cifar_resnet(shared_models / "resnet20-12fca82f.th")
    split = data.load(f"folder:{cifar_jpeg_zip}", split="test")
    result = ev.evaluate(model, split, Setting(seed=0, draws=2), attacks=["fgsm", "fgsm-min"], n_per_class=5)
    full, smallest = result.paper
    assert full.num_adversarial >= 20 and smallest.num_adversarial == full.num_adversarial
    assert full.defence_rate.high <= 0.15 and smallest.defence_rate.low >= 0.5, (full.defence_rate, smallest.defence_rate)


def _sweep(attack: str, rates: list[list[float]]) -> ev.Sweep:
    draws = [ev.Draws(r) for r in rates]
    return ev.Sweep(
        model="m", parameter="radius", values=[1.0, 2.0], setting=Setting(seed=0), attack=attack, n=20, num_adversarial=17,
        clean_accuracy=[ev.Draws([0.8, 0.8])] * 2, defence_rate=draws, seconds_per_image=[1e-3, 1e-3], plain_seconds_per_image=1e-4,
    )  # fmt: skip


def test_a_sweep_whose_defence_rate_is_zero_everywhere_says_so_and_stays_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line of zeros must not hide on the x-axis: the plot has a margin below 0 and a note, and so
    has the report; a sweep with a non-zero rate gets no note."""
    figures: list[Any] = []
    save = rendering.save_figure

    def keep(fig: Any, *args: Any, **kwargs: Any) -> Path:
        figures.append((fig.axes[0].get_ylim(), [t.get_text() for t in fig.axes[0].texts]))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(rendering, "save_figure", keep)
    zero = _sweep("pgd", [[0.0, 0.0], [0.0, 0.0]])
    report = rendering.write_report(tmp_path, None, [zero]).read_text()
    ((ylim, texts),) = figures
    assert ylim[0] < 0 < 1 < ylim[1]
    assert "Defence rate 0 at every radius swept: pgd defeats the defended model on all 17 examples here" in report
    assert "the paper's setting is pgd-min" in report and any("pgd defeats" in t.replace("\n", " ") for t in texts)
    assert "defence rate: the fraction of the 17 adversarial examples (pgd, made once on the undefended model)" in report
    assert rendering.sweep_note(_sweep("pgd-min", [[0.0, 0.0], [0.1, 0.0]])) is None
    assert "pgd-min defeats" in str(rendering.sweep_note(_sweep("pgd-min", [[0.0, 0.0], [0.0, 0.0]])))
    assert "no adversarial example" in str(rendering.sweep_note(_sweep("fgsm", [[math.nan], [math.nan]])))


def test_the_tables_name_counts_as_counts_and_put_the_paper_only_beside_its_setting() -> None:
    """ "attacked" is an accuracy in one table and a count in the other only with a word that says
    which; the paper's figures stand beside the smallest-ε rows only; the header names only the
    slow attacks that ran."""
    acc = ev.Draws([0.5])
    paper = [ev.PaperRow(name, 20, 0.8, 0.1, acc, acc, ev.Draws([0.0 if name == "fgsm" else 0.7]), 14, 1.0) for name in ("fgsm", "fgsm-min")]
    adaptive = [ev.AdaptiveRow("eot-pgd", 10, 8, acc, ev.Draws([0.0]), 1.0, 2.0, [[False] * 10])]
    result = ev.Evaluation("m", "digits", 2, 1, Setting(seed=0), {"fgsm": {}, "fgsm-min": {}, "eot-pgd": {}}, paper, adaptive)
    report = rendering.render_report(result)
    header = next(line for line in report.splitlines() if line.startswith("| attack |"))
    assert "| clean acc. | attacked acc. | defended clean acc. | defended attacked acc. |" in header and "| attacked |" not in header
    rows = {line.split(" | ")[0][2:]: line for line in report.splitlines() if line.startswith("| fgsm")}
    assert rows["fgsm"].endswith("| - | - | - |") and f"| {PAPER_CIFAR10['fgsm']['defence_rate']} |" in rows["fgsm-min"]
    assert "beside fgsm-min, run in its setting" in report
    assert "fgsm attacks at the full budget ε, which the paper did not, so no paper figure stands beside it." in report
    assert "| n | images attacked | defended clean acc. | robust acc. | attack success rate |" in report
    assert "images attacked: how many of them the defended model classified correctly" in report
    assert "first 2 images per class (1 for eot-pgd);" in report and "square" not in report.split("\n\n")[1]
