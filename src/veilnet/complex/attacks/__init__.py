"""Attacks on what a complex-valued network hides — Xiang et al., "Interpretable Complex-Valued
Neural Networks for Privacy Protection" (ICLR 2020), section 4.3.

The adversary is the server or an eavesdropper: it sees the encoded features x (and Φ(x)), knows
the released encoder, processor and decoder, trains on its own images, and never sees θ, the
fooling counterpart b or its image I′.

* :mod:`veilnet.complex.attacks.angle` — angle recovery: the paper's discriminator attack
  (θ̂ = argmax_θ D′(Re[x·e^{−iθ}])) and a supervised angle regression, with the wrapped angle
  metric and how often θ̂ lands on θ + π (which decodes −a).

Feature inversion and property inference work on any features and live in
:mod:`veilnet.attacks`. The names below are imported on first use.
"""

from __future__ import annotations

from veilnet._lazy import exports

_WHERE = {
    name: "angle"
    for name in (
        "CHANCE_ERROR",
        "TOLERANCE",
        "AngleAttackResult",
        "AngleCritic",
        "AngleRegressor",
        "angle_error",
        "angle_grid",
        "counterpart_fraction",
        "discriminator_angles",
        "encoder_features",
        "mirror_fraction",
        "paper_angle_attack",
        "regression_angle_attack",
        "train_angle_discriminator",
        "train_angle_regressor",
        "victim_features",
        "within_fraction",
    )
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
