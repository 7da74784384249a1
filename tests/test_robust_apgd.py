"""APGD-CE and APGD-DLR (veilnet.robust.attacks.apgd): the step-size checkpoints and the DLR loss
of Croce and Hein 2020, the Adversarial Robustness Toolbox's AutoProjectedGradientDescent as the
oracle (the same success rate within a few points at equal budget and iterations, on the digits
CNN and on the pretrained ResNet-20), Expectation over Transformation against post-averaging, the
command line, and the per-image worst case over the adaptive attacks in the robust report.

The oracle is ART's APGD: torchattacks' APGD (installed for tests/test_robust_attacks_calls.py)
starts from its own random point, so only success rates could be compared, which ART's give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_robust_attacks import _art, _art_success, _one_thread, _predict, digits  # noqa: F401  (fixtures)
from veilnet import data
from veilnet.cli import main
from veilnet.metrics import as_float
from veilnet.robust import PostAveraging, attacks, rendering
from veilnet.robust import evaluation as ev
from veilnet.robust.attacks.apgd import checkpoints, dlr_loss


def test_checkpoints_follow_the_papers_schedule() -> None:
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (then 1.05 > 1 stops)
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]


def test_dlr_is_the_margin_over_the_top_logit_gap_and_shift_scale_invariant() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0]])
    labels = torch.tensor([0, 1])
    # row 0: −(3 − 1)/(3 − 0); row 1: −(2 − 5)/(5 − 1)
    torch.testing.assert_close(dlr_loss(logits, labels), torch.tensor([-2 / 3, 3 / 4]))
    torch.testing.assert_close(dlr_loss(7 * logits - 4, labels), dlr_loss(logits, labels))


def _art_apgd(model, x, y, eps: float, steps: int, loss_type: str) -> float:  # type: ignore[no-untyped-def]
    from art.attacks.evasion import AutoProjectedGradientDescent

    np.random.seed(0)
    torch.manual_seed(0)
    art = AutoProjectedGradientDescent(
        _art(model), norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps, nb_random_init=1, batch_size=64, loss_type=loss_type, verbose=False
    )
    return _art_success(model, x, y, art.generate(x.numpy(), y.numpy()), eps)


ART_LOSS = {"apgd-ce": "cross_entropy", "apgd-dlr": "difference_logits_ratio"}


@pytest.mark.parametrize("name", list(ART_LOSS))
def test_apgd_matches_art_on_the_digits(digits, name: str) -> None:  # type: ignore[no-untyped-def]
    """η⁽⁰⁾ = 2ε as in the paper (ART's eps_step), 20 iterations, one random start, 60 images."""
    model, x, y = digits
    for eps in (16 / 255, 24 / 255):
        adv, success = attacks.create(name, model, eps, steps=20, eot_samples=1, seed=0, batch_size=64)(x, y)
        assert (adv - x).abs().max() <= eps + 1e-6 and torch.equal(success, _predict(model, adv) != y)
        ours, theirs = success.float().mean().item(), _art_apgd(model, x, y, eps, 20, ART_LOSS[name])
        assert 0.3 <= theirs <= 0.95, "the budget must leave room to differ"
        assert abs(ours - theirs) <= 0.05, (eps, ours, theirs)


@pytest.mark.shared
def test_apgd_matches_art_on_the_pretrained_resnet20(cifar_jpeg_zip, shared_models) -> None:  # type: ignore[no-untyped-def]
    from veilnet.models import load_cifar_resnet

    model = load_cifar_resnet(shared_models / "resnet20-12fca82f.th").eval()
    split = data.subset(data.load(f"folder:{cifar_jpeg_zip}", split="test"), 2)
    x, y = as_float(split.images), split.labels
    eps = 0.5 / 255  # the undefended ResNet-20 falls entirely at 1/255: a budget that leaves some standing
    for name in ART_LOSS:
        ours = attacks.create(name, model, eps, steps=10, eot_samples=1, seed=0, batch_size=20)(x, y)[1].float().mean().item()
        theirs = _art_apgd(model, x, y, eps, 10, ART_LOSS[name])
        assert abs(ours - theirs) <= 0.1, (name, ours, theirs)


def test_expectation_over_the_defences_draws(digits) -> None:  # type: ignore[no-untyped-def]
    """Against post-averaging, each gradient averages n draws: one draw on a deterministic model
    is the same attack, batch size does not change the result, and it fools the defence."""
    model, x, y = digits
    x, y = x[:20], y[:20]
    one = attacks.APGD(model, 16 / 255, steps=5, eot_samples=1, seed=1)(x, y)
    two = attacks.APGD(model, 16 / 255, steps=5, eot_samples=2, seed=1)(x, y)
    torch.testing.assert_close(one[0], two[0], atol=1e-6, rtol=0)  # deterministic model: the draws agree
    defended = PostAveraging(model, directions=2, radius=2.0, generator=torch.Generator().manual_seed(0))
    clean_errors = (_predict(defended, x) != y).float().mean()
    (small, small_win), (large, large_win) = (attacks.APGDDLR(defended, 24 / 255, steps=4, eot_samples=2, seed=3, batch_size=b)(x, y) for b in (3, 20))
    torch.testing.assert_close(small, large, atol=1e-5, rtol=0)
    assert torch.equal(small_win, large_win) and large_win.float().mean() >= clean_errors + 0.1


def test_worst_case_counts_an_image_robust_only_if_every_attack_failed() -> None:
    def row(name: str, robust: list[list[bool]]) -> ev.AdaptiveRow:
        acc = ev.Draws([sum(r) / len(r) for r in robust])
        return ev.AdaptiveRow(
            attack=name, n=4, num_attacked=4, defended_clean_accuracy=acc, robust_accuracy=acc, attack_success_rate=0.5, seconds=0.0, robust_images=robust
        )

    a = row("apgd-ce", [[True, True, False, True], [True, False, False, True]])
    b = row("square", [[True, False, True, True], [True, True, True, False]])
    assert ev.worst_case([a, b]) == ev.Draws([0.5, 0.25])
    assert ev.worst_case([a]) == a.robust_accuracy
    assert (
        ev.worst_case(
            [
                a,
                ev.AdaptiveRow(
                    **{**b.to_dict(), "robust_accuracy": b.robust_accuracy, "defended_clean_accuracy": b.defended_clean_accuracy, "robust_images": []}
                ),
            ]
        )
        is None
    )


def test_cli_runs_apgd_and_reports_the_worst_case(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from veilnet import models

    torch.manual_seed(0)
    model = models.create("lenet", num_classes=10)
    path = models.save(model, tmp_path / "m", data="digits")
    out = tmp_path / "r"
    argv = ["robust", "evaluate", str(path), "--data", "digits", "--n-per-class", "1", "--attacks", "apgd-ce,apgd-dlr", "--draws", "2", "--seed", "0",
            "--set", "apgd-ce.steps=2", "apgd-dlr.steps=2", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    evaluation = ev.Evaluation.load(out / "evaluation.json")
    assert [r.attack for r in evaluation.adaptive] == ["apgd-ce", "apgd-dlr"]
    worst = ev.worst_case(evaluation.adaptive)
    assert worst is not None and len(worst.values) == 2
    assert all(w <= min(r.robust_accuracy.values[d] for r in evaluation.adaptive) for d, w in enumerate(worst.values))
    report = (out / "report.md").read_text()
    assert f"worst case over apgd-ce, apgd-dlr: {worst}" in report
    assert rendering.rebuild_report(out) == report
