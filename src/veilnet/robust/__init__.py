"""Robustness against adversarial inputs: the post-averaging defence and the evasion attacks that
evaluate it.

* :class:`PostAveraging` wraps any classifier and averages its softmax outputs over 6K + 1 points
  around the input ("Bandlimiting Neural Networks Against Adversarial Attacks", section 3.1,
  Eq. 7–8).
* :class:`Smoothing`: Gaussian randomised smoothing with PREDICT and CERTIFY, a certified L2
  baseline ("Certified Adversarial Robustness via Randomized Smoothing", section 3.2).
* :mod:`veilnet.robust.attacks`: FGSM, PGD, DeepFool, C&W L2, EOT-PGD and the Square attack.
* :mod:`veilnet.robust.evaluation`: the paper's protocol (section 4, Table 1: adversarial examples
  made on the undefended model), the adaptive protocol (attacks on the defended model itself),
  and the radius and directions sweeps (Fig. 2, Table 2); :class:`Setting` holds what they share.
  Their results (and the paper's figures) are in :mod:`veilnet.robust.results`, their Markdown
  reports and plots in :mod:`veilnet.robust.rendering`.

The names below are imported on first use, so ``import veilnet.robust.setting`` (the command
line) does not import torch.

Example::

    from veilnet.robust import PostAveraging, attacks
    defended = PostAveraging(model, directions=15, radius=6.0)
    adv, success = attacks.PGD(model, eps=8 / 255)(images, labels)
    robust_acc = (defended(adv).argmax(1) == labels).float().mean()
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("attacks", "evaluation", "postavg", "rendering", "results", "setting", "smoothing"))
