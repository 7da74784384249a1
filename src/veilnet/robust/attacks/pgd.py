"""PGD, projected gradient descent in the L∞ ball (Kurakin et al. 2016; Madry et al. 2017):
from a uniform random start in the ball, repeat ``x ← Π(x + α·sign(∇ₓ L(x, y)))`` where Π clips
to the ε-ball around the image and to [0, 1]; restarts retry the samples not yet fooled. With
``norm="l2"`` ε is an L2 budget and the step is the normalised gradient, ``x ← Π(x + α·g/‖g‖₂)``,
Π scaling the perturbation back onto the L2 ball (Madry et al. 2017, section 5, L2 attacks); the
random start is a Gaussian direction at a uniform radius in [0, ε]. The
step α is given for the budget ε the attack was built with and scales with the budget,
α' = α·ε'/ε, when it runs at others (other budgets of :meth:`run`, the budget search), as
Foolbox does. ``early_stop`` freezes each sample at its first adversarial iterate (Foolbox 2's
``return_early``), which leaves it just past the decision boundary rather than deep inside the
wrong class."""

from __future__ import annotations

from typing import Any

import torch

from veilnet.robust.attacks.base import Restarted, Streams, project


class PGD(Restarted):
    """L∞ projected gradient descent with random start and restarts.

    Arguments:
        model: classifier on [0, 1] pixels.
        eps: L∞ budget (default 8/255).
        alpha: step size (default 2/255).
        steps: gradient steps per restart (default 20).
        random_start: start from a uniform point of the ε-ball (default True).
        restarts: attempts; each later one runs only on the samples not fooled yet (default 1).
        early_stop: stop moving a sample once it is misclassified (default False).
        norm: ``"linf"`` (default) or ``"l2"``: the ball ε and α are measured in.
        (and the keyword arguments of :class:`Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        adv, success = PGD(model, eps=8 / 255, alpha=2 / 255, steps=20)(images, labels)
    """

    name = "pgd"

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float | None = 8 / 255,
        *,
        alpha: float = 2 / 255,
        steps: int = 20,
        random_start: bool = True,
        restarts: int = 1,
        early_stop: bool = False,
        norm: str = "linf",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        self.configure(
            {"alpha": 0.0, "steps": 1, "restarts": 1},
            choices={"norm": ("linf", "l2")},
            alpha=alpha,
            steps=steps,
            random_start=random_start,
            restarts=restarts,
            early_stop=early_stop,
            norm=norm,
        )

    def max_queries(self) -> int:
        """``steps`` gradients and one check per restart."""
        return self.restarts * (self.steps + 1)

    def attempt(self, x: torch.Tensor, y: torch.Tensor, e: torch.Tensor, sub: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` signed-gradient steps from the start, projected after each; then one forward
        pass judges the samples still moving (those ``early_stop`` stopped were judged by their
        last step's logits)."""
        assert self.eps is not None
        alpha = self.alpha * e / self.eps if self.eps > 0 else e
        adv = project(x + self._random_step(x, e, sub), x, e, self.norm) if self.random_start else x.clone()
        win = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        live = torch.arange(x.shape[0], device=x.device)  # the samples still moving, and their
        now, xl, yl, el, al, sl = adv, x, y, e, alpha, sub  # iterates, images, labels, budgets, steps, streams
        for _ in range(self.steps):
            grad, logits = self.gradient(now, yl, sl)
            if self.early_stop:
                moving = logits.argmax(1) == yl
                if not moving.all():
                    adv[live[~moving]], win[live[~moving]] = now[~moving], True
                    live, grad, sl = live[moving], grad[moving], sl[moving]
                    now, xl, yl, el, al = (t[moving] for t in (now, xl, yl, el, al))
                    if not len(live):
                        return adv, win
            now = project(now + al * self._ascent(grad), xl, el, self.norm)
        adv[live], win[live] = now, self.is_adversarial(now, yl, sl)
        return adv, win

    def _ascent(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest ascent direction of unit norm: sign(g) for L∞, g/‖g‖₂ for L2."""
        if self.norm == "l2":
            return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return grad.sign()

    def _random_step(self, x: torch.Tensor, e: torch.Tensor, sub: Streams) -> torch.Tensor:
        """The random start's offset: uniform in the L∞ ball; for L2, a Gaussian direction scaled
        to a radius uniform in [0, ε] (drawn from each sample's attack generator)."""
        if self.norm == "l2":
            direction = self._ascent(sub.randn(*x.shape[1:], device=x.device))
            return direction * e * sub.rand(1, 1, 1, device=x.device)
        return e * (2 * sub.rand(*x.shape[1:], device=x.device) - 1)
