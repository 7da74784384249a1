"""EOT-PGD: PGD against a randomised defence, each step's gradient averaged over ``n`` draws of
the defence's randomness (Expectation over Transformation, Athalye et al. 2018). Against
post-averaging with fresh directions, every draw is a new set of 6K random neighbours; the ``n``
copies of the batch go through the model in one forward pass."""

from __future__ import annotations

from typing import Any

import torch

from veilnet.robust.attacks.base import Streams, cross_entropy
from veilnet.robust.attacks.pgd import PGD


class EOTPGD(PGD):
    """L∞ PGD whose gradient is the average over ``eot_samples`` draws of a random model.

    Arguments:
        model: randomised classifier on [0, 1] pixels (e.g. :class:`~veilnet.robust.PostAveraging`).
        eps, alpha, steps, random_start, restarts: as for :class:`PGD`.
        eot_samples: draws averaged per step, n (default 4).
        batch_size: images attacked together (default 8, not the base class's 256): the backward
            pass keeps the activations of all n × (the defence's points) copies of each image —
            256 images × 2 draws × 91 points of a ResNet-20 filled 24 GB; 8 images peak under 3 GB.
        (and the other keyword arguments of :class:`~veilnet.robust.attacks.base.Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        defended = PostAveraging(model, directions=15, radius=6.0)
        adv, success = EOTPGD(defended, eps=8 / 255, eot_samples=4)(images, labels)
    """

    name = "eot-pgd"

    def __init__(self, model: torch.nn.Module, eps: float | None = 8 / 255, *, eot_samples: int = 4, batch_size: int = 8, **kwargs: Any) -> None:
        super().__init__(model, eps, batch_size=batch_size, **kwargs)
        self.configure({"eot_samples": 1}, eot_samples=eot_samples)

    def gradient(self, images: torch.Tensor, labels: torch.Tensor, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """(1/n) Σ ∇ₓ L over n draws of the model's randomness, as one batched forward pass, and
        the logits averaged over the draws. Copy k of sample i draws from sample i's model
        generator (see :meth:`~veilnet.robust.attacks.base.Attack.query`), after copies 0..k−1."""
        grad, _, logits = self.expected_gradient(images, labels, streams, cross_entropy, self.eot_samples)
        return grad, logits
