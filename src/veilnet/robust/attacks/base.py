"""What every evasion attack shares: eval mode, device, batching, budgets, seeds and success.

An attack is a callable object on a classifier that takes [0, 1] pixels (DESIGN.md, "Pixels").
Calling it returns the adversarial images and a per-sample success mask (Foolbox 3 style);
:meth:`Attack.run` takes a list of L∞ budgets. Budget-bound attacks (FGSM, PGD, EOT-PGD, Square)
run once per budget; minimisation attacks (DeepFool, C&W) run once and their result is projected
onto each budget's L∞ ball, success being judged on the projected image (as Foolbox does).
With ``search_steps = S > 0`` a budget-bound attack looks, per image, for the smallest budget
that fools the model: it attacks at ε, then bisects [0, ε] S times for the images it fooled
(each probe at the midpoint of the image's own interval), and returns each image's result at
the smallest successful budget found, within ε/2^S of the smallest one. Foolbox 2, which the
post-averaging paper used "in their default settings", searched the same way (binary search on
ε for its iterative attacks, an ascending ε grid for FGSM); with :class:`~.pgd.PGD`'s
``early_stop`` the examples lie just past the decision boundary, as the paper's did. S = 0
attacks at ε only. A sample counts as a success when the model's prediction on the returned
image differs from its label; an image the model already gets wrong is a success with no change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from veilnet.errors import ConfigError, ShapeError
from veilnet.metrics import as_float

#: The paper's L∞ budget (section 4.1 and Table 1): 8/255 in [0, 1] pixel space.
EPS = 8 / 255


class Attack:
    """Base class: subclasses implement :meth:`perturb` on one batch on the model's device.

    Arguments:
        model: classifier taking ``N×C×H×W`` pixels in [0, 1] to logits.
        eps: L∞ budget in pixel space (None: unbounded, minimisation attacks only).
        batch_size: images attacked together.
        device: where to run (default: the model's parameters' device).
        seed: seed of the attack's own randomness (random starts, Square's proposals); None draws one.
        progress: show a tqdm bar over batches.
        search_steps: S > 0 bisects [0, ε] S times for each image's smallest successful budget
            (budget-bound attacks only); 0 (default) attacks at ε.
    """

    #: Short name used in results and on the command line.
    name: ClassVar[str] = "attack"
    #: True for attacks that search for the smallest perturbation and ignore ``eps`` while searching.
    minimization: ClassVar[bool] = False

    def __init__(self, model: nn.Module, eps: float | None = EPS, *, batch_size: int = 256, device: str | torch.device | None = None, seed: int | None = None, progress: bool = False, search_steps: int = 0) -> None:
        if eps is None and not self.minimization:
            raise ConfigError(f"{self.name} needs an L∞ budget eps")
        if eps is not None and not eps >= 0:
            raise ConfigError(f"eps must be non-negative, got {eps}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if search_steps < 0 or (search_steps and self.minimization):
            raise ConfigError(f"search_steps must be >= 0, and 0 for a minimisation attack, got {search_steps} for {self.name}")
        self.model = model
        self.eps = eps
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.seed = seed
        self.progress = progress
        self.search_steps = search_steps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps}, seed={self.seed})"

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attack ``images`` (``N×C×H×W``) with ``labels`` (``N``) at ``self.eps``: ``(adversarials, success)``."""
        return self.run(images, labels, [self.eps])[0]

    def run(self, images: torch.Tensor, labels: torch.Tensor, epsilons: Sequence[float | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One ``(adversarials, success)`` pair per budget in ``epsilons``, on the CPU."""
        images = as_float(images)
        labels = torch.as_tensor(labels).long()
        if labels.shape != images.shape[:1]:
            raise ShapeError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
        if not epsilons:
            raise ConfigError("run needs at least one budget")
        if any(e is None for e in epsilons) and not self.minimization:
            raise ConfigError(f"{self.name} needs a finite L∞ budget")
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        advs: list[list[torch.Tensor]] = [[] for _ in epsilons]
        wins: list[list[torch.Tensor]] = [[] for _ in epsilons]
        batches = range(0, images.shape[0], self.batch_size)
        with self._eval_mode():
            for start in tqdm(batches, desc=self.name, unit="batch", disable=not self.progress or len(batches) < 2):
                x = images[start : start + self.batch_size].to(self.device)
                y = labels[start : start + self.batch_size].to(self.device)
                raw = self.perturb(x, y, None, generator) if self.minimization else None
                for i, eps in enumerate(epsilons):
                    adv = self._smallest_budget(x, y, float(eps), generator) if raw is None else project(raw, x, eps)
                    advs[i].append(adv.detach().cpu())
                    wins[i].append(self.is_adversarial(adv, y).cpu())
        if not images.shape[0]:
            return [(images.clone(), torch.zeros(0, dtype=torch.bool)) for _ in epsilons]
        return [(torch.cat(a), torch.cat(w)) for a, w in zip(advs, wins)]

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """The attack's own arithmetic on one batch: adversarial images in [0, 1].

        ``eps`` holds each image's L∞ budget, shape ``N×1×1×1`` (None for minimisation attacks);
        random numbers come from ``generator`` (a CPU generator).
        """
        raise NotImplementedError

    def _smallest_budget(self, images: torch.Tensor, labels: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        """:meth:`perturb` at ε, then ``search_steps`` rounds of per-image bisection of [0, ε]."""
        hi = torch.full((images.shape[0], 1, 1, 1), eps, device=images.device)
        adv = self.perturb(images, labels, hi, generator)
        if not self.search_steps:
            return adv
        idx = self.is_adversarial(adv, labels).nonzero()[:, 0]
        if not len(idx):
            return adv
        x, y, best = images[idx], labels[idx], adv[idx]
        lo, hi = torch.zeros_like(hi[idx]), hi[idx]
        for _ in range(self.search_steps):
            mid = (lo + hi) / 2
            attempt = self.perturb(x, y, mid, generator)
            win = self.is_adversarial(attempt, y)
            best[win] = attempt[win]
            hi = torch.where(win[:, None, None, None], mid, hi)
            lo = torch.where(win[:, None, None, None], lo, mid)
        adv[idx] = best
        return adv

    # -- helpers for the subclasses -------------------------------------------------------------

    def gradient(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """∇ₓ of the summed cross-entropy loss (each sample's gradient is its own loss's), and the logits."""
        x = images.detach().requires_grad_(True)
        logits = self.model(x)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        return torch.autograd.grad(loss, x)[0], logits.detach()

    @torch.no_grad()
    def is_adversarial(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """True where the model's prediction differs from the label."""
        return self.model(images).argmax(1) != labels

    def rand(self, *shape: int, generator: torch.Generator) -> torch.Tensor:
        """Uniform [0, 1) numbers drawn on the CPU from ``generator``, moved to the device."""
        return torch.rand(*shape, generator=generator).to(self.device)

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)


def project(adversarials: torch.Tensor, images: torch.Tensor, eps: float | None) -> torch.Tensor:
    """Clip ``adversarials`` into the L∞ ball of radius ``eps`` around ``images`` and into [0, 1]."""
    if eps is None:
        return adversarials.clamp(0.0, 1.0)
    return torch.min(torch.max(adversarials, images - eps), images + eps).clamp(0.0, 1.0)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
