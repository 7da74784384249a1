"""Reports of post-averaging's evaluations: Markdown and plots, made from the results alone.

Paper: "Bandlimiting Neural Networks Against Adversarial Attacks": the defence of section 3.1
(Eq. 7–8) under the protocols of section 4 — Table 1's layout with the paper's CIFAR-10 figures
beside ours, the adaptive attacks' table headed by their per-image worst case, and the sweeps of
Fig. 2 (radius) and Table 2 (directions, with time per image) — and randomised smoothing's
certified baseline beside it (``veilnet robust certify``). Each report is rendered from the
results of :mod:`veilnet.robust.results` alone, so it can be rebuilt from their JSON without
rerunning (:func:`rebuild_report`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from veilnet.paths import write_text
from veilnet.report import markdown_table, plot_backend, save_figure
from veilnet.robust import attacks as attack_zoo
from veilnet.robust.certification import certified_accuracy, max_radius
from veilnet.robust.evaluation import SLOW_ATTACKS, worst_case
from veilnet.robust.results import (
    PAPER_CIFAR10,
    PAPER_CIFAR10_CONDITIONS,
    PAPER_ROW_OF,
    SQUARE_PAPER_ROBUST_ACCURACY,
    Certification,
    Draws,
    Evaluation,
    Sweep,
)
from veilnet.robust.setting import Setting


def paper_table(evaluation: Evaluation, *, with_paper: bool = True) -> str:
    """Table 1's layout, with the paper's CIFAR-10 figures in adjacent columns when ``with_paper``
    (on the rows run in the paper's setting only, :data:`~veilnet.robust.results.PAPER_ROW_OF`)."""
    headers = ["attack", "n", "clean acc.", "attacked acc.", "defended clean acc.", "defended attacked acc.", "defence rate", "#Adv"]
    if with_paper:
        headers += ["paper: defended clean acc.", "paper: defence rate", "paper: #Adv / n"]
    rows = []
    for row in evaluation.paper:
        cells: list[Any] = [
            row.attack,
            row.n,
            row.clean_accuracy,
            row.attacked_accuracy,
            str(row.defended_clean_accuracy),
            str(row.defended_attacked_accuracy),
            str(row.defence_rate),
            row.num_adversarial,
        ]
        if with_paper:
            ref = PAPER_CIFAR10.get(PAPER_ROW_OF.get(row.attack, ""), {})
            cells += [ref.get("defended_clean_accuracy", "-"), ref.get("defence_rate", "-"), ref["num_adversarial"] / 10000 if ref else "-"]
        rows.append(cells)
    return markdown_table(headers, rows)


def paper_legend(evaluation: Evaluation) -> str:
    """What each column of :func:`paper_table` is, and which rows the paper's figures stand beside."""
    legend = (
        "Columns: n: images evaluated. clean acc. / attacked acc.: the undefended model's accuracy on the clean images and on the Attacked set "
        "(every image it classifies correctly replaced by the attack's adversarial example, where the attack found one). "
        "defended …: the same accuracies of the defended model. #Adv: how many adversarial examples the attack found; "
        "defence rate: the fraction of them the defended model classifies correctly."
    )
    run = [row.attack for row in evaluation.paper]
    within, beyond = [a for a in run if a in PAPER_ROW_OF], [a for a in run if a not in PAPER_ROW_OF]
    parts = [f"beside {' and '.join(within)}, run in its setting (the smallest perturbation that fools the model, Foolbox 2's defaults)"] if within else []
    if beyond:
        one = len(beyond) == 1
        parts.append(
            f"{' and '.join(beyond)} {'attacks' if one else 'attack'} at the full budget ε, which the paper did not, "
            f"so no paper figure stands beside {'it' if one else 'them'}"
        )
    return f"{legend} paper: the paper's Table 1 ({PAPER_CIFAR10_CONDITIONS}); " + "; ".join(parts) + "."


#: How the adaptive table names each setting of the defence's randomness.
RANDOMNESS_NAMES = {"fresh": "fresh per query", "fixed": "fixed per draw (seeded)"}

ADAPTIVE_LEGEND = (
    "Columns: n: images evaluated. images attacked: how many of them the defended model classified correctly, which the attack then ran on "
    "(with fixed directions, summed over every draw's run). defended clean acc.: the defended model's accuracy on the n clean images; "
    "robust acc.: its accuracy on the Attacked set (the attack's output where an image was attacked, the clean image elsewhere); "
    "attack success rate: the fraction of the images attacked that the attack fooled. "
    "paper / attack authors: the robust accuracy of post-averaging on CIFAR-10 under the Square attack, reported by that attack's authors."
)


def adaptive_table(evaluation: Evaluation) -> str:
    """One row per adaptive attack (:data:`ADAPTIVE_LEGEND` says what each column is)."""
    headers = [
        "attack (on the defended model)",
        "directions",
        "n",
        "images attacked",
        "defended clean acc.",
        "robust acc.",
        "attack success rate",
        "seconds",
        "paper / attack authors: robust acc.",
    ]
    rows = [
        [
            r.attack,
            RANDOMNESS_NAMES[r.randomness],
            r.n,
            r.num_attacked if r.randomness == "fresh" else f"{r.num_attacked} in {len(r.robust_images)} runs",
            str(r.defended_clean_accuracy),
            str(r.robust_accuracy),
            r.attack_success_rate,
            round(r.seconds, 1),
            SQUARE_PAPER_ROBUST_ACCURACY if r.attack == "square" else "-",
        ]  # fmt: skip
        for r in evaluation.adaptive
    ]
    return markdown_table(headers, rows)


def sweep_table(result: Sweep) -> str:
    headers = [result.parameter, "defended clean acc.", "defence rate", "ms / image", "× plain"]
    rows = [
        [v, str(c), str(d), round(t * 1e3, 2), round(t / result.plain_seconds_per_image, 1)]
        for v, c, d, t in zip(result.values, result.clean_accuracy, result.defence_rate, result.seconds_per_image)
    ]
    return markdown_table(headers, rows)


def sweep_legend(result: Sweep) -> str:
    """What each column of :func:`sweep_table` is."""
    return (
        f"defended clean acc.: the defended model's accuracy on the n clean images; defence rate: the fraction of the {result.num_adversarial} "
        f"adversarial examples ({result.attack}, made once on the undefended model) that the defended model classifies correctly; "
        "ms / image: the defended model's time per clean image; × plain: that time over the undefended model's."
    )


def sweep_note(result: Sweep) -> str | None:
    """A sentence for a sweep whose defence-rate line says nothing on its own: no adversarial
    example to defend (every rate undefined), or every rate 0 (the line lies on the x-axis)."""
    means = [d.mean for d in result.defence_rate]
    if all(math.isnan(m) for m in means):
        return f"{result.attack} found no adversarial example on these {result.n} images, so there is no defence rate to plot."
    if any(m != 0 for m in means):
        return None
    smallest = {full: variant for variant, full in attack_zoo.VARIANT_OF.items()}.get(result.attack)
    why = f" ({result.attack} spends the full budget ε; the paper's setting is {smallest}, the smallest successful ε)" if smallest else ""
    return f"Defence rate 0 at every {result.parameter} swept: {result.attack} defeats the defended model on all {result.num_adversarial} examples here{why}."


def _draws_note(setting: Setting) -> str:
    if setting.draws == 1:
        return "Defended accuracies: one draw of the defence's random directions."
    return f"Defended accuracies: mean over {setting.draws} independent draws of the defence's random directions, (min–max) over the draws."


def _randomness_note(setting: Setting) -> str:
    if setting.randomness == "fresh":
        return "Directions fresh at every query of the attack (the Square attack authors' setting); robust accuracy judged by fresh draws."
    return (
        f"Directions fixed: each of the {setting.draws} draws of the defence is one seeded set of K directions shared by every image and query; "
        "each attack ran once per draw against it, on the images that draw classifies correctly, and was judged by the same draw."
    )


def render_report(evaluation: Evaluation | None = None, sweeps: Sequence[Sweep] = ()) -> str:
    """The Markdown report of an evaluation and its sweeps, from the results alone (so it can be
    rebuilt from their JSON, :func:`rebuild_report`). Sweeps are listed radius first."""
    parts = []
    if evaluation is not None:
        s = evaluation.setting
        slow = [r.attack for r in [*evaluation.paper, *evaluation.adaptive] if r.attack in SLOW_ATTACKS]
        fewer = f" ({evaluation.slow_n_per_class} for {', '.join(slow)})" if slow and evaluation.slow_n_per_class != evaluation.n_per_class else ""
        parts.append(
            f"# Post-averaging: {evaluation.model} on {evaluation.data}\n\n"
            f"Defence: K = {s.directions}, r = {s.radius} ({s.space} space); ε = {s.eps:.5g} (L∞); "
            f"first {evaluation.n_per_class} images per class{fewer}; seed {s.seed}.\n"
            f"{_draws_note(s)}\n"
        )
        if evaluation.paper:
            parts.append(
                "## Paper protocol (attacks on the undefended model; Table 1)\n\n" + paper_table(evaluation) + "\n\n" + paper_legend(evaluation) + "\n"
            )
        if evaluation.adaptive:
            worst = worst_case(evaluation.adaptive)
            headline = (
                ""
                if worst is None
                else (
                    f"**Robust accuracy, worst case over {', '.join(r.attack for r in evaluation.adaptive)}: {worst}** "
                    f"(an image counts as robust only if every attack failed on it; n = {evaluation.adaptive[0].n}).\n\n"
                )
            )
            parts.append(
                "## Adaptive protocol (attacks on the defended model)\n\n"
                + _randomness_note(s)
                + "\n\n"
                + headline
                + adaptive_table(evaluation)
                + "\n\n"
                + ADAPTIVE_LEGEND
                + "\n"
            )
        parts.append("Settings: " + ", ".join(f"{k} {v}" for k, v in evaluation.attack_settings.items()) + "\n")
    for result in sorted(sweeps, key=lambda r: ("radius", "directions").index(r.parameter)):
        fixed = {k: v for k, v in result.setting.defence.items() if k != result.parameter}
        parts.append(
            f"## Sweep over {result.parameter} ({result.attack} adversarials, n = {result.n}, #Adv = "
            f"{result.num_adversarial}, {fixed}, ε = {result.setting.eps:.5g}, seed {result.setting.seed})\n\n"
            + f"{_draws_note(result.setting)}\n\n"
            + sweep_table(result)
            + f"\n\n{sweep_legend(result)}\n\n"
            + (f"**{note}**\n\n" if (note := sweep_note(result)) else "")
            + f"Plain model: {result.plain_seconds_per_image * 1e3:.3f} ms / image. Plot: sweep-{result.parameter}.png\n"
        )
    return "\n".join(parts)


def write_report(out_dir: str | Path, evaluation: Evaluation | None = None, sweeps: Sequence[Sweep] = ()) -> Path:
    """JSON for every result (``evaluation.json``, ``sweep-PARAMETER.json``), a PNG plot per sweep
    and ``report.md`` (:func:`render_report`); returns the report's path."""
    out = Path(out_dir)
    if evaluation is not None:
        evaluation.save(out / "evaluation.json")
    for result in sweeps:
        result.save(out / f"sweep-{result.parameter}.json")
        plot_sweep(result, out / f"sweep-{result.parameter}.png")
    return write_text(out / "report.md", render_report(evaluation, sweeps))


def rebuild_report(out_dir: str | Path) -> str:
    """The ``report.md`` of ``out_dir``, rebuilt from its JSON results alone (no rerun)."""
    out = Path(out_dir)
    evaluation = Evaluation.load(out / "evaluation.json") if (out / "evaluation.json").exists() else None
    sweeps = [Sweep.load(out / f"sweep-{p}.json") for p in ("radius", "directions") if (out / f"sweep-{p}.json").exists()]
    return render_report(evaluation, sweeps)


def plot_sweep(result: Sweep, path: str | Path) -> Path:
    """Defence rate and clean accuracy (means over the draws, bars: min–max) against the swept
    parameter (and time per image for K)."""
    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for series, style, label in ((result.defence_rate, "o-", f"defence rate ({result.attack})"), (result.clean_accuracy, "s--", "defended clean accuracy")):
        means = [d.mean for d in series]
        spread = [[m - d.low for m, d in zip(means, series)], [d.high - m for m, d in zip(means, series)]]
        ax.errorbar(result.values, means, yerr=spread, fmt=style, capsize=3, label=label, clip_on=False)
    ax.set_xlabel("radius r" if result.parameter == "radius" else "directions K")
    ax.set_ylabel("fraction correct")
    ax.set_ylim(-0.05, 1.05)  # a margin, so a line at 0 or 1 stands clear of the axes
    ax.legend(loc="center left", fontsize=8)
    note = sweep_note(result)
    if note is not None:
        ax.text(0.5, 0.12, textwrap.fill(note, 60), transform=ax.transAxes, ha="center", fontsize=7, color="tab:red")
    if result.parameter == "directions":
        twin = ax.twinx()
        twin.plot(result.values, [t * 1e3 for t in result.seconds_per_image], "^:", color="gray")
        twin.set_ylabel("ms per image", color="gray")
    ax.set_title(f"post-averaging: {result.model} (n = {result.n})")
    return save_figure(fig, path, dpi=120)


# -- the certified baseline (veilnet robust certify) ------------------------------------------


def render_certification(result: Certification) -> str:
    """The Markdown report of ``result`` (rebuilt from its JSON alone)."""
    s = result.setting
    abstained = sum(label < 0 for label in result.smoothed_labels)
    headers = [
        "L2 radius (pixels)",
        f"smoothing σ = {result.sigma:g}: certified accuracy",
        "post-averaging: robust accuracy (EOT-PGD L2)",
        "undefended: accuracy (PGD L2)",
    ]
    rows: list[list[Any]] = [
        ["0 (clean)", result.smoothed_clean_accuracy, str(result.postavg[0].defended_clean_accuracy) if result.postavg else "-", result.clean_accuracy]
    ]
    rows += [[r, c, str(p.robust_accuracy), u] for r, c, p, u in zip(result.radii, result.certified_accuracy, result.postavg, result.undefended_accuracy)]
    n_images = len(result.labels)
    return (
        f"# Certified baseline: randomised smoothing beside post-averaging — {result.model} on {result.data}\n\n"
        f"{n_images} images (first {result.n_per_class} per class); seed {s.seed}; device {s.device}.\n\n"
        f"Randomised smoothing (Cohen et al. 2019, CERTIFY): Gaussian noise σ = {result.sigma:g} in [0, 1] pixel space, "
        f"n0 = {result.n0} selection and n = {result.n} estimation samples, α = {result.alpha:g}; abstained on {abstained} of {n_images} images. "
        f"With n samples no radius above σ Φ⁻¹(α^(1/n)) = {max_radius(result.sigma, result.n, result.alpha):.3f} "
        f"can be certified (all n samples in the top class). "
        f"Certified accuracy at r: correct, not abstained, certified radius ≥ r (a lower bound, each certificate holding with probability ≥ 1 − α).\n\n"
        f"Post-averaging: K = {s.directions}, r = {s.radius:g} ({s.space} space), attacked through the defence by EOT-PGD in the L2 ball "
        f"(an upper bound on its robust accuracy: a failed attack proves nothing). {_certification_draws_note(s.draws)}\n\n"
        + markdown_table(headers, rows)
        + "\n\nAttack settings: "
        + "; ".join(f"{name} {options}" for name, options in result.attack_settings.items())
        + "\n\nSeconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
        + ".\n\nPlot: certify.png\n"
    )


def _certification_draws_note(draws: int) -> str:
    if draws == 1:
        return "Its accuracies: one draw of its random directions."
    return f"Its accuracies: mean over {draws} draws of its random directions, (min–max) over the draws."


def plot_certification(result: Certification, path: str | Path) -> Path:
    """Certified accuracy against radius (a step curve over every certified radius) with
    post-averaging's and the undefended model's accuracies at the compared radii (and clean, at 0)."""
    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    top = max([*result.radii, *result.certified_radii]) * 1.05
    grid = torch.linspace(0, top, 200)
    labels, predicted, radii = torch.tensor(result.labels), torch.tensor(result.smoothed_labels), torch.tensor(result.certified_radii)
    ax.plot(grid.tolist(), [certified_accuracy(labels, predicted, radii, float(r)) for r in grid], "-", label=f"smoothing σ = {result.sigma:g} (certified)")
    at = [0.0, *result.radii]  # radius 0: the clean accuracies
    robust: list[Draws] = [result.postavg[0].defended_clean_accuracy, *(row.robust_accuracy for row in result.postavg)] if result.postavg else []
    means = [d.mean for d in robust]
    ax.errorbar(
        at[: len(robust)],
        means,
        yerr=[[m - d.low for m, d in zip(means, robust)], [d.high - m for m, d in zip(means, robust)]],
        fmt="o--",
        capsize=3,
        label="post-averaging (EOT-PGD L2)",
    )
    ax.plot(at, [result.clean_accuracy, *result.undefended_accuracy], "s:", color="gray", label="undefended (PGD L2)")
    ax.set_xlabel("L2 radius ([0, 1] pixels)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{result.model} (n = {len(result.labels)})")
    return save_figure(fig, path, dpi=120)


def write_certification(out_dir: str | Path, result: Certification) -> Path:
    """``certification.json``, ``certify.png`` (:func:`plot_certification`) and ``report.md``
    (:func:`render_certification`) in ``out_dir``; returns the report's path."""
    out = Path(out_dir)
    result.save(out / "certification.json")
    plot_certification(result, out / "certify.png")
    return write_text(out / "report.md", render_certification(result))


__all__ = ["rebuild_report", "render_report", "write_report"]
