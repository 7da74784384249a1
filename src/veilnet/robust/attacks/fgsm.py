"""FGSM, the fast gradient sign method (Goodfellow et al. 2014): one L∞ step of size ε along the
sign of the loss gradient, ``x' = clip(x + ε·sign(∇ₓ L(x, y)), 0, 1)``."""

from __future__ import annotations

import torch

from veilnet.robust.attacks.base import Attack, Streams


class FGSM(Attack):
    """Fast gradient sign method.

    Arguments:
        model: classifier on [0, 1] pixels.
        eps: L∞ budget (default 8/255).
        (and the keyword arguments of :class:`Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        adv, success = FGSM(model, eps=8 / 255)(images, labels)
    """

    name = "fgsm"

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, streams: Streams) -> torch.Tensor:
        assert eps is not None
        return (images + eps * self.gradient(images, labels, streams)[0].sign()).clamp(0.0, 1.0)
