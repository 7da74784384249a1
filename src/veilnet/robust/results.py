"""The results of evaluating post-averaging, and the paper's figures they are set beside.

Paper: "Bandlimiting Neural Networks Against Adversarial Attacks": the defence of section 3.1
(Eq. 7–8) measured with the protocols of section 4 (Table 1, Fig. 2, Table 2) by
:mod:`veilnet.robust.evaluation`, and beside randomised smoothing's certificates by
:mod:`veilnet.robust.certification`. Each result is a frozen dataclass mixing in
:class:`veilnet.report.Result`, so its JSON rebuilds it and a report can be rebuilt without
rerunning (:mod:`veilnet.robust.rendering`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from veilnet.report import Result
from veilnet.robust.setting import Setting

#: The paper's CIFAR-10 row of Table 1 (ResNet-110, r = 6, K = 15, ε = 8/255).
PAPER_CIFAR10 = {
    "clean_accuracy": 0.9368,
    "fgsm": {
        "attacked_accuracy": 0.1816,
        "defended_clean_accuracy": 0.9247,
        "defended_attacked_accuracy": 0.8022,
        "defence_rate": 0.8080,
        "num_adversarial": 7552,
    },
    "pgd": {
        "attacked_accuracy": 0.0000,
        "defended_clean_accuracy": 0.9255,
        "defended_attacked_accuracy": 0.8841,
        "defence_rate": 0.9330,
        "num_adversarial": 9368,
    },
    "deepfool": {
        "attacked_accuracy": 0.1968,
        "defended_clean_accuracy": 0.9254,
        "defended_attacked_accuracy": 0.8626,
        "defence_rate": 0.8872,
        "num_adversarial": 7413,
    },
    "cw": {
        "attacked_accuracy": 0.0322,
        "defended_clean_accuracy": 0.9257,
        "defended_attacked_accuracy": 0.8902,
        "defence_rate": 0.9367,
        "num_adversarial": 9046,
    },
}
#: What :data:`PAPER_CIFAR10` was measured on, for the reports that set it beside ours.
PAPER_CIFAR10_CONDITIONS = "ResNet-110 on the 10,000 CIFAR-10 test images, K = 15, r = 6, ε = 8/255"
#: Our attacks run in the paper's setting (Foolbox 2's defaults: the smallest successful ε, or a
#: minimal-perturbation attack) → the row of :data:`PAPER_CIFAR10` they are comparable to. The
#: full-budget ``fgsm`` and ``pgd`` are not the paper's setting and have no row.
PAPER_ROW_OF = {"fgsm-min": "fgsm", "pgd-min": "pgd", "deepfool": "deepfool", "cw": "cw"}
#: Robust accuracy of post-averaging on CIFAR-10 under the Square attack, reported by its authors.
SQUARE_PAPER_ROBUST_ACCURACY = 0.158


@dataclass(frozen=True)
class Draws(Result):
    """One accuracy of the defended model over independent draws of its random directions."""

    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values and not any(math.isnan(v) for v in self.values) else math.nan

    @property
    def low(self) -> float:
        return min(self.values) if self.values and not math.isnan(self.mean) else math.nan

    @property
    def high(self) -> float:
        return max(self.values) if self.values and not math.isnan(self.mean) else math.nan

    def __str__(self) -> str:
        """``mean (min–max)`` with 3 decimals; the mean alone for one draw; ``nan`` when undefined."""
        if math.isnan(self.mean):
            return "nan"
        return f"{self.mean:.3f}" if len(self.values) == 1 else f"{self.mean:.3f} ({self.low:.3f}–{self.high:.3f})"


@dataclass(frozen=True)
class PaperRow(Result):
    """One row of the paper's Table 1 for one attack made on the undefended model."""

    attack: str
    n: int
    clean_accuracy: float
    attacked_accuracy: float
    defended_clean_accuracy: Draws
    defended_attacked_accuracy: Draws
    defence_rate: Draws
    num_adversarial: int
    seconds: float


@dataclass(frozen=True)
class AdaptiveRow(Result):
    """An attack on the defended model itself: the defended model's clean and robust accuracy.

    ``robust_images[d][i]``: whether, in draw d of the defence, image i of the ``n`` was classified
    correctly on the Attacked set (empty in results written before it was kept). ``randomness``:
    the defence's directions during the attack (:class:`~veilnet.robust.setting.Setting`); with
    ``"fixed"`` the attack ran once per draw, and ``num_attacked``, ``attack_success_rate`` and
    ``seconds`` are over all the draws' runs.
    """

    attack: str
    n: int
    num_attacked: int
    defended_clean_accuracy: Draws
    robust_accuracy: Draws
    attack_success_rate: float
    seconds: float
    robust_images: list[list[bool]] = field(default_factory=list)
    randomness: str = "fresh"


@dataclass(frozen=True)
class Evaluation(Result):
    """Both protocols for one model, defence and data subset, with every setting used."""

    model: str
    data: str
    n_per_class: int
    slow_n_per_class: int
    setting: Setting
    attack_settings: dict[str, dict[str, Any]]
    paper: list[PaperRow] = field(default_factory=list)
    adaptive: list[AdaptiveRow] = field(default_factory=list)


@dataclass(frozen=True)
class Sweep(Result):
    """Defended clean accuracy, defence rate and time per image against one defence parameter
    (the others as in ``setting``)."""

    model: str
    parameter: str
    values: list[float]
    setting: Setting
    attack: str
    n: int
    num_adversarial: int
    clean_accuracy: list[Draws]
    defence_rate: list[Draws]
    seconds_per_image: list[float]
    plain_seconds_per_image: float


@dataclass(frozen=True)
class Certification(Result):
    """One run of :func:`~veilnet.robust.certification.certify`: the per-image certificates and
    the accuracies at each radius.

    ``radii``: the L2 radii compared; ``certified_accuracy[i]``, ``postavg[i]`` and
    ``undefended_accuracy[i]`` are at ``radii[i]``. ``labels``: the images' true labels;
    ``smoothed_labels``/``certified_radii``: CERTIFY's answer per image (−1 and 0 where it abstained).
    """

    model: str
    data: str
    n_per_class: int
    sigma: float
    n0: int
    n: int
    alpha: float
    setting: Setting
    radii: list[float]
    labels: list[int]
    smoothed_labels: list[int]
    certified_radii: list[float]
    certified_accuracy: list[float]
    smoothed_clean_accuracy: float
    clean_accuracy: float
    undefended_accuracy: list[float]
    postavg: list[AdaptiveRow]
    attack_settings: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


__all__ = ["Evaluation", "Sweep"]
