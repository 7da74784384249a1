"""A federation's result: per-round metrics, the keyed step, the baseline -> JSON, Markdown, PNG.

Federated ViT paper (Nagamori & Kiya), Table 1: "Integrated Model" is the accuracy of encrypted
test images on the integrated model transformed with each user's key; "Baseline" the accuracy
of plain images on a model trained normally. Here the first is measured per client (and must
equal the plain integrated model's on the same images, Eq. 14), the second is the same
architecture trained centrally on the union of the partitions for the same number of epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veilnet.federated.task import FederatedConfig, KeyedReport
from veilnet.report import Result, markdown_table, plot_backend, save_figure

__all__ = ["RESULT", "REPORT", "PLOT", "FederatedResult", "markdown", "plot_rounds"]

RESULT, REPORT, PLOT = "federated.json", "report.md", "rounds.png"


@dataclass(frozen=True)
class FederatedResult(Result):
    """What a federation measured. ``rounds``: one record per round (``round``, ``train_loss``
    weighted by n_k, ``central_accuracy``/``central_loss`` of the integrated model on the whole
    test set, ``client_accuracy`` per partition on its own test images, ``clients`` that
    answered, ``seconds`` of wall time, ``local_train_seconds`` summed over the clients).
    ``keyed``: each client's key step; ``cross_key[i][j]``: client i's encrypted images on
    its copy of the model transformed with a key standing for client j's (measured by client i,
    :func:`~veilnet.federated.task.keyed_step`); ``baseline``: the centralised run (None when skipped)."""

    config: FederatedConfig
    mode: str
    initial_accuracy: float
    rounds: list[dict[str, Any]]
    keyed: list[KeyedReport]
    cross_key: list[list[float]]
    baseline: dict[str, Any] | None
    seconds: float
    flower: str
    chance: float
    model_path: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return float(self.rounds[-1]["central_accuracy"]) if self.rounds else math.nan

    @property
    def cross_key_mean(self) -> float:
        """Mean of the off-diagonal cross-key accuracies (NaN with fewer than two clients)."""
        off = [a for i, row in enumerate(self.cross_key) for j, a in enumerate(row) if i != j]
        return sum(off) / len(off) if off else math.nan


def _settings(args: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in sorted(args.items())) or "Flower's default settings"


def markdown(result: FederatedResult) -> str:
    """The report: rounds, the keyed table (Table 1 per client), cross-key, baseline."""
    c = result.config
    lines = [
        f"# Federated training: {c.model} on {c.data}",
        "",
        f"{c.clients} clients ({c.partition}{f', α = {c.alpha}' if c.partition == 'dirichlet' else ''}), "
        f"{c.rounds} rounds of {c.local_epochs} local epoch(s), FedAvg weighted by examples"
        + (f", server strategy {c.strategy} ({_settings(c.strategy_args)})" if c.strategy != "fedavg" else "")
        + (f", the clients' learning rate {c.lr_schedule} across rounds" if c.lr_schedule != "constant" else "")
        + (
            f", the updates summed with SecAgg+ (threshold {c.secagg_threshold} of "
            f"{c.clients}, clipping range ±{c.secagg_clip:g}, ±{c.secagg_stats_clip:g} for running statistics, {c.secagg_quantization} levels)"
            if c.secagg
            else ""
        )
        + f"; Flower {result.flower} ({result.mode}); {result.seconds:.1f} s in all.",
        "",
        "## Rounds",
        "",
        markdown_table(
            ["round", "train loss", "central accuracy", "mean client accuracy", "clients", "seconds", "local training s"],
            [
                [
                    r["round"],
                    r.get("train_loss", math.nan),
                    r["central_accuracy"],
                    r.get("client_mean_accuracy", math.nan),
                    r.get("clients", "?"),
                    r["seconds"],
                    r.get("local_train_seconds", math.nan),
                ]
                for r in result.rounds
            ],
        ),
    ]
    if result.keyed:
        lines += [
            "",
            "## A key per client (Table 1 of the federated ViT paper, per client)",
            "",
            markdown_table(
                ["client", "key fingerprint", "test images", "plain model, plain images", "keyed model, encrypted images", "max |Δlogit| / max |logit|"],
                [
                    [k.partition, k.fingerprint[:19] + "…", k.n_images, k.plain_accuracy, k.keyed_accuracy, f"{k.max_relative_logit_difference:.1e}"]
                    for k in result.keyed
                ],
            ),
            "",
            f"Cross-key: client i's encrypted images on its copy of the model keyed for client j (a fresh key standing for client j's, i ≠ j; "
            f"measured on client i, which keeps its keyed artefacts), mean accuracy {result.cross_key_mean:.4f} (chance {result.chance:.4f}).",
        ]
    if result.baseline is not None:
        b = result.baseline
        lines += [
            "",
            "## Centralised baseline",
            "",
            f"The same model trained on the union of the partitions for {b['epochs']} epochs: accuracy "
            f"{b['final_accuracy']:.4f} (federated: {result.final_accuracy:.4f}), {b['seconds']:.1f} s.",
        ]
    lines += [f"\n{note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def plot_rounds(result: FederatedResult, path: str | Path) -> Path:
    """Central accuracy per round (and the clients' own), beside the baseline's per epoch."""
    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs_per_round = result.config.local_epochs
    xs = [r["round"] * epochs_per_round for r in result.rounds]
    ax.plot([0, *xs], [result.initial_accuracy, *(r["central_accuracy"] for r in result.rounds)], marker="o", label="federated, central test set")
    if result.rounds and result.rounds[0].get("client_mean_accuracy") is not None:
        ax.plot(xs, [r.get("client_mean_accuracy", math.nan) for r in result.rounds], marker=".", linestyle="--", label="federated, clients' own test images")
    if result.baseline is not None:
        acc = result.baseline["accuracy"]
        ax.plot(range(1, len(acc) + 1), acc, marker="s", label="centralised baseline")
    ax.axhline(result.chance, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set_xlabel("epochs (rounds × local epochs)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{result.config.model}, {result.config.clients} clients ({result.config.partition})")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
