"""The Square attack, L∞ (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"): a score-based black box that sees only the model's
outputs (Algorithm 1 and section 3 of the paper). Start from vertical stripes of ±ε (one sign
per column and channel); at every query, propose x̂ + δ projected onto the ε-ball and [0, 1],
where δ is ±2ε (one sign per channel) on a random h×h window and 0 elsewhere, so the window
becomes x ± ε; keep the proposal when it lowers the margin loss ``Z_y − max_{j≠y} Z_j``. The
window side is h = round(sqrt(p·H·W)), at least 1 and below H; p starts at p_init and is halved
on the authors' schedule for 10,000 iterations, rescaled to the budget, so the first proposal
always uses p_init. An image stops once it is misclassified. The window's corner is uniform over
{0, …, H − h − 1} × {0, …, W − h − 1}, as in the authors' implementation and ART's (the paper's
Algorithm 2 writes {0, …, W − h}); on the digits CNN of the tests the wider range cost about 2
points of success against ART's at 300 queries, the schedule's first proposal at p/2 instead of
p_init about 3 more.

Every image draws its stripes and proposals from its own generator, and a randomised defence
that takes per-sample generators (:class:`~veilnet.robust.PostAveraging`) draws its directions
for that image from another one of its own (:mod:`.base`), so an image's result does not depend
on the batch size or on the other images of its batch."""

from __future__ import annotations

import math
from typing import Any

import torch

from veilnet.errors import ConfigError
from veilnet.robust.attacks.base import Attack, Streams, project

#: The authors' schedule for 10,000 iterations (section 4 of the paper): p = p_init / divisor up to
#: iteration t, halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


class Square(Attack):
    """L∞ Square attack (score-based, no gradients).

    Arguments:
        model: classifier on [0, 1] pixels; only its outputs are used (it may be randomised).
        eps: L∞ budget (default 8/255).
        queries: most model queries per image, the initialisation included (default 1000).
        p_init: initial fraction of the image a square covers (default 0.05, the authors' L∞ value).
        (and the keyword arguments of :class:`~veilnet.robust.attacks.base.Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        adv, success = Square(defended, eps=8 / 255, queries=1000, seed=0)(images, labels)
    """

    name = "square"

    def __init__(self, model: torch.nn.Module, eps: float | None = 8 / 255, *, queries: int = 1000, p_init: float = 0.05, **kwargs: Any) -> None:
        super().__init__(model, eps, **kwargs)
        self.configure({"queries": 1, "p_init": 0.0}, queries=queries, p_init=p_init)
        if self.p_init > 1:
            raise ConfigError(f"square: p_init is a fraction of the image, at most 1, got {p_init!r}")

    def fraction(self, proposal: int) -> float:
        """p for proposal ``proposal`` (0 for the first, made after the initialisation's query):
        the authors' 10,000-iteration schedule rescaled to the ``queries − 1`` proposals, so that
        every budget starts at p_init and ends at the schedule's end."""
        t = int(proposal / max(1, self.queries - 1) * 10000)
        divisor = 512
        for bound, value in _SCHEDULE:
            if t <= bound:
                divisor = value
                break
        return self.p_init / divisor

    def max_queries(self) -> int:
        """Its query budget."""
        return self.queries

    @torch.no_grad()
    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, streams: Streams) -> torch.Tensor:
        assert eps is not None
        n, c, h, w = images.shape
        signs = streams.rand(c, 1, w, device=images.device).round() * 2 - 1
        adv = project(images + eps * signs, images, eps)
        margin = self.margin(adv, labels, streams)
        rows = torch.arange(h, device=images.device)[None, :, None]
        cols = torch.arange(w, device=images.device)[None, None, :]
        for query in range(1, self.queries):
            active = (margin > 0).nonzero()[:, 0]
            if active.numel() == 0:
                break
            x, y, cur, e, sub = images[active], labels[active], adv[active], eps[active], streams[active]
            size = max(1, min(h - 1, round(math.sqrt(self.fraction(query - 1) * h * w))))
            draw = sub.rand(2 + c, device=images.device)  # top, left, then one sign per channel
            top = (draw[:, 0] * (h - size)).long()[:, None, None]
            left = (draw[:, 1] * (w - size)).long()[:, None, None]
            window = ((rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size))[:, None]
            colour = e * (draw[:, 2:, None, None].round() * 2 - 1)
            proposal = project(torch.where(window, x + colour, cur), x, e)
            new = self.margin(proposal, y, sub)
            better = new < margin[active]
            adv[active[better]] = proposal[better]
            margin[active[better]] = new[better]
        return adv
