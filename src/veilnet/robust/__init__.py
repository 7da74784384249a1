"""Robustness against adversarial inputs: the post-averaging defence and the evasion attacks that
evaluate it.

* :class:`PostAveraging` wraps any classifier and averages its softmax outputs over 6K + 1 points
  around the input (Eq. 7–8 of "Bandlimiting Neural Networks Against Adversarial Attacks",
  ``papers/bandlimiting-post-averaging.txt``).
* :mod:`veilnet.robust.attacks`: FGSM, PGD, DeepFool, C&W L2, EOT-PGD and the Square attack.
* :mod:`veilnet.robust.evaluation`: the paper's protocol (Table 1: adversarial examples made on the
  undefended model), the adaptive protocol (attacks on the defended model itself), and the radius
  and directions sweeps (Fig. 2, Table 2).

Example::

    from veilnet.robust import PostAveraging, attacks
    defended = PostAveraging(model, directions=15, radius=6.0)
    adv, success = attacks.PGD(model, eps=8 / 255)(images, labels)
    robust_acc = (defended(adv).argmax(1) == labels).float().mean()
"""

from veilnet.robust import attacks
from veilnet.robust.evaluation import Evaluation, Sweep, demo_step, evaluate, sweep, write_report
from veilnet.robust.postavg import PostAveraging

__all__ = ["Evaluation", "PostAveraging", "Sweep", "attacks", "demo_step", "evaluate", "sweep", "write_report"]
