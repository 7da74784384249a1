"""Attacks on any method's outputs: what a server learns from the features or outputs it sees,
whichever privacy method produced them — feature inversion (reconstruct the input from what the
server computes) and property inference.

* :mod:`veilnet.attacks.inversion` — feature inversion: a U-Net trained on the attacker's own
  (feature, image) pairs (Xiang et al., ICLR 2020, section 5.1), optimisation-based inversion
  through a released encoder, and the reconstruction metrics (the paper's E‖Î − I‖, MSE, PSNR,
  SSIM).
* :mod:`veilnet.attacks.property` — property inference: the paper's inference attacks 1–4
  (section 4.3: a classifier of a hidden property trained on raw images, on a*, on dec(a*), and
  k nearest neighbours of a*), scored by the error rate on the hidden property against chance.

Attacks that break one method live beside it: the key-recovery attacks and the learned inversion
of keyed images in :mod:`veilnet.keyed.attacks`, the evasion attacks that test post-averaging in
:mod:`veilnet.robust.attacks`, angle recovery and the inversion of encoded features in
:mod:`veilnet.complex.attacks`.

The names below are imported on first use (importing the package imports no torch).
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("inversion", "property"))
