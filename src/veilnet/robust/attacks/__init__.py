"""Evasion attacks on classifiers that take [0, 1] pixels, each returning the adversarial images
and a per-sample success mask (see :mod:`.base`): FGSM, PGD (L∞, random start, restarts),
DeepFool, Carlini–Wagner L2, EOT-PGD (for randomised defences), the Square attack
(score-based black box, L∞) and APGD-CE / APGD-DLR (Auto-PGD, AutoAttack's white-box components,
with Expectation over Transformation for randomised defences). :func:`create` builds one by name with the fixed evaluation
settings of :data:`SETTINGS`, so results are comparable between runs. ``fgsm-min`` and
``pgd-min`` are FGSM and PGD with Foolbox 2's default settings, the post-averaging paper's:
each image's smallest successful budget (bisection) and, for PGD, a stop at the first
adversarial iterate; their examples lie just past the decision boundary."""

from __future__ import annotations

from typing import Any

from torch import nn

from veilnet.errors import ConfigError
from veilnet.robust.attacks.apgd import APGD, APGDDLR
from veilnet.robust.attacks.base import EPS, Attack, Streams, derive_seed, project
from veilnet.robust.attacks.cw import CarliniWagnerL2
from veilnet.robust.attacks.deepfool import DeepFool
from veilnet.robust.attacks.eot_pgd import EOTPGD
from veilnet.robust.attacks.fgsm import FGSM
from veilnet.robust.attacks.pgd import PGD
from veilnet.robust.attacks.square import Square

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (FGSM, PGD, DeepFool, CarliniWagnerL2, EOTPGD, Square, APGD, APGDDLR)}

#: The named evaluation settings used by ``veilnet robust evaluate`` (beyond eps = 8/255).
SETTINGS: dict[str, dict[str, Any]] = {
    "fgsm": {},
    "pgd": {"alpha": 2 / 255, "steps": 20, "random_start": True, "restarts": 1},
    "deepfool": {"steps": 50, "overshoot": 0.02, "candidates": 10, "norm": "l2"},
    "cw": {"binary_search_steps": 9, "steps": 50, "lr": 0.01, "initial_const": 0.1, "confidence": 0.0, "abort_early": False},
    "eot-pgd": {"alpha": 2 / 255, "steps": 10, "random_start": True, "restarts": 1, "eot_samples": 2},
    "square": {"queries": 500, "p_init": 0.05},
    # Croce and Hein's 100 iterations would cost 100 × n gradients of the defence per image: on a CPU
    # the evaluation runs 50 iterations with 2 draws per gradient (set apgd-ce.steps=100 for theirs).
    "apgd-ce": {"steps": 50, "restarts": 1, "eot_samples": 2},
    "apgd-dlr": {"steps": 50, "restarts": 1, "eot_samples": 2},
    # Foolbox 2's defaults: GradientSignAttack searches ε upwards on a fine grid;
    # ProjectedGradientDescentAttack bisects ε (stepsize/ε = 0.01/0.3, 40 iterations, no random start,
    # return_early). 8 bisection rounds resolve ε to ε/256, far below one grey level (1/255).
    "fgsm-min": {"search_steps": 8},
    "pgd-min": {"alpha": EPS / 30, "steps": 40, "random_start": False, "restarts": 1, "early_stop": True, "search_steps": 8},
}
#: Named variants: the same attack class with the settings of their :data:`SETTINGS` entry.
VARIANT_OF = {"fgsm-min": "fgsm", "pgd-min": "pgd"}


def create(name: str, model: nn.Module, eps: float | None = EPS, **kwargs: Any) -> Attack:
    """The attack ``name`` on ``model`` with the settings of :data:`SETTINGS`, overridden by ``kwargs``."""
    if name not in SETTINGS:
        raise ConfigError(f"unknown attack {name!r}; expected one of {', '.join(SETTINGS)}")
    cls = ATTACKS[VARIANT_OF.get(name, name)]
    unknown = sorted(set(kwargs) - set(cls.setting_names()))
    if unknown:
        raise ConfigError(f"{name} has no setting {', '.join(map(repr, unknown))}; its settings are {', '.join(cls.setting_names())}")
    return cls(model, eps, **{**SETTINGS[name], **kwargs})


__all__ = [
    "APGD",
    "APGDDLR",
    "ATTACKS",
    "EPS",
    "SETTINGS",
    "VARIANT_OF",
    "Attack",
    "CarliniWagnerL2",
    "DeepFool",
    "EOTPGD",
    "FGSM",
    "PGD",
    "Square",
    "Streams",
    "create",
    "derive_seed",
    "project",
]
