"""Carlini–Wagner L2 (Carlini and Wagner 2017, "Towards evaluating the robustness of neural
networks"): in the change of variables ``x' = (tanh(w) + 1)/2`` minimise
``‖x' − x‖₂² + c·max(Z_y − max_{j≠y} Z_j, −κ)`` with Adam, and binary-search the constant c for
every image: halve the interval towards smaller c after a success, grow c tenfold (or bisect)
after a failure. The result is the successful x' of smallest L2 distance found."""

from __future__ import annotations

from typing import Any

import torch

from veilnet.robust.attacks.base import Attack, Streams, label_margin

#: Upper end of c's search interval while no success has been seen.
_C_MAX = 1e10


class CarliniWagnerL2(Attack):
    """Carlini–Wagner L2, a minimisation attack (the budget clips its result, see :mod:`.base`).

    Arguments:
        model: classifier on [0, 1] pixels.
        eps: L∞ budget the result is projected onto (None: unbounded).
        binary_search_steps: rounds of the search over c (default 6).
        steps: Adam steps per round (default 50).
        lr: Adam's learning rate (default 0.01).
        initial_const: c of the first round (default 0.1).
        confidence: κ, the logit margin required of a success (default 0).
        (and the keyword arguments of :class:`~veilnet.robust.attacks.base.Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        adv, success = CarliniWagnerL2(model, eps=None, binary_search_steps=6)(images, labels)
    """

    name = "cw"
    minimization = True

    def __init__(self, model: torch.nn.Module, eps: float | None = 8 / 255, *, binary_search_steps: int = 6, steps: int = 50, lr: float = 0.01, initial_const: float = 0.1, confidence: float = 0.0, **kwargs: Any) -> None:
        super().__init__(model, eps, **kwargs)
        bounds = {"binary_search_steps": 1, "steps": 1, "lr": 0.0, "initial_const": 0.0}
        self.configure(bounds, binary_search_steps=binary_search_steps, steps=steps, lr=lr, initial_const=initial_const, confidence=confidence)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, streams: Streams) -> torch.Tensor:
        n = images.shape[0]
        w0 = torch.atanh((2 * images - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), self.initial_const, device=images.device)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, _C_MAX)
        best_dist = torch.full_like(const, float("inf"))
        best = images.clone()
        for _ in range(self.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros(n, dtype=torch.bool, device=images.device)
            for _ in range(self.steps):
                adv = (torch.tanh(w) + 1) / 2
                logits = self.query(adv, streams)
                margin = label_margin(logits, labels)
                dist = (adv - images).flatten(1).pow(2).sum(1)
                loss = dist + const * (margin + self.confidence).clamp_min(0)
                optimizer.zero_grad()
                loss.sum().backward()
                with torch.no_grad():
                    success = (-margin >= self.confidence) & (logits.argmax(1) != labels)
                    better = success & (dist < best_dist)
                    best_dist = torch.where(better, dist, best_dist)
                    best[better] = adv[better].detach()
                    found |= success
                optimizer.step()
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < _C_MAX, (lower + upper) / 2, const * 10)
        return best

