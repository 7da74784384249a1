"""DeepFool (Moosavi-Dezfooli et al. 2016): linearise the classifier around the current point and
step to the nearest linearised decision boundary, ``r = (|f_k| + 1e-4)/‖w_k‖ · w_k/‖w_k‖`` with
``f_k = Z_k − Z_y``, ``w_k = ∇Z_k − ∇Z_y`` and k the candidate class of smallest
``|f_k|/‖w_k‖`` (L2; the L∞ variant uses ``‖w_k‖₁`` and ``sign(w_k)``), until the label flips;
the accumulated step is overshot by ``1 + overshoot``. Batched: every still-correct image of the
batch takes its step together, one backward pass per candidate class."""

from __future__ import annotations

from typing import Any

import torch

from veilnet.robust.attacks.base import Attack, Streams


class DeepFool(Attack):
    """DeepFool, a minimisation attack (the budget clips its result, see :mod:`.base`).

    Arguments:
        model: classifier on [0, 1] pixels.
        eps: L∞ budget the result is projected onto (None: unbounded).
        steps: most linearisation steps (default 50).
        overshoot: relative overshoot of the accumulated step (default 0.02).
        candidates: classes with the highest clean logits tried as targets (default 10).
        norm: ``"l2"`` (the paper's main algorithm, default) or ``"linf"``.
        (and the keyword arguments of :class:`~veilnet.robust.attacks.base.Attack`).

    Shape: images ``N×C×H×W`` in [0, 1], labels ``N`` → adversarials ``N×C×H×W``, success ``N``.

    Example::

        adv, success = DeepFool(model, eps=8 / 255)(images, labels)
    """

    name = "deepfool"
    minimization = True

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float | None = 8 / 255,
        *,
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        norm: str = "l2",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        self.configure({"steps": 1, "candidates": 2}, choices={"norm": ("l2", "linf")}, steps=steps, overshoot=overshoot, candidates=candidates, norm=norm)

    def max_queries(self) -> int:
        """The clean logits and one query per linearisation step."""
        return self.steps + 1

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, streams: Streams) -> torch.Tensor:
        with torch.no_grad():
            logits = self.query(images, streams)
        k = min(self.candidates, logits.shape[1])
        # Candidate classes: the label first, then the other classes with the highest clean logits.
        others = logits.scatter(1, labels[:, None], float("-inf")).topk(k - 1, dim=1).indices
        classes = torch.cat([labels[:, None], others], dim=1)
        total = torch.zeros_like(images)
        adv = images.clone()
        active = torch.arange(images.shape[0], device=images.device)
        for _ in range(self.steps):
            x = adv[active].detach().requires_grad_(True)
            out = self.query(x, streams[active])
            still = out.argmax(1) == labels[active]
            if not still.any():
                break
            active, x_out, cls = active[still], out[still], classes[active][still]
            z = x_out.gather(1, cls)  # B×k, the label's logit first
            grads = torch.stack([torch.autograd.grad(z[:, j].sum(), x, retain_graph=j < k - 1)[0][still] for j in range(k)], dim=1)
            f = (z[:, 1:] - z[:, :1]).detach()
            w = grads[:, 1:] - grads[:, :1]  # B×(k-1)×C×H×W
            dual = w.flatten(2).norm(p=2 if self.norm == "l2" else 1, dim=2) + 1e-8
            dist = f.abs() / dual
            best = dist.argmin(1)
            pick = torch.arange(best.shape[0], device=best.device)
            w_best, d_best = w[pick, best], dist[pick, best] + 1e-4
            if self.norm == "l2":
                step = d_best[:, None, None, None] * w_best / dual[pick, best][:, None, None, None]
            else:
                step = d_best[:, None, None, None] * w_best.sign()
            total[active] += step
            adv[active] = (images[active] + (1 + self.overshoot) * total[active]).clamp(0.0, 1.0)
        return adv
