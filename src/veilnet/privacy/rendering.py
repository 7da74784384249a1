"""The privacy benchmark's report: one Markdown table (a row per defence setting), a table of every
attack, and the privacy–utility plane — accuracy against the worst case's SSIM and PSNR — with each
defence's frontier over its knob and He et al.'s published points beside ours.

He et al., "Model Inversion Attacks Against Collaborative Inference" (ACSAC 2019), CIFAR-10, their
own network (six convolutional layers, cut after the first layers), ten classes, white-box
regularised maximum-likelihood inversion: no defence 0.8719 accuracy / 28.03 dB PSNR / SSIM 0.933;
dropout 0.5 0.8467 / 14.09 dB / 0.412; dropout 0.8 0.7491 / 11.95 dB / 0.190. Their network, task
(10 classes, ours 2) and attack differ from ours: the points show the shape of a published
trade-off, not figures to match.
"""

from __future__ import annotations

import math
from pathlib import Path

from veilnet.paths import write_text
from veilnet.privacy.bench import TIMING_PASSES, PrivacyReport, RowResult
from veilnet.report import markdown_table, plot_backend, save_figure

#: Where the plane draws a reconstruction of this PSNR or more (an exact one up to rounding, e.g.
#: images decrypted with a recovered key: 158 dB or infinite).
EXACT_PSNR = 50.0
#: He et al. (ACSAC 2019), CIFAR-10: setting → (accuracy, PSNR dB, SSIM).
HE_ET_AL = {"no defence": (0.8719, 28.03, 0.933), "dropout 0.5": (0.8467, 14.09, 0.412), "dropout 0.8": (0.7491, 11.95, 0.190)}


def _db(value: float) -> str:
    """A PSNR in dB; an exact reconstruction's (+inf, NaN once read back from JSON) as ∞."""
    return f"{value:.2f}" if math.isfinite(value) else "∞"


def _ms(value: float) -> str:
    return f"{value:.3g}"


def _cost(row: RowResult, reference: RowResult | None) -> tuple[str, str, str]:
    """Accuracy change and device / server time ratios against the unprotected row."""
    if reference is None or row is reference:
        return "–", "–", "–"
    return f"{100 * (row.accuracy - reference.accuracy):+.1f}", _ratio(row.device_ms, reference.device_ms), _ratio(row.server_ms, reference.server_ms)


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×" if reference > 0 else "–"


def summary_table(report: PrivacyReport) -> str:
    """A row per defence setting: accuracy (and its change in points against the unprotected
    network), device and server time per image (and their ratios), the worst case over the
    reconstruction attacks (SSIM, PSNR, RMS error, and which attack), the mean-image baseline's
    SSIM, and the best property attack's accuracy beside the chance level given the task's label."""
    reference = report.reference()
    rows = []
    for r in report.rows:
        ssim, psnr, err = r.worst("ssim"), r.worst("psnr"), r.worst("error")
        prop = r.best_property()
        d_acc, d_dev, d_srv = _cost(r, reference)
        rows.append(
            [
                f"**{r.label}**" if r.reference_row else r.label,
                f"{r.accuracy:.3f}",
                d_acc,
                f"{_ms(r.device_ms)} ({d_dev})",
                f"{_ms(r.server_ms)} ({d_srv})",
                f"**{ssim.metrics.ssim:.3f}** ({ssim.attack})" if ssim else "–",
                _db(psnr.metrics.psnr) if psnr else "–",
                f"{err.metrics.error:.3f}" if err else "–",
                f"{ssim.baseline.ssim:.3f}" if ssim else "–",
                f"{1 - prop.error:.3f} ({prop.attack})" if prop else "–",
                f"{r.property_chance:.3f}",
            ]
        )
    headers = [
        "defence",
        "accuracy",
        "Δ points",
        "device ms/img (×)",
        "server ms/img (×)",
        "worst SSIM (attack)",
        "worst PSNR dB",
        "worst RMS error",
        "mean-image SSIM",
        "hidden attribute: best attack",
        "chance given task",
    ]
    return markdown_table(headers, rows)


def attacks_table(report: PrivacyReport) -> str:
    """Every reconstruction attack of every row: PSNR, SSIM, RMS error, beside the mean image."""
    rows = [
        [
            r.label,
            a.attack,
            f"{a.metrics.psnr:.2f}",
            f"{a.metrics.ssim:.3f}",
            f"{a.metrics.error:.3f}",
            f"{a.baseline.ssim:.3f}",
            "yes" if a.beats_baseline else "**no**",
        ]
        for r in report.rows
        for a in r.inversion
    ]
    return markdown_table(["defence", "attack", "PSNR dB", "SSIM", "RMS error", "mean-image SSIM", "beats the mean image"], rows)


def render(report: PrivacyReport) -> str:
    """The whole Markdown report."""
    b = report.budget
    lines = [
        f"# Privacy benchmark: {report.data}",
        "",
        f"{report.task.described}. Training: {report.train}, {b.epochs} epochs; accuracy on {report.rows[0].n_test if report.rows else b.test_images} "
        f"test images; victims: {report.victim}; attacker: {report.attacker}, every attack model trained {b.attack_epochs} epochs "
        f"(U-Net width {b.unet_width}), optimisation inversion {b.optimisation_steps} steps; architecture {b.arch} (width {b.width:g}); seed {b.seed}.",
        f"Time per image: median of {TIMING_PASSES} passes (after a warm-up) over one batch of "
        f"{b.timing_images} images (device: what the image owner computes; server: what the untrusted server computes); ratios against the unprotected row.",
        "Worst case: the strongest attack on the row (highest SSIM, highest PSNR, lowest error, each over the row's attacks).",
        "",
        summary_table(report),
        "",
        "## Every attack",
        "",
        attacks_table(report),
    ]
    if report.failed:
        lines += ["", "## Rows that failed (run again with --resume)", ""] + [f"* {label}: {why}" for label, why in report.failed.items()]
    return "\n".join(lines) + "\n"


def plot(report: PrivacyReport, path: str | Path, *, published: bool = True) -> Path:
    """The privacy–utility plane: accuracy against the worst case's SSIM (left) and PSNR (right),
    one line per defence through its knob's settings, and He et al.'s points (grey; their network
    and ten-class task differ from ours). Up and to the left is better."""
    plt = plot_backend()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    families: dict[str, list[RowResult]] = {}
    for r in report.rows:
        families.setdefault(r.defence, []).append(r)
    markers = "osD^v<>ph*X"
    for i, (name, rows) in enumerate(families.items()):
        rows = sorted(rows, key=lambda r: (r.value is None, r.value if r.value is not None else 0.0))
        for ax, metric in zip(axes, ("ssim", "psnr")):
            raw = [getattr(r.worst(metric).metrics, metric) for r in rows]
            xs = [min(x, EXACT_PSNR) if math.isfinite(x) else EXACT_PSNR for x in raw]  # exact reconstructions drawn at EXACT_PSNR dB
            ys = [r.accuracy for r in rows]
            line = ax.plot(xs, ys, marker=markers[i % len(markers)], linestyle="-", label=name)[0]
            for r, x, y in zip(rows, xs, ys):
                text = ("" if r.value is None else r.value_name) + (" (exact)" if metric == "psnr" and x == EXACT_PSNR else "")
                if text:
                    ax.annotate(text.strip(), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=line.get_color())
    if published:
        for ax, k in zip(axes, (2, 1)):
            pts = list(HE_ET_AL.items())
            ax.plot([p[k] for _, p in pts], [p[0] for _, p in pts], "x:", color="grey", label="He et al. 2019 (their net, 10 classes)")
    axes[0].set_xlabel("worst-case SSIM of the reconstruction (lower hides more)")
    axes[1].set_xlabel(f"worst-case PSNR dB (lower hides more; ≥ {EXACT_PSNR:g}: exact)")
    for ax in axes:
        ax.set_ylabel("accuracy on the task")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"privacy–utility plane: {report.data}, {report.task.described.split(';')[0]}", fontsize=9)
    return save_figure(fig, path, dpi=120)


def write(report: PrivacyReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``privacy.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    return write_text(out / "report.md", render(report)), plot(report, out / "privacy.png")


__all__ = ["HE_ET_AL", "attacks_table", "plot", "render", "summary_table", "write"]
