"""Attacks on what a complex-valued network hides — Xiang et al., "Interpretable Complex-Valued
Neural Networks for Privacy Protection" (ICLR 2020), section 4.3.

The adversary is the server or an eavesdropper: it sees the encoded features x (and Φ(x)), knows
the released encoder, processor and decoder, trains on its own images, and never sees θ, the
fooling counterpart b or its image I′.

* :mod:`veilnet.complex.attacks.angle` — angle recovery: the paper's discriminator attack
  (θ̂ = argmax_θ D′(Re[x·e^{−iθ}])) and a supervised angle regression, with the wrapped angle
  metric and how often θ̂ lands on θ + π (which decodes −a).

* :mod:`veilnet.complex.attacks.inversion` — feature inversion of x: the paper's inversion
  attacks 1 (dec(a*)) and 2 (dec(x)), the same inverter on the real baselines' features, and the
  phase-invariant inversion that needs no angle.

* :mod:`veilnet.complex.attacks.suite` — every attack (angle, inversion, property inference,
  the stronger ones) on a complex network beside its real baselines, on the same victim images:
  what ``veilnet complex attack`` runs and reports.

The learned U-Net inverter, the optimisation inversion, the reconstruction metrics and property
inference work on any features and live in :mod:`veilnet.attacks`. The names below are imported on first use.
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("angle", "inversion", "suite"))
