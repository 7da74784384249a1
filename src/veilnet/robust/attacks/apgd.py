"""APGD, Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", section 3, Algorithm 1), L∞, with the cross-entropy
loss (APGD-CE) or the Difference of Logits Ratio (APGD-DLR, section 4), and Expectation over
Transformation for randomised defences: every gradient, and every loss value the step-size rule
reads, is averaged over ``eot_samples`` draws of the model's randomness (as in
:class:`~veilnet.robust.attacks.eot_pgd.EOTPGD`; AutoAttack's ``rand`` version does the same).

Algorithm 1, with Π the projection onto the ε-ball and [0, 1], f the loss, η⁽⁰⁾ = 2ε and α = 0.75::

    x⁽¹⁾   = Π(x⁽⁰⁾ + η sign ∇f(x⁽⁰⁾))
    z⁽ᵏ⁺¹⁾ = Π(x⁽ᵏ⁾ + η sign ∇f(x⁽ᵏ⁾))
    x⁽ᵏ⁺¹⁾ = Π(x⁽ᵏ⁾ + α (z⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))          (momentum)

keeping x_max, the iterate of highest f. At the checkpoints w_j = ⌈p_j N_iter⌉, p₀ = 0, p₁ = 0.22,
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), a sample's step size is halved and it restarts
from x_max when

1. fewer than ρ = 0.75 of the steps since the last checkpoint raised f:
   Σ_{i=w_{j−1}}^{w_j−1} 1[f(x⁽ⁱ⁺¹⁾) > f(x⁽ⁱ⁾)] < ρ (w_j − w_{j−1}), or
2. its step size was not halved at the last checkpoint and f_max has not grown since:
   η⁽ʷʲ⁻¹⁾ = η⁽ʷʲ⁾ and f_max⁽ʷʲ⁻¹⁾ = f_max⁽ʷʲ⁾.

The DLR loss (section 4), with π the logits' indices in decreasing order:
``DLR(x, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)``, invariant to shifting and rescaling the
logits. Each sample returns its last misclassified iterate (judged on the logits averaged over the
draws), else x_max; restarts retry the samples not fooled yet from a new random start.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from veilnet.robust.attacks.base import LossFn, Restarted, Streams, cross_entropy, label_margin, project

#: Momentum α and the fraction ρ of condition 1 (Croce and Hein 2020, section 3.2).
MOMENTUM = 0.75
RHO = 0.75


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ⌈p_j N_iter⌉`` at which the step size may be halved (w₀ = 0 first)."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 9)) for q in p})  # round: 0.41 + 0.16 is 0.5700…01 in floats


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's Difference of Logits Ratio ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)``."""
    top = logits.topk(3, dim=1).values
    return -label_margin(logits, labels) / (top[:, 0] - top[:, 2] + 1e-12)


class APGD(Restarted):
    """APGD-CE: Auto-PGD on the cross-entropy loss, L∞, with Expectation over Transformation.

    Arguments:
        model: classifier on [0, 1] pixels, deterministic or randomised (e.g. :class:`~veilnet.robust.PostAveraging`).
        eps: L∞ budget (default 8/255).
        steps: iterations N_iter per restart (default 100, the paper's).
        restarts: attempts; each later one runs only on the samples not fooled yet (default 1).
        eot_samples: draws of the model's randomness averaged per gradient and loss, n (default 1).
        random_start: start from a uniform point of the ε-ball (default True).
        batch_size: images attacked together (default 8, as for :class:`~.eot_pgd.EOTPGD`: against
            post-averaging the backward pass keeps n × (its points) copies of every image).
        (and the other keyword arguments of :class:`~veilnet.robust.attacks.base.Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        defended = PostAveraging(model, directions=15, radius=6.0)
        adv, success = APGD(defended, eps=8 / 255, steps=100, eot_samples=4)(images, labels)
    """

    name = "apgd-ce"
    #: The loss f that the attack ascends.
    loss: ClassVar[LossFn] = staticmethod(cross_entropy)

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float | None = 8 / 255,
        *,
        steps: int = 100,
        restarts: int = 1,
        eot_samples: int = 1,
        random_start: bool = True,
        batch_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps, batch_size=batch_size, **kwargs)
        self.configure({"steps": 1, "restarts": 1, "eot_samples": 1}, steps=steps, restarts=restarts, eot_samples=eot_samples, random_start=random_start)

    def max_queries(self) -> int:
        """The start's and ``steps`` gradients (each over ``eot_samples`` draws in one pass) and
        one check, per restart."""
        return self.restarts * (self.steps + 2)

    def _evaluate(self, images: torch.Tensor, labels: torch.Tensor, streams: Streams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gradient, f and misclassification of each sample, averaged over the draws."""
        grad, value, logits = self.expected_gradient(images, labels, streams, type(self).loss, self.eot_samples)
        return grad, value, logits.argmax(1) != labels

    def attempt(self, x: torch.Tensor, y: torch.Tensor, e: torch.Tensor, sub: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """One run of Algorithm 1 (see the module docstring) on the samples ``x``, judged by one
        forward pass at its results (one draw of a randomised model, as for :class:`~.pgd.PGD`,
        rather than the draws its last gradients averaged)."""
        step = 2 * e.clone()  # η, per sample
        current = project(x + e * (2 * sub.rand(*x.shape[1:], device=x.device) - 1), x, e) if self.random_start else x.clone()
        grad, value, wrong = self._evaluate(current, y, sub)
        found, fooled = current.clone(), wrong.clone()
        best, best_value, best_grad = current.clone(), value.clone(), grad.clone()
        previous = current
        marks = checkpoints(self.steps)
        last_mark, rises = 0, torch.zeros_like(value)
        last_step, last_best = step.clone(), best_value.clone()
        for k in range(1, self.steps + 1):
            if k == 1:
                moved = project(current + step * grad.sign(), x, e)
            else:
                z = project(current + step * grad.sign(), x, e)
                moved = project(current + MOMENTUM * (z - current) + (1 - MOMENTUM) * (current - previous), x, e)
            new_grad, new_value, wrong = self._evaluate(moved, y, sub)
            found[wrong], fooled = moved[wrong], fooled | wrong
            rises += (new_value > value).float()
            better = new_value > best_value
            best[better], best_value[better], best_grad[better] = moved[better], new_value[better], new_grad[better]
            previous, current, grad, value = current, moved, new_grad, new_value
            if k in marks:
                halve = (rises < RHO * (k - last_mark)) | ((step == last_step).flatten() & (best_value == last_best))
                step[halve] /= 2
                current[halve], grad[halve], value[halve] = best[halve], best_grad[halve], best_value[halve]
                last_mark, last_step, last_best = k, step.clone(), best_value.clone()
                rises.zero_()
        adv = torch.where(fooled[:, None, None, None], found, best)
        return adv, self.is_adversarial(adv, y, sub)


class APGDDLR(APGD):
    """APGD-DLR: :class:`APGD` on the Difference of Logits Ratio loss (see the module docstring);
    the same arguments. The model must have at least 3 classes."""

    name = "apgd-dlr"
    loss = staticmethod(dlr_loss)
